"""The ``target-warehouse-seg`` command (also ``python -m target_warehouse_seg``).

When the run returns, everything is committed, the database is closed, and every STATE line has been
written and flushed; the process then ends at once. Python's own teardown (freeing the modules of
singer-sdk, DuckDB, Arrow, numpy...) took 70 to 90 ms more, a sixth of a small incremental run, for
nothing. Only the command does this: code that runs the target inside its own process (the tests, say)
calls ``TargetWarehouseSeg.cli`` and keeps its interpreter.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import typing as t

from target_warehouse_seg.target import TargetWarehouseSeg

# Python's exit status when it cannot flush stdout at exit (a reader that closed the pipe).
STDOUT_LOST = 120


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
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        code = code or STDOUT_LOST
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
