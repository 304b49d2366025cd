"""The tap as users run it (`python -m tap_salesforce_seg.tap --config --catalog [--state]`), against the
emulator: stdout carries only Singer messages, a killed run resumes from its last STATE without losing
anything, and an exhausted API quota ends with exit status 2 after the state of what was synced."""

from __future__ import annotations

import fcntl
import json
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
import typing as t
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from tap_harness import (
    TapRun,
    discover_catalog,
    entry,
    expected_records,
    parse_messages,
    run_tap,
    select,
    start_tap,
    tap_settings,
    upserted,
)

from salesforce_emulator import Emulator

ACCOUNT = "accounts"
ACCOUNTS = 5000


@pytest.fixture
def org(emulator_factory: Callable[..., Emulator]) -> Emulator:
    emu = emulator_factory(scale=0.001, counts={"Account": ACCOUNTS}, tags=False)
    emu.org.clock.advance(2)
    return emu


@pytest.fixture
def catalog(org: Emulator) -> dict[str, Any]:
    return select(discover_catalog(tap_settings(org)), [ACCOUNT, "contacts"])


def test_stdout_holds_only_singer_messages_and_the_records_equal_the_org(
    org: Emulator, catalog: dict
) -> None:
    run = run_tap(tap_settings(org), catalog, subprocess=True)
    assert run.exit_code == 0, run.stderr
    assert run.stdout_lines == len(run.messages)  # parse_messages checked every line
    kinds = {message["type"] for message in run.messages}
    assert kinds == {"SCHEMA", "RECORD", "STATE"}
    for stream in (ACCOUNT, "contacts"):
        assert upserted([run], stream) == expected_records(org, entry(catalog, stream))
    assert "synced" in run.stderr and "records/s" in run.stderr  # progress on stderr


def test_a_run_killed_mid_stream_resumes_from_its_last_state_without_loss(
    org: Emulator, catalog: dict
) -> None:
    settings = tap_settings(org, api_type="rest", state_every_records=500)
    with tempfile.TemporaryDirectory() as folder:
        process = start_tap(settings, catalog, folder=folder)
        seen: list[dict[str, Any]] = []
        assert process.stdout is not None
        for line in process.stdout:
            message = json.loads(line, parse_float=Decimal)
            seen.append(message)
            states_with_accounts = [
                m for m in seen if m["type"] == "STATE" and ACCOUNT in m["value"].get("bookmarks", {})
            ]
            if len(states_with_accounts) >= 2:
                break
        process.send_signal(signal.SIGKILL)  # a crash: no chance to write anything more
        process.wait(timeout=30)
        process.stdout.close()
        process.stderr.close()
    killed = TapRun(seen, process.returncode, "")
    partial = killed.records(ACCOUNT)
    assert 0 < len(partial) < ACCOUNTS, "killed mid-stream"
    last_state = killed.final_state
    assert last_state["bookmarks"][ACCOUNT]["replication_key_value"] <= max(
        r["system_modstamp"] for r in partial
    )

    resumed = run_tap(settings, catalog, last_state, subprocess=True)
    assert resumed.exit_code == 0, resumed.stderr
    assert len(resumed.records(ACCOUNT)) < ACCOUNTS, "resumed from the bookmark, not from scratch"
    for stream in (ACCOUNT, "contacts"):
        assert upserted([killed, resumed], stream) == expected_records(org, entry(catalog, stream))


def test_sigterm_while_the_reader_lags_leaves_whole_lines_and_a_state_to_resume_from(
    org: Emulator, catalog: dict
) -> None:
    """`tap | target` with the target behind: the tap waits on a full pipe when a scheduler sends
    SIGTERM. The write was cut short there and singer-sdk's handler wrote the STATE right after half a
    RECORD line (the rest of the buffer never written): the target stopped on a line that was not JSON.
    Now the write finishes, then the stop writes its STATE: every line whole, nothing lost on resuming."""
    settings = tap_settings(org, api_type="rest")
    with tempfile.TemporaryDirectory() as folder:
        process = start_tap(settings, catalog, folder=folder)
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        while _unread_bytes(process.stdout) < 900_000:  # the pipe (1 MB) is about full: the tap waits
            assert process.poll() is None and time.monotonic() < deadline, "the tap never filled its pipe"
            time.sleep(0.05)
        time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # the reader lags a little more
        stdout, stderr = process.communicate(timeout=120)
    stopped = TapRun(parse_messages(stdout), process.returncode, stderr.decode())
    assert stopped.exit_code == 128 + signal.SIGTERM, stopped.stderr  # a stopped sync, not a finished one
    assert "Traceback" not in stopped.stderr
    assert "received signal 15: stopping after the line being written" in stopped.stderr
    assert stopped.messages[-1]["type"] == "STATE"
    partial = stopped.records(ACCOUNT)
    assert 0 < len(partial) < ACCOUNTS, "stopped mid-stream"
    bookmark = stopped.final_state["bookmarks"][ACCOUNT]["replication_key_value"]
    assert bookmark <= max(record["system_modstamp"] for record in partial)
    resumed = run_tap(settings, catalog, stopped.final_state, subprocess=True)
    assert resumed.exit_code == 0, resumed.stderr
    for stream in (ACCOUNT, "contacts"):
        assert upserted([stopped, resumed], stream) == expected_records(org, entry(catalog, stream))


def _unread_bytes(pipe: t.IO[bytes]) -> int:
    """How many bytes wait in a pipe for its reader."""
    return struct.unpack("i", fcntl.ioctl(pipe.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]


def test_quota_guard_exits_2_with_state_and_a_retry_hint(org: Emulator, catalog: dict) -> None:
    first = run_tap(tap_settings(org, api_type="rest"), select(catalog, [ACCOUNT]), subprocess=True)
    bookmark_state = first.final_state
    org.api_usage = int(org.api_limit * 0.8)
    run = run_tap(tap_settings(org, quota_percent=80), catalog, bookmark_state, subprocess=True)
    assert run.exit_code == 2
    last_line = run.stderr.strip().splitlines()[-1]
    assert "quota_percent" in last_line and "retry" in last_line
    assert "Traceback" not in run.stderr
    assert run.final_state == bookmark_state  # the state is written back, nothing lost


def test_a_target_that_stops_reading_ends_the_tap_with_one_clear_line(org: Emulator, catalog: dict) -> None:
    """`tap | target` where the target dies: the tap says why it stopped, exits 1, and prints no
    traceback or interpreter noise about the broken pipe."""
    with tempfile.TemporaryDirectory() as folder:
        process = start_tap(tap_settings(org), catalog, folder=folder)
        assert process.stdout is not None
        process.stdout.read(1000)  # the target read a little, then died
        process.stdout.close()
        _, stderr_bytes = process.communicate(timeout=120)
    stderr = stderr_bytes.decode()
    assert process.returncode == 1, stderr
    assert "stdout was closed while messages were being written" in stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr


@pytest.mark.parametrize("command", ["sync", "discover", "about"])
def test_stdout_on_a_full_disk_ends_the_tap_with_one_clear_line(
    org: Emulator, catalog: dict, tmp_path: Path, command: str
) -> None:
    """`tap > out.jsonl` (or `--discover > catalog.json`) on a full disk ended in a traceback whose
    error line read `28`."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps(tap_settings(org)))
    (tmp_path / "catalog.json").write_text(json.dumps(catalog))
    arguments = {
        "sync": ["--config", str(config), "--catalog", str(tmp_path / "catalog.json")],
        "discover": ["--config", str(config), "--discover"],
        "about": ["--about"],
    }[command]
    with open("/dev/full", "wb") as full:
        done = subprocess.run(
            [sys.executable, "-m", "tap_salesforce_seg.tap", *arguments],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
            check=False,
        )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "stdout could not be written: No space left on device; make room where it goes and run again (a "
            "sync resumes from the last STATE it wrote)"
        )
    )
