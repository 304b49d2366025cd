"""DuckDB's own loading path: records' JSON read by DuckDB, refused batches repaired or located, plain
inserts that turn into upserts, and what stays bounded (spool files, memory per column)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import typing as t
from decimal import Decimal
from pathlib import Path

import duckdb
import msgspec
import pytest
from conftest import TARGET_EXECUTABLE, Warehouse, record, schema, start_target, state, to_lines

from target_warehouse_seg.errors import DatabaseError, InvalidRecord

UTC = dt.UTC
PROPERTIES = {
    "id": {"type": "string"},
    "name": {"type": ["null", "string"]},
    "amount": {"type": ["null", "number"]},
    "count": {"type": ["null", "integer"]},
    "flag": {"type": ["null", "boolean"]},
    "system_modstamp": {"type": ["null", "string"], "format": "date-time"},
}


def line(values: str, stream: str = "s") -> str:
    """A RECORD line with the record written verbatim (exact numbers, odd JSON)."""
    return f'{{"type": "RECORD", "stream": "{stream}", "record": {values}}}'


def names(warehouse: Warehouse) -> dict[str, object]:
    return {row["id"]: row["name"] for row in warehouse.rows("s", columns="id, name")}


def test_duckdb_reads_the_values_it_was_given(duckdb_warehouse: Warehouse) -> None:
    lines = [
        json.dumps(schema("s", PROPERTIES, bookmark=["system_modstamp"])),
        line(
            '{"id": "a", "name": "caf\\u00e9 \\ud83d\\ude80 \\"q\\" \\\\ \\n", '
            '"amount": 12345678901234567.123456789, "count": -9223372036854775808, "flag": true, '
            '"system_modstamp": "2024-01-02T03:04:05.5+02:00"}'
        ),
        # Leniently read: 1.0 for an integer, a date-time without zone, a number for text.
        line(
            '{"id": "b", "name": 1.50, "amount": 1E+2, "count": 7.0, '
            '"system_modstamp": "2024-01-02T03:04:05"}'
        ),
        line('{"id": "c", "other": {"x": [1, 2.50]}, "amount": null}'),
    ]
    assert duckdb_warehouse.run(lines).error is None
    rows = {row["id"]: row for row in duckdb_warehouse.rows("s")}
    assert rows["a"]["name"] == 'café 🚀 "q" \\ \n'
    assert rows["a"]["amount"] == Decimal("12345678901234567.123456789")
    assert rows["a"]["count"] == -9223372036854775808 and rows["a"]["flag"] is True
    assert rows["a"]["system_modstamp"] == dt.datetime(2024, 1, 2, 1, 4, 5, 500000, tzinfo=UTC)
    # A number in a text column is spelled as a number column widened to text spells it.
    assert (rows["b"]["name"], rows["b"]["amount"], rows["b"]["count"]) == ("1.5", Decimal(100), 7)
    assert rows["b"]["system_modstamp"] == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert rows["c"]["name"] is None and rows["c"]["amount"] is None and rows["c"]["flag"] is None


@pytest.mark.parametrize(
    "values",
    [
        [],
        [None],
        [dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)],
        [
            None,
            dt.datetime(2024, 1, 2, 3, 4, 5, 6000, tzinfo=UTC),
            dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
            None,
            dt.datetime(1, 1, 1, tzinfo=UTC),
            None,
        ],
        [dt.date(2024, 2, 29), None, dt.date(9999, 12, 31)],
        [dt.time(0, 0), dt.time(23, 59, 59, 999999), None],
    ],
    ids=["none", "one null", "one", "date-times of several widths", "dates", "times"],
)
def test_dates_and_times_travel_as_their_rfc_3339_text(values: list[t.Any]) -> None:
    from target_warehouse_seg.engines.duckdb_codec import _temporal_array

    array = _temporal_array(values)
    array.validate(full=True)
    texts = [msgspec.json.encode(value).decode().strip('"') for value in values]  # None: "null"
    assert array.to_pylist() == texts


NUMBER_COLUMNS = {
    "small": (["1", "-2.5", "null", None, "0.000000000000000001", "99999999999999999999.5"], False),
    "exponent that fits": (["1.5e3", "2E-2", "7"], False),
    "19 decimals": (["1", "0.1234567890123456789"], True),
    "21 digits before the point": (["123456789012345678901"], True),
    "exponent past the scale": (["1e-19"], True),
    "exponent past the precision": (["1E+20"], True),
    "exponents past Python's context": (["1", "1e999999999"], True),
    "exponents below Python's context": (["1e-999999999"], True),
    "nothing": ([None, None], False),
}


@pytest.mark.parametrize("texts, misfit", NUMBER_COLUMNS.values(), ids=NUMBER_COLUMNS.keys())
def test_a_number_column_is_scanned_once_for_both_checks(texts: list[str | None], misfit: bool) -> None:
    from target_warehouse_seg import convert
    from target_warehouse_seg.engines.duckdb_codec import _decimal_misfit

    values = [None if text is None else msgspec.Raw(text.encode()) for text in texts]
    scan = convert.scan_numbers(values)
    assert convert.NOT_NUMBER not in scan and convert.first_non_number(values) is None
    # The sink's scan gives the codec the answer it would find by itself.
    assert _decimal_misfit(values, scan) is misfit
    assert _decimal_misfit(values) is misfit


@pytest.mark.parametrize("bad", ['"12.5"', "true", "[1]", '{"n": 1}'])
def test_a_number_column_scan_finds_what_is_not_a_number(bad: str) -> None:
    from target_warehouse_seg import convert

    values = [msgspec.Raw(b"1.5"), None, msgspec.Raw(bad.encode()), msgspec.Raw(b"null")]
    assert convert.NOT_NUMBER in convert.scan_numbers(values)
    assert convert.first_non_number(values) == 2


def test_a_record_duckdb_refuses_for_what_the_decoder_ignores_is_re_encoded(
    duckdb_warehouse: Warehouse, caplog: pytest.LogCaptureFixture
) -> None:
    """DuckDB's reader refuses a repeated key, the decoder keeps the last value: the batch is loaded
    again as the JSON of what was decoded, and stores what PostgreSQL would."""
    lines = [
        json.dumps(schema("s", PROPERTIES)),
        line('{"id": "a", "name": "ok"}'),
        line('{"id": "b", "name": "first", "name": "second", "x": 1, "x": [2]}'),
        json.dumps(state(1)),
    ]
    with caplog.at_level(logging.INFO, logger="target-warehouse-seg"):
        run = duckdb_warehouse.run(lines)
    assert run.error is None and run.states == [1]
    assert names(duckdb_warehouse) == {"a": "ok", "b": "second"}
    assert any("re-encoded" in message for message in caplog.messages)


def test_invalid_utf8_outside_the_schema_is_re_encoded(duckdb_warehouse: Warehouse) -> None:
    schema_line = json.dumps(schema("s", PROPERTIES)).encode()
    data = b"\n".join([schema_line, b'{"type": "RECORD", "stream": "s", "record": {"id": "a", "x": "\xff"}}'])
    config = duckdb_warehouse.tmp_path / "c.json"
    config.write_text(json.dumps(duckdb_warehouse.config()))
    done = subprocess.run(
        [TARGET_EXECUTABLE, "--config", str(config)], input=data + b"\n", capture_output=True
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    assert b"re-encoded" in done.stderr  # DuckDB's reader refused the bytes the decoder skipped
    assert names(duckdb_warehouse) == {"a": None}


def test_a_value_duckdb_refuses_is_located_and_reported(duckdb_warehouse: Warehouse) -> None:
    """DuckDB refuses a row for reasons of its own (a CHECK constraint someone put on the table): the
    error names the input line, never a spool file."""
    duckdb_warehouse.execute(
        "CREATE SCHEMA salesforce",
        "CREATE TABLE salesforce.s (id BIGINT PRIMARY KEY, day DATE CHECK (day < DATE '2030-01-01'), "
        "received_at TIMESTAMP WITH TIME ZONE, uuid_ts TIMESTAMP WITH TIME ZONE)",
    )
    props = {"id": {"type": "integer"}, "day": {"type": "string", "format": "date"}}
    lines = [json.dumps(schema("s", props))] + [
        json.dumps(record("s", {"id": i, "day": "2024-01-02"})) for i in range(1, 40)
    ]
    lines.insert(23, json.dumps(record("s", {"id": 99, "day": "2031-02-03"})))
    run = duckdb_warehouse.run(lines)
    assert isinstance(run.error, InvalidRecord)
    assert str(run.error).startswith("Invalid input: line 24, stream s, key id=99"), str(run.error)
    assert "tmp" not in str(run.error) and ".ndjson" not in str(run.error)  # no spool file names
    quarantined = duckdb_warehouse.run(lines, on_invalid_record="quarantine")
    assert quarantined.error is None
    assert duckdb_warehouse.count("s") == 39
    rejected = duckdb_warehouse.rows("_rejected_records", order_by="line")
    assert [row["line"] for row in rejected] == [24]
    assert json.loads(rejected[0]["record"]) == {"id": 99, "day": "2031-02-03"}


@pytest.mark.parametrize(
    ("second_ids", "switch"),
    [
        # The first record's key is stored: the table is upserted from the first batch on.
        ([3, 4, 5, 6, 7], "its first record's key is stored already; upserting"),
        # The first record's key is new: a plain INSERT, which the primary key refuses for k3.
        ([5, 3, 4, 6, 7], "some keys exist already; upserting from now on"),
    ],
)
def test_a_table_with_keys_already_there_is_upserted(
    duckdb_warehouse: Warehouse, caplog: pytest.LogCaptureFixture, second_ids: list[int], switch: str
) -> None:
    """The first batch into a table is a plain INSERT unless its first key is stored already; keys
    already there turn the table to upserts."""
    messages = [schema("s", PROPERTIES, bookmark=["system_modstamp"])]
    stamp = "2024-01-01T00:00:0{}Z"
    first = [record("s", {"id": f"k{i}", "name": "v1", "system_modstamp": stamp.format(1)}) for i in range(5)]
    second = [
        record("s", {"id": f"k{i}", "name": "v2", "system_modstamp": stamp.format(i % 3)}) for i in second_ids
    ]
    with caplog.at_level(logging.INFO, logger="target-warehouse-seg"):
        assert duckdb_warehouse.run([*messages, *first]).error is None
    assert not any("upserting" in message for message in caplog.messages)  # a new table: appended
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="target-warehouse-seg"):
        assert duckdb_warehouse.run([*messages, *second], batch_size_rows=2).error is None
    assert [message for message in caplog.messages if "upserting" in message] == [f"stream s: {switch}"]
    # k3 arrives with stamp 0 (older than stored 1): kept; k4 with 1 (equal): replaced; k5..k7 are new.
    assert names(duckdb_warehouse) == {
        "k0": "v1",
        "k1": "v1",
        "k2": "v1",
        "k3": "v1",
        "k4": "v2",
        "k5": "v2",
        "k6": "v2",
        "k7": "v2",
    }


def test_a_column_added_by_someone_else_keeps_its_values(duckdb_warehouse: Warehouse) -> None:
    messages = [schema("s", PROPERTIES)]
    assert duckdb_warehouse.run([*messages, record("s", {"id": "a", "name": "v1"})]).error is None
    connection = duckdb.connect(duckdb_warehouse.base_config["path"])
    connection.execute("ALTER TABLE salesforce.s ADD COLUMN note VARCHAR")
    connection.execute("UPDATE salesforce.s SET note = 'mine'")
    connection.close()
    assert duckdb_warehouse.run([*messages, record("s", {"id": "a", "name": "v2"})]).error is None
    assert duckdb_warehouse.rows("s", columns="id, name, note") == [{"id": "a", "name": "v2", "note": "mine"}]


def test_spool_files_are_removed(
    duckdb_warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    messages = [schema("s", PROPERTIES)] + [record("s", {"id": str(i), "name": "x"}) for i in range(50)]
    assert duckdb_warehouse.run(messages, batch_size_rows=7).error is None
    bad = [*messages, '{"type": "RECORD", "stream": "s", "record": {"id": "z", "count": "no"}}']
    assert duckdb_warehouse.run(bad, batch_size_rows=7, schema="other").error is not None
    assert list(spool.iterdir()) == []


def test_a_killed_runs_spool_folder_is_removed_by_the_next_run(tmp_path: Path) -> None:
    """A killed run cannot remove its batch files (up to ~64 MB a run): they stayed in the temporary
    folder for good (523 folders here after a day of tests). The next run removes every folder that
    no living run holds, and leaves a living run's alone."""
    spool = tmp_path / "spool"
    spool.mkdir()
    environment = {**os.environ, "TMPDIR": str(spool)}
    messages = [schema("s", PROPERTIES), *(record("s", {"id": str(i)}) for i in range(20))]

    def start(name: str) -> subprocess.Popen:
        config = tmp_path / f"{name}.json"  # a database each: DuckDB takes one writer at a time
        config.write_text(json.dumps({"path": str(tmp_path / f"{name}.duckdb"), "batch_size_rows": 5}))
        return start_target(config, stdout=subprocess.DEVNULL, env=environment)

    def waiting(process: subprocess.Popen) -> None:
        """Fed records without an end of input: the run waits, its spool folder made."""
        process.stdin.write(to_lines(messages))
        process.stdin.flush()
        for log_line in process.stderr:
            if "committed" in log_line:
                return

    killed = start("killed")
    waiting(killed)
    killed.kill()
    killed.wait(timeout=30)
    assert len(list(spool.iterdir())) == 1
    living = start("living")
    waiting(living)
    living_folders = list(spool.iterdir())
    assert len(living_folders) == 1  # the killed run's folder went when the living run made its own
    old_version = spool / "target-warehouse-seg-old"  # no lock file: removed once a day old
    old_version.mkdir()
    os.utime(old_version, (time.time() - 2 * 86_400,) * 2)
    third = start("third")
    third.stdin.write(to_lines(messages))
    third.stdin.close()
    assert third.wait(timeout=60) == 0
    assert list(spool.iterdir()) == living_folders  # the living run's folder stays
    living.stdin.close()
    assert living.wait(timeout=60) == 0
    assert list(spool.iterdir()) == []


def test_a_spool_folder_that_cannot_be_written_stops_the_run_with_one_line(
    duckdb_warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    not_a_folder = tmp_path / "not-a-folder"
    not_a_folder.write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(not_a_folder))
    messages = [schema("s", PROPERTIES), record("s", {"id": "a"}), state({"at": 1})]
    run = duckdb_warehouse.run(messages)
    assert isinstance(run.error, DatabaseError)
    assert str(run.error) == (
        f"cannot write DuckDB's batch files in {not_a_folder}: Not a directory; free space there, "
        "or point TMPDIR to a folder with room"
    )
    assert run.states == []


def test_a_batch_of_many_chunks_is_spooled_into_few_files_in_row_order(
    duckdb_warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks share a spool file until it holds SPOOL_FILE_BYTES (DuckDB pays for each file it opens);
    DuckDB joins the files' rows with the side table by position, so each row must keep its own
    values and its own received_at (its time_extracted, which travels aside)."""
    from target_warehouse_seg.engines import duckdb as engine
    from target_warehouse_seg.engines import duckdb_codec as codec
    from target_warehouse_seg.reader import MessageReader

    # Small blocks of input and the smallest chunks (256 rows): a chunk every ~300 records.
    monkeypatch.setattr(MessageReader, "BLOCK_BYTES", 16_000)
    monkeypatch.setattr(engine.DuckDBEngine, "chunk_values", 1)
    monkeypatch.setattr(codec, "SPOOL_FILE_BYTES", 60_000)  # 2 chunks (~45 KB of lines each) a file
    batches: list[tuple[int, int]] = []  # (chunks, files) of each batch
    finish = codec.DuckDBCodec.finish

    def counting_finish(self: codec.DuckDBCodec, columns: list, parts: list) -> codec.JsonPayload:
        payload = finish(self, columns, parts)
        batches.append((len(parts), len(payload.paths)))
        return payload

    monkeypatch.setattr(codec.DuckDBCodec, "finish", counting_finish)
    stamp = dt.datetime(2024, 6, 1, tzinfo=UTC)
    messages: list[object] = [schema("s", PROPERTIES)]
    for i in range(3000):
        extracted = (stamp + dt.timedelta(seconds=i)).isoformat()
        messages.append(record("s", {"id": f"k{i:04d}", "name": f"n{i}", "count": i}, extracted))
    assert duckdb_warehouse.run(messages).error is None
    [(chunks, files)] = batches
    assert chunks >= 8 and 1 < files <= chunks // 2 + 1
    rows = duckdb_warehouse.rows("s", columns="id, name, count, received_at")
    assert len(rows) == 3000
    for row in rows:
        i = int(row["id"][1:])
        assert (row["name"], row["count"]) == (f"n{i}", i)
        assert row["received_at"] == stamp + dt.timedelta(seconds=i)


def test_a_batch_whose_every_key_is_stored_replaces_them_and_one_with_newer_rows_keeps_those(
    duckdb_warehouse: Warehouse,
) -> None:
    """Upserts delete the stored rows a batch wins over; when that is every row of the batch, the
    batch is inserted without looking for its keys again, else only the keys now absent are."""
    messages = [schema("s", PROPERTIES, bookmark=["system_modstamp"])]
    stamp = "2024-01-01T00:00:0{}Z"

    def rows(name: str, second: int, keys: range) -> list[dict]:
        return [
            record("s", {"id": f"k{i}", "name": name, "system_modstamp": stamp.format(second)}) for i in keys
        ]

    assert duckdb_warehouse.run([*messages, *rows("v1", 2, range(4))]).error is None
    # Batch 1: every key stored and older (all replaced). Batch 2: k0 is stored newer (kept), k9 is new.
    batches = [*rows("v2", 3, range(4)), *rows("stale", 1, range(1)), *rows("v2", 3, range(9, 10))]
    assert duckdb_warehouse.run([*messages, *batches], batch_size_rows=4).error is None
    assert names(duckdb_warehouse) == {"k0": "v2", "k1": "v2", "k2": "v2", "k3": "v2", "k9": "v2"}
    assert duckdb_warehouse.count("s") == 5


def test_the_first_unit_is_smaller_so_that_loading_starts_sooner(
    duckdb_warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from target_warehouse_seg.engines.duckdb import DuckDBEngine

    monkeypatch.setattr(DuckDBEngine, "first_unit_bytes", 400)
    monkeypatch.setattr(DuckDBEngine, "unit_bytes", 2000)
    messages: list[dict] = [schema("s", PROPERTIES)]
    for i in range(60):
        messages += [record("s", {"id": f"k{i:03d}", "name": "x" * 60}), state({"n": i})]
    with caplog.at_level(logging.INFO, logger="target-warehouse-seg"):
        run = duckdb_warehouse.run(messages)
    assert run.error is None
    units = [int(m.split()[1]) for m in caplog.messages if m.startswith("committed ")]
    # Each record is ~100 bytes of JSON: the first unit commits after ~4 records, the next after ~20.
    assert sum(units) == 60
    assert units[0] <= 5
    assert units[1] >= 15
    assert run.states[-1] == {"n": 59}
    assert duckdb_warehouse.count("s") == 60


def _whole_org(widths: dict[str, int]) -> list[object]:
    lines: list[object] = []
    for stream, width in widths.items():
        properties = {"id": {"type": "string"}} | {
            f"c{column}": {"type": ["null", "string"]} for column in range(width)
        }
        lines.append(schema(stream, properties, key=["id"]))
        lines += [
            record(stream, {"id": f"{stream}-{row}"} | {f"c{column}": "x" * 20 for column in range(width)})
            for row in range(20)
        ]
    lines.append(state({"done": True}))
    return lines


ORG_WIDTHS = {f"s{number}": 60 for number in range(45)} | {"wide": 1050}


def test_many_streams_and_a_very_wide_one_load_within_duckdbs_memory_limit(
    duckdb_warehouse: Warehouse,
) -> None:
    """A whole org in one run (a demo-sized sync: dozens of tables, one of 1,000+ columns) must not
    run DuckDB out of the memory limit the engine sets for it."""
    run = duckdb_warehouse.run(_whole_org(ORG_WIDTHS))
    assert run.error is None, run.error
    assert run.states == [{"done": True}]
    assert all(len(duckdb_warehouse.rows(stream, columns="id")) == 20 for stream in ORG_WIDTHS)


def test_a_load_that_runs_out_of_memory_raises_the_limit_and_runs_again(
    duckdb_warehouse: Warehouse, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from target_warehouse_seg.engines import duckdb as engine

    monkeypatch.setattr(engine, "MEMORY_LIMIT_MB", 4)
    monkeypatch.setattr(engine, "MEMORY_PER_COLUMN_KB", 0)
    with caplog.at_level(logging.WARNING, logger="target-warehouse-seg"):
        run = duckdb_warehouse.run(_whole_org({"a": 60, "b": 300}))
    assert run.error is None, run.error
    assert any("ran out of its 4 MB memory limit" in message for message in caplog.messages)
    assert [len(duckdb_warehouse.rows(stream, columns="id")) for stream in ("a", "b")] == [20, 20]


def test_a_load_that_outgrows_the_memory_ceiling_stops_with_one_line(
    duckdb_warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limit doubles up to a ceiling (a quarter of the machine's memory), not into the kernel's OOM
    killer (a SIGKILL, without a word)."""
    from target_warehouse_seg.engines import duckdb as engine

    monkeypatch.setattr(engine, "MEMORY_LIMIT_MB", 4)
    monkeypatch.setattr(engine, "MEMORY_PER_COLUMN_KB", 0)
    monkeypatch.setattr(engine, "memory_ceiling_mb", lambda: 8)
    run = duckdb_warehouse.run(_whole_org({"a": 60, "b": 300}))
    assert isinstance(run.error, DatabaseError)
    message = str(run.error)
    assert "a unit needs more than 8 MB, the most the target lets DuckDB take here" in message
    assert "lower batch_size_rows" in message and "\n" not in message
    assert run.states == []


def test_the_checkpoint_threshold_and_memory_limit_grow_with_the_columns_written(tmp_path: Path) -> None:
    """Narrow tables checkpoint often (committed rows wait in memory for it); a wide table's checkpoint
    needs a buffer per column, so the threshold grows with the columns, up to a cap, never down."""
    from target_warehouse_seg.engines import Column
    from target_warehouse_seg.engines.duckdb import CHECKPOINT_BASE_MB, CHECKPOINT_MAX_MB, DuckDBEngine
    from target_warehouse_seg.typemap import Kind

    engine = DuckDBEngine(str(tmp_path / "w.duckdb"), "s")
    engine.connect()

    def settings() -> tuple[float, float]:
        row = engine.connection.execute(
            "SELECT current_setting('checkpoint_threshold'), current_setting('memory_limit')"
        ).fetchone()
        assert row is not None
        mebibytes = [float(value.split()[0]) * (1024 if value.endswith("GiB") else 1) for value in row]
        return mebibytes[0] * 1.048576, mebibytes[1] * 1.048576  # as MB

    def create(name: str, width: int) -> None:
        engine.begin()
        columns = [Column(f"c{i}", Kind.TEXT, f"c{i}") for i in range(width)]
        engine.create_table(name, name, columns, ("c0",))
        engine.commit()

    try:
        engine.ensure_schema()
        create("narrow", 10)
        narrow_checkpoint, narrow_memory = settings()
        assert CHECKPOINT_BASE_MB <= round(narrow_checkpoint) <= CHECKPOINT_BASE_MB + 2
        create("wide", 300)
        wide_checkpoint, wide_memory = settings()
        assert round(wide_checkpoint) == CHECKPOINT_MAX_MB and wide_memory > narrow_memory
        create("narrow_again", 10)
        assert settings() == (wide_checkpoint, wide_memory)  # never lowered within a run
    finally:
        engine.close()


def test_duckdb_takes_the_main_threads_core_only_while_the_main_thread_waits(
    duckdb_warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DuckDB works on one thread fewer than the cores (the main thread decodes the next unit), and on
    every core while the main thread waits for it (here: for units whose commit takes a while)."""
    import os
    import time

    from target_warehouse_seg.engines.duckdb import DuckDBEngine

    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    seen: list[tuple[bool, bool, str]] = []
    lend, commit = DuckDBEngine.lend_core, DuckDBEngine.commit

    def watched_lend(engine: DuckDBEngine, lent: bool) -> bool:
        taken = lend(engine, lent)
        with engine.connection.cursor() as cursor:
            row = cursor.execute("SELECT current_setting('threads')").fetchone()
        seen.append((lent, taken, str(row[0]) if row else ""))
        return taken

    def slow_commit(engine: DuckDBEngine) -> None:
        time.sleep(0.2)  # the main thread reaches the end of its input and waits
        commit(engine)

    monkeypatch.setattr(DuckDBEngine, "lend_core", watched_lend)
    monkeypatch.setattr(DuckDBEngine, "commit", slow_commit)
    messages: list[dict] = [schema("s", PROPERTIES)]
    messages += [record("s", {"id": f"k{i:03d}", "name": "x"}) for i in range(50)]
    run = duckdb_warehouse.run([*messages, state({"n": 1})])
    assert run.error is None, run.error
    assert duckdb_warehouse.count("s") == 50
    assert seen and seen[0] == (True, True, "4")
    assert seen[-1] == (False, True, "3")
    assert [lent for lent, _, _ in seen] == [True, False] * (len(seen) // 2)
    monkeypatch.setattr(os, "cpu_count", lambda: 1)  # one core: nothing to lend, one DuckDB thread
    engine = DuckDBEngine(str(duckdb_warehouse.tmp_path / "one.duckdb"), "s")
    engine.connect()
    try:
        assert engine.lend_core(True) is False
        row = engine.connection.execute("SELECT current_setting('threads')").fetchone()
        assert row is not None and str(row[0]) == "1"
    finally:
        engine.close()


def test_duckdb_keeps_a_block_allocator_within_its_memory_limit(tmp_path: Path) -> None:
    """DuckDB reuses its freed buffers (fewer page faults on long loads) from a block allocator smaller
    than the memory limit, so the process's peak stays where the limit puts it."""
    from target_warehouse_seg.engines.duckdb import BLOCK_ALLOCATOR_MB, MEMORY_LIMIT_MB, DuckDBEngine

    engine = DuckDBEngine(str(tmp_path / "w.duckdb"), "s")
    engine.connect()
    try:
        value = engine.connection.execute("SELECT current_setting('block_allocator_memory')").fetchone()
    finally:
        engine.close()
    assert value is not None
    amount, unit = value[0].split()
    assert unit == "MiB" and round(float(amount) * 1.048576) == BLOCK_ALLOCATOR_MB
    assert BLOCK_ALLOCATOR_MB < MEMORY_LIMIT_MB


def test_duckdb_vacuums_only_when_closing(tmp_path: Path) -> None:
    """Checkpoints while loading do not compact row groups that hold deleted rows (upserts delete the
    rows they replace: each checkpoint rewrote the same row groups again); DuckDB's checkpoint on
    closing does, with its default."""
    from target_warehouse_seg.engines.duckdb import DuckDBEngine

    path = str(tmp_path / "w.duckdb")
    engine = DuckDBEngine(path, "s")
    engine.connect()
    try:
        connection = engine.connection
        assert connection.execute("SELECT current_setting('max_vacuum_tasks')").fetchone() == (0,)
        connection.execute("CREATE TABLE t AS SELECT range AS id FROM range(400000)")
        connection.execute("CHECKPOINT")
        connection.execute("SET checkpoint_threshold = '1GB'")  # the deletes wait in the WAL
        connection.execute("DELETE FROM t WHERE id % 4 <> 0")
    finally:
        engine.close()
    reopened = duckdb.connect(path)
    try:
        row_groups = reopened.execute("SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('t')")
        assert row_groups.fetchone() == (1,)  # 100,000 rows left, compacted from 4 row groups into one
        assert reopened.execute("SELECT count(*), sum(id % 4) FROM t").fetchone() == (100000, 0)
    finally:
        reopened.close()


def test_the_last_unit_of_a_run_vacuums(duckdb_warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the run's last commit checkpoints (nothing is left for the checkpoint on closing), that
    checkpoint vacuums: the row groups that upserts left partly deleted are compacted."""
    from target_warehouse_seg.engines import duckdb as engine_module

    # Every commit checkpoints (a 1 MB threshold).
    monkeypatch.setattr(engine_module, "CHECKPOINT_BASE_MB", 1)
    monkeypatch.setattr(engine_module, "CHECKPOINT_MAX_MB", 1)
    properties = {"id": {"type": "integer"}, "system_modstamp": PROPERTIES["system_modstamp"]}
    messages = [schema("s", properties, bookmark=["system_modstamp"])]

    def records(ids: t.Iterable[int], stamp: str) -> list[dict[str, t.Any]]:
        return [record("s", {"id": i, "system_modstamp": stamp}) for i in ids]

    assert duckdb_warehouse.run([*messages, *records(range(250_000), "2024-01-01T00:00:00Z")]).error is None
    # Three rows in four replaced: the 250,000 rows' three row groups keep a quarter of their rows.
    updated = [i for i in range(250_000) if i % 4]
    assert duckdb_warehouse.run([*messages, *records(updated, "2024-01-02T00:00:00Z")]).error is None
    connection = duckdb.connect(duckdb_warehouse.base_config["path"], read_only=True)
    try:
        stored = connection.execute("SELECT count(*), count(DISTINCT id) FROM salesforce.s").fetchone()
        row_groups = connection.execute(
            "SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('salesforce.s')"
        )
        # 62,500 kept rows compacted into one row group, 187,500 new ones in two (five without vacuum).
        assert (stored, row_groups.fetchone()) == ((250_000, 250_000), (3,))
    finally:
        connection.close()


def test_a_record_longer_than_the_readers_default_object_size_loads(duckdb_warehouse: Warehouse) -> None:
    """A record longer than DuckDB's default maximum object size (16 MB; the reader is told the chunk's
    longest record when it is longer) loads whole."""
    long_name = "x" * (17 * 1024 * 1024)
    lines = [
        json.dumps(schema("s", PROPERTIES)),
        json.dumps(record("s", {"id": "short", "name": "n"})),
        json.dumps(record("s", {"id": "long", "name": long_name})),
    ]
    assert duckdb_warehouse.run(lines).error is None
    stored = duckdb_warehouse.query(
        "SELECT id, length(name), name = repeat('x', 17 * 1024 * 1024) FROM salesforce.s ORDER BY id"
    )
    assert stored == [("long", len(long_name), True), ("short", 1, False)]


def test_a_large_table_is_rebuilt_with_a_wider_key_beyond_the_memory_limit(
    duckdb_warehouse: Warehouse, caplog: pytest.LogCaptureFixture
) -> None:
    """Rebuilding a table of 3,000,000 rows with a text key builds its index in memory: past the 90 MB
    limit the statement runs out (the limit doubles, the SCHEMA's changes run again), and at 180 MB
    the commit does, which leaves DuckDB refusing all work until the database is opened again: it is,
    the limit doubles again, and the rebuild completes, every row kept."""
    caplog.set_level(logging.INFO, logger="target-warehouse-seg")
    props = {"id": {"type": "integer"}, "code": {"type": "string"}}
    assert duckdb_warehouse.run([schema("k", props), record("k", {"id": -1, "code": "a"})]).error is None
    duckdb_warehouse.execute(
        "INSERT INTO salesforce.k SELECT i, 'code-' || i, now(), now() FROM range(3000000) AS r(i)"
    )
    lines = [schema("k", {**props, "id": {"type": "string"}}), record("k", {"id": "x-1", "code": "b"})]
    run = duckdb_warehouse.run([*lines, state(1)])
    assert run.error is None, run.error
    assert run.states == [1]
    assert duckdb_warehouse.query(
        "SELECT count(*), count(DISTINCT id), max(CASE WHEN id = '2999999' THEN code END) FROM salesforce.k"
    ) == [(3_000_002, 3_000_002, "code-2999999")]
    assert duckdb_warehouse.columns("k")["id"] == "varchar" and duckdb_warehouse.key_columns("k") == ["id"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    assert "ran out of its 90 MB memory limit" in warnings[0], warnings
    assert "ran out of its 180 MB memory limit" in warnings[1] and "Failed to commit" in warnings[1], warnings


WIDENING = [
    schema("s", {"id": {"type": "string"}, "amount": {"type": ["null", "number"]}}),
    record("s", {"id": "a", "amount": Decimal("7.50")}),
    schema("s", {"id": {"type": "string"}, "amount": {"type": ["null", "string"]}}),  # widens to text
    record("s", {"id": "b", "amount": "many"}),
]


def test_a_database_whose_log_holds_a_widening_opens_after_a_crash(duckdb_warehouse: Warehouse) -> None:
    """A run killed between a commit and the next checkpoint leaves the commit in DuckDB's write-ahead
    log. Replaying an ALTER whose USING calls a built-in extension's function (the number-to-text
    widening's `rtrim`) made DuckDB 2.0 download `core_functions` when the file was opened directly:
    offline, the warehouse could not be opened again. The target now attaches the file instead."""
    assert duckdb_warehouse.cli(to_lines(WIDENING[:2])).returncode == 0
    path = duckdb_warehouse.base_config["path"]
    crash = (
        "import duckdb, os, sys\n"
        "c = duckdb.connect(sys.argv[1])\n"
        "c.execute(\"SET checkpoint_threshold = '1GB'\")\n"
        'c.execute("ALTER TABLE salesforce.s ALTER amount SET DATA TYPE VARCHAR USING '
        "rtrim(rtrim(CAST(amount AS VARCHAR), '0'), '.')\")\n"
        "os._exit(0)  # no checkpoint at closing: the ALTER stays in the log\n"
    )
    subprocess.run([sys.executable, "-c", crash, path], check=True)
    assert Path(f"{path}.wal").stat().st_size > 0
    rerun = duckdb_warehouse.cli(to_lines(WIDENING[2:]))
    assert rerun.returncode == 0, rerun.stderr
    assert {row["id"]: row["amount"] for row in duckdb_warehouse.rows("s")} == {"a": "7.5", "b": "many"}


def test_a_widening_is_checkpointed_with_its_commit(duckdb_warehouse: Warehouse) -> None:
    """So that a crash right after it cannot leave the ALTER in the log for another DuckDB to replay
    (see above): a plain `duckdb.connect` of the file opens it after the target is killed."""
    process = start_target(_config_file(duckdb_warehouse, batch_max_seconds=0.2), stdout=subprocess.DEVNULL)
    process.stdin.write(to_lines(WIDENING))  # stdin stays open: the run waits, its widening committed
    process.stdin.flush()
    for log_line in process.stderr:
        if "committed" in log_line and "so far" in log_line and "2 row(s) so far" in log_line:
            break
    process.kill()
    process.wait(timeout=30)
    path = duckdb_warehouse.base_config["path"]
    connection = duckdb.connect(path)  # opened directly, as another program would
    try:
        rows = connection.execute("SELECT id, amount FROM salesforce.s ORDER BY id").fetchall()
    finally:
        connection.close()
    assert rows == [("a", "7.5"), ("b", "many")]


@pytest.mark.parametrize("schema_name", ["<the file's name>", "temp", "system", "memory", "main"])
def test_a_schema_named_like_a_database_loads(duckdb_warehouse: Warehouse, schema_name: str) -> None:
    """A schema named like the file (`salesforce` in salesforce.duckdb), `temp` or `system` (DuckDB's
    own databases): DuckDB refused `schema.table` as ambiguous until the target named the database
    too."""
    catalog = Path(duckdb_warehouse.base_config["path"]).stem
    schema_name = catalog if schema_name.startswith("<") else schema_name
    messages = [*WIDENING[:2], record("s", {"id": "a", "amount": 8})]
    for _ in range(2):  # a first load, then upserts into the table it made
        run = duckdb_warehouse.cli(to_lines(messages), schema=schema_name)
        assert run.returncode == 0, run.stderr
    stored = duckdb_warehouse.query(f'SELECT id, amount FROM "{catalog}"."{schema_name}".s')
    assert stored == [("a", Decimal("8.000000000000000000"))]


def _config_file(warehouse: Warehouse, **settings: t.Any) -> Path:
    path = warehouse.tmp_path / "config.json"
    path.write_text(json.dumps(warehouse.config(**settings)))
    return path


@pytest.mark.parametrize("refusals", [1, 2])
def test_a_refusal_that_no_batch_alone_repeats(
    duckdb_warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch, refusals: int
) -> None:
    """A unit the database refuses while none of its batches alone is refused (another run's DDL
    racing this one's: found with two runs creating one PostgreSQL schema's tables at once) ended the
    run in a RuntimeError traceback. Now the unit runs again once; refused again, the run stops with
    a one-line error and nothing of it written."""
    from target_warehouse_seg.engines import RowRejected
    from target_warehouse_seg.engines.duckdb import DuckDBEngine

    load, begun = DuckDBEngine.load, {"unit": 0, "loads": 0, "refused": 0}
    original_begin = DuckDBEngine.begin

    def begin(self: DuckDBEngine) -> None:
        begun["loads"] = 0
        original_begin(self)

    def refusing_load(self: DuckDBEngine, batch: t.Any) -> None:
        begun["loads"] += 1
        if begun["loads"] == 2 and begun["refused"] < refusals:  # the second batch of a whole unit
            begun["refused"] += 1
            raise RowRejected("could not create the table: another run created it")
        load(self, batch)

    monkeypatch.setattr(DuckDBEngine, "begin", begin)
    monkeypatch.setattr(DuckDBEngine, "load", refusing_load)
    messages = [
        schema("one", {"id": {"type": "string"}}),
        schema("two", {"id": {"type": "string"}}),
        record("one", {"id": "a"}),
        record("two", {"id": "b"}),
    ]
    run = duckdb_warehouse.run(messages)
    if refusals == 1:
        assert run.error is None
        assert duckdb_warehouse.count("one") == 1 and duckdb_warehouse.count("two") == 1
    else:
        assert isinstance(run.error, DatabaseError)
        assert "refused a load twice" in str(run.error) and "\n" not in str(run.error)
        assert duckdb_warehouse.count("one") == 0 and duckdb_warehouse.count("two") == 0


WIDE_PROPERTIES = {
    "id": {"type": "string"},
    **{f"permissions_{number:04d}": {"type": ["null", "boolean"]} for number in range(260)},
}


def wide_input(marker: bool) -> list:
    return [
        schema("profile", WIDE_PROPERTIES),
        *(record("profile", {"id": f"p{row}", "permissions_0259": marker}) for row in range(3)),
        state({"marker": marker}),
    ]


def comments(warehouse: Warehouse, table: str) -> dict[str, str | None]:
    with duckdb.connect(warehouse.base_config["path"], read_only=True) as connection:
        rows = connection.execute(
            "SELECT column_name, comment FROM duckdb_columns() WHERE table_name = ?", [table]
        ).fetchall()
    return dict(rows)


def test_a_wide_table_is_created_with_its_column_ddl_committed_in_steps(
    duckdb_warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each COMMENT ON COLUMN copies the table's catalog entry, and DuckDB kept every copy until the
    commit: Salesforce's Profile (1,049 columns) took the process to 573 MB for 15 rows. The column DDL
    commits every DDL_COLUMNS_PER_COMMIT statements now; here a run stops (as a crash would) after
    its second step, and the next run takes up the table as it was left: the columns without their
    comment are claimed, none is made twice."""
    from target_warehouse_seg.engines import duckdb as duckdb_engine

    commits: list[int] = []
    real_commit = duckdb_engine.DuckDBEngine.commit

    def counted_commit(engine: duckdb_engine.DuckDBEngine) -> None:
        commits.append(engine._column_ddl_steps or 0)
        real_commit(engine)

    monkeypatch.setattr(duckdb_engine.DuckDBEngine, "commit", counted_commit)
    real_step = duckdb_engine.DuckDBEngine._column_ddl_done

    def crash_after_two_steps(engine: duckdb_engine.DuckDBEngine) -> None:
        real_step(engine)
        if engine._column_ddl_steps == 2 * duckdb_engine.DDL_COLUMNS_PER_COMMIT + 1:
            raise KeyboardInterrupt  # not an error the run handles: as if the process were killed

    monkeypatch.setattr(duckdb_engine.DuckDBEngine, "_column_ddl_done", crash_after_two_steps)
    with pytest.raises(KeyboardInterrupt):
        duckdb_warehouse.run(wide_input(False))
    assert commits == [100, 200]
    left = comments(duckdb_warehouse, "profile")
    assert len(left) == 261 + 2  # the table and its columns: made whole by CREATE TABLE
    assert sum(comment is not None for comment in left.values()) == 200  # 200 comments committed

    monkeypatch.setattr(duckdb_engine.DuckDBEngine, "_column_ddl_done", real_step)
    commits.clear()
    run = duckdb_warehouse.run(wide_input(True))
    assert run.error is None, run.error
    assert run.states == [{"marker": True}]
    stored = comments(duckdb_warehouse, "profile")
    assert sorted(stored) == sorted(left)  # no column made again beside one left without its comment
    assert {name: comment for name, comment in stored.items() if name in WIDE_PROPERTIES} == {
        name: name for name in WIDE_PROPERTIES
    }
    rows = duckdb_warehouse.rows("profile", columns="id, permissions_0259")
    assert rows == [{"id": f"p{row}", "permissions_0259": True} for row in range(3)]


def test_a_retry_during_stepped_column_ddl_plans_the_table_again(
    duckdb_warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retry (DuckDB out of memory, its limit then raised) after a step of the column DDL committed
    found the table already made and stopped on "already exists" had the plan not been made again."""
    from target_warehouse_seg.engines import RetryUnit
    from target_warehouse_seg.engines import duckdb as duckdb_engine

    real_step = duckdb_engine.DuckDBEngine._column_ddl_done
    raised: list[int] = []

    def retry_once(engine: duckdb_engine.DuckDBEngine) -> None:
        real_step(engine)
        if engine._column_ddl_steps == 150 and not raised:
            raised.append(150)
            raise RetryUnit("out of memory (a test)")

    monkeypatch.setattr(duckdb_engine.DuckDBEngine, "_column_ddl_done", retry_once)
    run = duckdb_warehouse.run(wide_input(True))
    assert run.error is None, run.error
    assert raised == [150]
    stored = comments(duckdb_warehouse, "profile")
    assert {name: comment for name, comment in stored.items() if name in WIDE_PROPERTIES} == {
        name: name for name in WIDE_PROPERTIES
    }
    assert len(duckdb_warehouse.rows("profile")) == 3


def _run_measuring_peak(warehouse: Warehouse, lines: str) -> tuple[int, int, str]:
    """The target's exit status, its peak resident memory (KB) and its stderr, for ``lines``."""
    config = warehouse.tmp_path / "config.json"
    config.write_text(json.dumps(warehouse.config()))
    measure = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], stdin=sys.stdin, capture_output=True, text=True)\n"
        "sys.stderr.write(done.stderr)\n"
        "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", measure, TARGET_EXECUTABLE, "--config", str(config)],
        input=lines,
        capture_output=True,
        text=True,
        check=True,
    )
    status, peak_kb = map(int, done.stdout.split())
    return status, peak_kb, done.stderr


def test_creating_a_table_of_a_thousand_columns_stays_small(duckdb_warehouse: Warehouse) -> None:
    """Salesforce's Profile has about 1,050 fields. Creating such a table took the process to 452 MB
    here (573 MB for the emulator's Profile, longer names), the column comments' catalog copies held
    until one commit; with the column DDL committed in steps, 213 to 220 MB."""
    properties = {
        "id": {"type": "string"},
        **{f"p{n:04d}": {"type": ["null", "boolean"]} for n in range(1049)},
    }
    lines = to_lines([schema("profile", properties), *(record("profile", {"id": str(n)}) for n in range(15))])
    status, peak_kb, stderr = _run_measuring_peak(duckdb_warehouse, lines)
    assert status == 0, stderr[-2000:]
    assert peak_kb < 330 * 1024, f"peak {peak_kb // 1024} MB"
    assert duckdb_warehouse.count("profile") == 15


def test_many_small_streams_hold_duckdbs_memory_to_its_limit(duckdb_warehouse: Warehouse) -> None:
    """A tap sending many small streams one after another (a whole org's first sync, custom objects and
    all). Their committed rows waited in memory for a checkpoint, a buffer per column of every table,
    while the write-ahead log stayed far below its threshold: DuckDB ran out of its limit twice here
    (the limit doubled to 364 MB) and the process peaked at 330 MB; 500 such streams took it to 600 MB.
    Now a checkpoint follows a commit once the tables written since the last one pass
    CHECKPOINT_COLUMNS: no retry, 217 MB."""
    streams, width = 200, 10
    properties = {"id": {"type": "string"}} | {
        f"c{n}": {"type": ["null", "string"]} for n in range(width - 1)
    }
    messages: list[t.Any] = []
    for number in range(streams):
        stream = f"obj_{number:03d}"
        messages.append(schema(stream, properties))
        messages += [
            record(stream, {"id": str(row)} | {f"c{n}": f"v{row}" * 8 for n in range(9)}) for row in range(20)
        ]
        messages.append(state({"stream": number}))
    status, peak_kb, stderr = _run_measuring_peak(duckdb_warehouse, to_lines(messages))
    assert status == 0, stderr[-2000:]
    assert "ran out of" not in stderr
    assert peak_kb < 280 * 1024, f"peak {peak_kb // 1024} MB"
    assert duckdb_warehouse.count("obj_000") == duckdb_warehouse.count("obj_199") == 20


def test_interleaved_wide_streams_share_their_units(duckdb_warehouse: Warehouse) -> None:
    """Streams whose records interleave (a log-based tap) fill one unit together, however many columns
    their tables have: a unit cut by its tables' columns (tried for the test above) committed at
    nearly every record here: 400 commits instead of 1, and a minute instead of two seconds."""
    streams = [f"wide_{n}" for n in range(6)]
    properties = {"id": {"type": "string"}} | {f"c{n}": {"type": ["null", "string"]} for n in range(80)}
    messages: list[t.Any] = [schema(stream, properties) for stream in streams]
    for row in range(200):
        messages += [record(stream, {"id": str(row), "c0": stream}) for stream in streams]
    messages.append(state("done"))
    done = duckdb_warehouse.cli(to_lines(messages))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.states == ["done"]
    assert len([line for line in done.stderr.splitlines() if "| committed " in line]) == 1
    assert [duckdb_warehouse.count(stream) for stream in streams] == [200] * 6


def _schemas_first(streams: int, width: int, rows: int, *, interleaved: bool) -> str:
    """Every stream's SCHEMA first (as taps that announce all their streams do), then the records:
    stream after stream, or the streams in turn."""
    names = [f"custom_{number:03d}_c" for number in range(streams)]
    properties = {"id": {"type": "string"}} | {
        f"field_{n}_c": {"type": ["null", "string"]} for n in range(width - 1)
    }
    messages: list[t.Any] = [schema(name, properties) for name in names]
    order = (
        [(name, row) for row in range(rows) for name in names]
        if interleaved
        else [(name, row) for name in names for row in range(rows)]
    )
    for name, row in order:
        messages.append(
            record(name, {"id": f"{row:04d}"} | {f"field_{n}_c": f"{name} {row} {n}" for n in range(3)})
        )
    messages.append(state("done"))
    return to_lines(messages)


def test_streams_after_all_their_schemas_commit_in_units_of_bounded_columns(
    duckdb_warehouse: Warehouse,
) -> None:
    """DuckDB holds buffers for every column of every table a transaction appends to, and each table's
    primary key index it touches (about 1 MB a table of 25 columns). With every SCHEMA first, one unit
    took in the records of hundreds of streams: 300 streams of 24 columns took the process to 485 MB
    here (800 streams: 854 MB), 328 MB with units bounded by DuckDBEngine.unit_columns."""
    from target_warehouse_seg.engines.duckdb import DuckDBEngine

    streams, width = 300, 24
    status, peak_kb, stderr = _run_measuring_peak(
        duckdb_warehouse, _schemas_first(streams, width, 30, interleaved=False)
    )
    assert status == 0, stderr[-2000:]
    units = [line for line in stderr.splitlines() if "| committed " in line]
    assert len(units) >= streams * (width + 2) // t.cast(int, DuckDBEngine.unit_columns)
    assert peak_kb < 400 * 1024, f"peak {peak_kb // 1024} MB"
    assert duckdb_warehouse.count("custom_000_c") == duckdb_warehouse.count("custom_299_c") == 30


def test_interleaved_streams_past_the_unit_columns_keep_one_unit(duckdb_warehouse: Warehouse) -> None:
    """Once a stream's records resume after another stream's, units are not bounded by columns: the
    streams in turn would otherwise commit at every few records (150 commits here instead of 2)."""
    from target_warehouse_seg.engines.duckdb import DuckDBEngine

    streams, width = 12, 80
    assert streams * width > t.cast(int, DuckDBEngine.unit_columns)
    done = duckdb_warehouse.cli(_schemas_first(streams, width, 100, interleaved=True))
    assert done.returncode == 0, done.stderr[-2000:]
    # The first turn may be cut once: no stream has resumed yet.
    assert len([line for line in done.stderr.splitlines() if "| committed " in line]) <= 2
    assert done.states == ["done"]
    assert [duckdb_warehouse.count(f"custom_{n:03d}_c") for n in range(streams)] == [100] * streams


def test_a_key_column_widening_is_never_committed_in_steps(
    duckdb_warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DuckDB widens a primary key column by rebuilding the table (set aside, made again, filled, the
    old one dropped). A step's commit of the column DDL inside it, then a crash, would leave an empty
    table beside the one set aside: the rebuild runs whole, in one transaction."""
    from target_warehouse_seg.engines import duckdb as duckdb_engine

    properties = {
        "id": {"type": "integer"},
        **{f"c{number}": {"type": ["null", "string"]} for number in range(8)},
    }
    first = duckdb_warehouse.run([schema("s", properties), record("s", {"id": 1, "c0": "kept"})])
    assert first.error is None, first.error
    monkeypatch.setattr(duckdb_engine, "DDL_COLUMNS_PER_COMMIT", 3)

    def crash(*args: object) -> None:
        raise KeyboardInterrupt  # the rebuild's last step: as if the process were killed there

    monkeypatch.setattr(duckdb_engine.DuckDBEngine, "_respell_tombstones", crash)
    widened = {**properties, "id": {"type": "string"}}
    with pytest.raises(KeyboardInterrupt):
        duckdb_warehouse.run([schema("s", widened), record("s", {"id": "a", "c0": "new"})])
    with duckdb.connect(duckdb_warehouse.base_config["path"], read_only=True) as connection:
        tables = connection.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()
        key_type = connection.execute(
            "SELECT data_type FROM duckdb_columns() WHERE table_name = 's' AND column_name = 'id'"
        ).fetchall()
    assert tables == [("s",)]
    assert key_type == [("BIGINT",)]
    assert duckdb_warehouse.rows("s", columns="id, c0") == [{"id": 1, "c0": "kept"}]
