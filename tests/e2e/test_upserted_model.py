"""`tap_harness.upserted()` is the tap tests' model of the warehouse: checked here against the real target.

Two runs of the tap's CLI: the second, incremental, with one property deselected. Both outputs, byte for
byte, go through target-warehouse-seg into DuckDB, and the table read back must equal `upserted()`:
rows the second run rewrote hold NULL in the deselected column (an upsert writes the record's latest
state whole), rows it did not rewrite keep their value, and the column stays (issue 4).
"""

from __future__ import annotations

import io
import json
import subprocess as sp
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline import Warehouse
from stdout_capture import captured_stdout
from tap_harness import (
    TapRun,
    discover_catalog,
    entry,
    parse_messages,
    select,
    start_tap,
    tap_settings,
    upserted,
)

from salesforce_emulator import Emulator

ACCOUNT = "accounts"
DESELECTED = "annual_revenue"


def tap_output(emu: Emulator, catalog: dict[str, Any], state: dict[str, Any] | None, folder: Path) -> bytes:
    folder.mkdir()
    process = start_tap(tap_settings(emu), catalog, state, folder=folder, stderr=sp.PIPE)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr.decode()[-2000:]
    return stdout


def load(output: bytes, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The target, in this process, on the tap's exact output; returns the last STATE it emitted."""
    from target_warehouse_seg.target import TargetWarehouseSeg

    with captured_stdout() as captured:
        target = TargetWarehouseSeg(config=settings)
        target.process_lines(io.StringIO(output.decode()))
        target.process_endofpipe()
    states = [json.loads(line) for line in captured.getvalue().decode("utf-8").split("\n") if line.strip()]
    return states[-1] if states else None


def test_upserted_models_a_deselected_column_as_the_target_stores_it(
    emulator_factory: Callable[..., Emulator], tmp_path: Path
) -> None:
    org = emulator_factory(scale=0.02, tags=False)
    catalog = discover_catalog(tap_settings(org))
    everything = select(catalog, [ACCOUNT])
    alive = [r["Id"] for r in org.org.records("Account")]
    rewritten, kept = alive[:3], alive[3]
    org.org.update("Account", kept, {"AnnualRevenue": "999"})
    org.org.clock.advance(700)  # beyond the lookback: the second run will not read `kept` again
    for number, record_id in enumerate(rewritten):
        org.org.update("Account", record_id, {"AnnualRevenue": f"{1000 + number}"})
    org.org.clock.advance(2)
    first_output = tap_output(org, everything, None, tmp_path / "first")
    first = TapRun(parse_messages(first_output), 0, "")

    org.org.clock.advance(700)
    for record_id in rewritten:
        org.org.update("Account", record_id, {"Name": f"renamed {record_id}"})
    org.org.clock.advance(2)
    fewer = select(catalog, [ACCOUNT], deselect={ACCOUNT: [DESELECTED]})
    second_output = tap_output(org, fewer, first.final_state, tmp_path / "second")
    second = TapRun(parse_messages(second_output), 0, "")
    assert DESELECTED not in second.schema(ACCOUNT)["schema"]["properties"]
    read_again = {r["id"] for r in second.records(ACCOUNT)}
    assert set(rewritten) <= read_again and kept not in read_again

    settings = {"engine": "duckdb", "path": str(tmp_path / "warehouse.duckdb")}
    assert load(first_output, settings) == first.final_state
    assert load(second_output, settings) == second.final_state
    stored = Warehouse(settings).loaded(entry(everything, ACCOUNT))

    model = upserted([first, second], ACCOUNT)
    assert stored == model
    # What the comparison is about: the case happened, and the model tells it apart.
    assert all(upserted([first], ACCOUNT)[i][DESELECTED] is not None for i in [*rewritten, kept])
    assert all(model[i][DESELECTED] is None and model[i]["name"] == f"renamed {i}" for i in rewritten)
    assert model[kept][DESELECTED] == 999
