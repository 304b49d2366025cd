"""The reader's one-pass decode of a stream's blocks, and the blocks it leaves to the envelope path.

A block of lines is first decoded with the typed decoder of the stream read last; a record of another
stream, a SCHEMA message, a NUL escape or a bad value sends the block back to the envelope path. Either
way every value must land in its own row and table, and an error must name its input line.
"""

from __future__ import annotations

import json
import typing as t

import pytest
from conftest import Warehouse, record, schema, state

from target_warehouse_seg.reader import MessageReader

COUNTED = {
    "id": {"type": "string"},
    "name": {"type": ["null", "string"]},
    "count": {"type": ["null", "integer"]},
}
# The same property names with other types: a record of one stream never fits the other's decoder.
WORDED = {
    "id": {"type": "string"},
    "name": {"type": ["null", "string"]},
    "count": {"type": ["null", "string"]},
}


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of a few lines, so that a few hundred records make many blocks."""
    monkeypatch.setattr(MessageReader, "BLOCK_BYTES", 2_000)


def counted(i: int, stream: str = "s") -> dict[str, t.Any]:
    return record(stream, {"id": f"k{i:05d}", "name": f"n{i}", "count": i})


def assert_counted(warehouse: Warehouse, table: str, ids: t.Iterable[int]) -> None:
    rows = warehouse.rows(table, columns="id, name, count")
    assert [(row["id"], row["name"], row["count"]) for row in rows] == [
        (f"k{i:05d}", f"n{i}", i) for i in sorted(ids)
    ]


def test_a_bad_record_after_many_blocks_is_reported_at_its_own_line(warehouse: Warehouse) -> None:
    messages: list[t.Any] = [schema("s", COUNTED)]
    messages += [counted(i) for i in range(1, 1001)]
    messages.append(record("s", {"id": "bad", "count": "many"}))  # line 1002
    error = warehouse.run(messages).error
    assert error is not None
    assert "line 1002," in str(error) and "field count" in str(error)


def test_a_bad_record_after_blocks_of_interleaved_streams_is_reported_at_its_own_line(
    warehouse: Warehouse,
) -> None:
    messages: list[t.Any] = [schema("a", COUNTED), schema("b", WORDED)]
    for i in range(1, 301):
        messages += [counted(i, "a"), record("b", {"id": f"k{i:05d}", "name": None, "count": f"c{i}"})]
    messages.append(record("a", {"id": "bad", "count": "many"}))  # line 603
    error = warehouse.run(messages).error
    assert error is not None
    assert "line 603," in str(error) and "stream a" in str(error)


def test_streams_interleaved_line_by_line_load_each_record_into_its_own_table(warehouse: Warehouse) -> None:
    messages: list[t.Any] = [schema("a", COUNTED), schema("b", WORDED)]
    for i in range(300):
        messages.append(counted(i, "a"))
        messages.append(record("b", {"id": f"k{i:05d}", "name": f"n{i}", "count": f"c{i}"}))
    assert warehouse.run(messages).error is None
    assert_counted(warehouse, "a", range(300))
    rows = warehouse.rows("b", columns="id, name, count")
    assert [(row["id"], row["count"]) for row in rows] == [(f"k{i:05d}", f"c{i}") for i in range(300)]


def test_streams_in_long_runs_switch_inside_blocks(warehouse: Warehouse) -> None:
    """Runs of 37 records: most blocks hold one stream's records, some end one run and start the next."""
    messages: list[t.Any] = [schema("a", COUNTED), schema("b", COUNTED)]
    for i in range(600):
        messages.append(counted(i, "a" if (i // 37) % 2 == 0 else "b"))
        if i % 101 == 0:
            messages.append(state({"bookmark": i}))
    run = warehouse.run(messages)
    assert run.error is None
    assert run.states[-1] == {"bookmark": 505}
    assert_counted(warehouse, "a", [i for i in range(600) if (i // 37) % 2 == 0])
    assert_counted(warehouse, "b", [i for i in range(600) if (i // 37) % 2 == 1])


def test_a_schema_change_inside_a_block_applies_to_the_records_after_it(warehouse: Warehouse) -> None:
    wider = {**COUNTED, "extra": {"type": ["null", "string"]}, "count": {"type": ["null", "number"]}}
    messages: list[t.Any] = [schema("s", COUNTED)]
    messages += [counted(i) for i in range(200)]
    messages.append(schema("s", wider))
    messages += [
        record("s", {"id": f"k{i:05d}", "name": f"n{i}", "count": i + 0.5, "extra": f"e{i}"})
        for i in range(200, 400)
    ]
    assert warehouse.run(messages).error is None
    rows = warehouse.rows("s", columns="id, count, extra")
    assert len(rows) == 400
    for i, row in enumerate(rows):
        assert row["id"] == f"k{i:05d}"
        assert float(row["count"]) == (i if i < 200 else i + 0.5)
        assert row["extra"] == (None if i < 200 else f"e{i}")


def test_nul_escapes_after_typed_blocks_are_still_removed(warehouse: Warehouse) -> None:
    messages: list[t.Any] = [schema("s", COUNTED)]
    messages += [counted(i) for i in range(300)]
    messages += [record("s", {"id": f"k{i:05d}", "name": f"n\u0000{i}", "count": i}) for i in range(300, 310)]
    messages += [counted(i) for i in range(310, 600)]
    assert warehouse.run(messages).error is None
    assert_counted(warehouse, "s", range(600))


@pytest.mark.parametrize("batch_size_rows", [1, 7, 250])
def test_batches_that_end_inside_a_block_keep_each_records_values(
    warehouse: Warehouse, batch_size_rows: int
) -> None:
    messages: list[t.Any] = [schema("s", COUNTED)]
    messages += [counted(i) for i in range(500)]
    assert warehouse.run(messages, batch_size_rows=batch_size_rows).error is None
    assert_counted(warehouse, "s", range(500))


def test_a_record_quarantined_from_a_typed_chunk_leaves_the_others_in_their_rows(
    warehouse: Warehouse,
) -> None:
    """A record without its key passes the typed decoder and is refused by the chunk's check: dropping it
    must drop its own line of the chunk's JSON too (DuckDB joins those lines with the rest by position)."""
    messages: list[t.Any] = [schema("s", COUNTED)]
    for i in range(400):
        messages.append(record("s", {"name": "keyless", "count": -1}) if i % 97 == 5 else counted(i))
    run = warehouse.run(messages, on_invalid_record="quarantine")
    assert run.error is None
    assert_counted(warehouse, "s", [i for i in range(400) if i % 97 != 5])
    rejected = warehouse.rows("_rejected_records", order_by="line", columns="line, field, record")
    assert [row["line"] for row in rejected] == [i + 2 for i in range(400) if i % 97 == 5]
    assert {row["field"] for row in rejected} == {"id"}
    assert all(json.loads(row["record"])["name"] == "keyless" for row in rejected)
