"""SIGTERM while the loader waits on someone else. A scheduler that stops a run (a timeout, a deploy, a
pod's eviction) sends SIGTERM and kills the process a grace period later (Kubernetes 30 s, Airflow
60 s). The run must end within it: a pause between tries (a DuckDB file another process holds, a lock,
a server restarting) ends at once; a unit in flight gets STOP_GRACE_SECONDS to commit (and then its
STATE is written), after which its statement is cancelled and it rolls back. No STATE runs ahead of the
data either way. Before, the run went on waiting: up to 2 minutes for a DuckDB file, and for as long as
another session held a row lock."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import typing as t
from collections.abc import Iterator

import psycopg
from conftest import (
    Warehouse,
    record,
    schema,
    start_target,
    state,
    to_lines,
    wait_until_the_target_waits_for_a_lock,
)

from target_warehouse_seg.loader import STOP_CANCEL_LIMIT_SECONDS, STOP_GRACE_SECONDS

PROPERTIES = {"id": {"type": "string"}, "amount": {"type": ["null", "integer"]}}


class Run:
    """The target as a process fed ``messages``: its stdout gathered by a thread, its stderr in a file
    (readable while it runs)."""

    def __init__(self, warehouse: Warehouse, messages: list) -> None:
        config = warehouse.tmp_path / f"config-{time.monotonic_ns()}.json"
        config.write_text(json.dumps(warehouse.config()))
        self.log = config.with_suffix(".log")
        with self.log.open("w") as log:
            self.process = start_target(config, stderr=log)
        self.out = ""
        self._thread = threading.Thread(target=self._communicate, args=(to_lines(messages),))
        self._thread.start()

    def _communicate(self, lines: str) -> None:
        self.out = self.process.communicate(lines)[0]

    @property
    def err(self) -> str:
        return self.log.read_text()

    def stop(self) -> float:
        """SIGTERM; the seconds until the process ended."""
        sent = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self._thread.join(timeout=120)
        assert not self._thread.is_alive(), "the run did not end within 2 minutes of SIGTERM"
        return time.monotonic() - sent


@contextlib.contextmanager
def a_run_waiting_for_a_locked_row(pg: Warehouse) -> Iterator[tuple[Run, psycopg.Connection]]:
    """A stored row that another session has updated and not committed, and a run that upserts it (and
    so waits for that session); the other session is closed afterwards."""
    seeded = pg.cli(to_lines([schema("s", PROPERTIES), record("s", {"id": "a", "amount": 0}), state(1)]))
    assert seeded.returncode == 0, seeded.stderr
    other = psycopg.connect(pg.base_config["sqlalchemy_url"])
    try:
        other.execute("UPDATE salesforce.s SET amount = -1 WHERE id = 'a'")
        run = Run(pg, [schema("s", PROPERTIES), record("s", {"id": "a", "amount": 1}), state(2)])
        wait_until_the_target_waits_for_a_lock(pg.base_config["sqlalchemy_url"])
        yield run, other
    finally:
        other.close()


def test_a_unit_waiting_on_a_row_lock_is_cancelled_after_the_grace(pg: Warehouse) -> None:
    with a_run_waiting_for_a_locked_row(pg) as (run, _):
        took = run.stop()
    assert run.process.returncode == 128 + signal.SIGTERM, run.err[-2000:]
    assert STOP_GRACE_SECONDS - 1 <= took < STOP_GRACE_SECONDS + 10
    assert run.out == ""  # no STATE: the unit did not commit
    assert "has not committed 10 s after the stop: cancelling it" in run.err
    assert "statement_timeout" not in run.err  # the cancel is not reported as the server's
    assert [row["amount"] for row in pg.rows("s")] == [0]


def test_a_unit_that_commits_within_the_grace_writes_its_state(pg: Warehouse) -> None:
    with a_run_waiting_for_a_locked_row(pg) as (run, other):
        threading.Timer(2.0, other.rollback).start()  # the other session lets go within the grace
        took = run.stop()
    assert run.process.returncode == 128 + signal.SIGTERM, run.err[-2000:]
    assert took < STOP_GRACE_SECONDS
    assert run.out.split() == ["2"]
    assert [row["amount"] for row in pg.rows("s")] == [1]


def test_a_database_that_never_ends_the_cancelled_statement_does_not_keep_the_run_alive(
    pg: Warehouse,
) -> None:
    """The target's server process frozen (as by a hung disk or host: the cancel is taken, never acted
    on): the run exits STOP_CANCEL_LIMIT_SECONDS after it began cancelling, with one line saying why.
    Before, it went on cancelling until a scheduler killed it."""
    with a_run_waiting_for_a_locked_row(pg) as (run, _):
        with psycopg.connect(pg.base_config["sqlalchemy_url"], autocommit=True) as watcher:
            row = watcher.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'target-warehouse-seg'"
            ).fetchone()
        assert row is not None
        backend = int(row[0])
        os.kill(backend, signal.SIGSTOP)
        try:
            took = run.stop()
        finally:
            os.kill(backend, signal.SIGCONT)
    assert run.process.returncode == 128 + signal.SIGTERM, run.err[-2000:]
    limit = STOP_GRACE_SECONDS + STOP_CANCEL_LIMIT_SECONDS
    assert limit - 1 <= took < limit + 10
    assert "has not ended the cancelled batch (1 row(s)) 20 s after cancelling it" in run.err
    assert "nothing of it is written" in run.err
    assert run.out == ""  # no STATE: the unit did not commit
    _wait_for(lambda: pg.rows("s") == [{**pg.rows("s")[0], "amount": 0}])  # rolled back by the server


def test_a_run_waiting_for_a_duckdb_file_stops_at_once(duckdb_warehouse: Warehouse) -> None:
    first = duckdb_warehouse.cli(to_lines([schema("s", PROPERTIES), record("s", {"id": "a", "amount": 0})]))
    assert first.returncode == 0, first.stderr
    script = (
        "import duckdb, time\n"
        f"connection = duckdb.connect({duckdb_warehouse.base_config['path']!r}, read_only=True)\n"
        "print('open', flush=True)\n"
        "time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        run = Run(
            duckdb_warehouse, [schema("s", PROPERTIES), record("s", {"id": "a", "amount": 1}), state(2)]
        )
        _wait_for(lambda: "is open in another process" in run.err)
        took = run.stop()
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert run.process.returncode == 128 + signal.SIGTERM, run.err[-2000:]
    assert took < 5
    assert run.out == ""
    assert [row["amount"] for row in duckdb_warehouse.rows("s")] == [0]


def _wait_for(condition: t.Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.05)
