"""Progress on stderr (tap_salesforce_seg/progress.py): a live line on a terminal, summary lines otherwise.

- StreamProgress with a fake clock: a live line redrawn in place at most every LIVE_REDRAW_SECONDS,
  with a percentage and the time left when the total is known, cleared at the end; without a
  terminal, nothing but a summary log line every SUMMARY_EVERY_SECONDS and the end line.
- A log line written while the live line shows clears it first (no log text in the middle of it).
- The real CLI through a pseudo-terminal (pty) and through a pipe, against the emulator with slow
  pages and a Bulk job that takes a while: live lines (records, rate, percentage, time left, the Bulk
  job's state) on the terminal; no carriage returns or escape sequences in the pipe; stdout the same
  Singer messages either way.
"""

from __future__ import annotations

import io
import logging
import os
import pty
import re
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from tap_harness import discover_catalog, parse_messages, select, start_tap, tap_settings

from salesforce_emulator import BulkTiming
from tap_salesforce_seg.progress import (
    LIVE_REDRAW_SECONDS,
    SUMMARY_EVERY_SECONDS,
    LiveLine,
    StreamProgress,
    duration,
)

LIVE_LINE = re.compile(r"\r([^\r\n\x1b]*)\x1b\[K")


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeExtractor:
    name: str = "rest"
    on_wait: Any = None


@dataclass
class FakeExtraction:
    """What StreamProgress reads of an Extraction: the expected total and the extractor's name."""

    expected_records: int | None = None
    extractor: FakeExtractor = field(default_factory=FakeExtractor)


class TerminalBuffer(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("test-progress")
    log.setLevel(logging.INFO)
    log.propagate = False
    yield log
    log.handlers.clear()


def live_lines(text: str) -> list[str]:
    return LIVE_LINE.findall(text)


def test_live_line_is_redrawn_in_place_at_most_a_few_times_a_second(logger: logging.Logger) -> None:
    output, clock = TerminalBuffer(), FakeClock()
    progress = StreamProgress(
        "accounts", logger, FakeExtraction(expected_records=10_000), output=output, clock=clock
    )
    assert progress.line is not None  # a terminal: live mode
    for count in range(256, 10_001, 256):  # the hot loop asks every 256 records, 100 times a second
        clock.now += 0.01
        progress.tick(count)
    drawn = live_lines(output.getvalue())
    elapsed = 39 * 0.01
    assert 1 <= len(drawn) <= 1 + elapsed / LIVE_REDRAW_SECONDS
    assert drawn[0].startswith("accounts: 256 records, ")
    last = drawn[-1]
    assert re.fullmatch(r"accounts: [\d,]+ records, [\d,]+ records/s, \d+% of 10,000, about \d+ s left", last)
    assert "\n" not in output.getvalue()  # nothing but the one line, rewritten

    progress.finish(10_000)
    assert output.getvalue().endswith("\r\x1b[K")  # cleared at the end


def test_live_line_without_a_known_total_shows_count_and_rate(logger: logging.Logger) -> None:
    output, clock = TerminalBuffer(), FakeClock()
    progress = StreamProgress("leads", logger, FakeExtraction(), output=output, clock=clock)
    clock.now += 2
    progress.tick(4096)
    assert live_lines(output.getvalue()) == ["leads: 4,096 records, 2,048 records/s"]


def test_live_line_fits_the_terminal_width(logger: logging.Logger) -> None:
    output = TerminalBuffer()  # no real terminal behind it: the default width applies
    line = LiveLine(output)
    line.show("x" * 500)
    (drawn,) = live_lines(output.getvalue())
    assert 0 < len(drawn) < 500


def test_a_log_line_clears_the_live_line_first(logger: logging.Logger) -> None:
    output, clock = TerminalBuffer(), FakeClock()
    handler = logging.StreamHandler(output)
    logger.addHandler(handler)
    progress = StreamProgress("contacts", logger, FakeExtraction(), output=output, clock=clock)
    clock.now += 1
    progress.tick(1000)
    logger.warning("contacts: a field vanished")
    text = output.getvalue()
    assert text.index("\r\x1b[Kcontacts: a field vanished\n") > text.index("contacts: 1,000 records")

    clock.now += 0.01  # the line comes back at the next tick, even inside the redraw interval
    progress.tick(1256)
    assert output.getvalue().endswith("contacts: 1,256 records, 1,244 records/s\x1b[K")

    progress.finish(1300)
    assert output.getvalue().endswith(
        "\r\x1b[K" + "contacts: synced 1,300 records in 1.0 s (1,287 records/s) via rest\n"
    )
    assert handler.filters == []  # detached at the end


def test_bulk_job_state_shows_while_it_runs(logger: logging.Logger) -> None:
    output, clock = TerminalBuffer(), FakeClock()
    extraction = FakeExtraction(extractor=FakeExtractor(name="bulk"))
    progress = StreamProgress("opportunities", logger, extraction, output=output, clock=clock)
    assert extraction.extractor.on_wait == progress.waiting  # the Bulk extractor's hook
    clock.now += 3
    progress.waiting("750000000000001", "InProgress", 3.0)
    assert live_lines(output.getvalue()) == [
        "opportunities: Bulk job 750000000000001 is InProgress after 3 s"
    ]
    # The rate counts from when the results start, not from the job's start.
    extraction.expected_records = 2000
    clock.now += 1
    progress.tick(1000)
    assert live_lines(output.getvalue())[-1] == (
        "opportunities: 1,000 records, 1,000 records/s, 50% of 2,000, about 1 s left"
    )


def test_without_a_terminal_only_summary_lines_and_the_end_line(logger: logging.Logger) -> None:
    output, clock = io.StringIO(), FakeClock()
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    progress = StreamProgress(
        "tasks", logger, FakeExtraction(expected_records=1_000_000), output=output, clock=clock
    )
    assert progress.line is None
    for second in range(1, 101):  # 100 s at 10,000 records/s, asked every 256 records
        clock.now += 1
        progress.tick(second * 10_000)
    progress.finish(1_000_000)
    assert output.getvalue() == ""  # nothing but log lines
    messages = [record.getMessage() for record in records]
    assert len(messages) == 100 // SUMMARY_EVERY_SECONDS + 1
    assert messages[0] == "tasks: 300,000 records, 10,000 records/s, 30% of 1,000,000, about 70 s left"
    assert messages[-1] == "tasks: synced 1,000,000 records in 100.0 s (10,000 records/s) via rest"


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.4, "0 s"), (42, "42 s"), (89, "89 s"), (420, "7 min"), (9000, "2.5 h")]
)
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


# --- the real CLI, through a pseudo-terminal and through a pipe ------------------------------------------


@dataclass
class CliRun:
    returncode: int
    stdout: bytes
    stderr: str


def run_cli(settings: dict[str, Any], catalog: dict[str, Any], *, terminal: bool) -> CliRun:
    with tempfile.TemporaryDirectory() as folder:
        if not terminal:
            process = start_tap(settings, catalog, folder=folder, stderr=subprocess.PIPE)
            stdout, stderr = process.communicate(timeout=300)
            return CliRun(process.returncode, stdout, stderr.decode())
        master, slave = pty.openpty()
        try:
            process = start_tap(settings, catalog, folder=folder, stderr=slave)
        finally:
            os.close(slave)
        chunks: list[bytes] = []
        reader = threading.Thread(target=_drain, args=(master, chunks))
        reader.start()  # a full terminal buffer would block the tap
        stdout, _ = process.communicate(timeout=300)
        reader.join(timeout=30)
        os.close(master)
        # The terminal turns "\n" into "\r\n"; undo that to see the tap's own output.
        return CliRun(process.returncode, stdout, b"".join(chunks).decode().replace("\r\n", "\n"))


def _drain(master: int, chunks: list[bytes]) -> None:
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the tap closed the terminal
            return
        if not chunk:
            return
        chunks.append(chunk)


def without_time_extracted(stdout: bytes) -> list[dict[str, Any]]:
    """The messages less what depends on when the run happened: records' `time_extracted`, and the
    end of each window read (`read_until`, Salesforce's clock when the stream started)."""
    messages = parse_messages(stdout)
    for message in messages:
        message.pop("time_extracted", None)
        for bookmark in message.get("value", {}).get("bookmarks", {}).values():
            bookmark.pop("read_until", None)
    return messages


@pytest.mark.slow
def test_cli_progress_on_a_terminal_and_in_a_pipe(emulator_factory: Any) -> None:
    emu = emulator_factory(
        counts={"Account": 2500, "Opportunity": 4000}, bulk_timing=BulkTiming(processing_seconds=1.5)
    )
    emu.faults.slow(0.25, count=None, path="queryAll")  # REST pages take a while, and so do
    emu.faults.slow(0.4, count=None, path="/results")  # Bulk result pages
    catalog = select(discover_catalog(tap_settings(emu)), ["accounts", "opportunities"])
    # accounts through REST (auto mode counts first: the total is known), opportunities through Bulk.
    settings = tap_settings(emu, bulk_min_records=3000)

    live = run_cli(settings, catalog, terminal=True)
    assert live.returncode == 0, live.stderr[-3000:]
    drawn = live_lines(live.stderr)
    accounts = [line for line in drawn if line.startswith("accounts: ") and "records/s" in line]
    assert accounts, live.stderr[-3000:]
    assert any(re.search(r"\d+% of 2,500, about \d+ s left$", line) for line in accounts), accounts
    assert any(line.startswith("opportunities: Bulk job ") and " is " in line for line in drawn), drawn
    assert any(
        re.search(r"\d+% of 4,000, about", line) for line in drawn if line.startswith("opportunities: ")
    ), drawn
    # Each stream's line is cleared before its end line is logged.
    for stream, count, api in (("accounts", "2,500", "rest"), ("opportunities", "4,000", "bulk")):
        end_line = rf"{stream}: synced {count} records in [\d.]+ s \([\d,]+ records/s\) via {api}\n"
        end = re.search(rf"\r\x1b\[K[^\n]*\| {end_line}", live.stderr)
        assert end, live.stderr[-3000:]

    piped = run_cli(settings, catalog, terminal=False)
    assert piped.returncode == 0, piped.stderr[-3000:]
    assert "\r" not in piped.stderr and "\x1b" not in piped.stderr
    assert re.search(
        r"accounts: synced 2,500 records in [\d.]+ s \([\d,]+ records/s\) via rest", piped.stderr
    )
    assert re.search(r"opportunities: synced 4,000 records in", piped.stderr)
    # A short sync: no summary line is due (one every 30 s), so the log has only the end lines.
    assert not re.search(r"accounts: [\d,]+ records, ", piped.stderr)

    # stdout is pure Singer and the same messages either way.
    assert without_time_extracted(live.stdout) == without_time_extracted(piped.stdout)
    records = [m for m in without_time_extracted(piped.stdout) if m["type"] == "RECORD"]
    assert len(records) == 2500 + 4000
