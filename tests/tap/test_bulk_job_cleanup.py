"""Every Bulk API 2.0 job a run creates is aborted (when unfinished) and deleted, however the run ends:
a job left behind runs on in the org, counting against its Bulk limits (DailyBulkV2QueryJobs) and
storage. Over real HTTP against the emulator; the CLI's signal stop runs the tap as a process."""

from __future__ import annotations

import logging
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from tap_harness import (
    discover_catalog,
    entry,
    expected_records,
    run_tap,
    select,
    start_tap,
    tap_settings,
    upserted,
)

from salesforce_emulator import BulkTiming, Emulator
from tap_salesforce_seg.client import SalesforceClient

ACCOUNT = "accounts"
JOBS = "/services/data/v58.0/jobs/query"


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SalesforceClient, "backoff_base_seconds", 0.01)
    monkeypatch.setattr(SalesforceClient, "backoff_max_seconds", 0.05)


def queued_org(factory: Callable[..., Emulator], queued_seconds: float = 3600) -> Emulator:
    """An org whose Bulk jobs stay queued (UploadComplete) for `queued_seconds`."""
    emu = factory(scale=0.001, counts={"Account": 300}, tags=False, bulk_timing=BulkTiming(queued_seconds))
    emu.org.clock.advance(2)
    return emu


def creates(emu: Emulator) -> list[dict[str, Any]]:
    return [r for r in emu.requests() if r["method"] == "POST" and r["target"] == JOBS]


def job_calls(emu: Emulator) -> list[dict[str, Any]]:
    return [r for r in emu.requests() if r["target"].startswith(JOBS + "/")]


def use_up_after_create(emu: Emulator) -> None:
    """Another integration brings the org's use to 50% while the (slowed) create is answered."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not creates(emu):
        time.sleep(0.002)
    emu.api_usage = emu.api_limit // 2


def test_a_quota_stop_right_after_the_create_still_aborts_and_deletes_the_job(
    emulator_factory: Callable[..., Emulator],
) -> None:
    """The answer to the create reports the org's usage at quota_percent: the guard refused the first
    poll, and then the abort and the delete too, so the job ran on in the org."""
    emu = queued_org(emulator_factory)
    settings = tap_settings(emu, api_type="bulk", quota_percent=50)
    catalog = select(discover_catalog(settings), [ACCOUNT])
    emu.faults.slow(0.3, count=1, path=JOBS)  # the create waits; meanwhile usage reaches 50%
    watcher = threading.Thread(target=use_up_after_create, args=(emu,), daemon=True)
    watcher.start()
    run = run_tap(settings, catalog)
    watcher.join()
    assert run.exit_code == 2, run.stderr
    assert "quota_percent" in run.stderr, run.stderr
    assert emu.app.bulk.jobs_created == 1
    assert emu.app.bulk.list()["records"] == [], "the job was aborted and deleted"


def test_a_cleanup_that_fails_does_not_hide_why_the_run_stopped(
    emulator_factory: Callable[..., Emulator],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The quota stop, and then Salesforce fails the abort and the delete: the run still ends with the
    quota's message and status; the job left behind is named in a warning."""
    emu = queued_org(emulator_factory)
    monkeypatch.setattr(SalesforceClient, "max_attempts", 2)
    settings = tap_settings(emu, api_type="bulk", quota_percent=50)
    catalog = select(discover_catalog(settings), [ACCOUNT])
    emu.faults.slow(0.3, count=2, path=JOBS)  # the create and the first poll

    def use_up_then_fail() -> None:
        use_up_after_create(emu)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(r["method"] == "GET" for r in job_calls(emu)):
            time.sleep(0.002)
        # The first poll was answered (with the usage at 50%): from now on Salesforce fails the job's calls.
        emu.faults.http_error(500, count=None, path=JOBS + "/")

    watcher = threading.Thread(target=use_up_then_fail, daemon=True)
    watcher.start()
    with caplog.at_level(logging.DEBUG):
        run = run_tap(settings, catalog)
    watcher.join()
    assert run.exit_code == 2, run.stderr
    assert "quota_percent" in run.stderr and "500" not in run.stderr, run.stderr
    (job,) = emu.app.bulk.list()["records"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"Could not delete Bulk job {job['id']}" in w for w in warnings), warnings
    credentials = emu.credentials
    for secret in (credentials.client_secret, credentials.refresh_token):
        assert secret not in caplog.text


def test_a_create_whose_answer_was_cut_leaves_no_second_job_behind(
    emulator_factory: Callable[..., Emulator],
) -> None:
    """Salesforce created the job, then the connection broke before its answer arrived: the client's
    retry created a second job, and the first, whose id the tap never saw, was orphaned."""
    emu = queued_org(emulator_factory, queued_seconds=0.02)
    settings = tap_settings(emu, api_type="bulk")
    catalog = select(discover_catalog(settings), [ACCOUNT])
    emu.faults.drop_connection(count=1, path=JOBS, after_bytes=10)
    run = run_tap(settings, catalog)
    assert run.exit_code == 0, run.stderr
    assert emu.faults.active() == [], "the cut fired"
    assert upserted([run], ACCOUNT) == expected_records(emu, entry(catalog, ACCOUNT))
    assert len(creates(emu)) == 2 and emu.app.bulk.jobs_created == 2
    assert emu.app.bulk.list()["records"] == [], "both jobs were deleted"
    calls = [(r["method"], r["target"]) for r in emu.requests()]
    orphan_deleted = next(n for n, (method, target) in enumerate(calls) if method == "DELETE")
    first_page = next(n for n, (_, target) in enumerate(calls) if "/results" in target)
    assert orphan_deleted < first_page, "the orphan went at once, not after the read"


def test_creates_cut_every_time_leave_no_job_behind(
    emulator_factory: Callable[..., Emulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every create's answer is cut: the run stops with the client's error, and the jobs Salesforce
    created meanwhile (their ids never seen) are found in the org's job list and removed."""
    emu = queued_org(emulator_factory)
    monkeypatch.setattr(SalesforceClient, "max_attempts", 3)
    settings = tap_settings(emu, api_type="bulk")
    catalog = select(discover_catalog(settings), [ACCOUNT])
    emu.faults.drop_connection(count=3, path=JOBS, after_bytes=10)
    run = run_tap(settings, catalog)
    assert run.exit_code != 0
    assert f"Salesforce kept failing for POST {JOBS}" in run.stderr, run.stderr
    assert emu.app.bulk.jobs_created == 3
    assert emu.app.bulk.list()["records"] == [], "the orphans were aborted and deleted"


def test_creates_cut_every_time_after_a_soap_login_leave_the_org_s_jobs_alone(
    emulator_factory: Callable[..., Emulator],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No create answered and a login that does not name its user (SOAP): a like job could be another
    program's (a parallel sync under another user), so none is deleted; a warning says one may remain."""
    emu = queued_org(emulator_factory)
    monkeypatch.setattr(SalesforceClient, "max_attempts", 2)
    credentials = emu.credentials
    settings = {
        "username": credentials.username,
        "password": credentials.password,
        "security_token": credentials.security_token,
        "domain": emu.base_url,
        "api_version": "58.0",
        "api_type": "bulk",
    }
    catalog = select(discover_catalog(settings), [ACCOUNT])
    another = emu.app.bulk.create({"operation": "queryAll", "query": "SELECT Id FROM Account"}, "58.0")
    emu.faults.drop_connection(count=2, path=JOBS, after_bytes=10)
    with caplog.at_level(logging.WARNING):
        run = run_tap(settings, catalog)
    assert run.exit_code != 0
    assert emu.app.bulk.jobs_created == 3
    assert another["id"] in [job["id"] for job in emu.app.bulk.list()["records"]]
    assert "Salesforce never answered the request that creates the Bulk job" in caplog.text


def test_a_job_created_by_another_client_meanwhile_is_left_alone(
    emulator_factory: Callable[..., Emulator],
) -> None:
    """The orphan search keeps to this run's query and time: a job on another object, and one like the
    run's created earlier (another run's), stay."""
    emu = queued_org(emulator_factory, queued_seconds=0.02)
    settings = tap_settings(emu, api_type="bulk")
    catalog = select(discover_catalog(settings), [ACCOUNT])
    earlier = emu.app.bulk.create({"operation": "queryAll", "query": "SELECT Id FROM Account"}, "58.0")
    emu.org.clock.advance(10)
    other = emu.app.bulk.create({"operation": "queryAll", "query": "SELECT Id FROM Contact"}, "58.0")
    emu.faults.drop_connection(count=1, path=JOBS, after_bytes=10)
    run = run_tap(settings, catalog)
    assert run.exit_code == 0, run.stderr
    assert emu.app.bulk.jobs_created == 4, "the run's two creates"
    assert sorted(job["id"] for job in emu.app.bulk.list()["records"]) == sorted([earlier["id"], other["id"]])


def stop_once(emu: Emulator, settings: dict, catalog: dict, signum: int, ready: Callable[[], bool]) -> str:
    """Run the tap's CLI, send `signum` once `ready()`, and return its stderr (exit status checked)."""
    with tempfile.TemporaryDirectory() as folder:
        process = start_tap(settings, catalog, folder=folder)
        deadline = time.monotonic() + 60
        while not ready():
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.01)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    text = stderr.decode()
    assert process.returncode == 128 + signum, text[-2000:]
    credentials = emu.credentials
    for secret in (credentials.client_secret, credentials.refresh_token):
        assert secret not in text
    return text


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_a_job_runs_aborts_and_deletes_it(
    emulator_factory: Callable[..., Emulator], signum: int
) -> None:
    emu = queued_org(emulator_factory)
    settings = tap_settings(emu, api_type="bulk")
    catalog = select(discover_catalog(settings), [ACCOUNT])
    stop_once(
        emu,
        settings,
        catalog,
        signum,
        lambda: any(r["target"].startswith(JOBS + "/") for r in emu.requests()),
    )
    assert emu.app.bulk.jobs_created == 1
    assert emu.app.bulk.list()["records"] == [], "the job was aborted and deleted"


def test_a_signal_while_results_are_read_deletes_the_job(emulator_factory: Callable[..., Emulator]) -> None:
    emu = queued_org(emulator_factory, queued_seconds=0.02)
    settings = tap_settings(emu, api_type="bulk")
    catalog = select(discover_catalog(settings), [ACCOUNT])
    emu.faults.slow(3, count=1, path="/results")
    stop_once(
        emu,
        settings,
        catalog,
        signal.SIGTERM,
        lambda: emu.faults.active() == [],  # the results request is being answered, slowly
    )
    assert emu.app.bulk.jobs_created == 1
    assert emu.app.bulk.list()["records"] == [], "the job was deleted"


def test_a_signal_while_a_cut_create_waits_for_its_retry_leaves_no_job(
    emulator_factory: Callable[..., Emulator],
) -> None:
    """The create's answer was cut and the client waits before trying again (its first backoff, up to
    a second) when SIGTERM comes: the job Salesforce created is found in the org's list and removed."""
    emu = queued_org(emulator_factory)
    settings = tap_settings(emu, api_type="bulk")
    catalog = select(discover_catalog(settings), [ACCOUNT])
    emu.faults.drop_connection(count=1, path=JOBS, after_bytes=10)
    stop_once(emu, settings, catalog, signal.SIGTERM, lambda: emu.app.bulk.jobs_created >= 1)
    assert emu.app.bulk.jobs_created >= 1
    assert emu.app.bulk.list()["records"] == [], "the job was aborted and deleted"
