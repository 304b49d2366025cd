"""DuckDB: one process at a time may open a database file for writing. A run that finds the file open in
another process (a notebook, a dashboard, a run scheduled a bit early) waits for it a while, then stops
with one line naming that process; it never writes anything meanwhile."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Warehouse, record, schema, start_target, state, to_lines

from target_warehouse_seg.engines import duckdb as duckdb_engine
from target_warehouse_seg.errors import DatabaseError

INPUT = [
    schema("s", {"id": {"type": "string"}, "n": {"type": ["null", "integer"]}}),
    record("s", {"id": "a", "n": 1}),
]


def hold(path: Path, seconds: float) -> subprocess.Popen:
    """Another process that opens the file and keeps it open for `seconds` (it says when it has it)."""
    script = (
        "import duckdb, sys, time\n"
        f"connection = duckdb.connect({str(path)!r})\n"
        "print('open', flush=True)\n"
        f"time.sleep({seconds})\n"
        "connection.close()\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
    return holder


@pytest.fixture
def warehouse_file(duckdb_warehouse: Warehouse) -> Iterator[Warehouse]:
    done = duckdb_warehouse.cli(to_lines([*INPUT, state(1)]))
    assert done.returncode == 0, done.stderr
    yield duckdb_warehouse


def test_a_run_waits_for_another_process_to_close_the_file(warehouse_file: Warehouse, tmp_path: Path) -> None:
    holder = hold(Path(warehouse_file.base_config["path"]), 2.0)
    try:
        config = tmp_path / "config.json"
        config.write_text(json.dumps(warehouse_file.config()))
        started = time.monotonic()
        target = start_target(config)
        out, err = target.communicate(
            to_lines([*INPUT[:1], record("s", {"id": "b", "n": 2}), state(2)]), timeout=60
        )
    finally:
        holder.wait(timeout=30)
    assert target.returncode == 0, err
    assert time.monotonic() - started >= 1.5  # it waited for the holder
    warnings = [line for line in err.splitlines() if "is open in another process" in line]
    assert len(warnings) == 1 and f"(PID {holder.pid})" in warnings[0], err
    assert out.split() == ["2"]
    assert warehouse_file.rows("s", columns="id, n") == [{"id": "a", "n": 1}, {"id": "b", "n": 2}]


def test_a_file_held_past_the_wait_stops_the_run_with_one_line(
    warehouse_file: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(duckdb_engine, "FILE_LOCK_WAIT_SECONDS", 1.0)
    holder = hold(Path(warehouse_file.base_config["path"]), 60.0)
    try:
        run = warehouse_file.run([*INPUT[:1], record("s", {"id": "b", "n": 2}), state(2)])
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert isinstance(run.error, DatabaseError), run.error
    message = str(run.error)
    assert "\n" not in message
    assert "Conflicting lock is held" in message and f"(PID {holder.pid})" in message
    assert "(waited 1 s)" in message or "(waited 2 s)" in message
    assert run.states == []
    assert warehouse_file.rows("s", columns="id, n") == [{"id": "a", "n": 1}]
