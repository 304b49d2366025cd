"""Progress of a stream's sync on stderr; stdout carries only Singer messages.

```python
progress = StreamProgress("accounts", logger, extraction)   # at the stream's start
progress.tick(count)        # from the hot loop every few hundred records: one clock read, no more,
                            # unless a line is due
progress.finish(count)      # at the end (stopped=True when the stream stops early)
```

Where stderr goes decides the display:
- a terminal: one live line, rewritten in place (carriage return) at most every LIVE_REDRAW_SECONDS,
  `accounts: 12,288 records, 4,096 records/s, 25% of 50,000, about 9 s left`. A log line written
  meanwhile clears it first (a filter on the log handlers that write to the terminal), and the next
  tick draws it again. At the stream's end the line is cleared and the end line is logged.
- anything else (a pipe, a file, Meltano, cron): a summary log line every SUMMARY_EVERY_SECONDS, and
  the end line, so that logs stay short.

The total is known when the tap counted the window (`api_type: auto` runs `SELECT COUNT()`, REST
pages carry `totalSize`) or once a Bulk job has finished (its record count): the line then shows a
percentage and the time left. While a Bulk job runs, the extractor's `on_wait` hook shows its state.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TextIO

LIVE_REDRAW_SECONDS = 0.25
SUMMARY_EVERY_SECONDS = 30.0
DEFAULT_TERMINAL_COLUMNS = 100
_CLEAR_TO_END = "\x1b[K"


class _Extraction(Protocol):
    expected_records: int | None
    extractor: Any


def is_terminal(output: TextIO) -> bool:
    """True when `output` is an interactive terminal that understands carriage returns."""
    try:
        return output.isatty() and os.environ.get("TERM", "") != "dumb"
    except (AttributeError, ValueError):  # closed or not a real file
        return False


class LiveLine:
    """One status line at the bottom of a terminal, rewritten in place.

    While attached (`attach(logger)` .. `detach()`), every log handler of `logger` that writes to the
    same terminal clears the line before it writes a record, so log lines never land in its middle.
    """

    def __init__(self, output: TextIO) -> None:
        self.output = output
        self.shown = False
        self._handlers: list[logging.Handler] = []
        self._lock = threading.Lock()  # the prefetch threads may log while the main thread draws

    def show(self, text: str) -> None:
        width = self._columns() - 1  # a full-width line would wrap, and `\r` would return to its end
        with self._lock:
            self.output.write(f"\r{text[:width]}{_CLEAR_TO_END}")
            self.output.flush()
            self.shown = True

    def clear(self) -> None:
        with self._lock:
            if self.shown:
                self.output.write(f"\r{_CLEAR_TO_END}")
                self.output.flush()
                self.shown = False

    def filter(self, record: logging.LogRecord) -> bool:
        """A logging filter: clears the line, lets every record through."""
        self.clear()
        return True

    def attach(self, logger: logging.Logger) -> None:
        """Clear the line before any record of `logger` is written to the same terminal."""
        self._handlers = [handler for handler in _handlers(logger) if _writes_to(handler, self.output)]
        for handler in self._handlers:
            handler.addFilter(self.filter)

    def detach(self) -> None:
        for handler in self._handlers:
            handler.removeFilter(self.filter)
        self._handlers = []
        self.clear()

    def _columns(self) -> int:
        try:
            return os.get_terminal_size(self.output.fileno()).columns or DEFAULT_TERMINAL_COLUMNS
        except (AttributeError, OSError, ValueError):
            return DEFAULT_TERMINAL_COLUMNS


def _handlers(logger: logging.Logger) -> list[logging.Handler]:
    """The handlers a record of `logger` reaches (its own, then its ancestors' while it propagates)."""
    found: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        found.extend(current.handlers)
        current = current.parent if current.propagate else None
    return found


def _writes_to(handler: logging.Handler, output: TextIO) -> bool:
    stream = getattr(handler, "stream", None)
    if stream is None:
        return False
    if stream is output:
        return True
    try:
        return stream.fileno() == output.fileno()
    except (AttributeError, OSError, ValueError):
        return False


class StreamProgress:
    """Progress of one stream's sync (see the module docstring)."""

    def __init__(
        self,
        name: str,
        logger: logging.Logger,
        extraction: _Extraction,
        *,
        output: TextIO | None = None,
        live: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.logger = logger
        self.extraction = extraction
        self.clock = clock
        output = output if output is not None else sys.stderr
        self.line = LiveLine(output) if (is_terminal(output) if live is None else live) else None
        self.started = self.reading_since = self.last_shown = clock()
        if self.line is not None:
            self.line.attach(logger)
        if hasattr(extraction.extractor, "on_wait"):
            extraction.extractor.on_wait = self.waiting

    @property
    def interval(self) -> float:
        return LIVE_REDRAW_SECONDS if self.line is not None else SUMMARY_EVERY_SECONDS

    def tick(self, count: int) -> None:
        now = self.clock()
        if now - self.last_shown < self.interval and not (self.line is not None and not self.line.shown):
            return
        self.last_shown = now
        self._show(self.line_text(count, now))

    def waiting(self, job_id: str, state: str, seconds: float) -> None:
        """A Bulk job is still running (the extractor's `on_wait` hook): say so, as often as a tick."""
        now = self.clock()
        self.reading_since = now  # the rate counts from when results start to arrive
        if now - self.last_shown < self.interval:
            return
        self.last_shown = now
        self._show(f"{self.name}: Bulk job {job_id} is {state} after {seconds:.0f} s")

    def finish(self, count: int, *, stopped: bool = False) -> None:
        if self.line is not None:
            self.line.detach()  # and clear it
        elapsed = max(self.clock() - self.started, 1e-9)
        self.logger.info(
            "%s: %s %s records in %.1f s (%s records/s) via %s",
            self.name,
            "stopped after" if stopped else "synced",
            f"{count:,}",
            elapsed,
            f"{count / elapsed:,.0f}",
            self.extraction.extractor.name,
        )

    def line_text(self, count: int, now: float) -> str:
        rate = count / max(now - self.reading_since, 1e-9)
        text = f"{self.name}: {count:,} records, {rate:,.0f} records/s"
        total = self.extraction.expected_records
        if total and total >= count and rate > 0:
            left = (total - count) / rate
            text += f", {count * 100 // total}% of {total:,}, about {duration(left)} left"
        return text

    def _show(self, text: str) -> None:
        if self.line is not None:
            self.line.show(text)
        else:
            self.logger.info("%s", text)


def duration(seconds: float) -> str:
    """A short human duration: `42 s`, `7 min`, `2.5 h`."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
