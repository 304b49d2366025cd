"""The shell pipeline and the external scheduler's state file, run as README.md documents them
(real processes, a real shell pipe, the emulator over HTTP, DuckDB and PostgreSQL warehouses).

- A full run, then incremental runs from the state file after changes in the org (an update, a soft
  delete, an undelete, a new record): the warehouse equals the org, and the incremental run rewrites only
  the changed rows and the lookback window's.
- A run killed half-way (SIGKILL to the whole pipeline once STATE lines have come out) and the next
  scheduled run: it resumes from the last committed state, and the warehouse equals the org with unique
  ids (nothing lost, nothing duplicated).
- A run the tap stops for the API quota (exit status 2 through `pipefail`) keeps its state, and the next
  run continues from it.
- `--discover > catalog.json`, edited selections (a stream deselected, properties deselected, a custom
  object selected), then a run: exactly the selected tables and columns, plus the target's system columns.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from pipeline import SYSTEM_COLUMNS, Pipeline, Warehouse, assert_warehouse_equals_org, selected_streams, tail
from tap_harness import select, tap_settings

pytestmark = pytest.mark.slow

CHANGED_STREAMS = ("accounts", "contacts", "leads")


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def target_settings(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    if request.param == "postgres":
        return {"engine": "postgres", "sqlalchemy_url": request.getfixturevalue("postgres_database")}
    return {"engine": "duckdb", "path": str(tmp_path / "warehouse.duckdb")}


def bookmarks(state: dict[str, Any] | None) -> dict[str, Any]:
    assert state is not None, "no state.json after the run"
    return {stream: mark.get("replication_key_value") for stream, mark in state["bookmarks"].items()}


def rewritten_since(warehouse: Warehouse, moment: datetime, streams: list[str]) -> dict[str, int]:
    """Rows each table's run wrote at or after `moment` (the target stamps `uuid_ts` on every write)."""
    since = f"CAST('{moment.isoformat()}' AS TIMESTAMPTZ)"
    with warehouse.session():
        return {stream: warehouse.count(stream, f"uuid_ts >= {since}") for stream in streams}


def let_the_second_pass(org: Any) -> None:
    """A sync reads up to its start by Salesforce's clock, known in whole seconds (HTTP Date header), so
    a change made in the same second as the next sync starts would wait for the run after it."""
    org.clock.advance(2)


def change_the_org(org: Any) -> dict[str, str]:
    """An update, a soft delete, an undelete and a new record; returns the ids touched."""
    account = next(iter(org.records("Account", include_deleted=False)))
    org.update("Account", account["Id"], {"Name": "Renamed between runs", "NumberOfEmployees": 4242})
    contact = next(iter(org.records("Contact", include_deleted=False)))
    org.delete("Contact", contact["Id"])
    deleted_lead = next(record for record in org.records("Lead") if record["IsDeleted"])
    org.undelete("Lead", deleted_lead["Id"])
    new_lead = org.create(
        "Lead",
        {"LastName": "Piped", "Company": "State File Ltd", "Email": "piped@example.com", "Status": "Open"},
    )
    let_the_second_pass(org)
    return {
        "account": account["Id"],
        "contact": contact["Id"],
        "undeleted": deleted_lead["Id"],
        "new": new_lead,
    }


def test_full_run_then_incremental_runs_from_the_state_file(
    emulator: Any, target_settings: dict[str, Any], tmp_path: Path
) -> None:
    pipeline = Pipeline(tmp_path / "sfdc", tap_settings(emulator), target_settings)
    warehouse = Warehouse(target_settings)
    catalog = pipeline.discover()  # Segment's default selection
    streams = [entry["stream"] for entry in selected_streams(catalog)]

    pipeline.sync()  # no state.json yet: everything
    assert_warehouse_equals_org(warehouse, emulator, catalog)
    first = bookmarks(pipeline.state())
    assert set(first) == set(streams)
    assert sum(warehouse.count(stream, "is_deleted") for stream in CHANGED_STREAMS) > 0

    touched = change_the_org(emulator.org)
    before_second_run = datetime.now(UTC)
    pipeline.sync()
    assert_warehouse_equals_org(warehouse, emulator, catalog)
    by_id = {
        row[0]: row[1:]
        for row in warehouse.query(
            f"SELECT id, name, number_of_employees FROM {warehouse.table('accounts')} "
            f"WHERE id = '{touched['account']}'"
        )
    }
    assert by_id == {touched["account"]: ("Renamed between runs", 4242)}
    deleted = warehouse.query(
        f"SELECT id, is_deleted FROM {warehouse.table('leads')} "
        f"WHERE id IN ('{touched['undeleted']}', '{touched['new']}') ORDER BY id"
    )
    assert sorted(deleted) == sorted([(touched["undeleted"], False), (touched["new"], False)])

    # Incremental: the changed rows and the lookback window's, not the whole org, were written again.
    rewritten = rewritten_since(warehouse, before_second_run, streams)
    with warehouse.session():
        total = sum(warehouse.count(stream) for stream in streams)
    assert all(rewritten[stream] >= 1 for stream in CHANGED_STREAMS), rewritten
    assert sum(rewritten.values()) < total / 10, f"the incremental run rewrote {rewritten} of {total} rows"
    second = bookmarks(pipeline.state())
    for stream in CHANGED_STREAMS:
        assert second[stream] > first[stream], stream
    assert {s: second[s] for s in streams if s not in CHANGED_STREAMS} == {
        s: first[s] for s in streams if s not in CHANGED_STREAMS
    }

    # A run with nothing new still leaves a whole, equal state file behind for the next one.
    pipeline.sync()
    assert bookmarks(pipeline.state()) == second
    assert_warehouse_equals_org(warehouse, emulator, catalog)


def test_killed_run_resumes_from_the_state_file(
    emulator_factory: Any, target_settings: dict[str, Any], tmp_path: Path
) -> None:
    emu = emulator_factory(counts={"Account": 2500, "Contact": 2500, "Opportunity": 2000})
    # Small STATE intervals and batches: many commits, each followed by a STATE line, before the kill.
    target_settings = {**target_settings, "batch_size_rows": 150}
    pipeline = Pipeline(tmp_path / "sfdc", tap_settings(emu, state_every_records=100), target_settings)
    warehouse = Warehouse(target_settings)
    catalog = select(pipeline.discover(), ["accounts", "contacts", "opportunities"])
    pipeline.write_catalog(catalog)
    org_total = sum(len(emu.org.records(o)) for o in ("Account", "Contact", "Opportunity"))

    process = pipeline.start_sync()
    try:
        # Kill once the run is inside its second stream: one stream done, one half-way, one not begun.
        pipeline.wait_for_states(process, 1)
        while "contacts" not in json.loads(pipeline.state_lines()[-1]).get("bookmarks", {}):
            pipeline.wait_for_states(process, len(pipeline.state_lines()) + 1)
    finally:
        pipeline.kill(process)
    committed = sum(warehouse.count(stream) for stream in warehouse.tables())
    assert 0 < committed < org_total, f"the kill came too late to test anything ({committed} rows)"
    assert pipeline.state() is None  # the killed run never reached its own state-keeping step

    # Meanwhile in Salesforce: a row already loaded changes, and a new one arrives.
    loaded_account = warehouse.ids("accounts")[0]
    emu.org.update("Account", loaded_account, {"Name": "Changed while the pipeline was down"})
    emu.org.create(
        "Opportunity",
        {"Name": "Arrived after the crash", "StageName": "Prospecting", "CloseDate": date(2026, 3, 31)},
    )
    let_the_second_pass(emu.org)

    resumed_at = datetime.now(UTC)
    pipeline.sync()  # the next scheduled run: resumes from the dead run's last committed state
    assert_warehouse_equals_org(warehouse, emu, catalog)
    # It did resume: the finished and the half-done streams from their bookmarks, the third from scratch.
    windows = sync_windows(pipeline.last_stderr)
    assert not windows["accounts"].startswith("the beginning"), windows
    assert not windows["contacts"].startswith("the beginning"), windows
    assert windows["opportunities"].startswith("the beginning"), windows
    accounts_rewritten = rewritten_since(warehouse, resumed_at, ["accounts"])["accounts"]
    assert 1 <= accounts_rewritten < warehouse.count("accounts") / 10


def sync_windows(tap_log: str) -> dict[str, str]:
    """stream -> the time window its incremental sync read, from the tap's log lines."""
    pattern = re.compile(r"\| (\w+): incremental sync of \w+, \d+ field\(s\), window (.+)$", re.M)
    return {match[1]: match[2] for match in pattern.finditer(tap_log)}


def test_discovered_catalog_edited_then_run(emulator: Any, tmp_path: Path) -> None:
    target_settings = {"engine": "duckdb", "path": str(tmp_path / "warehouse.duckdb")}
    pipeline = Pipeline(tmp_path / "sfdc", tap_settings(emulator), target_settings)
    catalog = pipeline.discover()
    by_stream = {entry["stream"]: entry for entry in catalog["streams"]}
    assert not root_metadata(by_stream["invoice_c"])["selected"]  # custom objects start unselected

    # What a user does in catalog.json: a stream off, a few columns off, a custom object on.
    root_metadata(by_stream["contacts"])["selected"] = False
    for column in ("description", "phone", "website", "annual_revenue"):
        property_metadata(by_stream["accounts"], column)["selected"] = False
    root_metadata(by_stream["invoice_c"])["selected"] = True
    pipeline.write_catalog(catalog)
    pipeline.sync()

    warehouse = Warehouse(target_settings)
    tables = warehouse.tables()
    assert "contacts" not in tables and "invoice_c" in tables
    assert "accounts" in tables and "leads" in tables
    account_columns = warehouse.columns("accounts")
    assert not account_columns & {"description", "phone", "website", "annual_revenue"}
    assert {"id", "name", "industry", "is_deleted", "system_modstamp", *SYSTEM_COLUMNS} <= account_columns
    assert_warehouse_equals_org(warehouse, emulator, catalog)  # every table and column, exactly


def test_a_column_keeps_its_field_after_discovery_gives_its_name_to_a_new_field(
    emulator_factory: Any, target_settings: dict[str, Any], tmp_path: Path
) -> None:
    """An admin adds `Total_Seats__c` beside `TotalSeats__c` (both conform to `total_seats_c`) and the
    scheduler runs discovery again: the warehouse column keeps the field that filled it, and the new
    field gets a column of its own."""
    emu = emulator_factory(scale=0.02, tags=False)
    emu.org.add_field("Account", "TotalSeats__c", "double", precision=18, scale=0)
    accounts = [r["Id"] for r in emu.org.records("Account") if not r["IsDeleted"]][:3]
    for seats, record_id in enumerate(accounts, 1):
        emu.org.update("Account", record_id, {"TotalSeats__c": seats})
    let_the_second_pass(emu.org)
    pipeline = Pipeline(tmp_path / "sfdc", tap_settings(emu), target_settings)

    def discover_accounts() -> None:
        catalog = pipeline.discover()
        for entry in catalog["streams"]:
            root_metadata(entry)["selected"] = entry["stream"] == "accounts"
        pipeline.write_catalog(catalog)

    discover_accounts()
    pipeline.sync()
    emu.org.add_field("Account", "Total_Seats__c", "string")
    emu.org.update("Account", accounts[0], {"Total_Seats__c": "new field", "TotalSeats__c": 100})
    let_the_second_pass(emu.org)
    discover_accounts()
    run = pipeline.sync()
    assert "column 'total_seats_c' keeps field TotalSeats__c" in run.stderr
    warehouse = Warehouse(target_settings)
    rows = warehouse.query(
        f"SELECT id, total_seats_c, totalseats_c FROM {warehouse.table('accounts')} "
        "WHERE total_seats_c IS NOT NULL OR totalseats_c IS NOT NULL ORDER BY id"
    )
    expected = {accounts[0]: (100, "new field"), accounts[1]: (2, None), accounts[2]: (3, None)}
    assert {row[0]: (int(row[1]), row[2]) for row in rows} == expected


def test_a_field_that_changed_type_widens_its_column(
    emulator_factory: Any, target_settings: dict[str, Any], tmp_path: Path
) -> None:
    """An admin turns a number field into a text field between two runs of the same catalog: the tap
    declares it with its new type, the target widens the column, keeping the numbers (as their digits),
    and the changed record carries its text."""
    emu = emulator_factory(scale=0.02, tags=False)
    pipeline = Pipeline(tmp_path / "sfdc", tap_settings(emu), target_settings)
    catalog = pipeline.discover()
    for entry in catalog["streams"]:
        root_metadata(entry)["selected"] = entry["stream"] == "accounts"
    pipeline.write_catalog(catalog)
    pipeline.sync()
    warehouse = Warehouse(target_settings)
    seats = "SELECT id, seats_c FROM {} WHERE seats_c IS NOT NULL ORDER BY id"
    numbers = dict(warehouse.query(seats.format(warehouse.table("accounts"))))
    assert numbers and all(value == int(value) for value in numbers.values())

    emu.org.remove_field("Account", "Seats__c")
    emu.org.add_field("Account", "Seats__c", "string")
    changed = next(r["Id"] for r in emu.org.records("Account") if not r["IsDeleted"] and r["Id"] in numbers)
    emu.org.update("Account", changed, {"Seats__c": "many"})
    emu.org.clock.advance(2)
    run = pipeline.sync()
    assert "changed type in Salesforce from double to string" in run.stderr
    texts = dict(warehouse.query(seats.format(warehouse.table("accounts"))))
    assert texts.pop(changed) == "many"
    # Rows the second run did not read keep their numbers, as text; those it read again (the lookback
    # window's) hold the org's value, NULL since the field was made again.
    assert texts and all(texts[key] == str(int(numbers[key])) for key in texts)
    assert len(texts) >= len(numbers) - 5


def test_formula_fields_are_named_and_a_full_resync_refreshes_them(
    emulator_factory: Any, target_settings: dict[str, Any], tmp_path: Path
) -> None:
    """Salesforce recalculates a formula field (one over TODAY(), or over a parent's field) without
    moving the record's SystemModstamp, so an incremental run cannot see the new value: the tap says so
    in one line naming the field, and Segment's full re-sync switch brings the value in."""
    emu = emulator_factory(scale=0.02, tags=False)
    emu.org.add_field("Account", "Days_Open__c", "double", precision=18, scale=0, calculated=True)
    account = next(r["Id"] for r in emu.org.records("Account") if not r["IsDeleted"])
    emu.org.recalculate("Account", account, {"Days_Open__c": 5})
    pipeline = Pipeline(tmp_path / "sfdc", tap_settings(emu), target_settings)
    catalog = pipeline.discover()
    for entry in catalog["streams"]:
        root_metadata(entry)["selected"] = entry["stream"] == "accounts"
    accounts = next(entry for entry in catalog["streams"] if entry["stream"] == "accounts")
    assert property_metadata(accounts, "days_open_c")["salesforce-calculated"] is True
    property_metadata(accounts, "days_open_c")["selected"] = True
    pipeline.write_catalog(catalog)
    first = pipeline.sync()
    warehouse = Warehouse(target_settings)
    days_open = f"SELECT days_open_c FROM {warehouse.table('accounts')} WHERE id = '{account}'"
    assert warehouse.query(days_open) == [(5,)]
    assert "formula field" not in first.stderr  # a first run reads everything: nothing can lag yet

    emu.org.recalculate("Account", account, {"Days_Open__c": 6})  # a day later, no SystemModstamp change
    let_the_second_pass(emu.org)
    incremental = pipeline.sync()
    notice = "accounts: 1 formula field(s) (days_open_c) are read with their record's other changes only"
    assert notice in incremental.stderr
    assert warehouse.query(days_open) == [(5,)]  # what the notice warns of

    property_metadata(accounts, "system_modstamp")["selected"] = False  # Segment's full re-sync switch
    pipeline.write_catalog(catalog)
    resync = pipeline.sync()
    assert "formula field" not in resync.stderr
    assert warehouse.query(days_open) == [(6,)]


def root_metadata(entry: dict[str, Any]) -> dict[str, Any]:
    return next(item["metadata"] for item in entry["metadata"] if not item["breadcrumb"])


def property_metadata(entry: dict[str, Any], name: str) -> dict[str, Any]:
    return next(item["metadata"] for item in entry["metadata"] if item["breadcrumb"] == ["properties", name])


def test_run_stopped_by_the_api_quota_continues_next_time(emulator_factory: Any, tmp_path: Path) -> None:
    emu = emulator_factory(api_limit=1000)
    target_settings = {"engine": "duckdb", "path": str(tmp_path / "warehouse.duckdb")}
    pipeline = Pipeline(tmp_path / "sfdc", tap_settings(emu), target_settings)
    catalog = pipeline.discover()
    emu.api_usage = 785  # other integrations used most of today's allowance: 15 calls before 80%

    stopped = pipeline.sync(expect_success=False)
    assert stopped.returncode == 2, tail(stopped.stderr)  # the tap's quota stop, through `pipefail`
    assert "quota_percent" in stopped.stderr
    state = pipeline.state()
    assert state is not None
    done_before = {stream for stream, mark in state["bookmarks"].items() if mark.get("replication_key_value")}
    assert 0 < len(done_before) < len(selected_streams(catalog))

    emu.api_usage = 0  # a new day
    pipeline.sync()
    assert_warehouse_equals_org(Warehouse(target_settings), emu, catalog)
    windows = sync_windows(pipeline.last_stderr)
    assert all(not windows[stream].startswith("the beginning") for stream in done_before), windows
