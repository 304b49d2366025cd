"""The ``target-warehouse-seg`` command ends its process at once after a run: what the run wrote still
arrives whole, and the exit status is the run's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TARGET_EXECUTABLE, Warehouse, record, schema, state, to_lines


def test_every_state_line_arrives_through_a_pipe_and_the_status_is_zero(warehouse: Warehouse) -> None:
    messages = [schema("s", {"id": {"type": "string"}})]
    for number in range(30):
        messages += [record("s", {"id": str(number)}), state({"position": number})]
    done = warehouse.cli(to_lines(messages), batch_size_rows=7)
    assert done.returncode == 0, done.stderr
    states = [line for line in done.stdout.splitlines() if line]
    assert states[-1] == '{"position":29}'
    assert len(warehouse.rows("s")) == 30


def test_python_m_runs_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "target_warehouse_seg", "--about", "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert '"name": "target-warehouse-seg"' in done.stdout


@pytest.mark.parametrize(
    ("status", "code", "stderr"),
    [(None, 0, ""), (0, 0, ""), (3, 3, ""), ("a message", 1, "a message\n")],
)
def test_the_process_ends_with_what_was_written_flushed(status: object, code: int, stderr: str) -> None:
    # Written without a newline to a buffered stdout (a pipe): lost unless flushed before the end.
    program = (
        "import sys, logging\n"
        "from target_warehouse_seg.__main__ import end_process\n"
        "logging.basicConfig(stream=sys.stderr, format='%(message)s')\n"
        "sys.stdout.write('partial line')\n"
        f"end_process({status!r})\n"
    )
    unbuffered = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=unbuffered,
    )
    assert (done.returncode, done.stdout, done.stderr) == (code, "partial line", stderr)


def test_the_console_script_is_the_fast_ending_command() -> None:
    script = Path(TARGET_EXECUTABLE).read_text(encoding="utf-8")
    assert "from target_warehouse_seg.__main__ import main" in script
