"""The reader's blocks of lines: an error must name its input line, however many blocks came before."""

from __future__ import annotations

import typing as t

import pytest
from conftest import Warehouse, record, schema

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
