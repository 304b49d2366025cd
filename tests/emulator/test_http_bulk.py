"""Bulk API 2.0 query jobs over real sockets."""

from __future__ import annotations

import base64
import csv
import io
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest
import requests
from emulator_fixtures import API_VERSION, bearer_session, csv_value, start_emulator

from salesforce_emulator import BulkTiming, Emulator

JOBS = f"/services/data/v{API_VERSION}/jobs/query"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    emulator = start_emulator(scale=0.001, counts={"Account": 1200})
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def http(emu: Emulator) -> requests.Session:
    return bearer_session(emu)


def create_job(http: requests.Session, emu: Emulator, soql: str, **options) -> requests.Response:
    body = {"operation": "query", "query": soql, **options}
    return http.post(emu.base_url + JOBS, json=body, timeout=60)


def wait_for(
    http: requests.Session, emu: Emulator, job_id: str, timeout: float = 20.0
) -> tuple[dict, list[str]]:
    """Poll until the job ends; returns its final info and every state seen."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = http.get(f"{emu.base_url}{JOBS}/{job_id}", timeout=30).json()
        if not seen or seen[-1] != info["state"]:
            seen.append(info["state"])
        if info["state"] in ("JobComplete", "Failed", "Aborted"):
            return info, seen
        time.sleep(0.01)
    raise AssertionError(f"job {job_id} did not finish; states {seen}")


def results(
    http: requests.Session, emu: Emulator, job_id: str, version: str = API_VERSION, **params
) -> requests.Response:
    return http.get(
        f"{emu.base_url}/services/data/v{version}/jobs/query/{job_id}/results", params=params, timeout=60
    )


def read_pages(
    http: requests.Session, emu: Emulator, job_id: str, max_records: int
) -> list[requests.Response]:
    pages = []
    locator = None
    while True:
        params = {"maxRecords": max_records, **({"locator": locator} if locator else {})}
        response = results(http, emu, job_id, **params)
        assert response.status_code == 200, response.text
        pages.append(response)
        locator = response.headers["Sforce-Locator"]
        if locator == "null":
            return pages


def rows(page: requests.Response) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(page.content.decode("utf-8"), newline="")))


def test_job_lifecycle_and_paged_results(http: requests.Session, emu: Emulator) -> None:
    fields = ["Id", "Name", "AnnualRevenue", "CreatedDate", "SystemModstamp", "IsDeleted", "BillingStreet"]
    created = create_job(http, emu, f"SELECT {', '.join(fields)} FROM Account")
    assert created.status_code == 200
    job = created.json()
    assert list(job) == [
        "id",
        "operation",
        "object",
        "createdById",
        "createdDate",
        "systemModstamp",
        "state",
        "concurrencyMode",
        "contentType",
        "apiVersion",
        "lineEnding",
        "columnDelimiter",
    ]
    assert job["id"].startswith("750") and len(job["id"]) == 18
    assert (job["operation"], job["object"], job["state"]) == ("query", "Account", "UploadComplete")
    assert (job["contentType"], job["lineEnding"], job["columnDelimiter"]) == ("CSV", "LF", "COMMA")
    assert job["apiVersion"] == 58.0

    info, states = wait_for(http, emu, job["id"])
    assert states[-1] == "JobComplete"
    assert "InProgress" in states  # polling really sees the job work
    expected = emu.org.records("Account", include_deleted=False)
    assert info["numberRecordsProcessed"] == len(expected)
    assert info["jobType"] == "V2Query"
    assert info["systemModstamp"] >= info["createdDate"]

    pages = read_pages(http, emu, job["id"], max_records=500)
    assert len(pages) == 3
    assert [int(page.headers["Sforce-NumberOfRecords"]) for page in pages] == [500, 500, len(expected) - 1000]
    assert all(page.headers["Content-Type"].startswith("text/csv") for page in pages)
    for page in pages:  # every page has its own header row
        assert page.content.split(b"\n", 1)[0] == ",".join(f'"{name}"' for name in fields).encode() or (
            page.content.split(b"\n", 1)[0] == ",".join(fields).encode()
        )
    got = [row for page in pages for row in rows(page)]
    truth = {record["Id"]: record for record in expected}
    assert sorted(row["Id"] for row in got) == sorted(truth)
    for row in got:
        record = truth[row["Id"]]
        assert row["Name"] == record["Name"]
        assert row["CreatedDate"] == csv_value(record["CreatedDate"])
        assert row["SystemModstamp"] == csv_value(record["SystemModstamp"])
        assert row["IsDeleted"] == "false"
        assert row["BillingStreet"] == csv_value(record["BillingStreet"])
        revenue = record["AnnualRevenue"]
        assert (row["AnnualRevenue"] == "") if revenue is None else Decimal(row["AnnualRevenue"]) == revenue


def test_locators_are_stable_and_re_readable(http: requests.Session, emu: Emulator) -> None:
    job_id = create_job(http, emu, "SELECT Id FROM Account").json()["id"]
    wait_for(http, emu, job_id)
    first = results(http, emu, job_id, maxRecords=400)
    locator = first.headers["Sforce-Locator"]
    assert base64.b64decode(locator + "=" * (-len(locator) % 4)) == b"400"
    again = results(http, emu, job_id, maxRecords=400, locator=locator)
    assert again.content == results(http, emu, job_id, maxRecords=400, locator=locator).content
    assert rows(again)[0]["Id"] == rows(results(http, emu, job_id, maxRecords=800))[400]["Id"]


def test_end_bulk_results_fault_answers_204_without_a_locator(http: requests.Session, emu: Emulator) -> None:
    job_id = create_job(http, emu, "SELECT Id FROM Account").json()["id"]
    wait_for(http, emu, job_id)
    emu.faults.end_bulk_results(count=1)
    short = results(http, emu, job_id, maxRecords=400)
    assert short.status_code == 204 and short.content == b"" and "Sforce-Locator" not in short.headers
    assert emu.faults.active() == []
    assert results(http, emu, job_id, maxRecords=400).status_code == 200  # fired once


def test_results_without_max_records_come_in_one_page_here(http: requests.Session, emu: Emulator) -> None:
    job_id = create_job(http, emu, "SELECT Id FROM Account").json()["id"]
    wait_for(http, emu, job_id)
    page = results(http, emu, job_id)
    assert page.headers["Sforce-Locator"] == "null"
    assert int(page.headers["Sforce-NumberOfRecords"]) == len(
        emu.org.records("Account", include_deleted=False)
    )


def test_a_job_that_matches_nothing_has_a_header_only_page(http: requests.Session, emu: Emulator) -> None:
    job_id = create_job(http, emu, "SELECT Id, Name FROM Account WHERE Name = 'no such account'").json()["id"]
    info, _ = wait_for(http, emu, job_id)
    assert info["state"] == "JobComplete" and info["numberRecordsProcessed"] == 0
    for params in ({}, {"maxRecords": 400}):
        page = results(http, emu, job_id, **params)
        assert page.status_code == 200, page.text
        assert page.content == b'"Id","Name"\n'
        assert page.headers["Sforce-NumberOfRecords"] == "0"
        assert page.headers["Sforce-Locator"] == "null"


def test_query_all_job_includes_soft_deleted_rows(emulator_factory) -> None:
    emu = emulator_factory(scale=0.001, counts={"Account": 40})
    http = bearer_session(emu)
    deleted_id = emu.org.records("Account", include_deleted=False)[0]["Id"]
    emu.org.delete("Account", deleted_id)
    job = http.post(
        emu.base_url + JOBS,
        json={"operation": "queryAll", "query": "SELECT Id, IsDeleted FROM Account"},
        timeout=60,
    ).json()
    assert job["operation"] == "queryAll"
    wait_for(http, emu, job["id"])
    by_id = {row["Id"]: row for row in rows(results(http, emu, job["id"]))}
    assert by_id[deleted_id]["IsDeleted"] == "true"
    assert len(by_id) == len(emu.org.records("Account", include_deleted=True))


def test_the_job_is_a_snapshot_taken_at_creation(emulator_factory) -> None:
    emu = emulator_factory(scale=0.001, counts={"Account": 20})
    http = bearer_session(emu)
    job_id = create_job(http, emu, "SELECT Id FROM Account").json()["id"]
    emu.org.create("Account", {"Name": "Too late for the job"})
    info, _ = wait_for(http, emu, job_id)
    assert info["numberRecordsProcessed"] == 20 - sum(
        1 for record in emu.org.records("Account") if record["IsDeleted"]
    )
    assert len(rows(results(http, emu, job_id))) == info["numberRecordsProcessed"]


def test_results_need_the_creating_api_version(http: requests.Session, emu: Emulator) -> None:
    job_id = create_job(http, emu, "SELECT Id FROM Account").json()["id"]
    wait_for(http, emu, job_id)
    response = results(http, emu, job_id, version="59.0")
    assert response.status_code == 409
    assert results(http, emu, job_id).status_code == 200


def test_results_before_completion_are_refused(emulator_factory) -> None:
    emu = emulator_factory(scale=0.001, bulk_timing=BulkTiming(queued_seconds=5, processing_seconds=5))
    http = bearer_session(emu)
    job_id = create_job(http, emu, "SELECT Id FROM Account").json()["id"]
    response = results(http, emu, job_id)
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "API_ERROR"


def test_abort_and_delete(emulator_factory) -> None:
    emu = emulator_factory(scale=0.001, bulk_timing=BulkTiming(queued_seconds=5, processing_seconds=5))
    http = bearer_session(emu)
    job_id = create_job(http, emu, "SELECT Id FROM Account").json()["id"]
    running_delete = http.delete(f"{emu.base_url}{JOBS}/{job_id}", timeout=30)
    assert running_delete.status_code == 400
    aborted = http.patch(f"{emu.base_url}{JOBS}/{job_id}", json={"state": "Aborted"}, timeout=30)
    assert aborted.status_code == 200
    assert aborted.json()["state"] == "Aborted"
    assert http.get(f"{emu.base_url}{JOBS}/{job_id}", timeout=30).json()["state"] == "Aborted"
    again = http.patch(f"{emu.base_url}{JOBS}/{job_id}", json={"state": "Aborted"}, timeout=30)
    assert again.status_code == 400
    deleted = http.delete(f"{emu.base_url}{JOBS}/{job_id}", timeout=30)
    assert deleted.status_code == 204
    assert deleted.content == b""
    gone = http.get(f"{emu.base_url}{JOBS}/{job_id}", timeout=30)
    assert gone.status_code == 404
    assert gone.json()[0]["errorCode"] == "NOT_FOUND"


def test_list_jobs(http: requests.Session, emu: Emulator) -> None:
    job_id = create_job(http, emu, "SELECT Id FROM Account").json()["id"]
    listing = http.get(emu.base_url + JOBS, timeout=30).json()
    assert listing["done"] is True
    assert job_id in {job["id"] for job in listing["records"]}


def test_failing_jobs_fault(emulator_factory) -> None:
    emu = emulator_factory(scale=0.001)
    emu.faults.fail_bulk_jobs(count=1, message="InternalServerError : retried more than 15 times")
    http = bearer_session(emu)
    failed_id = create_job(http, emu, "SELECT Id FROM Account").json()["id"]
    info, _ = wait_for(http, emu, failed_id)
    assert info["state"] == "Failed"
    assert info["errorMessage"] == "InternalServerError : retried more than 15 times"
    assert results(http, emu, failed_id).status_code == 400
    next_id = create_job(http, emu, "SELECT Id FROM Account").json()["id"]
    assert wait_for(http, emu, next_id)[0]["state"] == "JobComplete"
    assert emu.faults.active() == []


@pytest.mark.parametrize(
    ("delimiter", "line_ending", "separator", "terminator"),
    [("PIPE", "LF", "|", "\n"), ("TAB", "CRLF", "\t", "\r\n"), ("SEMICOLON", "CRLF", ";", "\r\n")],
)
def test_column_delimiter_and_line_ending(
    http: requests.Session, emu: Emulator, delimiter: str, line_ending: str, separator: str, terminator: str
) -> None:
    job = create_job(
        http,
        emu,
        "SELECT Id, Name, BillingStreet FROM Account",
        columnDelimiter=delimiter,
        lineEnding=line_ending,
    ).json()
    assert (job["columnDelimiter"], job["lineEnding"]) == (delimiter, line_ending)
    wait_for(http, emu, job["id"])
    text = results(http, emu, job["id"], maxRecords=300).content.decode()
    assert text.endswith(terminator)
    parsed = list(csv.reader(io.StringIO(text, newline=""), delimiter=separator))
    assert parsed[0] == ["Id", "Name", "BillingStreet"]
    truth = {record["Id"]: record for record in emu.org.records("Account")}
    for record_id, name, street in parsed[1:]:
        assert name == truth[record_id]["Name"]
        assert street == csv_value(truth[record_id]["BillingStreet"])


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"operation": "insert", "query": "SELECT Id FROM Account"}, "API_ERROR"),
        ({"operation": "query"}, "API_ERROR"),
        ({"operation": "query", "query": "SELECT Id FROM Account", "columnDelimiter": "DOT"}, "API_ERROR"),
        ({"operation": "query", "query": "SELECT Id FROM Account", "lineEnding": "CR"}, "API_ERROR"),
        ({"operation": "query", "query": "SELECT Nope FROM Account"}, "INVALID_FIELD"),
        ({"operation": "query", "query": "SELECT Id, BillingAddress FROM Account"}, "API_ERROR"),
    ],
)
def test_job_creation_errors(http: requests.Session, emu: Emulator, body: dict, code: str) -> None:
    response = http.post(emu.base_url + JOBS, json=body, timeout=30)
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == code


def test_compound_fields_are_rejected_with_the_real_error(http: requests.Session, emu: Emulator) -> None:
    response = create_job(http, emu, "SELECT Id, BillingAddress FROM Account")
    assert response.status_code == 400
    assert response.json() == [
        {"errorCode": "API_ERROR", "message": "Selecting compound data not supported in Bulk Query"}
    ] or response.json() == [
        {"message": "Selecting compound data not supported in Bulk Query", "errorCode": "API_ERROR"}
    ]


def test_bulk_calls_count_against_the_allowance(http: requests.Session, emu: Emulator) -> None:
    before = emu.api_usage
    job_id = create_job(http, emu, "SELECT Id FROM Account").json()["id"]
    http.get(f"{emu.base_url}{JOBS}/{job_id}", timeout=30)
    assert emu.api_usage == before + 2
