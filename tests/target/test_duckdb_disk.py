"""DuckDB on a disk that fills up, played with a file size limit (RLIMIT_FSIZE: a write that would
take a file past it fails with EFBIG, as one past a full disk fails with ENOSPC), set at the size the
database file has after a first load, so that the next run's commits (its write-ahead log, a file of its
own) go through and writing them into the database file (DuckDB's checkpoint) fails.

A failed checkpoint leaves DuckDB refusing every later statement. Before, the run warned and went on:
the next unit ended in a Python traceback, and a run whose last checkpoint failed said "done" and
exited 0 on a full disk. A first run on a full disk left a file cut short that every later run was
refused."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
from pathlib import Path

from conftest import TARGET_EXECUTABLE, CliRun, Warehouse, json_lines, record, schema, state, to_lines

WIDE = 200  # two tables of this many columns written since the last checkpoint get one of their own
CHECKPOINT_MESSAGE = "writing the committed rows into the database file failed (checkpoint "


def wide_stream(name: str) -> dict:
    return schema(
        name, {"id": {"type": "string"}, **{f"c{i}": {"type": ["null", "string"]} for i in range(WIDE)}}
    )


def wide_record(name: str, number: int) -> dict:
    return record(
        name,
        {
            "id": f"{name}-{number}",
            **{f"c{i}": f"{name} {number} {i} {number * 7919 % 100003}" for i in range(WIDE)},
        },
    )


def first_load(warehouse: Warehouse) -> int:
    """Both wide tables, and a table of filler that makes the file larger than any later run's
    write-ahead log; returns the file's size."""
    filler = [schema("filler", {"id": {"type": "string"}, "text": {"type": "string"}})]
    filler += [record("filler", {"id": str(n), "text": os.urandom(2000).hex()}) for n in range(6000)]
    lines = [wide_stream("a"), wide_stream("b"), wide_record("a", 0), wide_record("b", 0), *filler, state(0)]
    done = warehouse.cli(to_lines(lines))
    assert done.returncode == 0, done.stderr
    return Path(warehouse.base_config["path"]).stat().st_size


def run_with_file_size_limit(warehouse: Warehouse, lines: list, limit: int, **settings) -> CliRun:
    config = warehouse.tmp_path / "limited.json"
    config.write_text(json.dumps(warehouse.config(**settings)))

    def limit_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = subprocess.run(
        [TARGET_EXECUTABLE, "--config", str(config)],
        input=to_lines(lines),
        capture_output=True,
        encoding="utf-8",
        timeout=300,
        check=False,
        preexec_fn=limit_files,
    )
    return CliRun(done.returncode, done.stdout, done.stderr)


def updates(count: int) -> list:
    """Records of both wide tables, a STATE after each pair (the units hold both tables)."""
    lines: list = [wide_stream("a"), wide_stream("b")]
    for number in range(1, count + 1):
        lines += [wide_record("a", number), wide_record("b", number), state(number)]
    return lines


def test_a_checkpoint_that_fails_mid_run_stops_it_with_one_line_and_state_behind_the_data(
    duckdb_warehouse: Warehouse,
) -> None:
    size = first_load(duckdb_warehouse)
    lines = updates(600)
    done = run_with_file_size_limit(duckdb_warehouse, lines, size, batch_size_rows=100)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    [error] = done.error_lines
    assert CHECKPOINT_MESSAGE + "after writing 2 tables" in error
    assert "File too large" in error and "safe in its write-ahead log" in error
    states = done.states
    assert states, done.stderr[-3000:]
    # Room again: a rerun from the last STATE gives the tables a clean load gives.
    rerun = duckdb_warehouse.cli(to_lines(lines[:2] + lines[2 + 3 * states[-1] :]))
    assert rerun.returncode == 0, rerun.stderr
    assert duckdb_warehouse.count("a") == duckdb_warehouse.count("b") == 601


def test_a_checkpoint_that_fails_at_the_end_of_the_run_fails_the_run(duckdb_warehouse: Warehouse) -> None:
    size = first_load(duckdb_warehouse)
    lines = [schema("small", {"id": {"type": "string"}, "text": {"type": "string"}})]
    lines += [record("small", {"id": str(n), "text": os.urandom(500).hex()}) for n in range(3000)]
    done = run_with_file_size_limit(duckdb_warehouse, [*lines, state(1)], size)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "done:" not in done.stderr
    [error] = done.error_lines
    assert CHECKPOINT_MESSAGE + "at the end of the run" in error
    assert json_lines(done.stdout) == [1]  # committed (in the log), so its STATE stands
    assert duckdb_warehouse.count("small") == 3000  # the next opening applies the log


def test_a_database_file_cut_short_is_named_and_not_left_behind(duckdb_warehouse: Warehouse) -> None:
    path = Path(duckdb_warehouse.base_config["path"])
    lines = [schema("s", {"id": {"type": "string"}}), record("s", {"id": "a"}), state(1)]
    done = run_with_file_size_limit(duckdb_warehouse, lines, 4096)  # a first run on a full disk
    assert done.returncode == 1
    [error] = done.error_lines
    assert "cannot open DuckDB database" in error and "File too large" in error
    assert not path.exists()  # its unfinished file is gone: the next run creates the database anew
    assert duckdb_warehouse.cli(to_lines(lines)).returncode == 0

    # Such a file left by an earlier version: its main header (the magic bytes), and nothing more.
    path.unlink()
    path.write_bytes(b"\0" * 8 + b"DUCK" + b"\0" * 4084)
    refused = duckdb_warehouse.cli(to_lines(lines))
    assert refused.returncode == 1
    assert f"{str(path)!r} is a DuckDB file cut short (4,096 bytes" in refused.stderr
