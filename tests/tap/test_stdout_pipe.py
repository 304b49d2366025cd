"""The tap widens its stdout pipe to the size of its writes (streams._widen_stdout_pipe)."""

from __future__ import annotations

import subprocess
import sys

import pytest

fcntl = pytest.importorskip("fcntl")

WIDEN = "from tap_salesforce_seg.streams import _widen_stdout_pipe; _widen_stdout_pipe(); "


@pytest.mark.skipif(not hasattr(fcntl, "F_GETPIPE_SZ"), reason="pipe sizes are a Linux feature")
def test_a_pipe_on_stdout_gets_a_megabyte():
    code = WIDEN + "import fcntl, sys; sys.stderr.write(str(fcntl.fcntl(1, fcntl.F_GETPIPE_SZ)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    assert int(result.stderr) == 1 << 20


def test_other_stdouts_are_left_alone(tmp_path):
    with (tmp_path / "out").open("wb") as file:
        subprocess.run([sys.executable, "-c", WIDEN + "print('ok')"], stdout=file, check=True)
    assert (tmp_path / "out").read_text() == "ok\n"
    in_process = subprocess.run(
        [sys.executable, "-c", "import io, sys; sys.stdout = io.StringIO(); " + WIDEN],
        capture_output=True,
        check=True,
    )
    assert in_process.stderr == b""
