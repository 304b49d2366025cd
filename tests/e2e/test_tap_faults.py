"""Every fault the tap must survive during a sync, against the emulator: the records still equal the org.

Runs in-process with the client's backoff shortened (the waits are the client's business, tested in
tests/tap/test_client.py); the quota stop through the real CLI is in test_tap_cli.py.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from tap_harness import discover_catalog, entry, expected_records, run_tap, select, tap_settings, upserted

from salesforce_emulator import BulkTiming, Emulator
from tap_salesforce_seg.client import SalesforceClient
from tap_salesforce_seg.extract import bulk

ACCOUNT = "accounts"


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SalesforceClient, "backoff_base_seconds", 0.01)
    monkeypatch.setattr(SalesforceClient, "backoff_max_seconds", 0.05)


@pytest.fixture
def org(emulator_factory: Callable[..., Emulator]) -> Emulator:
    emu = emulator_factory(scale=0.001, counts={"Account": 4500}, tags=False)
    emu.org.clock.advance(2)
    return emu


@pytest.fixture
def catalog(org: Emulator) -> dict[str, Any]:
    return select(discover_catalog(tap_settings(org)), [ACCOUNT])


def assert_complete(emu: Emulator, catalog: dict, runs: list) -> None:
    expected = expected_records(emu, entry(catalog, ACCOUNT))
    assert upserted(runs, ACCOUNT) == expected


@pytest.mark.parametrize("status", [500, 503])
@pytest.mark.parametrize("api_type", ["rest", "bulk"])
def test_server_errors_are_retried(org: Emulator, catalog: dict, status: int, api_type: str) -> None:
    if api_type == "rest":
        org.faults.http_error(status=status, count=2, path="/query")  # queryAll and a next page
    else:
        org.faults.http_error(status=status, count=2, path="/jobs/query")  # job calls and results
    run = run_tap(tap_settings(org, api_type=api_type), catalog)
    assert run.exit_code == 0, run.stderr
    assert org.faults.active() == [], "every scripted fault fired"
    assert_complete(org, catalog, [run])


@pytest.mark.parametrize("api_type", ["rest", "bulk"])
def test_a_connection_dropped_mid_body_is_retried(
    org: Emulator, catalog: dict, api_type: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk, "PAGE_BYTES_TARGET", 1)  # Bulk results in pages of 1,000: several locators
    path = "/query/" if api_type == "rest" else "/results"  # a next page / a result page
    org.faults.drop_connection(count=2, path=path)
    run = run_tap(tap_settings(org, api_type=api_type), catalog)
    assert run.exit_code == 0, run.stderr
    assert org.faults.active() == [], "every scripted fault fired"
    assert_complete(org, catalog, [run])
    pages = [r for r in org.requests() if path in r["target"] and r["status"] == 200]
    assert len(pages) >= (2 if api_type == "rest" else 5)


@pytest.mark.parametrize("api_type", ["rest", "bulk"])
def test_session_expiry_logs_in_again(org: Emulator, catalog: dict, api_type: str) -> None:
    org.faults.expire_sessions_after(calls=3)
    run = run_tap(tap_settings(org, api_type=api_type), catalog)
    assert run.exit_code == 0, run.stderr
    assert org.faults.active() == [], "every scripted fault fired"
    assert_complete(org, catalog, [run])


def test_a_closed_query_cursor_restarts_the_query_from_the_last_record_read(
    org: Emulator, catalog: dict, caplog: pytest.LogCaptureFixture
) -> None:
    """Salesforce answers INVALID_QUERY_LOCATOR for a cursor it no longer holds (its results expired or
    were dropped), here on the next page. The run ended there; it now reads again from the last record
    it wrote, and misses nothing."""
    org.faults.close_cursors(count=2, path="/query/")  # the two next pages of 4,500 Accounts
    with caplog.at_level(logging.WARNING):
        run = run_tap(tap_settings(org, api_type="rest"), catalog)
    assert run.exit_code == 0, run.stderr
    assert org.faults.active() == [], "every scripted fault fired"
    warnings = [r.getMessage() for r in caplog.records if "INVALID_QUERY_LOCATOR" in r.getMessage()]
    assert len(warnings) == 2 and all("reading again from" in w for w in warnings), warnings
    assert_complete(org, catalog, [run])
    assert len(run.records(ACCOUNT)) > 4500, "the restarted queries read the last page's stamp again"


def test_cursors_closed_again_and_again_at_one_point_end_the_run_with_what_to_check(
    org: Emulator, catalog: dict
) -> None:
    """Thousands of records sharing one SystemModstamp (a mass update) are read again from their first
    after each closed cursor: when that never gets past them, the run stops instead of looping."""
    org.org.clock.freeze()
    for record in org.org.records("Account", include_deleted=False):
        org.org.update("Account", record["Id"], {"Description": "mass update"})
    org.org.clock.unfreeze()
    org.org.clock.advance(2)
    org.faults.close_cursors(count=None, path="/query/")
    run = run_tap(tap_settings(org, api_type="rest"), catalog, subprocess=True)
    assert run.exit_code == 1
    last_line = run.stderr.strip().splitlines()[-1]
    assert "INVALID_QUERY_LOCATOR" in last_line and "4 times in a row" in last_line, last_line
    assert "api_type bulk" in last_line
    assert "Traceback" not in run.stderr
    # A stop of the tap's own is no "unhandled error": the stream that stopped is named, at INFO.
    assert "unhandled error" not in run.stderr
    assert re.search(r"INFO .*accounts: the sync stops here \(the error follows\)", run.stderr)


def test_a_failing_bulk_job_falls_back_to_rest(
    org: Emulator, catalog: dict, caplog: pytest.LogCaptureFixture
) -> None:
    org.faults.fail_bulk_jobs(count=1)
    with caplog.at_level(logging.WARNING):
        run = run_tap(tap_settings(org, api_type="bulk"), catalog)
    assert run.exit_code == 0, run.stderr
    assert any("ended Failed" in r.getMessage() and "REST" in r.getMessage() for r in caplog.records)
    assert_complete(org, catalog, [run])


def test_a_bulk_job_stuck_in_the_queue_is_aborted_after_the_timeout_and_read_through_rest(
    emulator_factory: Callable[..., Emulator], caplog: pytest.LogCaptureFixture
) -> None:
    """A job that Salesforce leaves queued (UploadComplete) far longer than it should: the tap stops
    waiting at `bulk_job_timeout_seconds`, aborts and deletes the job, and reads the window via REST."""
    emu = emulator_factory(
        scale=0.001, counts={"Account": 300}, tags=False, bulk_timing=BulkTiming(queued_seconds=3600)
    )
    emu.org.clock.advance(2)
    settings = tap_settings(emu, api_type="bulk", bulk_job_timeout_seconds=2)
    chosen = select(discover_catalog(settings), [ACCOUNT])
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        run = run_tap(settings, chosen)
    assert run.exit_code == 0, run.stderr
    assert time.monotonic() - started < 30
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "still UploadComplete after 2 s (bulk_job_timeout_seconds 2)" in w and "through the REST API" in w
        for w in warnings
    ), warnings
    assert_complete(emu, chosen, [run])
    calls = [(request["method"], request["target"]) for request in emu.requests()]
    assert [method for method, target in calls if "/jobs/query/" in target and "/results" not in target][
        -2:
    ] == ["PATCH", "DELETE"], calls
    assert not any("/results" in target for _, target in calls)
    assert emu.app.bulk.list()["records"] == [], "the aborted job was deleted"


def exhaust_quota_once(emu: Emulator, after_target: str) -> threading.Thread:
    """Another integration uses up the org's allowance as soon as a request for `after_target` is served."""

    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(after_target in request["target"] for request in emu.requests()):
                emu.api_usage = emu.api_limit
                return
            time.sleep(0.002)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(("api_type", "marker"), [("rest", "/queryAll"), ("bulk", "/jobs/query")])
def test_quota_exhausted_mid_sync_stops_with_the_state_of_what_was_synced(
    org: Emulator, catalog: dict, api_type: str, marker: str
) -> None:
    # The next call after `marker` waits a little, and meanwhile the allowance is used up: 403.
    org.faults.slow(0.3, count=None, path="/query/" if api_type == "rest" else "/jobs/query")
    watcher = exhaust_quota_once(org, marker)
    settings = tap_settings(org, api_type=api_type, state_every_records=1000, quota_percent=100)
    first = run_tap(settings, catalog)
    watcher.join()
    org.faults.reset()
    assert first.exit_code == 2, first.stderr
    assert "REQUEST_LIMIT_EXCEEDED" in first.stderr and "retry" in first.stderr
    assert first.final_state is not None
    if api_type == "rest":
        assert 0 < len(first.records(ACCOUNT)) < 4500
        bookmark = first.final_state["bookmarks"][ACCOUNT]["replication_key_value"]
        assert bookmark == max(r["system_modstamp"] for r in first.records(ACCOUNT))
        # The window was not read to its end: no claim that it was.
        assert "read_until" not in first.final_state["bookmarks"][ACCOUNT]
    org.api_usage = 0  # a new day
    second = run_tap(tap_settings(org, api_type=api_type), catalog, first.final_state)
    assert second.exit_code == 0, second.stderr
    assert "read_until" in second.final_state["bookmarks"][ACCOUNT]
    assert_complete(org, catalog, [first, second])
    if api_type == "rest":
        assert len(second.records(ACCOUNT)) < 4500, "resumed from the bookmark, not from scratch"


def test_the_quota_percent_guard_stops_before_the_limit(org: Emulator, catalog: dict) -> None:
    org.api_usage = int(org.api_limit * 0.5) - 4
    run = run_tap(tap_settings(org, api_type="rest", quota_percent=50), catalog)
    assert run.exit_code == 2
    assert "quota_percent" in run.stderr
    assert org.api_usage <= org.api_limit * 0.5
