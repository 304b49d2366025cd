"""The ``target-warehouse-seg`` command (also ``python -m target_warehouse_seg``).

When the run returns, everything is committed, the database is closed, and every STATE line has been
written and flushed; the process then ends at once. Python's own teardown (freeing the modules of
singer-sdk, DuckDB, Arrow, numpy...) took 70 to 90 ms more, a sixth of a small incremental run, for
nothing. Only the command does this: code that runs the target inside its own process (the tests, say)
calls ``TargetWarehouseSeg.cli`` and keeps its interpreter.

After a failure, a child process reads (and drops) what still comes through stdin for a moment
(``drain_input``): Meltano, which feeds that pipe, then sees the target end before its writes fail.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import stat
import sys
import time
import typing as t
import warnings

from target_warehouse_seg.target import TargetWarehouseSeg

# Python's exit status when it cannot flush stdout at exit (a reader that closed the pipe).
STDOUT_LOST = 120
# After a failed run, its input is still read (and dropped) this long at most (see drain_input).
DRAIN_SECONDS = 2.0


def main() -> t.NoReturn:
    """Run the target, then end the process with its exit status without tearing Python down."""
    try:
        TargetWarehouseSeg.cli()
        status: object = 0
    except SystemExit as exit_:
        status = exit_.code
    end_process(status)


def end_process(status: object) -> t.NoReturn:
    """Flush what the run wrote and end the process, with the status ``sys.exit(status)`` would give."""
    if status is None:
        code = 0
    elif isinstance(status, int):
        code = status
    else:  # as Python does with a message: print it, status 1
        print(status, file=sys.stderr)
        code = 1
    logging.shutdown()
    if code == 1:
        drain_input()
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        code = code or STDOUT_LOST
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(code)


def drain_input() -> None:
    """A failed run: a child process keeps reading (and dropping) what still comes through the stdin
    pipe, for DRAIN_SECONDS at most or until the writer closes it, while this process ends at once.

    Meltano copies the tap's output into the target's stdin. When the target ended at its error, its
    exit closed that pipe while Meltano was still writing into it: Meltano 4 then ended the run with a
    BrokenPipeError traceback of its own (meltano/meltano#7047) in place of "Loader failed", far below
    the target's one error line. With the pipe still read, Meltano sees the target's exit first: it
    stops the tap and the copying, and reports the loader's failure. In a plain `tap | target` pipe,
    the tap learns of it DRAIN_SECONDS later at most. The child holds nothing else (no stdout, no
    database file or connection), so nothing waits on it.
    """
    try:
        if not stat.S_ISFIFO(os.fstat(0).st_mode):
            return
        with warnings.catch_warnings():
            # Python 3.12+ warns of fork() in a process with threads (the child here only reads a pipe):
            # under Meltano (PYTHONWARNINGS set) that warning became the failed run's last line.
            warnings.simplefilter("ignore", DeprecationWarning)
            child = os.fork()
    except OSError:
        return
    if child:
        return
    # First of all, a deadline the kernel keeps (SIGALRM's default action ends the process): a child
    # forked from a process with threads could find a lock one of them held (malloc's), and hang holding
    # the pipe open, which would block its writer for good.
    signal.alarm(int(DRAIN_SECONDS) + 2)
    try:
        for name in ("SIGTERM", "SIGINT", "SIGPIPE", "SIGHUP", "SIGALRM"):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
        for descriptor in _open_descriptors():
            if descriptor != 0:
                with contextlib.suppress(OSError):
                    os.close(descriptor)
        os.set_blocking(0, True)
        deadline = time.monotonic() + DRAIN_SECONDS
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([0], [], [], left)[0] or not os.read(0, 1 << 20):
                break
    finally:
        os._exit(0)


def _open_descriptors() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return list(range(256))


if __name__ == "__main__":
    main()
