"""The tap's sync against the emulator over real HTTP: what it emits equals the org, run after run.

In-process runs (tap_harness.run_tap) keep this fast; tests/e2e/test_tap_cli.py runs the real CLI where
exit statuses and stdout purity matter. Each test syncs a tiny org and compares, per stream, the
records a target that upserts by id would hold with `emu.org.records(...)` in the tap's spellings.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tap_harness import (
    TapRun,
    discover_catalog,
    entry,
    expected_records,
    run_tap,
    select,
    selected_properties,
    sobject_of,
    tap_settings,
    upserted,
)

from salesforce_emulator import Emulator
from tap_salesforce_seg.values import format_datetime, parse_datetime

ACCOUNT = "accounts"


@pytest.fixture
def org(emulator_factory: Callable[..., Emulator]) -> Emulator:
    return emulator_factory(scale=0.02, tags=False)


@pytest.fixture
def catalog(org: Emulator) -> dict[str, Any]:
    return discover_catalog(tap_settings(org))


def sync(emu: Emulator, catalog: dict, state: dict | None = None, **settings: Any) -> TapRun:
    run = run_tap(tap_settings(emu, **settings), catalog, state)
    assert run.exit_code == 0, run.stderr
    return run


def tick(emu: Emulator, seconds: float = 2.0) -> None:
    """Let the org's clock move on, so the next sync's window (which ends at its start) covers changes."""
    emu.org.clock.advance(seconds)


def assert_equals_org(emu: Emulator, catalog: dict, runs: list[TapRun], stream: str) -> None:
    expected = expected_records(emu, entry(catalog, stream))
    actual = upserted(runs, stream)
    assert actual.keys() == expected.keys(), f"{stream}: ids differ"
    for record_id, record in expected.items():
        assert actual[record_id] == record, f"{stream} {record_id}"


def assert_read_since_the_bookmark(run: TapRun, state: dict, changed: set[str], lookback: int = 600) -> None:
    """An incremental run reads what changed, plus what the lookback margin re-reads, nothing else."""
    bookmark = parse_datetime(state["bookmarks"][ACCOUNT]["replication_key_value"])
    margin = format_datetime(bookmark - timedelta(seconds=lookback))
    emitted = {r["id"]: r for r in run.records(ACCOUNT)}
    assert changed <= emitted.keys()
    assert all(r["system_modstamp"] >= margin for i, r in emitted.items() if i not in changed)


def account_ids(emu: Emulator, deleted: bool | None = None) -> Iterator[str]:
    for record in emu.org.records("Account", include_deleted=True):
        if deleted is None or record["IsDeleted"] == deleted:
            yield record["Id"]


# --- first sync ---------------------------------------------------------------------------------------


def test_first_sync_of_every_default_stream_equals_the_org(org: Emulator, catalog: dict) -> None:
    selected = [
        e["tap_stream_id"]
        for e in catalog["streams"]
        if next(m for m in e["metadata"] if not m["breadcrumb"])["metadata"].get("selected-by-default")
    ] + ["invoice_c"]
    chosen = select(catalog, selected)
    tick(org)
    run = sync(org, chosen)
    for stream in selected:
        assert_equals_org(org, chosen, [run], stream)
    assert len(run.records(ACCOUNT)) == sum(1 for _ in account_ids(org))
    assert any(r["is_deleted"] for r in run.records(ACCOUNT)), "queryAll brings soft-deleted records"
    # one bookmark per incremental stream, at the highest SystemModstamp emitted, and the end of the
    # window read whole (the org's clock when the stream started)
    bookmarks = run.final_state["bookmarks"]
    accounts = run.records(ACCOUNT)
    assert bookmarks[ACCOUNT] == {
        "replication_key": "system_modstamp",
        "replication_key_value": max(r["system_modstamp"] for r in accounts),
        "read_until": bookmarks[ACCOUNT]["read_until"],
    }
    read_until = parse_datetime(bookmarks[ACCOUNT]["read_until"])
    assert parse_datetime(bookmarks[ACCOUNT]["replication_key_value"]) <= read_until <= org.org.clock.now()


def test_schema_lists_the_selected_properties_and_values_are_typed(org: Emulator, catalog: dict) -> None:
    chosen = select(catalog, [ACCOUNT, "invoice_c"])
    tick(org)
    run = sync(org, chosen)
    for stream in (ACCOUNT, "invoice_c"):
        schema = run.schema(stream)
        assert set(schema["schema"]["properties"]) == set(selected_properties(entry(chosen, stream)))
        assert schema["key_properties"] == ["id"]
        assert schema["bookmark_properties"] == ["system_modstamp"]
    record = run.records(ACCOUNT)[0]
    assert record["system_modstamp"].endswith("Z") and len(record["system_modstamp"]) == 27


# --- changes between syncs ----------------------------------------------------------------------------


def test_updates_soft_deletes_and_undeletes_between_syncs(org: Emulator, catalog: dict) -> None:
    chosen = select(catalog, [ACCOUNT])
    tick(org)
    first = sync(org, chosen)
    alive = list(account_ids(org, deleted=False))
    deleted = list(account_ids(org, deleted=True))
    tick(org, 700)  # beyond the lookback: the second run reads only what changed
    org.org.update("Account", alive[0], {"Name": "Renamed by the test", "AnnualRevenue": "1234567.89"})
    org.org.delete("Account", alive[1])
    org.org.undelete("Account", deleted[0])
    new_id = org.org.create("Account", {"Name": "Created by the test"})
    tick(org)
    second = sync(org, chosen, first.final_state)
    changed = {alive[0], alive[1], deleted[0], new_id}
    assert_read_since_the_bookmark(second, first.final_state, changed)
    assert_equals_org(org, chosen, [first, second], ACCOUNT)
    table = upserted([first, second], ACCOUNT)
    assert table[alive[1]]["is_deleted"] is True
    assert table[deleted[0]]["is_deleted"] is False


def test_a_late_commit_inside_the_lookback_window_is_not_lost(org: Emulator, catalog: dict) -> None:
    chosen = select(catalog, [ACCOUNT])
    org.org.update("Account", next(account_ids(org, deleted=False)), {"Name": "touch"})
    tick(org)
    first = sync(org, chosen)
    bookmark = first.final_state["bookmarks"][ACCOUNT]["replication_key_value"]
    tick(org, 30)
    # A long transaction commits now, stamped 60 s ago: older than the bookmark the first run left.
    late_id = org.org.late_commit("Account", {"Name": "Committed late"}, seconds_ago=60)
    late = org.org.get("Account", late_id)
    tick(org)
    assert late["SystemModstamp"].isoformat() < bookmark.replace("Z", "+00:00")
    second = sync(org, chosen, first.final_state)
    assert late_id in {r["id"] for r in second.records(ACCOUNT)}
    assert_equals_org(org, chosen, [first, second], ACCOUNT)
    # Without the lookback margin the same change would be skipped: the test exercises the margin.
    third = sync(org, chosen, first.final_state, lookback_seconds=0)
    assert late_id not in {r["id"] for r in third.records(ACCOUNT)}


def test_many_records_sharing_one_systemmodstamp_across_a_page_boundary(
    emulator_factory: Callable[..., Emulator],
) -> None:
    emu = emulator_factory(scale=0.001, counts={"Account": 2300}, tags=False)
    catalog = select(discover_catalog(tap_settings(emu)), [ACCOUNT])
    tick(emu)
    first = sync(emu, catalog)
    tick(emu, 700)
    emu.org.clock.freeze()
    ids = list(account_ids(emu, deleted=False))[:2100]  # more than a REST page (2,000) shares one instant
    for record_id in ids:
        emu.org.update("Account", record_id, {"Description": "mass update"})
    emu.org.clock.unfreeze()
    tick(emu)
    second = sync(emu, catalog, first.final_state, state_every_records=500)
    shared = format_datetime(emu.org.get("Account", ids[0])["SystemModstamp"])
    emitted = [r["id"] for r in second.records(ACCOUNT) if r["system_modstamp"] == shared]
    assert sorted(emitted) == sorted(ids)
    assert_read_since_the_bookmark(second, first.final_state, set(ids))
    stamps = {shared}
    # interim STATE messages bookmark the shared instant; resuming from any of them reads it all again
    interim = [s["bookmarks"][ACCOUNT]["replication_key_value"] for s in second.states()]
    assert stamps.pop() in interim
    resumed = sync(emu, catalog, second.states()[1])
    assert set(ids) <= {r["id"] for r in resumed.records(ACCOUNT)}
    assert_equals_org(emu, catalog, [first, second], ACCOUNT)


# --- Segment's switches ---------------------------------------------------------------------------------


def test_deselecting_and_reselecting_system_modstamp(
    org: Emulator, catalog: dict, caplog: pytest.LogCaptureFixture
) -> None:
    chosen = select(catalog, [ACCOUNT])
    tick(org)
    first = sync(org, chosen)
    bookmark = first.final_state["bookmarks"][ACCOUNT]["replication_key_value"]
    tick(org, 700)
    changed = next(account_ids(org, deleted=False))
    org.org.update("Account", changed, {"Name": "changed before the full sync"})
    tick(org)

    full = select(catalog, [ACCOUNT], deselect={ACCOUNT: ["system_modstamp"]})
    with caplog.at_level(logging.WARNING):
        second = sync(org, full, first.final_state)
    # A warning: a field list without it (a Meltano select) makes every run read the whole object.
    assert [
        r.getMessage() for r in caplog.records if "every run reads the whole object" in r.getMessage()
    ] == [
        "accounts: system_modstamp is not selected, so every run reads the whole object (Segment's full "
        "re-sync switch); select it for incremental runs. It is still written (the rows would lose it "
        "otherwise), and the bookmark is kept for when it is selected again."
    ]
    records = second.records(ACCOUNT)
    assert len(records) == sum(1 for _ in account_ids(org)), "a full sync"
    # Deselecting it is the switch: the column is still written, or every row would lose its value.
    assert all(r["system_modstamp"] for r in records)
    assert "system_modstamp" in second.schema(ACCOUNT)["schema"]["properties"]
    assert_equals_org(org, chosen, [second], ACCOUNT)
    kept = second.final_state["bookmarks"][ACCOUNT]
    assert kept["replication_key"] == "system_modstamp"
    assert kept["replication_key_value"] > bookmark  # the highest SystemModstamp seen

    tick(org, 700)
    again = org.org.create("Account", {"Name": "after re-selecting"})
    tick(org)
    third = sync(org, chosen, second.final_state)
    assert_read_since_the_bookmark(third, second.final_state, {again})
    assert len(third.records(ACCOUNT)) < len(records), "incremental again"
    assert_equals_org(org, chosen, [first, second, third], ACCOUNT)


FULL_TABLE_SPELLINGS = ["replication-method", "forced-replication-method", "replication_method"]


@pytest.mark.parametrize("asked_by", FULL_TABLE_SPELLINGS)
def test_a_catalog_asking_for_full_table_syncs_in_full(
    org: Emulator, catalog: dict, caplog: pytest.LogCaptureFixture, asked_by: str
) -> None:
    """Meltano's `metadata: {accounts: {replication-method: FULL_TABLE}}` (or singer's spellings): the
    whole object, every run, with the bookmark kept. It was logged as full_table and read incrementally."""
    chosen = select(catalog, [ACCOUNT])
    tick(org)
    first = sync(org, chosen)
    tick(org, 700)
    forced = json.loads(json.dumps(chosen))
    account = entry(forced, ACCOUNT)
    if asked_by == "replication_method":
        account["replication_method"] = "FULL_TABLE"
    else:
        root = next(item for item in account["metadata"] if item["breadcrumb"] == [])
        root["metadata"][asked_by] = "FULL_TABLE"
    with caplog.at_level(logging.INFO):
        second = sync(org, forced, first.final_state)
    assert len(second.records(ACCOUNT)) == sum(1 for _ in account_ids(org)), "a full sync"
    assert any("replication-method is FULL_TABLE" in r.getMessage() for r in caplog.records)
    marks = [run.final_state["bookmarks"][ACCOUNT]["replication_key_value"] for run in (first, second)]
    assert marks[1] >= marks[0]


def test_a_newly_selected_stream_syncs_its_full_history(org: Emulator, catalog: dict) -> None:
    tick(org)
    first = sync(org, select(catalog, [ACCOUNT]))
    tick(org, 700)
    both = select(catalog, [ACCOUNT, "contacts"])
    second = sync(org, both, first.final_state)
    assert_equals_org(org, both, [second], "contacts")
    assert len(second.records("contacts")) == len(org.org.records("Contact", include_deleted=True))
    assert_read_since_the_bookmark(second, first.final_state, set())
    assert set(second.final_state["bookmarks"]) >= {ACCOUNT, "contacts"}


def test_a_bookmark_ahead_of_salesforces_clock_is_warned_about(
    org: Emulator, catalog: dict, caplog: pytest.LogCaptureFixture
) -> None:
    """A state from another org (or an edited one) whose bookmark lies in the future held the stream
    back without a word: the run read nothing and exited 0, run after run."""
    tick(org)
    future = {
        "bookmarks": {
            ACCOUNT: {"replication_key": "system_modstamp", "replication_key_value": "2999-01-01T00:00:00Z"}
        }
    }
    with caplog.at_level(logging.WARNING):
        run = sync(org, select(catalog, [ACCOUNT]), future)
    assert run.records(ACCOUNT) == []
    warned = [r.getMessage() for r in caplog.records if "later than Salesforce's clock" in r.getMessage()]
    assert len(warned) == 1 and "2999-01-01T00:00:00.000000Z" in warned[0], warned
    assert "Remove the stream's bookmark" in warned[0]
    assert run.final_state["bookmarks"][ACCOUNT]["replication_key_value"].startswith(
        "2999-01-01"
    )  # never back
    ordinary = sync(org, select(catalog, [ACCOUNT])).final_state
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        sync(org, select(catalog, [ACCOUNT]), ordinary)
    assert not [r for r in caplog.records if "later than Salesforce's clock" in r.getMessage()]


def test_streams_synced_before_and_now_deselected_are_warned_about(
    org: Emulator, catalog: dict, caplog: pytest.LogCaptureFixture
) -> None:
    """Running discovery again (as the README says to, for new fields) gives a catalog with the default
    selection: streams chosen by hand stopped syncing with an INFO line only, their tables going stale."""
    tick(org)
    state = sync(org, select(catalog, [ACCOUNT, "contacts"])).final_state
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        sync(org, select(catalog, [ACCOUNT]), state)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        "state: 1 stream(s) synced before are not selected in the catalog, so their tables are not "
        "updated: contacts. A catalog made by --discover again selects the defaults: apply your selection "
        "again (README: Choose objects and fields); if a stream is no longer wanted, drop its bookmark: "
        "jq 'del(.bookmarks.NAME)'."
    ) in warnings, warnings
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        sync(org, select(catalog, [ACCOUNT, "contacts"]), state)
    assert not [r for r in caplog.records if "synced before are not selected" in r.getMessage()]


def test_bookmarks_the_tap_cannot_use_are_warned_about(
    org: Emulator, catalog: dict, caplog: pytest.LogCaptureFixture
) -> None:
    """A state under other stream names (a typo, the other `naming`, another tap) or in another tap's
    shape (singer-io's tap-salesforce keeps `{"Account": {"SystemModstamp": ...}}`) made every stream
    sync in full, silently."""
    tick(org)
    stamp = "2024-01-01T00:00:00Z"
    foreign = {
        "bookmarks": {
            "acounts": {"replication_key": "system_modstamp", "replication_key_value": stamp},
            "Account": {"SystemModstamp": stamp},
            ACCOUNT: {"SystemModstamp": stamp},
        }
    }
    with caplog.at_level(logging.WARNING):
        run = sync(org, select(catalog, [ACCOUNT]), foreign)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        "state: bookmarks for 2 stream(s) the catalog does not have are not used (and kept in the state): "
        "Account (did you mean 'accounts'?), acounts (did you mean 'accounts'?). A stream without a "
        "bookmark of its own syncs in full (is the state from another tap, written under the other "
        "`naming`, or edited?). A bookmark of a stream no longer wanted (its object deleted in "
        "Salesforce, say) can be dropped: jq 'del(.bookmarks.NAME)'."
    ) in warnings, warnings
    assert (
        "accounts: the state's bookmark has no replication_key_value (it holds SystemModstamp), so the "
        "stream syncs in full: it comes from another tap or was edited."
    ) in warnings, warnings
    assert len(run.records(ACCOUNT)) == len(list(account_ids(org)))  # in full, as the lines say
    final = run.final_state["bookmarks"]
    assert final["acounts"]["replication_key_value"] == stamp and final["Account"] == {
        "SystemModstamp": stamp
    }
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        sync(org, select(catalog, [ACCOUNT]), {"bookmarks": {ACCOUNT: final[ACCOUNT]}})
    assert not [r for r in caplog.records if r.levelno == logging.WARNING], caplog.text


def test_a_catalog_with_no_stream_selected_says_so(
    org: Emulator, catalog: dict, caplog: pytest.LogCaptureFixture
) -> None:
    """A catalog whose streams are all deselected (a Meltano `select` that matches nothing) synced
    nothing without a word."""
    with caplog.at_level(logging.WARNING):
        run = sync(org, select(catalog, []))
    assert run.exit_code == 0 and not [m for m in run.messages if m["type"] == "RECORD"]
    assert any("No stream is selected in the catalog" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        sync(org, select(catalog, [ACCOUNT]))
    assert not any("No stream is selected" in r.getMessage() for r in caplog.records)


def test_start_date_limits_the_first_sync(org: Emulator, catalog: dict) -> None:
    chosen = select(catalog, [ACCOUNT])
    stamps = sorted(r["SystemModstamp"] for r in org.org.records("Account"))
    start = stamps[len(stamps) // 2]
    tick(org)
    run = sync(org, chosen, start_date=start.isoformat())
    expected = {r["Id"] for r in org.org.records("Account") if r["SystemModstamp"] >= start}
    assert {r["id"] for r in run.records(ACCOUNT)} == expected


# --- the org's schema changes -----------------------------------------------------------------------------


def test_a_new_custom_field_is_reported_then_synced_once_selected(
    org: Emulator, catalog: dict, caplog: pytest.LogCaptureFixture
) -> None:
    chosen = select(catalog, [ACCOUNT])
    tick(org)
    first = sync(org, chosen)
    org.org.add_field("Account", "Loyalty__c", "string")
    tick(org, 700)
    with caplog.at_level(logging.INFO):
        second = sync(org, chosen, first.final_state)
    lines = [r.getMessage() for r in caplog.records if "new in Salesforce" in r.getMessage()]
    assert len(lines) == 1 and "Loyalty__c" in lines[0]
    assert "loyalty_c" not in second.schema(ACCOUNT)["schema"]["properties"]

    fresh = select(discover_catalog(tap_settings(org)), [ACCOUNT])
    assert "loyalty_c" in selected_properties(entry(fresh, ACCOUNT))
    changed = next(account_ids(org, deleted=False))
    org.org.update("Account", changed, {"Loyalty__c": "gold"})
    tick(org)
    third = sync(org, fresh, second.final_state)
    assert {r["id"]: r["loyalty_c"] for r in third.records(ACCOUNT) if r["loyalty_c"]} == {changed: "gold"}
    table = upserted([first, second, third], ACCOUNT)
    untouched = next(i for i in table if i != changed)
    assert table[untouched].get("loyalty_c") is None  # synced before the field was selected: NULL


def _seats_values(emu: Emulator, field: str, ids: list[str], values: list[Any]) -> dict[str, Any]:
    for record_id, value in zip(ids, values, strict=True):
        emu.org.update("Account", record_id, {field: value})
    return dict(zip(ids, values, strict=True))


def test_a_column_keeps_its_field_when_a_field_added_later_conforms_alike(
    org: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Discovery gives a contested name to the field spelled like it: `Total_Seats__c`, added beside
    `TotalSeats__c`, would take `total_seats_c`, which `TotalSeats__c` has filled. The state keeps the
    name with its field, so the column never starts holding another field's values."""
    org.org.add_field("Account", "TotalSeats__c", "double", precision=18, scale=0)
    ids = [i for i in account_ids(org, deleted=False)][:4]
    old_values = _seats_values(org, "TotalSeats__c", ids[:2], [10, 20])
    tick(org)
    first_catalog = select(discover_catalog(tap_settings(org)), [ACCOUNT])
    assert selected_properties(entry(first_catalog, ACCOUNT))["total_seats_c"][0] == "TotalSeats__c"
    first = sync(org, first_catalog)
    assert first.final_state["bookmarks"][ACCOUNT]["field_names"] == {"total_seats_c": "TotalSeats__c"}

    org.org.add_field("Account", "Total_Seats__c", "string")
    new_values = _seats_values(org, "Total_Seats__c", ids[1:4], ["a", "b", "c"])
    old_values.update(_seats_values(org, "TotalSeats__c", ids[3:4], [40]))
    tick(org)
    fresh = select(discover_catalog(tap_settings(org)), [ACCOUNT])
    properties = selected_properties(entry(fresh, ACCOUNT))
    assert properties["total_seats_c"][0] == "Total_Seats__c"  # discovery's choice, without the state
    assert properties["totalseats_c"][0] == "TotalSeats__c"
    with caplog.at_level(logging.WARNING):
        second = sync(org, fresh, first.final_state)
    warnings = [r.getMessage() for r in caplog.records if "keeps field" in r.getMessage()]
    assert warnings == [
        "accounts: column 'total_seats_c' keeps field TotalSeats__c, which filled it first; the catalog "
        "gives that name to Total_Seats__c (both conform to it: discovery gives a contested name to the "
        "field spelled like it), which goes to column 'totalseats_c' instead (README: Collisions)."
    ]
    declared = second.schema(ACCOUNT)["schema"]["properties"]
    assert "number" in declared["total_seats_c"]["type"] and "string" in declared["totalseats_c"]["type"]
    table = upserted([first, second], ACCOUNT)
    assert {
        i: r["total_seats_c"] for i, r in table.items() if r.get("total_seats_c") is not None
    } == old_values
    assert {i: r["totalseats_c"] for i, r in table.items() if r.get("totalseats_c") is not None} == new_values
    assert second.final_state["bookmarks"][ACCOUNT]["field_names"] == {
        "total_seats_c": "TotalSeats__c",
        "totalseats_c": "Total_Seats__c",
    }

    # Stable from then on: a third run with the same catalog keeps both names.
    tick(org)
    third = sync(org, fresh, second.final_state)
    assert set(third.schema(ACCOUNT)["schema"]["properties"]) >= {"total_seats_c", "totalseats_c"}
    assert (
        third.final_state["bookmarks"][ACCOUNT]["field_names"]
        == second.final_state["bookmarks"][ACCOUNT]["field_names"]
    )


def test_a_name_goes_to_a_new_field_when_its_old_field_left_the_org(org: Emulator) -> None:
    """A field renamed in Salesforce (or deleted and made again) frees its name: the new field keeps the
    catalog's name for it, with no swap."""
    org.org.add_field("Account", "TotalSeats__c", "double", precision=18, scale=0)
    tick(org)
    first = sync(org, select(discover_catalog(tap_settings(org)), [ACCOUNT]))
    org.org.remove_field("Account", "TotalSeats__c")
    org.org.add_field("Account", "Total_Seats__c", "double", precision=18, scale=0)
    changed = next(account_ids(org, deleted=False))
    org.org.update("Account", changed, {"Total_Seats__c": 7})
    tick(org)
    second = sync(org, select(discover_catalog(tap_settings(org)), [ACCOUNT]), first.final_state)
    assert {r["id"]: r["total_seats_c"] for r in second.records(ACCOUNT) if r["total_seats_c"]} == {
        changed: 7
    }
    assert "field_names" not in second.final_state["bookmarks"][ACCOUNT]  # Total_Seats__c cannot lose it


def test_a_catalog_edited_by_hand_keeps_its_names(org: Emulator) -> None:
    """Names move back only from a field that took another's name; a property renamed in the catalog by
    hand (no field holds the recorded name) is emitted under the catalog's name."""
    org.org.add_field("Account", "TotalSeats__c", "double", precision=18, scale=0)
    tick(org)
    catalog = select(discover_catalog(tap_settings(org)), [ACCOUNT])
    first = sync(org, catalog)
    account = entry(catalog, ACCOUNT)
    account["schema"]["properties"]["seats_total"] = account["schema"]["properties"].pop("total_seats_c")
    for item in account["metadata"]:
        if item["breadcrumb"] == ["properties", "total_seats_c"]:
            item["breadcrumb"] = ["properties", "seats_total"]
    tick(org)
    second = sync(org, catalog, first.final_state)
    assert "seats_total" in second.schema(ACCOUNT)["schema"]["properties"]
    assert "total_seats_c" not in second.schema(ACCOUNT)["schema"]["properties"]
    assert second.final_state["bookmarks"][ACCOUNT]["field_names"] == {"seats_total": "TotalSeats__c"}


def _select_stream(catalog: dict, stream: str) -> dict:
    for item in catalog["streams"]:
        for metadata in item["metadata"]:
            if metadata["breadcrumb"] == []:
                metadata["metadata"]["selected"] = item["stream"] == stream
    return catalog


def test_a_stream_name_won_by_a_custom_object_added_later_stops_the_run(org: Emulator) -> None:
    """`Sales_Invoice__c`, added beside `SalesInvoice__c`, wins the stream name `sales_invoice_c` at the
    next discovery: its run would mix two objects in one table and start from the other's bookmark, so
    the tap stops before any output and says how to choose."""
    org.org.add_object("SalesInvoice__c", {"Total__c": "double"}, count=5)
    tick(org)
    first_catalog = _select_stream(discover_catalog(tap_settings(org)), "sales_invoice_c")
    first = sync(org, first_catalog)
    assert len(first.records("sales_invoice_c")) == 5
    assert first.final_state["bookmarks"]["sales_invoice_c"]["salesforce_object"] == "SalesInvoice__c"

    org.org.add_object("Sales_Invoice__c", {"Total__c": "double"}, count=3)
    tick(org)
    fresh = _select_stream(discover_catalog(tap_settings(org)), "sales_invoice_c")
    assert {e["stream"]: sobject_of(e) for e in fresh["streams"] if "sales" in e["stream"]} == {
        "sales_invoice_c": "Sales_Invoice__c",
        "salesinvoice_c": "SalesInvoice__c",
    }
    run = run_tap(tap_settings(org), fresh, first.final_state)
    assert run.exit_code == 1 and not run.messages
    assert run.stderr == (
        "stream 'sales_invoice_c': its table and bookmark hold the object SalesInvoice__c (the catalog "
        "names it 'salesinvoice_c'), and the catalog now gives the name to Sales_Invoice__c: both conform "
        "to it, and discovery gives a contested name to the object spelled like it. Nothing was synced. To "
        "keep the table with SalesInvoice__c, give the two streams their former names in the catalog "
        "(`tap_stream_id` and `stream`); to give it to Sales_Invoice__c, drop or rename the table and the "
        "bookmark (jq 'del(.bookmarks.sales_invoice_c)') (README: Collisions)."
    )

    # The first cure the message names: the two streams get their former names back.
    for item in fresh["streams"]:
        renamed = {"SalesInvoice__c": "sales_invoice_c", "Sales_Invoice__c": "sales_invoice_2"}
        if sobject_of(item) in renamed:
            item["stream"] = item["tap_stream_id"] = renamed[sobject_of(item)]
    fresh = _select_stream(fresh, "sales_invoice_c")
    changed = first.records("sales_invoice_c")[0]["id"]
    org.org.update("SalesInvoice__c", changed, {"Total__c": 9})
    tick(org)
    cured = sync(org, fresh, first.final_state)
    read = {r["id"]: r["total_c"] for r in cured.records("sales_invoice_c")}
    assert read[changed] == 9 and read.keys() < {r["id"] for r in first.records("sales_invoice_c")}


def test_a_custom_object_renamed_in_salesforce_goes_on_from_its_bookmark(
    org: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    org.org.add_object("SalesInvoice__c", {"Total__c": "double"}, count=5)
    tick(org)
    first = sync(org, _select_stream(discover_catalog(tap_settings(org)), "sales_invoice_c"))
    org.org.remove_object("SalesInvoice__c")
    org.org.add_object("Sales_Invoice__c", {"Total__c": "double"}, count=2)
    tick(org, 700)
    with caplog.at_level(logging.WARNING):
        second = sync(
            org, _select_stream(discover_catalog(tap_settings(org)), "sales_invoice_c"), first.final_state
        )
    assert any("no longer in the org" in r.getMessage() for r in caplog.records)
    assert "salesforce_object" not in second.final_state["bookmarks"]["sales_invoice_c"]


def test_formula_fields_are_named_by_incremental_runs_only(
    org: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Each incremental run names the selected formula fields (at most eight, then a count), whose
    values Salesforce recalculates without moving SystemModstamp; a full re-sync reads them fresh and
    needs no notice, and a stream without formula fields gets none."""
    formulas = [f"Formula_{n}__c" for n in range(10)]
    for name in formulas:
        org.org.add_field("Account", name, "double", precision=18, scale=0, calculated=True)
    chosen = select(discover_catalog(tap_settings(org)), [ACCOUNT, "contacts"])
    tick(org)
    first = sync(org, chosen)
    tick(org)
    with caplog.at_level(logging.INFO):
        sync(org, chosen, first.final_state)
    notices = [r.getMessage() for r in caplog.records if "formula field(s)" in r.getMessage()]
    named = ", ".join(f"formula_{n}_c" for n in range(8))
    assert notices == [
        f"accounts: 10 formula field(s) ({named} and 2 more) are read with their record's other changes "
        "only: Salesforce recalculates a formula (over TODAY() or another record's fields) without moving "
        "SystemModstamp, so a stored value can lag until the record changes; a full re-sync refreshes "
        "them (README: Formula fields)."
    ]
    caplog.clear()
    resync = select(chosen, [ACCOUNT, "contacts"], deselect={ACCOUNT: ["system_modstamp"]})
    with caplog.at_level(logging.INFO):
        sync(org, resync, first.final_state)
    assert not [r for r in caplog.records if "formula field(s)" in r.getMessage()]


def test_a_field_that_changed_type_is_declared_as_its_values_are_read(
    org: Emulator, catalog: dict, caplog: pytest.LogCaptureFixture
) -> None:
    """An admin turns a number field into a text field: with the catalog made before, the tap reads the
    values as text (the live describe's type) and now declares the property so in its SCHEMA, which
    still said number (a target would then refuse "many" as a number, or store it against its type)."""
    chosen = select(catalog, [ACCOUNT])
    assert entry(chosen, ACCOUNT)["schema"]["properties"]["seats_c"]["type"] == ["number", "null"]
    tick(org)
    first = sync(org, chosen)
    org.org.remove_field("Account", "Seats__c")
    org.org.add_field("Account", "Seats__c", "string")
    changed = next(account_ids(org, deleted=False))
    org.org.update("Account", changed, {"Seats__c": "many"})
    tick(org)
    for api_type in ("rest", "bulk"):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            run = sync(org, chosen, first.final_state, api_type=api_type)
        assert run.schema(ACCOUNT)["schema"]["properties"]["seats_c"]["type"] == ["string", "null"]
        assert {r["id"]: r["seats_c"] for r in run.records(ACCOUNT)}[changed] == "many"
        warned = [r.getMessage() for r in caplog.records if "changed type" in r.getMessage()]
        assert len(warned) == 1 and "Seats__c" in warned[0] and "double to string" in warned[0]


def test_a_selected_field_that_vanished_is_dropped_with_a_warning(
    org: Emulator, catalog: dict, caplog: pytest.LogCaptureFixture
) -> None:
    chosen = select(catalog, [ACCOUNT])
    org.org.remove_field("Account", "Tier__c")
    tick(org)
    with caplog.at_level(logging.WARNING):
        run = sync(org, chosen)
    assert any("Tier__c" in r.getMessage() and "dropped" in r.getMessage() for r in caplog.records)
    assert all("tier_c" not in r for r in run.records(ACCOUNT))
    assert len(run.records(ACCOUNT)) == sum(1 for _ in account_ids(org))


def test_a_field_vanishing_mid_sync_is_dropped_and_the_sync_goes_on(
    org: Emulator, catalog: dict, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tap_salesforce_seg.streams import SalesforceStream

    prepare = SalesforceStream.prepare_sync

    def prepare_then_remove_the_field(self: SalesforceStream) -> Any:
        plan = prepare(self)
        org.org.remove_field("Account", "Tier__c")  # after the describe, before the query
        return plan

    monkeypatch.setattr(SalesforceStream, "prepare_sync", prepare_then_remove_the_field)
    chosen = select(catalog, [ACCOUNT])
    tick(org)
    with caplog.at_level(logging.WARNING):
        run = sync(org, chosen, api_type="rest")
    assert any("vanished" in r.getMessage() and "Tier__c" in r.getMessage() for r in caplog.records)
    assert len(run.records(ACCOUNT)) == sum(1 for _ in account_ids(org))
    assert all("tier_c" not in r for r in run.records(ACCOUNT))
    # The SCHEMA was written before the field vanished: the column is there, NULL in every row.
    assert_equals_org(org, chosen, [run], ACCOUNT)


# --- REST and Bulk ------------------------------------------------------------------------------------------


def test_rest_and_bulk_give_identical_records(org: Emulator, catalog: dict) -> None:
    streams = [ACCOUNT, "invoice_c", "opportunities", "contacts"]
    chosen = select(catalog, streams)
    tick(org)
    rest = sync(org, chosen, api_type="rest")
    bulk = sync(org, chosen, api_type="bulk")
    for stream in streams:
        assert rest.records(stream) == bulk.records(stream), stream
        assert_equals_org(org, chosen, [bulk], stream)


def test_auto_picks_bulk_at_the_threshold(org: Emulator, catalog: dict, caplog) -> None:
    chosen = select(catalog, [ACCOUNT, "contacts"])
    accounts = sum(1 for _ in account_ids(org))
    tick(org)
    with caplog.at_level(logging.INFO):
        run = sync(org, chosen, api_type="auto", bulk_min_records=accounts)
    chose_bulk = [r.getMessage() for r in caplog.records if "using Bulk API 2.0" in r.getMessage()]
    assert any(m.startswith(f"{ACCOUNT}:") for m in chose_bulk)
    assert_equals_org(org, chosen, [run], ACCOUNT)
    contacts = len(org.org.records("Contact", include_deleted=True))
    assert org.counters()["bulk_jobs_created"] == 1 + (contacts >= accounts)


def test_auto_picks_bulk_when_counting_times_out(org: Emulator, catalog: dict, caplog) -> None:
    chosen = select(catalog, [ACCOUNT])
    accounts = sum(1 for _ in account_ids(org))
    org.faults.query_timeout(rows=accounts // 2, count=1, path="/queryAll")  # the COUNT() meets it
    tick(org)
    with caplog.at_level(logging.INFO):
        run = sync(org, chosen, api_type="auto", bulk_min_records=10 * accounts)
    assert any("counting the matching records timed out" in r.getMessage() for r in caplog.records)
    assert org.counters()["bulk_jobs_created"] == 1
    assert_equals_org(org, chosen, [run], ACCOUNT)


def test_objects_bulk_cannot_serve_fall_back_to_rest(
    emulator_factory: Callable[..., Emulator], caplog: pytest.LogCaptureFixture
) -> None:
    emu = emulator_factory(scale=0.02, tags=True)
    catalog = discover_catalog(tap_settings(emu))
    tag_stream = next(e["tap_stream_id"] for e in catalog["streams"] if e["tap_stream_id"].endswith("_tags"))
    chosen = select(catalog, [tag_stream])
    tick(emu)
    with caplog.at_level(logging.INFO):
        run = sync(emu, chosen, api_type="bulk")
    assert any("using the REST API" in r.getMessage() for r in caplog.records)
    assert_equals_org(emu, chosen, [run], tag_stream)


# --- wide objects -----------------------------------------------------------------------------------------


def test_a_1000_field_object_is_split_into_chunks_and_joined(
    emulator_factory: Callable[..., Emulator],
) -> None:
    emu = emulator_factory(scale=0.01, tags=False, wide_object="Invoice__c", wide_fields=1000)
    catalog = discover_catalog(tap_settings(emu))
    chosen = select(catalog, ["invoice_c"])
    assert len(selected_properties(entry(chosen, "invoice_c"))) > 1000
    tick(emu)
    rest = sync(emu, chosen, api_type="rest")
    queries = [r for r in emu.requests() if "/queryAll" in r["target"] and "Invoice__c" in r["target"]]
    assert len(queries) >= 2, "the field list was split into several queries"
    assert all(len(r["target"]) <= 16_384 for r in queries)
    assert_equals_org(emu, chosen, [rest], "invoice_c")
    bulk = sync(emu, chosen, api_type="bulk")
    assert bulk.records("invoice_c") == rest.records("invoice_c")


# --- QUERY_TIMEOUT ---------------------------------------------------------------------------------------


def test_query_timeout_halves_the_window_until_queries_pass(
    org: Emulator, catalog: dict, caplog: pytest.LogCaptureFixture
) -> None:
    chosen = select(catalog, [ACCOUNT])
    total = sum(1 for _ in account_ids(org))
    org.faults.query_timeout(rows=total // 4, count=None, path="Account")
    tick(org)
    with caplog.at_level(logging.WARNING):
        run = sync(org, chosen, api_type="rest")
    assert any("QUERY_TIMEOUT" in r.getMessage() for r in caplog.records)
    assert_equals_org(org, chosen, [run], ACCOUNT)


def test_query_timeout_tries_the_one_second_floor_before_giving_up(
    org: Emulator, catalog: dict, caplog: pytest.LogCaptureFixture
) -> None:
    """A dense second: 30 records at S and 20 at S+1.386 s, and queries of more than 40 rows time out.
    The window from S halves 12 s -> 6 -> 3 -> 1.5 s (50 rows); its half (0.75 s) is under the 1 s floor,
    but the first second alone (30 rows) passes: the run must read it, not give up (as it did: seed 1633)."""
    chosen = select(catalog, [ACCOUNT])
    tick(org)
    first = sync(org, chosen)
    start = parse_datetime(first.final_state["bookmarks"][ACCOUNT]["replication_key_value"])
    start = start.replace(microsecond=0) + timedelta(seconds=700)
    alive = list(account_ids(org, deleted=False))
    dense, later = alive[:30], alive[30:50]
    org.org.clock.set(start, frozen=True)
    for record_id in dense:
        org.org.update("Account", record_id, {"Description": "the dense second"})
    org.org.clock.set(start + timedelta(milliseconds=1386), frozen=True)
    for record_id in later:
        org.org.update("Account", record_id, {"Description": "just after it"})
    org.org.clock.set(start + timedelta(seconds=12), frozen=True)
    state = {
        "bookmarks": {
            ACCOUNT: {"replication_key": "system_modstamp", "replication_key_value": format_datetime(start)}
        }
    }
    org.faults.query_timeout(rows=40, count=None, path="Account")
    with caplog.at_level(logging.WARNING):
        run = sync(org, chosen, state, api_type="rest", lookback_seconds=0)
    retries = [r.getMessage() for r in caplog.records if "QUERY_TIMEOUT" in r.getMessage()]
    assert retries and retries[-1].endswith("retrying with a window of 0:00:01."), retries
    assert set(dense + later) <= {r["id"] for r in run.records(ACCOUNT)}
    assert_equals_org(org, chosen, [first, run], ACCOUNT)


def test_query_timeout_below_the_floor_fails_clearly(org: Emulator, catalog: dict) -> None:
    org.faults.query_timeout(rows=0, count=None, path="Account")
    tick(org)
    run = run_tap(tap_settings(org, api_type="rest"), select(catalog, [ACCOUNT]))
    assert run.exit_code == 1
    assert "QUERY_TIMEOUT" in run.stderr and "window under 1 s" in run.stderr


# --- QUERY_TOO_COMPLICATED ---------------------------------------------------------------------------------


@pytest.mark.parametrize("api_type", ["rest", "bulk"])
def test_a_query_too_complicated_is_split_into_field_chunks_joined_by_id(
    org: Emulator, catalog: dict, caplog: pytest.LogCaptureFixture, api_type: str
) -> None:
    """Salesforce refuses a wide query on an object with many formula fields (QUERY_TOO_COMPLICATED):
    the run ended there. Now the fields are read in narrower queries joined by Id."""
    chosen = select(catalog, [ACCOUNT])
    assert len(selected_properties(entry(chosen, ACCOUNT))) > 100
    org.faults.query_too_complicated(fields=40, count=None, path="Account")
    tick(org)
    with caplog.at_level(logging.WARNING):
        run = sync(org, chosen, api_type=api_type)
    warned = [r.getMessage() for r in caplog.records if "reading its fields in" in r.getMessage()]
    assert len(warned) == 2 and "in 4 queries joined by Id" in warned[-1], warned  # 127 -> 63 -> 32 fields
    assert "QUERY_TOO_COMPLICATED" in warned[0] and "from the window's start" in warned[0]
    assert_equals_org(org, chosen, [run], ACCOUNT)
    queries = [r for r in org.requests() if "/queryAll" in r["target"] and "Account" in r["target"]]
    assert sum(r["status"] == 200 for r in queries) >= 4


def test_a_query_too_complicated_even_in_the_narrowest_split_fails_clearly(
    org: Emulator, catalog: dict
) -> None:
    org.faults.query_too_complicated(fields=2, count=None, path="Account")
    tick(org)
    run = run_tap(tap_settings(org, api_type="rest"), select(catalog, [ACCOUNT]))
    assert run.exit_code == 1
    assert "QUERY_TOO_COMPLICATED" in run.stderr and "split into 8 queries joined by Id" in run.stderr
    assert "Traceback" not in run.stderr


# --- more switches and shapes ------------------------------------------------------------------------------


def test_changes_made_during_a_sync_come_next_time(org: Emulator, catalog: dict) -> None:
    chosen = select(catalog, [ACCOUNT])
    tick(org)
    first = sync(org, chosen)
    tick(org, 700)
    changed = next(account_ids(org, deleted=False))
    org.faults.slow(1.0, count=1, path="/queryAll")  # the query starts a second after the sync

    def change_once_the_sync_has_started() -> None:
        # Once the query is sent: the run's window (ending at its start by Salesforce's clock) is fixed
        # by then, and the answer waits a second. After the describe, as before, a loaded machine could
        # take longer than the pause to fix the window, and the change fell inside it.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if any("/queryAll" in r["target"] for r in org.requests()):
                time.sleep(0.2)
                org.org.update("Account", changed, {"Name": "changed during the sync"})
                return
            time.sleep(0.005)

    changer = threading.Thread(target=change_once_the_sync_has_started)
    changer.start()
    second = sync(org, chosen, first.final_state)
    changer.join()
    stamp = format_datetime(org.org.get("Account", changed)["SystemModstamp"])
    assert changed not in {r["id"] for r in second.records(ACCOUNT)}
    bookmark = second.final_state["bookmarks"][ACCOUNT]["replication_key_value"]
    assert bookmark < stamp, "a bookmark never passes the sync's start"
    tick(org)
    third = sync(org, chosen, second.final_state)
    assert changed in {r["id"] for r in third.records(ACCOUNT)}
    assert_equals_org(org, chosen, [first, second, third], ACCOUNT)


def test_base64_fields_are_read_through_rest_even_with_bulk(
    org: Emulator, catalog: dict, caplog: pytest.LogCaptureFixture
) -> None:
    chosen = select(catalog, ["documents"], select={"documents": ["body"]})
    tick(org)
    with caplog.at_level(logging.INFO):
        run = sync(org, chosen, api_type="bulk")
    assert any("using the REST API" in r.getMessage() and "Body" in r.getMessage() for r in caplog.records)
    records = run.records("documents")
    assert len(records) == len(org.org.records("Document", include_deleted=True))
    # REST returns a URL to the content, as Salesforce does
    assert all(r["body"] is None or r["body"].endswith(f"/Document/{r['id']}/Body") for r in records)
    assert any(r["body"] for r in records)


def test_stream_maps_still_apply(org: Emulator, catalog: dict) -> None:
    chosen = select(catalog, [ACCOUNT])
    tick(org)
    maps = {ACCOUNT: {"name_upper": "name.upper() if name else None"}}
    run = sync(org, chosen, stream_maps=maps)
    records = run.records(ACCOUNT)
    assert records and all(r["name_upper"] == (r["name"].upper() if r["name"] else None) for r in records)


def test_an_object_without_a_time_field_syncs_in_full(
    emulator_factory: Callable[..., Emulator], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = Path(__file__).parent.parent / "emulator" / "data" / "Widget__c.json"
    describe = json.loads(source.read_text())
    # No time field to bookmark on (and no Metadata__c, a type the emulator describes but cannot query).
    dropped = ("SystemModstamp", "LastModifiedDate", "CreatedDate", "Metadata__c")
    describe["fields"] = [f for f in describe["fields"] if f["name"] not in dropped]
    (tmp_path / "Widget__c.json").write_text(json.dumps(describe))
    emu = emulator_factory(scale=0.02, tags=False, describe_dir=tmp_path)
    catalog = discover_catalog(tap_settings(emu))
    widget = entry(catalog, "widget_c")
    assert widget.get("replication_key") is None
    chosen = select(catalog, ["widget_c"])
    tick(emu)
    first = sync(emu, chosen)
    assert_equals_org(emu, chosen, [first], "widget_c")
    assert "replication_key_value" not in first.final_state["bookmarks"].get("widget_c", {})
    second = sync(emu, chosen, first.final_state)
    assert len(second.records("widget_c")) == len(first.records("widget_c")) > 0  # in full again
    assert not [m for m in second.messages if m["type"] == "ACTIVATE_VERSION"]  # unless asked for:
    with caplog.at_level(logging.WARNING):
        third = sync(emu, chosen, first.final_state, emit_activate_version_messages=True)
    versions = [m for m in third.messages if m["type"] == "ACTIVATE_VERSION"]
    assert versions and {m["stream"] for m in versions} == {"widget_c"}  # singer-sdk's, for full syncs
    # singer-sdk reads the setting without declaring it for taps: it was called unknown while it worked.
    assert "Unknown setting" not in caplog.text


def test_a_state_from_another_org_stops_the_run_before_any_output(
    org: Emulator, catalog: dict, emulator_factory: Callable[..., Emulator]
) -> None:
    """A state copied with a sync's folder to a second org (or kept across a sandbox refresh, which gives
    the sandbox a new org id): its bookmarks would skip the other org's older records."""
    accounts = select(catalog, [ACCOUNT])
    first = sync(org, accounts)
    state = first.final_state
    assert state is not None and state["salesforce_org"] == "00DEm0000000001"
    other = emulator_factory(scale=0.02, tags=False, organization_id="00DEm0000000002")
    run = run_tap(tap_settings(other), accounts, state)
    assert run.exit_code == 1
    assert run.stderr.startswith(
        "state: its bookmarks were read from the Salesforce org 00DEm0000000001, and this login is to the "
        "org 00DEm0000000002: another org's bookmarks would skip this org's records older than them."
    )
    assert run.messages == []
    again = sync(other, accounts)  # without the state: a full sync of the other org, which its state keeps
    assert again.final_state is not None and again.final_state["salesforce_org"] == "00DEm0000000002"
    assert len(again.records(ACCOUNT)) == len(list(other.org.records("Account")))


def test_a_state_written_before_states_named_their_org_is_taken_as_this_orgs(
    org: Emulator, catalog: dict
) -> None:
    accounts = select(catalog, [ACCOUNT])
    state = sync(org, accounts).final_state
    assert state is not None
    del state["salesforce_org"]
    run = sync(org, accounts, state)
    assert run.final_state is not None and run.final_state["salesforce_org"] == "00DEm0000000001"
