"""STATE only after commit: kill the target between batches, rerun from the last state it wrote, and the
table equals a clean load (both engines, through the console script as users run it)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time

from conftest import Warehouse, record, schema, start_target, state, to_lines

RECORDS = 60
PROPERTIES = {
    "id": {"type": "string"},
    "name": {"type": "string"},
    "system_modstamp": {"type": "string", "format": "date-time"},
}


def stamp(index: int) -> str:
    return f"2024-01-01T00:{index // 60:02d}:{index % 60:02d}.000000Z"


def tap(since: str | None = None) -> list:
    """What a tap emits: records from a bookmark on (inclusive, as Salesforce taps re-read it),
    with a STATE every five records."""
    messages: list = [schema("accounts", PROPERTIES, bookmark=["system_modstamp"])]
    for index in range(1, RECORDS + 1):
        if since is not None and stamp(index) < since:
            continue
        messages.append(
            record(
                "accounts", {"id": f"a{index:03d}", "name": f"name {index}", "system_modstamp": stamp(index)}
            )
        )
        if index % 5 == 0:
            messages.append(state({"bookmarks": {"accounts": {"replication_key_value": stamp(index)}}}))
    return messages


def comparable(warehouse: Warehouse, schema_name: str) -> list[tuple]:
    return warehouse.query(
        f'SELECT "id", "name", "system_modstamp" FROM "{schema_name}"."accounts" ORDER BY "id"'
    )


def test_kill_between_batches_then_resume_from_the_last_state(warehouse: Warehouse) -> None:
    config_path = warehouse.tmp_path / "kill.json"
    config_path.write_text(json.dumps(warehouse.config(batch_size_rows=10, schema="killed")))
    lines = to_lines(tap()).splitlines(keepends=True)
    process = start_target(config_path, stderr=subprocess.DEVNULL)
    states: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [states.put(line) for line in process.stdout], daemon=True)
    reader.start()
    # Feed 37 records (and their states): three batches of ten commit, seven records stay pending.
    fed = 0
    for line in lines:
        process.stdin.write(line)
        fed += '"RECORD"' in line
        if fed == 37:
            break
    process.stdin.flush()
    emitted: list[dict] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            emitted.append(json.loads(states.get(timeout=1)))
        except queue.Empty:
            continue
        if emitted[-1]["bookmarks"]["accounts"]["replication_key_value"] >= stamp(30):
            break
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert emitted, "no STATE was written before the kill"
    bookmark = emitted[-1]["bookmarks"]["accounts"]["replication_key_value"]
    stored = comparable(warehouse, "killed")
    # Everything before the last written state is committed; the pending records are not.
    assert {row[0] for row in stored} >= {f"a{i:03d}" for i in range(1, 31) if stamp(i) <= bookmark}
    assert len(stored) == 30
    # The scheduler reruns the pipeline from the last state it saw.
    resumed = warehouse.cli(to_lines(tap(since=bookmark)), batch_size_rows=10, schema="killed")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.states[-1] == {"bookmarks": {"accounts": {"replication_key_value": stamp(RECORDS)}}}
    clean = warehouse.cli(to_lines(tap()), schema="clean")
    assert clean.returncode == 0, clean.stderr
    assert comparable(warehouse, "killed") == comparable(warehouse, "clean")
    assert len(comparable(warehouse, "clean")) == RECORDS


def _start(
    warehouse: Warehouse, **settings: object
) -> tuple[subprocess.Popen, queue.Queue[str], queue.Queue[str]]:
    config_path = warehouse.tmp_path / f"live-{time.monotonic_ns()}.json"
    config_path.write_text(json.dumps(warehouse.config(**settings)))
    process = start_target(config_path)
    lines: queue.Queue[str] = queue.Queue()
    logs: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    threading.Thread(target=lambda: [logs.put(line) for line in process.stderr], daemon=True).start()
    return process, lines, logs


def _wait_for_log(logs: queue.Queue[str], text: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if text in logs.get(timeout=1):
                return
        except queue.Empty:
            continue
    raise AssertionError(f"the target never logged {text!r}")


def _feed(process: subprocess.Popen, messages: list) -> None:
    process.stdin.write(to_lines(messages))
    process.stdin.flush()


def test_batch_max_seconds_commits_a_batch_that_is_not_full(warehouse: Warehouse) -> None:
    process, states, logs = _start(warehouse, batch_max_seconds=1)
    try:
        _feed(process, tap()[:4])  # the schema and three records: far from a full batch; then silence
        _wait_for_log(logs, "committed 3 row(s)")  # while the tap is silent and the target runs
        _feed(process, [state({"after": "commit"})])  # nothing pending: this state follows at once
        assert json.loads(states.get(timeout=30)) == {"after": "commit"}
    finally:
        process.stdin.close()
        process.wait(timeout=60)
    assert process.returncode == 0
    assert warehouse.count("accounts") == 3


def test_sigterm_stops_without_writing_pending_records_or_state(warehouse: Warehouse) -> None:
    process, states, logs = _start(warehouse, batch_size_rows=5)
    messages = tap()
    first = messages[:7]  # schema, five records (a full batch, committed), state 5
    _feed(process, first)
    assert json.loads(states.get(timeout=30))["bookmarks"]["accounts"]["replication_key_value"] == stamp(5)
    _feed(process, [*messages[7:10], state({"never": "written"})])  # three pending records and a state
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM
    remaining = []
    while not states.empty():
        remaining.append(json.loads(states.get()))
    assert remaining == []
    assert warehouse.count("accounts") == 5
    _wait_for_log(logs, "received signal")
