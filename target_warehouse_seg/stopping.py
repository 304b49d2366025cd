"""A stop the run has been told to make (SIGTERM, SIGINT), as the loader thread sees it.

The signal reaches the main thread, which stops reading at once. The loader thread may then be pausing
between tries (for a lock another session holds, a server that restarts, a DuckDB file another process
has open: minutes), or running a statement that waits on another session's lock. Pauses end at once; a
unit in flight gets a grace period to commit (it usually does within a second or two, and its STATE is
then written), after which its statement is cancelled and it rolls back. Either way the process ends
well inside a scheduler's grace period (Kubernetes gives 30 s, Airflow 60 s) instead of being killed,
and no STATE runs ahead of the data.
"""

from __future__ import annotations

import threading
import typing as t

_requested = threading.Event()
_exit_status = 1
_on_stop: list[t.Callable[[], None]] = []


class Stopping(SystemExit):
    """Raised on the loader thread once a stop has been requested: a SystemExit carrying the signal's
    exit status, so that the run ends as the signal ends it on the main thread, not as an error."""


def request_stop(exit_status: int) -> None:
    """Called from the signal handler: end every pause, and run the callbacks (which must not block)."""
    global _exit_status
    _exit_status = exit_status
    _requested.set()
    for callback in list(_on_stop):
        callback()


def stop_requested() -> bool:
    return _requested.is_set()


def stopped() -> Stopping:
    """The exception that ends a thread's work once a stop has been requested."""
    return Stopping(_exit_status)


def exit_status() -> int:
    """The status the requested stop ends the process with (128 + the signal's number)."""
    return _exit_status


def wait_or_stop(seconds: float) -> None:
    """Sleep ``seconds``, or raise Stopping as soon as a stop is requested."""
    if _requested.wait(seconds):
        raise stopped()


def on_stop(callback: t.Callable[[], None]) -> t.Callable[[], None]:
    """Run ``callback`` when a stop is requested; returns a function that takes it back."""
    _on_stop.append(callback)
    return lambda: _on_stop.remove(callback) if callback in _on_stop else None


def reset_stop() -> None:
    """A new run in this process (tests run several): no stop requested yet."""
    global _exit_status
    _requested.clear()
    _exit_status = 1
    _on_stop.clear()
