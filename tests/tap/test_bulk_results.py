"""Reading Bulk result pages (extract/bulk.py `_page`): a body cut short is asked for again, a few
times, then the sync stops with a clear error (dropped connections once or twice: test_tap_faults)."""

from __future__ import annotations

from typing import Any

import pytest
from tap_harness import discover_catalog, run_tap, select, tap_settings

from tap_salesforce_seg.extract.bulk import BulkExtractor


def test_bodies_cut_short_every_time_stop_the_sync(emulator_factory: Any, monkeypatch, caplog) -> None:
    org = emulator_factory(scale=0.02, tags=False)
    catalog = select(discover_catalog(tap_settings(org)), ["accounts"])
    monkeypatch.setattr(BulkExtractor, "body_attempts", 3)
    monkeypatch.setattr(BulkExtractor, "body_retry_first_seconds", 0.0)
    org.faults.drop_connection(count=None, path="/results", after_bytes=100)
    run = run_tap(tap_settings(org, api_type="bulk"), catalog)
    assert run.exit_code != 0
    assert "kept cutting Bulk result pages short: 3 attempts" in run.stderr
    retries = [r.getMessage() for r in caplog.records if "Bulk result page cut short" in r.getMessage()]
    assert [message.endswith(f"asking for it again ({n} of 2).") for n, message in enumerate(retries, 1)] == [
        True,
        True,
    ]
    pages = [r for r in org.requests() if "/results" in r["target"]]
    assert len(pages) == 3


@pytest.mark.parametrize("size", [1, 1 << 20])
def test_pages_read_in_any_chunk_size_are_whole(emulator_factory: Any, monkeypatch, size: int) -> None:
    from tap_salesforce_seg.extract import bulk

    org = emulator_factory(scale=0.02, tags=False)
    catalog = select(discover_catalog(tap_settings(org)), ["accounts"])
    monkeypatch.setattr(bulk, "READ_CHUNK_BYTES", size)
    run = run_tap(tap_settings(org, api_type="bulk"), catalog)
    assert run.exit_code == 0, run.stderr
    assert len(run.records("accounts")) == sum(1 for _ in org.org.records("Account", include_deleted=True))
