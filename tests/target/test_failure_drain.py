"""A failed run leaves its stdin pipe read for a moment after the process ends.

Under Meltano, the target's stdin is fed by Meltano, which copies the tap's output into it. When the
target ended at an error, its exit closed that pipe while Meltano was still writing: Meltano 4 then
ended the run with a BrokenPipeError traceback of its own (meltano/meltano#7047) in place of "Loader
failed", far below the target's one error line. A child of the target now reads (and drops) the
pipe's input for DRAIN_SECONDS at most, so that Meltano sees the exit first. Here a writer blocked on
a full pipe when the target fails stands for Meltano: its write completes, the target still ends at
once with its one line and status 1, and a writer that never stops learns of it soon after.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path

from conftest import start_target

from target_warehouse_seg.__main__ import DRAIN_SECONDS

# More than a pipe holds and than the target reads ahead.
PENDING_BYTES = 16 * 1024 * 1024


def test_a_failed_run_reads_what_its_writer_still_sends(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"path": str(tmp_path / "warehouse.duckdb")}))
    target = start_target(config, text=False)
    assert target.stdin is not None and target.stderr is not None
    failure: list[BaseException] = []

    def write() -> None:
        try:
            # A line that is not a Singer message stops the run; the rest is what the writer still had.
            target.stdin.write(b"this is not JSON\n" + b"x" * PENDING_BYTES + b"\n")
            target.stdin.flush()
        except OSError as error:
            failure.append(error)

    writer = threading.Thread(target=write, daemon=True)
    started = time.monotonic()
    writer.start()
    writer.join(timeout=60)
    status = target.wait(timeout=60)
    seconds = time.monotonic() - started
    stderr = target.stderr.read().decode()
    with contextlib.suppress(OSError):
        target.stdin.close()
    assert not failure, f"the target ended with the writer's data unread: {failure[0]!r}\n{stderr}"
    assert status == 1, stderr
    errors = [line for line in stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    assert seconds < 10, f"the failed run took {seconds:.1f} s to end"


def test_a_writer_that_never_pauses_learns_of_the_failure_soon(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"path": str(tmp_path / "warehouse.duckdb")}))
    target = start_target(config, text=False)
    assert target.stdin is not None and target.stderr is not None
    broken: list[OSError] = []

    def write_forever() -> None:
        try:
            target.stdin.write(b"this is not JSON\n")
            while True:
                target.stdin.write(b"x" * 65536)
        except OSError as error:
            broken.append(error)

    writer = threading.Thread(target=write_forever, daemon=True)
    started = time.monotonic()
    writer.start()
    status = target.wait(timeout=60)
    ended = time.monotonic() - started
    writer.join(timeout=DRAIN_SECONDS + 10)
    stopped = time.monotonic() - started
    assert status == 1, target.stderr.read().decode()
    assert ended < 10, f"the failed run took {ended:.1f} s to end"
    assert broken and isinstance(broken[0], BrokenPipeError), "the pipe is never closed"
    assert stopped < DRAIN_SECONDS + 5, f"the writer learnt of the failure after {stopped:.1f} s"
