"""PostgreSQL among other sessions and the server's limits. A run that must alter a table another
session is reading (a dashboard's long query, an analyst's open transaction) does not queue that table's
readers behind it: its ALTER waits for the lock a short while, then the run rolls back, pauses and tries
again, and past a limit stops with one line. A run waiting for records holds no transaction. A server's
statement timeout stops the run with one line that says what to change."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import typing as t

import psycopg
import pytest
from conftest import (
    Run,
    Warehouse,
    record,
    schema,
    start_target,
    state,
    to_lines,
    wait_until_the_target_waits_for_a_lock,
)

from target_warehouse_seg.engines import postgres
from target_warehouse_seg.errors import DatabaseError

PROPERTIES = {"id": {"type": "string"}, "amount": {"type": ["null", "integer"]}}
WITH_NEW_COLUMN = {**PROPERTIES, "stage_name": {"type": ["null", "string"]}}
LOCK_WARNING = "another session holds a lock on a table this run alters"


def first_load(pg: Warehouse) -> None:
    done = pg.cli(to_lines([schema("s", PROPERTIES), record("s", {"id": "a", "amount": 1}), state(1)]))
    assert done.returncode == 0, done.stderr


def reading_transaction(pg: Warehouse) -> psycopg.Connection:
    """Another session with an open transaction that has read the table (it holds ACCESS SHARE)."""
    holder = psycopg.connect(pg.base_config["sqlalchemy_url"])
    holder.execute("SELECT count(*) FROM salesforce.s").fetchone()
    return holder


def wait_for_alter(pg: Warehouse) -> None:
    """Until the target's session has sent its ALTER TABLE (waiting for the lock, or refused it)."""
    deadline = time.monotonic() + 30
    with psycopg.connect(pg.base_config["sqlalchemy_url"], autocommit=True) as watcher:
        while time.monotonic() < deadline:
            row = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'target-warehouse-seg' "
                "AND query LIKE '%ALTER TABLE%'"
            ).fetchone()
            if row and row[0]:
                return
            time.sleep(0.05)
    raise AssertionError("the target sent no ALTER TABLE")


def test_readers_are_not_queued_behind_a_waiting_alter(pg: Warehouse, tmp_path) -> None:
    first_load(pg)
    holder = reading_transaction(pg)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(pg.config()))
    process = start_target(config)
    stderr_lines: list[str] = []
    reader = threading.Thread(target=lambda: stderr_lines.extend(t.cast(t.IO[str], process.stderr)))
    reader.start()
    assert process.stdin is not None
    process.stdin.write(
        to_lines([schema("s", WITH_NEW_COLUMN), record("s", {"id": "b", "stage_name": "x"}), state(2)])
    )
    process.stdin.close()
    try:
        wait_for_alter(pg)
        # While the run waits, a reader of the table gets through (at worst after one lock timeout);
        # an ALTER that waited for the lock for good would have queued it until the holder ends.
        for _ in range(3):
            with psycopg.connect(pg.base_config["sqlalchemy_url"]) as other:
                other.execute("SET statement_timeout = 6000")
                assert other.execute("SELECT count(*) FROM salesforce.s").fetchone() == (1,)
            time.sleep(0.5)
        assert process.poll() is None  # still waiting for the lock
        assert any(LOCK_WARNING in line for line in stderr_lines), "".join(stderr_lines)
    finally:
        holder.rollback()
        holder.close()
    assert process.wait(timeout=120) == 0, "".join(stderr_lines)
    reader.join()
    assert t.cast(t.IO[str], process.stdout).read().split() == ["2"]
    assert pg.rows("s", columns="id, amount, stage_name") == [
        {"id": "a", "amount": 1, "stage_name": None},
        {"id": "b", "amount": None, "stage_name": "x"},
    ]


def test_a_lock_held_past_the_limit_stops_the_run(pg: Warehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    first_load(pg)
    monkeypatch.setattr(postgres, "LOCK_WAIT_LIMIT_SECONDS", 4.0)
    holder = reading_transaction(pg)
    try:
        run = pg.run([schema("s", WITH_NEW_COLUMN), record("s", {"id": "b", "stage_name": "x"}), state(2)])
    finally:
        holder.rollback()
        holder.close()
    assert isinstance(run.error, DatabaseError)
    message = str(run.error)
    assert "another session held a lock on the table" in message
    assert 'ALTER TABLE "salesforce"."s" ADD COLUMN "stage_name"' in message
    assert "\n" not in message
    assert run.states == []
    assert "stage_name" not in pg.columns("s")
    assert pg.rows("s", columns="id") == [{"id": "a"}]


def setting_after_ddl(pg: Warehouse, name: str) -> str:
    """A session setting in the target's transaction right after one of its DDL statements."""
    engine = postgres.PostgresEngine.from_config({**pg.config(), "schema": "salesforce"})
    engine.connect()
    try:
        engine.begin()
        engine._run('ALTER TABLE "salesforce"."s" ADD COLUMN "extra" text')
        row = engine.connection.execute(f"SHOW {name}").fetchone()
        engine.rollback()
    finally:
        engine.close()
    return str(row[0]) if row else ""


def test_the_sessions_own_lock_timeout_is_kept_for_loading(pg: Warehouse) -> None:
    """The short lock timeout covers the DDL only: the role's own setting holds for the rest."""
    first_load(pg)
    database = pg.base_config["sqlalchemy_url"].rpartition("/")[2]
    pg.execute(f'ALTER DATABASE "{database}" SET lock_timeout = 12345')
    assert setting_after_ddl(pg, "lock_timeout") == "12345ms"


def test_a_statement_timeout_shorter_than_the_lock_wait_leaves_the_ddl_retries_alone(pg: Warehouse) -> None:
    """A role's statement_timeout below the DDL's 2 s lock wait cancelled the wait first, and the run
    stopped advising smaller batches; the DDL now runs without it (the session's value holds for the rest)."""
    first_load(pg)
    database = pg.base_config["sqlalchemy_url"].rpartition("/")[2]
    pg.execute(f'ALTER DATABASE "{database}" SET statement_timeout = 500')
    holder = reading_transaction(pg)
    release = threading.Timer(3.0, holder.rollback)
    release.start()
    try:
        run = pg.run([schema("s", WITH_NEW_COLUMN), record("s", {"id": "b", "stage_name": "x"}), state(2)])
    finally:
        release.join()
        holder.close()
    assert run.error is None, run.error
    assert pg.rows("s", columns="id, stage_name") == [
        {"id": "a", "stage_name": None},
        {"id": "b", "stage_name": "x"},
    ]
    assert setting_after_ddl(pg, "statement_timeout") == "500ms"


def test_a_run_waiting_for_its_first_records_holds_no_transaction(pg: Warehouse, tmp_path) -> None:
    """A tap can take minutes before its first records (a Bulk API job): meanwhile the target's session
    is idle, not "idle in transaction" (which holds back vacuum, and which servers with
    idle_in_transaction_session_timeout end)."""
    first_load(pg)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(pg.config()))
    process = start_target(config, stderr=subprocess.DEVNULL)
    assert process.stdin is not None
    try:
        process.stdin.write(to_lines([schema("s", PROPERTIES)]))  # the table exists: only reads
        process.stdin.flush()
        query = "SELECT state FROM pg_stat_activity WHERE application_name = 'target-warehouse-seg'"
        with psycopg.connect(pg.base_config["sqlalchemy_url"], autocommit=True) as watcher:
            deadline = time.monotonic() + 20
            while not watcher.execute(query).fetchall() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(2)  # the SCHEMA is read and its table's catalog too
            states = watcher.execute(query).fetchall()
        assert states == [("idle",)]
    finally:
        process.stdin.close()
        assert process.wait(timeout=60) == 0


def test_a_statement_timeout_of_the_database_stops_the_run_with_advice(pg: Warehouse) -> None:
    first_load(pg)
    database = pg.base_config["sqlalchemy_url"].rpartition("/")[2]
    # Every insert into the table takes half a second (a trigger), the database allows a fifth.
    pg.execute(
        "CREATE FUNCTION salesforce.slow() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_sleep(0.5); RETURN NULL; END $$",
        "CREATE TRIGGER slow AFTER INSERT ON salesforce.s "
        "FOR EACH STATEMENT EXECUTE FUNCTION salesforce.slow()",
        f'ALTER DATABASE "{database}" SET statement_timeout = 200',
    )
    done = pg.cli(to_lines([schema("s", PROPERTIES), record("s", {"id": "b", "amount": 2}), state(2)]))
    assert done.returncode != 0
    assert done.states == []
    [error] = done.error_lines
    assert "canceling statement due to statement timeout" in error
    assert "ALTER ROLE ... SET statement_timeout = 0" in error
    assert pg.rows("s", columns="id, amount") == [{"id": "a", "amount": 1}]


def test_a_deadlock_with_another_session_loads_the_batch_again(pg: Warehouse, tmp_path) -> None:
    """Two runs upserting overlapping keys in opposite orders (a backfill beside the scheduled sync)
    lock the same rows crosswise; PostgreSQL breaks the deadlock by rolling one transaction back. That
    run stopped on "deadlock detected" before; its batch now loads again after a short pause. Here the
    other session holds key 5, the run locks keys 0 to 4 and waits for 5, and the other session then
    asks for key 0 (its deadlock_timeout longer, so that the run's transaction is the one rolled back)."""
    keys = [str(number) for number in range(10)]
    seed = [schema("s", PROPERTIES), *(record("s", {"id": key, "amount": 0}) for key in keys)]
    assert pg.cli(to_lines(seed)).returncode == 0
    other = psycopg.connect(pg.base_config["sqlalchemy_url"])
    other.execute("SET deadlock_timeout = '30s'")
    other.execute("UPDATE salesforce.s SET amount = -1 WHERE id = '5'")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(pg.config()))
    process = start_target(config)
    run = [schema("s", PROPERTIES), *(record("s", {"id": key, "amount": 1}) for key in keys), state(2)]
    outcome: dict[str, t.Any] = {}
    waiter = threading.Thread(
        target=lambda: outcome.update(zip(("out", "err"), process.communicate(to_lines(run)), strict=True))
    )
    waiter.start()
    try:
        wait_until_the_target_waits_for_a_lock(pg.base_config["sqlalchemy_url"])
        other.execute("UPDATE salesforce.s SET amount = -1 WHERE id = '0'")  # the deadlock: the run yields
        other.commit()
    finally:
        other.close()
        waiter.join(timeout=60)
    assert process.returncode == 0, outcome.get("err", "")[-2000:]
    assert "deadlock detected" in outcome["err"] and "loaded again" in outcome["err"]
    assert json.loads(outcome["out"].strip().splitlines()[-1]) == 2
    assert [row["amount"] for row in pg.rows("s")] == [1] * 10


def test_a_column_another_run_widened_meanwhile_is_reported_as_it_is(pg: Warehouse, tmp_path) -> None:
    """A run planned `amount` as bigint; before its integer beyond bigint arrives, another run widens
    the column to text. The first run's values load into the text column, and its log says the column
    is text already (its own widening to number was never made)."""
    first_load(pg)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**pg.config(), "batch_max_seconds": 0.2}))
    process = start_target(config)
    stderr_lines: list[str] = []
    reader = threading.Thread(target=lambda: stderr_lines.extend(t.cast(t.IO[str], process.stderr)))
    reader.start()
    stdin, stdout = t.cast(t.IO[str], process.stdin), t.cast(t.IO[str], process.stdout)
    stdin.write(to_lines([schema("s", PROPERTIES), record("s", {"id": "b", "amount": 2}), state(2)]))
    stdin.flush()
    assert stdout.readline().strip() == "2"  # committed: the run's plan holds amount as bigint
    as_text = {**PROPERTIES, "amount": {"type": ["null", "string"]}}
    other = pg.cli(to_lines([schema("s", as_text), record("s", {"id": "c", "amount": "many"}), state(9)]))
    assert other.returncode == 0, other.stderr
    assert pg.columns("s")["amount"] == "text"
    stdin.write(to_lines([record("s", {"id": "d", "amount": 2**64}), state(3)]))
    stdin.close()
    assert process.wait(timeout=60) == 0, "".join(stderr_lines)
    reader.join()
    assert stdout.read().split() == ["3"]
    log = "".join(stderr_lines)
    assert "column amount is text already (another run widened it)" in log, log
    assert pg.rows("s", columns="id, amount") == [
        {"id": "a", "amount": "1"},
        {"id": "b", "amount": "2"},
        {"id": "c", "amount": "many"},
        {"id": "d", "amount": str(2**64)},
    ]


ROWS_WARNING = "another session holds a lock this run needs on table"


def updating_transaction(pg: Warehouse) -> psycopg.Connection:
    """Another session with an open transaction that updated the stored row (it holds the row's lock)."""
    holder = psycopg.connect(pg.base_config["sqlalchemy_url"], application_name="analyst")
    holder.execute("UPDATE salesforce.s SET amount = 7 WHERE id = 'a'")
    return holder


def update_while_held(pg: Warehouse, holder: psycopg.Connection, *, release_after: float) -> Run:
    """Upsert row a (to amount 2) while ``holder`` holds a lock, which it lets go ``release_after``
    seconds on; the holder is closed afterwards."""
    release = threading.Timer(release_after, holder.rollback)
    release.start()
    try:
        return pg.run([schema("s", PROPERTIES), record("s", {"id": "a", "amount": 2}), state(2)])
    finally:
        release.join()
        holder.close()


def test_a_batch_waiting_for_rows_another_transaction_holds_says_who_and_loads_once_free(
    pg: Warehouse, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A write waits for rows an open transaction holds only so long; then the batch is rolled back, a
    warning names the table and the session holding it, and the batch loads once the holder ends
    (before, the run waited without a word for as long as the transaction stayed open)."""
    first_load(pg)
    monkeypatch.setattr(postgres, "WRITE_LOCK_WAIT_MS", 400)
    holder = updating_transaction(pg)
    holder_pid = holder.info.backend_pid
    with caplog.at_level("WARNING"):
        run = update_while_held(pg, holder, release_after=3.0)
    assert run.error is None, run.error
    assert run.states == [2]
    assert pg.rows("s", columns="id, amount") == [{"id": "a", "amount": 2}]
    warnings = [r.getMessage() for r in caplog.records if ROWS_WARNING in r.getMessage()]
    assert warnings, caplog.text
    assert warnings[0].startswith(
        'stream s: another session holds a lock this run needs on table "salesforce"."s"'
    )
    assert f"(sessions writing it: pid {holder_pid} (user " in warnings[0]
    assert "application analyst, idle in transaction for " in warnings[0]


def test_rows_held_past_the_limit_stop_the_run_with_one_line(
    pg: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    first_load(pg)
    monkeypatch.setattr(postgres, "WRITE_LOCK_WAIT_MS", 300)
    monkeypatch.setattr(postgres, "LOCK_WAIT_LIMIT_SECONDS", 2.0)
    holder = updating_transaction(pg)
    try:
        run = pg.run([schema("s", PROPERTIES), record("s", {"id": "a", "amount": 2}), state(2)])
    finally:
        holder.rollback()
        holder.close()
    assert isinstance(run.error, DatabaseError)
    message = str(run.error)
    assert 'stream s: another session held a lock this run needs on table "salesforce"."s" for ' in message
    assert "application analyst, idle in transaction" in message
    assert "run again from the last STATE" in message
    assert "\n" not in message
    assert run.states == []
    assert pg.rows("s", columns="id, amount") == [{"id": "a", "amount": 1}]


def test_a_lock_timeout_of_the_database_makes_the_batch_wait_and_try_again(pg: Warehouse) -> None:
    """A database's own lock_timeout (shorter than the target's wait) ends each wait sooner; the batch is
    tried again rather than the run stopping on "canceling statement due to lock timeout"."""
    first_load(pg)
    database = pg.base_config["sqlalchemy_url"].rpartition("/")[2]
    pg.execute(f'ALTER DATABASE "{database}" SET lock_timeout = 300')
    run = update_while_held(pg, updating_transaction(pg), release_after=2.0)
    assert run.error is None, run.error
    assert pg.rows("s", columns="id, amount") == [{"id": "a", "amount": 2}]


def test_creating_the_schema_behind_another_runs_lock_waits_past_a_lock_timeout(pg: Warehouse) -> None:
    """Another run creating the schema holds its lock; with the database's lock_timeout shorter than that
    run's transaction, this run's wait ends early, and it waits again rather than stopping."""
    database = pg.base_config["sqlalchemy_url"].rpartition("/")[2]
    pg.execute(f'ALTER DATABASE "{database}" SET lock_timeout = 300')
    holder = psycopg.connect(pg.base_config["sqlalchemy_url"])
    key = "target-warehouse-seg salesforce.salesforce"  # the lock runs take to create the schema
    holder.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))
    run = update_while_held(pg, holder, release_after=2.0)
    assert run.error is None, run.error
    assert pg.rows("s", columns="id, amount") == [{"id": "a", "amount": 2}]


def test_a_batch_cancelled_by_another_session_stops_the_run_saying_so(pg: Warehouse) -> None:
    """An administrator (or a tool that ends long queries) cancels the target's statement: one line saying
    who did, naming the stream and table, nothing written."""
    first_load(pg)
    holder = updating_transaction(pg)

    def cancel_the_target() -> None:
        wait_until_the_target_waits_for_a_lock(pg.base_config["sqlalchemy_url"])
        with psycopg.connect(pg.base_config["sqlalchemy_url"], autocommit=True) as admin:
            admin.execute(
                "SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'target-warehouse-seg' AND wait_event_type = 'Lock'"
            )

    canceller = threading.Thread(target=cancel_the_target)
    canceller.start()
    try:
        run = pg.run([schema("s", PROPERTIES), record("s", {"id": "a", "amount": 2}), state(2)])
    finally:
        canceller.join()
        holder.rollback()
        holder.close()
    assert isinstance(run.error, DatabaseError)
    message = str(run.error)
    assert "canceling statement due to user request" in message
    assert 'stream s, table "salesforce"."s"' in message
    assert "another session cancelled it (pg_cancel_backend" in message
    assert run.states == []
    assert pg.rows("s", columns="id, amount") == [{"id": "a", "amount": 1}]
