"""Whole lines on stdout, whatever signal comes while one is written.

With the target slower than the tap, stdout's pipe fills and a write waits for the reader. A SIGTERM or
SIGINT then cut the write short: the system call returns what it wrote so far, Python's buffered writer
returns that short count to its caller (CPython 3.11 does not go on writing), and singer-sdk's handler
wrote the tap's STATE right after the half-written RECORD line; the rest of the buffer was never
written. The target stopped on a line that was not JSON, its batch in flight lost to that run. Writes
now go on until every byte is out (``write_all``) and say when they are in progress (``whole_write``);
a stop that arrives during one waits for it, then runs, between two whole lines.
"""

from __future__ import annotations

import contextlib
import typing as t
from collections.abc import Iterator

_writing = 0
_deferred: t.Callable[[], None] | None = None


@contextlib.contextmanager
def whole_write() -> Iterator[None]:
    """Around a write to stdout: a stop requested meanwhile runs once the write is whole."""
    global _writing, _deferred
    _writing += 1
    try:
        yield
    finally:
        _writing -= 1
    if not _writing and _deferred is not None:
        stop, _deferred = _deferred, None
        stop()


def write_all(stream: t.BinaryIO, data: bytes | bytearray) -> None:
    """``stream.write(data)`` until every byte is written (a signal can cut a write short)."""
    with memoryview(data) as whole:
        start = 0
        while start < len(whole):
            with whole[start:] as rest:  # released at once: ``data`` may be cleared next
                written = stream.write(rest)
            start += written if written is not None else len(whole) - start


def defer_while_writing(stop: t.Callable[[], None]) -> bool:
    """Called from a signal handler: when a write is in progress, keep ``stop`` for when it is whole
    and return True (the handler returns at once); else False (the handler stops now)."""
    global _deferred
    if not _writing:
        return False
    _deferred = stop
    return True
