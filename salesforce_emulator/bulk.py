"""Bulk API 2.0 query jobs (`/services/data/vXX.X/jobs/query`).

A job runs its query when it is created (the snapshot: later changes to the org do not show in its
results), then moves through its states with real time so that clients really poll:
UploadComplete (first `BulkTiming.queued_seconds`) -> InProgress (`processing_seconds + rows *
seconds_per_million_rows / 1e6`) -> JobComplete, or Failed (with `errorMessage`, when the fault plan's
`fail_bulk_jobs` picked the job), or Aborted (`PATCH {"state": "Aborted"}` before it completed).

Results: `GET .../jobs/query/{id}/results?maxRecords=N&locator=L` answers `text/csv` with its own header
row on every page, `Sforce-NumberOfRecords` (rows in this page) and `Sforce-Locator` (the next page's
locator, the literal `null` on the last page). Locators are base64 row offsets: stable and re-readable for
as long as the job exists. Without `maxRecords` a page holds at most DEFAULT_PAGE_SIZE rows. Results must be
read with the API version that created the job (else 409), and only once the job is JobComplete.
Column delimiters (COMMA, BACKQUOTE, CARET, PIPE, SEMICOLON, TAB) and line endings (LF, CRLF) follow the job.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .auth import USER_ID_18, case_safe_id, salesforce_id
from .errors import ApiError, not_found
from .faults import FAIL_BULK_JOBS, FaultPlan

DEFAULT_PAGE_SIZE = 50_000
COLUMN_DELIMITERS = {
    "COMMA": b",",
    "BACKQUOTE": b"`",
    "CARET": b"^",
    "PIPE": b"|",
    "SEMICOLON": b";",
    "TAB": b"\t",
}
LINE_ENDINGS = {"LF": b"\n", "CRLF": b"\r\n"}
OPERATIONS = ("query", "queryAll")
TERMINAL_STATES = ("JobComplete", "Failed", "Aborted")
# Objects Salesforce can PK-chunk (reported as isPkChunkingSupported); custom objects can too.
PK_CHUNKING_OBJECTS = frozenset(
    [
        "Account",
        "Asset",
        "Campaign",
        "CampaignMember",
        "Case",
        "CaseArticle",
        "CaseHistory",
        "Contact",
        "Event",
        "EventRelation",
        "Lead",
        "LoginHistory",
        "Opportunity",
        "Task",
        "User",
        "WorkOrder",
        "WorkOrderLineItem",
    ]
)


@dataclass(frozen=True)
class BulkTiming:
    """How long jobs stay in each state (seconds of real time). Small by default: tests stay fast."""

    queued_seconds: float = 0.02
    processing_seconds: float = 0.08
    seconds_per_million_rows: float = 0.5


@dataclass
class QueryJob:
    id: str
    operation: str
    sobject: str
    soql: str
    api_version: str
    column_delimiter: str
    line_ending: str
    created_date: datetime  # the org's clock at creation
    started: float  # time.monotonic() at creation
    result: Any  # the org's QueryResult: the snapshot
    queued_for: float  # seconds after `started` in UploadComplete
    complete_after: float  # seconds after `started` when processing ends
    fail_message: str | None = None
    aborted_after: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def state(self, now: float) -> str:
        elapsed = now - self.started
        if self.aborted_after is not None:
            return "Aborted"
        if elapsed >= self.complete_after:
            return "Failed" if self.fail_message else "JobComplete"
        if elapsed >= self.queued_for:
            return "InProgress"
        return "UploadComplete"


class BulkJobs:
    """The org's Bulk 2.0 query jobs. Thread-safe."""

    def __init__(
        self,
        org: Any,
        faults: FaultPlan,
        timing: BulkTiming | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.org = org
        self.faults = faults
        self.timing = timing or BulkTiming()
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._jobs: dict[str, QueryJob] = {}
        self._serial = itertools.count(1)
        self.jobs_created = 0

    # ---- create ----
    def create(self, body: Any, api_version: str) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "API_ERROR", "Request body must be a JSON object describing the job")
        operation = body.get("operation")
        if operation not in OPERATIONS:
            raise ApiError(400, "API_ERROR", f"Invalid operation for a query job: {operation!r}")
        soql = body.get("query")
        if not isinstance(soql, str) or not soql.strip():
            raise ApiError(400, "API_ERROR", "The query is required for a query job")
        content_type = body.get("contentType", "CSV")
        if content_type != "CSV":
            raise ApiError(400, "API_ERROR", f"Unsupported content type: {content_type!r}")
        delimiter = body.get("columnDelimiter", "COMMA")
        if delimiter not in COLUMN_DELIMITERS:
            raise ApiError(400, "API_ERROR", f"Invalid column delimiter: {delimiter!r}")
        line_ending = body.get("lineEnding", "LF")
        if line_ending not in LINE_ENDINGS:
            raise ApiError(400, "API_ERROR", f"Invalid line ending: {line_ending!r}")

        self.org.bulk_check(soql)
        result = self.org.query(soql, include_deleted=operation == "queryAll")
        self.faults.check_too_complicated(soql, len(result.columns))  # `path` matches the query
        failure = self.faults.take(FAIL_BULK_JOBS)
        timing = self.timing
        job = QueryJob(
            id=salesforce_id("750", next(self._serial)),
            operation=operation,
            sobject=result.sobject,
            soql=soql,
            api_version=api_version,
            column_delimiter=delimiter,
            line_ending=line_ending,
            created_date=self.org.clock.now(),
            started=self._monotonic(),
            result=result,
            queued_for=timing.queued_seconds,
            complete_after=timing.queued_seconds
            + timing.processing_seconds
            + result.total_size * timing.seconds_per_million_rows / 1_000_000,
            fail_message=failure.params["message"] if failure else None,
        )
        with self._lock:
            self._jobs[job.id] = job
            self.jobs_created += 1
        return self._base_info(job, "UploadComplete", job.created_date)

    # ---- inspect ----
    def info(self, job_id: str) -> dict[str, Any]:
        job = self._job(job_id)
        now = self._monotonic()
        state = job.state(now)
        return self._full_info(job, state, now)

    def list(self) -> dict[str, Any]:
        now = self._monotonic()
        with self._lock:
            jobs = list(self._jobs.values())
        records = [self._base_info(job, job.state(now), self._modstamp(job, now)) for job in jobs]
        for record in records:
            record["jobType"] = "V2Query"
        return {"done": True, "records": records, "nextRecordsUrl": None}

    # ---- change ----
    def abort(self, job_id: str, body: Any) -> dict[str, Any]:
        job = self._job(job_id)
        if not isinstance(body, dict) or body.get("state") != "Aborted":
            raise ApiError(400, "API_ERROR", "A query job can only be changed to the state Aborted")
        now = self._monotonic()
        with self._lock:
            state = job.state(now)
            if state in TERMINAL_STATES:
                raise ApiError(400, "API_ERROR", f"The job is already in the state {state}")
            job.aborted_after = now - job.started
        return self._full_info(job, "Aborted", now)

    def delete(self, job_id: str) -> None:
        job = self._job(job_id)
        state = job.state(self._monotonic())
        if state not in TERMINAL_STATES:
            raise ApiError(
                400,
                "API_ERROR",
                f"Only a JobComplete, Failed or Aborted job can be deleted; this one is {state}",
            )
        with self._lock:
            self._jobs.pop(job_id, None)

    # ---- results ----
    def results(
        self, job_id: str, api_version: str, max_records: str | None, locator: str | None
    ) -> tuple[bytes, str, int]:
        """(CSV page, next locator or 'null', rows in the page)."""
        job = self._job(job_id)
        if api_version != job.api_version:
            raise ApiError(
                409,
                "API_ERROR",
                f"The job was created with API version {job.api_version}; read its results with that version",
            )
        state = job.state(self._monotonic())
        if state != "JobComplete":
            raise ApiError(400, "API_ERROR", f"The job's results are not available in the state {state}")
        size = _page_size(max_records)
        total = job.result.total_size
        start = _decode_locator(locator, total) if locator else 0
        stop = min(total, start + size)
        page = job.result.csv_page(start, stop)
        page = _reformat_csv(page, COLUMN_DELIMITERS[job.column_delimiter], LINE_ENDINGS[job.line_ending])
        next_locator = encode_locator(stop) if stop < total else "null"
        return page, next_locator, stop - start

    # ---- helpers ----
    def _job(self, job_id: str) -> QueryJob:
        with self._lock:
            job = self._jobs.get(job_id) or self._jobs.get(_to_18(job_id))
        if job is None:
            raise not_found()
        return job

    def _modstamp(self, job: QueryJob, now: float) -> datetime:
        state = job.state(now)
        if state == "Aborted":
            return job.created_date + timedelta(seconds=job.aborted_after or 0.0)
        if state in TERMINAL_STATES:
            return job.created_date + timedelta(seconds=job.complete_after)
        return job.created_date

    def _base_info(self, job: QueryJob, state: str, modstamp: datetime) -> dict[str, Any]:
        return {
            "id": job.id,
            "operation": job.operation,
            "object": job.sobject,
            "createdById": USER_ID_18,
            "createdDate": _format_datetime(job.created_date),
            "systemModstamp": _format_datetime(modstamp),
            "state": state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(job.api_version),
            "lineEnding": job.line_ending,
            "columnDelimiter": job.column_delimiter,
        }

    def _full_info(self, job: QueryJob, state: str, now: float) -> dict[str, Any]:
        info = self._base_info(job, state, self._modstamp(job, now))
        done = state in ("JobComplete", "Failed")
        info.update(
            {
                "jobType": "V2Query",
                "numberRecordsProcessed": job.result.total_size if state == "JobComplete" else 0,
                "retries": 0,
                "totalProcessingTime": int(job.complete_after * 1000) if done else 0,
                "isPkChunkingSupported": job.sobject in PK_CHUNKING_OBJECTS or job.sobject.endswith("__c"),
            }
        )
        if state == "Failed":
            info["errorMessage"] = job.fail_message
        return info


def encode_locator(offset: int) -> str:
    return base64.b64encode(str(offset).encode()).decode().rstrip("=")


def _decode_locator(locator: str, total: int) -> int:
    try:
        text = base64.b64decode(locator + "=" * (-len(locator) % 4), validate=True).decode()
        offset = int(text)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ApiError(400, "API_ERROR", f"Invalid locator: {locator}") from None
    if not 0 <= offset <= total or not text.isdigit():
        raise ApiError(400, "API_ERROR", f"Invalid locator: {locator}")
    return offset


def _page_size(max_records: str | None) -> int:
    if max_records is None or max_records == "":
        return DEFAULT_PAGE_SIZE
    try:
        size = int(max_records)
    except ValueError:
        size = 0
    if size < 1:
        raise ApiError(400, "API_ERROR", f"maxRecords must be a positive integer, not {max_records!r}")
    return size


_CSV_TOKEN = re.compile(rb'"(?:[^"]|"")*"|[^,\n"]+|,|\n')


def _reformat_csv(page: bytes, delimiter: bytes, line_ending: bytes) -> bytes:
    """Re-delimit an RFC 4180 comma/LF page; quoted values (and their own newlines) stay as they are."""
    if delimiter == b"," and line_ending == b"\n":
        return page

    def replace(match: re.Match[bytes]) -> bytes:
        token = match.group(0)
        if token == b",":
            return delimiter
        if token == b"\n":
            return line_ending
        if token[:1] != b'"' and delimiter in token:
            return b'"' + token + b'"'
        return token

    return _CSV_TOKEN.sub(replace, page)


def _to_18(record_id: str) -> str:
    return case_safe_id(record_id) if len(record_id) == 15 else record_id


def _format_datetime(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"
