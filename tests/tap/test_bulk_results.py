"""Reading Bulk result pages over real HTTP: the client reads each page whole inside its retry loop, so
a page cut short is fetched again (same locator) with the client's backoff and log lines, and cuts that
persist end in the client's exhausted-retries error (REST pages: test_client.py)."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

import pytest
from tap_harness import discover_catalog, entry, expected_records, run_tap, select, tap_settings, upserted

from tap_salesforce_seg import client as client_module
from tap_salesforce_seg.client import SalesforceClient


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SalesforceClient, "backoff_base_seconds", 0.01)
    monkeypatch.setattr(SalesforceClient, "backoff_max_seconds", 0.05)


def result_pages(org: Any) -> list[dict[str, Any]]:
    return [r for r in org.requests() if "/results" in r["target"]]


def test_a_page_cut_short_is_fetched_again(emulator_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    org = emulator_factory(scale=0.02, tags=False)
    catalog = select(discover_catalog(tap_settings(org)), ["accounts"])
    org.faults.drop_connection(count=1, path="/results", after_bytes=100)
    with caplog.at_level(logging.WARNING):
        run = run_tap(tap_settings(org, api_type="bulk"), catalog)
    assert run.exit_code == 0, run.stderr
    assert org.faults.active() == [], "the cut fired"
    assert upserted([run], "accounts") == expected_records(org, entry(catalog, "accounts"))
    assert len(run.records("accounts")) == len(expected_records(org, entry(catalog, "accounts")))
    pages = result_pages(org)
    assert len(pages) == 2 and pages[0]["target"] == pages[1]["target"], "the same page, asked for again"
    retries = [r.getMessage() for r in caplog.records if "body cut short" in r.getMessage()]
    assert len(retries) == 1 and "/results: body cut short" in retries[0] and "retry 1 of 8" in retries[0]


def test_pages_cut_short_every_time_stop_with_the_clients_error(
    emulator_factory: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    org = emulator_factory(scale=0.02, tags=False)
    catalog = select(discover_catalog(tap_settings(org)), ["accounts"])
    monkeypatch.setattr(SalesforceClient, "max_attempts", 3)
    org.faults.drop_connection(count=None, path="/results", after_bytes=100)
    with caplog.at_level(logging.WARNING):
        run = run_tap(tap_settings(org, api_type="bulk"), catalog)
    assert run.exit_code != 0
    assert "Salesforce kept failing for GET /services/data/v58.0/jobs/query/" in run.stderr
    assert "/results: 3 attempts over" in run.stderr and "last: body cut short" in run.stderr
    assert "\n" not in run.stderr.strip(), "one line"
    credentials = org.credentials
    for secret in (credentials.client_secret, credentials.refresh_token):
        assert secret not in run.stderr
    retries = [r.getMessage() for r in caplog.records if "body cut short" in r.getMessage()]
    assert [f"retry {n} of 2" in message for n, message in enumerate(retries, 1)] == [True, True]
    assert len(result_pages(org)) == 3
    assert run.records("accounts") == []


@pytest.mark.parametrize("size", [1, 1 << 20])
def test_pages_read_in_any_chunk_size_are_whole(
    emulator_factory: Any, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    org = emulator_factory(scale=0.02, tags=False)
    catalog = select(discover_catalog(tap_settings(org)), ["accounts"])
    monkeypatch.setattr(client_module, "READ_CHUNK_BYTES", size)
    run = run_tap(tap_settings(org, api_type="bulk"), catalog)
    assert run.exit_code == 0, run.stderr
    assert upserted([run], "accounts") == expected_records(org, entry(catalog, "accounts"))


def test_a_job_that_matched_nothing_costs_no_results_call(emulator_factory: Any) -> None:
    """An incremental Bulk run of an object with no change: the job reports 0 records processed, so the
    tap reads no results page (one API call less per such object and run). The end-to-end fuzz's seed 88
    came here: the emulator then answered a results request for 0 rows with a 500 (fixed; see
    tests/emulator/test_http_bulk.py)."""
    org = emulator_factory(scale=0.02, tags=False)
    newest = max(r["SystemModstamp"] for r in org.org.records("Account", include_deleted=True))
    org.org.clock.advance(5)
    settings = tap_settings(org, api_type="bulk", start_date=(newest + timedelta(seconds=1)).isoformat())
    run = run_tap(settings, select(discover_catalog(settings), ["accounts"]))
    assert run.exit_code == 0, run.stderr
    assert run.records("accounts") == []
    jobs = [r for r in org.requests() if r["target"].startswith("/services/data/v58.0/jobs/query")]
    assert jobs, "a Bulk job ran"
    assert result_pages(org) == []


def test_results_that_end_short_are_read_on_through_rest(
    emulator_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Salesforce answers a results page it failed to read with 204 No Content and no Sforce-Locator;
    taken for the end, the run wrote the window as read with its rows missing."""
    org = emulator_factory(scale=0.02, tags=False)
    catalog = select(discover_catalog(tap_settings(org)), ["accounts"])
    expected = expected_records(org, entry(catalog, "accounts"))
    org.faults.end_bulk_results(count=1)
    with caplog.at_level(logging.WARNING):
        run = run_tap(tap_settings(org, api_type="bulk"), catalog)
    assert run.exit_code == 0, run.stderr
    assert org.faults.active() == [], "the short answer was given"
    assert upserted([run], "accounts") == expected
    warnings = [r.getMessage() for r in caplog.records if "ended after 0 of" in r.getMessage()]
    assert warnings and warnings[0].endswith(
        f"ended after 0 of {len(expected):,} records; reading the rest through the REST API."
    ), warnings


def test_bulk_jobs_read_in_no_order_and_bookmark_once_read_whole(
    emulator_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Salesforce splits a Bulk API 2.0 query into Id chunks (PK chunking) only when it has no ORDER BY,
    and without chunks a big object's job can time out. The rows then come in no order of their stamps:
    a job stopped part-way must leave the bookmark where it was, and one read whole moves it to its
    highest stamp."""
    from tap_salesforce_seg.extract import bulk as bulk_module

    monkeypatch.setattr(bulk_module, "MIN_PAGE_RECORDS", 25)
    monkeypatch.setattr(bulk_module, "MAX_PAGE_RECORDS", 25)
    org = emulator_factory(scale=0.02, tags=False)
    catalog = select(discover_catalog(tap_settings(org)), ["accounts"])
    queries: list[str] = []
    create = org.bulk.create

    def recorded(body: dict[str, Any], version: str) -> Any:
        queries.append(body["query"])
        return create(body, version)

    org.bulk.create = recorded  # type: ignore[method-assign]
    first_stored = next(iter(expected_records(org, entry(catalog, "accounts"))))
    org.org.clock.advance(2)
    org.org.update("Account", first_stored, {"Name": "Changed last"})  # stored first, now stamped last
    org.org.clock.advance(2)

    org.faults.http_error(status=500, count=None, path="locator=")  # the second results page on
    stopped = run_tap(tap_settings(org, api_type="bulk"), catalog)
    assert stopped.exit_code != 0
    assert queries and all("ORDER BY" not in query for query in queries), queries
    assert len(stopped.records("accounts")) == 25
    bookmark = (stopped.final_state or {}).get("bookmarks", {}).get("accounts", {})
    assert "replication_key_value" not in bookmark, bookmark

    org.faults.reset()
    run = run_tap(tap_settings(org, api_type="bulk"), catalog, stopped.final_state)
    assert run.exit_code == 0, run.stderr
    stamps = [record["system_modstamp"] for record in run.records("accounts")]
    assert stamps != sorted(stamps), "read in the order stored, not by stamp"
    assert upserted([stopped, run], "accounts") == expected_records(org, entry(catalog, "accounts"))
    assert run.final_state["bookmarks"]["accounts"]["replication_key_value"] == max(stamps)


def test_a_job_whose_abort_is_refused_is_still_deleted(emulator_factory: Any) -> None:
    """A stop while polling a job that had just finished: Salesforce refused the abort (the job was
    complete), and the delete, tried in the same step, never ran: the job stayed in the org."""
    from tap_salesforce_seg.config import TapConfig
    from tap_salesforce_seg.extract import QueryPlan
    from tap_salesforce_seg.extract.bulk import BulkExtractor
    from tap_salesforce_seg.soql import QueryField

    org = emulator_factory(scale=0.02, tags=False)
    client = SalesforceClient(TapConfig.from_mapping(tap_settings(org)), logging.getLogger("test"))
    extractor = BulkExtractor(client)
    plan = QueryPlan("Account", (QueryField("Id", "id", "id"),), None, None, None)
    job_id = extractor._create(plan, "SELECT Id FROM Account")
    deadline = time.monotonic() + 30
    while client.get_json(f"/jobs/query/{job_id}")["state"] != "JobComplete":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    extractor._delete_quietly(job_id, "InProgress")  # as last polled, before the job finished
    assert [job["id"] for job in client.get_json("/jobs/query")["records"]] == []
