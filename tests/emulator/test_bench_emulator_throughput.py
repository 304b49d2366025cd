"""bench/emulator_throughput.py cannot rot: a tiny run goes through every measurement and check.

Its rates are meaningless at this size, so only the shape of the report and of the results is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent


@pytest.mark.slow
def test_a_tiny_run_measures_everything(tmp_path: Path) -> None:
    command = [
        sys.executable, str(REPO / "bench" / "emulator_throughput.py"),
        "--accounts", "3000", "--repeat", "1", "--bare-records", "500", "--narrow-fields", "12",
        "--ceiling-seconds", "0.1", "--results-dir", str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode in (0, 1), done.stderr  # 1: a bar missed (possible on a busy machine)
    report = done.stdout
    for line in (
        "REST serving, 1",  # every field (the count depends on the org's describe)
        "REST serving, 12 fields",
        "REST requests+json, 12 fields",
        "Bulk serving, ",
        "Bulk requests+csv, ",
        "bar: REST >= 50,000 records/s with every Account field",
        "judged on the emulator's serving rate",
        "3,000 records held in < 2 GB",
    ):
        assert line in report, (line, report)
    [results] = tmp_path.glob("emulator_throughput-*.json")
    document = json.loads(results.read_text())
    names = {run["name"] for run in document["runs"]}
    assert len(names) == 7 and all(run["records"] > 0 for run in document["runs"])
    live = next(run["records"] for run in document["runs"] if run["name"].startswith("REST serving, 1"))
    assert 2_800 < live <= 3_000  # every live Account, checked against totalSize by the client
    assert document["peak_rss_kib"] > 0
