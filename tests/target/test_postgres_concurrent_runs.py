"""PostgreSQL: two runs loading into one schema at once (a scheduler starting a run while the last one
goes on, a backfill beside the regular job). Both found a table or a column missing and made it; the
second CREATE TABLE or ADD COLUMN then failed on the first one's. A run now changes a table holding a lock
that serialises such changes among runs, and plans them against the catalog as it is once it has it. With
hard deletes, the same lock keeps one run's delete and another's older version of the record apart."""

from __future__ import annotations

import json
import threading
import typing as t
from pathlib import Path

import psycopg
import pytest
from conftest import (
    Warehouse,
    record,
    schema,
    start_target,
    state,
    to_lines,
    wait_until_the_target_waits_for_a_lock,
)

PROPERTIES = {
    "id": {"type": "string"},
    "name": {"type": ["null", "string"]},
    "system_modstamp": {"type": "string", "format": "date-time"},
}
STREAMS = [f"object_{number}" for number in range(12)]


def tap_output(properties: dict[str, t.Any], keys: range, position: int) -> list[t.Any]:
    messages: list[t.Any] = [schema(stream, properties, bookmark=["system_modstamp"]) for stream in STREAMS]
    for key in keys:
        for stream in STREAMS:
            values = {"id": str(key), "name": f"{stream} {key}", "system_modstamp": "2024-01-01T00:00:00Z"}
            if "stage" in properties:
                values["stage"] = f"stage {key}"
            messages.append(record(stream, values))
    messages.append(state({"position": position}))
    return messages


class Run:
    """The console script on a config file, started and past its imports (it has echoed a first STATE),
    so that two runs given their input at once work at once."""

    def __init__(self, config: Path) -> None:
        self.process = start_target(config)
        self.stderr: list[str] = []
        stderr = t.cast(t.IO[str], self.process.stderr)
        self.reader = threading.Thread(target=lambda: self.stderr.extend(stderr), daemon=True)
        self.reader.start()
        stdin, stdout = t.cast(t.IO[str], self.process.stdin), t.cast(t.IO[str], self.process.stdout)
        stdin.write(to_lines([state({"position": "started"})]))
        stdin.flush()
        assert json.loads(stdout.readline()) == {"position": "started"}, "".join(self.stderr)
        self.out = ""

    def feed(self, text: str) -> None:
        stdin, stdout = t.cast(t.IO[str], self.process.stdin), t.cast(t.IO[str], self.process.stdout)
        try:
            stdin.write(text)
            stdin.close()
        except BrokenPipeError:  # it stopped early: its stderr says why
            pass
        self.out = stdout.read()
        self.process.wait(timeout=120)
        self.reader.join(timeout=10)

    def last_state(self) -> t.Any:
        assert self.process.returncode == 0, "".join(self.stderr)[-2000:]
        return json.loads(self.out.strip().splitlines()[-1])


def start_runs(pg: Warehouse, tmp_path: Path, **settings: t.Any) -> list[Run]:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(pg.config(batch_size_rows=100, **settings)))
    return [Run(config) for _ in range(2)]


def feed_at_once(runs: list[Run], messages: list[t.Any]) -> None:
    text = to_lines(messages)
    threads = [threading.Thread(target=run.feed, args=(text,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@pytest.mark.parametrize("isolation", [None, "repeatable read", "serializable"])
def test_two_first_runs_at_once_both_create_the_tables(
    pg: Warehouse, tmp_path: Path, isolation: str | None
) -> None:
    """Also on a database whose transactions default to a stricter isolation: a snapshot taken before
    a run waited for the other's DDL hid the table the other had made, and CREATE TABLE failed again."""
    if isolation is not None:
        url = pg.base_config["sqlalchemy_url"]
        with psycopg.connect(url, autocommit=True) as admin:
            database = url.rpartition("/")[2]
            admin.execute(f"ALTER DATABASE \"{database}\" SET default_transaction_isolation = '{isolation}'")
    runs = start_runs(pg, tmp_path)
    feed_at_once(runs, tap_output(PROPERTIES, range(300), 1))
    for run in runs:
        assert run.last_state() == {"position": 1}
    for stream in STREAMS:
        rows = pg.rows(stream)
        assert [row["name"] for row in rows] == [
            f"{stream} {key}" for key in sorted(str(k) for k in range(300))
        ]


def test_two_runs_adding_the_same_column_at_once_both_load(pg: Warehouse, tmp_path: Path) -> None:
    """Both runs meet a new property; another session's lock on the table holds their ALTER TABLEs back
    until both wait, so the two would meet at the column for certain."""
    assert pg.cli(to_lines(tap_output(PROPERTIES, range(10), 0))).returncode == 0
    url = pg.base_config["sqlalchemy_url"]
    runs = start_runs(pg, tmp_path)
    holder = psycopg.connect(url)
    holder.execute(f"LOCK TABLE salesforce.{STREAMS[0]} IN ACCESS EXCLUSIVE MODE")
    with_stage = {**PROPERTIES, "stage": {"type": ["null", "string"]}}
    feeder = threading.Thread(target=feed_at_once, args=(runs, tap_output(with_stage, range(20), 2)))
    feeder.start()
    try:
        wait_until_the_target_waits_for_a_lock(url, 2)  # one at the table's lock, the other behind it
    finally:
        holder.rollback()
        holder.close()
        feeder.join()
    for run in runs:
        assert run.last_state() == {"position": 2}
    for stream in STREAMS:
        rows = pg.rows(stream)
        assert [row["stage"] for row in rows] == [f"stage {key}" for key in sorted(str(k) for k in range(20))]


def test_a_record_one_run_deletes_is_not_brought_back_by_another_at_once(
    pg: Warehouse, tmp_path: Path
) -> None:
    """hard_delete: run A deletes X (deleted at 03:00) while run B, which read X before it was deleted,
    loads X's 02:00 version. B's check against the tombstones ran before A committed, and its INSERT then
    found X gone and inserted it: a deleted record back for good. Another session holds A between its
    DELETE and its commit (an uncommitted tombstone of X that A's must wait for) until B is under way."""
    with_flag = {**PROPERTIES, "is_deleted": {"type": ["null", "boolean"]}}

    def version(key: str, hour: int, deleted: bool = False) -> dict[str, t.Any]:
        stamp = f"2024-01-01T{hour:02d}:00:00Z"
        return record(
            "s", {"id": key, "name": f"{key} {hour}", "is_deleted": deleted, "system_modstamp": stamp}
        )

    stream = schema("s", with_flag, bookmark=["system_modstamp"])
    seeded = pg.cli(
        to_lines([stream, version("x", 1), version("z", 1, deleted=True), state(0)]), hard_delete=True
    )
    assert seeded.returncode == 0, seeded.stderr
    url = pg.base_config["sqlalchemy_url"]
    run_a, run_b = start_runs(pg, tmp_path, hard_delete=True)
    blocker = psycopg.connect(url)
    blocker.execute("""INSERT INTO salesforce._deleted_keys VALUES ('s', '["x"]', NULL, now())""")
    # A first batch of other keys in each run, committed on its own: a run's first batch with hard
    # deletes waits anyway for another's to commit, at the creation of the tombstones' table.
    others = [version(f"k{number:03d}", 1) for number in range(100)]
    feed_a = [stream, *others, version("x", 3, deleted=True), state(1)]
    feed_b = [stream, *others, version("x", 2), state(2)]
    a = threading.Thread(target=run_a.feed, args=(to_lines(feed_a),))
    b = threading.Thread(target=run_b.feed, args=(to_lines(feed_b),))
    try:
        a.start()
        wait_until_the_target_waits_for_a_lock(url, 1)  # A has deleted X and waits at its tombstone
        b.start()
        wait_until_the_target_waits_for_a_lock(url, 2)  # B waits behind A
    finally:
        blocker.rollback()
        blocker.close()
        a.join()
        b.join()
    assert (run_a.last_state(), run_b.last_state()) == (1, 2)
    assert [row["id"] for row in pg.rows("s")] == [f"k{number:03d}" for number in range(100)]
    tombstones = pg.query("SELECT record_key, replication_value FROM salesforce._deleted_keys ORDER BY 1")
    assert [key for key, _ in tombstones] == ['["x"]', '["z"]']
