"""Bulk API 2.0 extraction: one `queryAll` job per plan, results streamed page by page.

`BulkExtractor(client, logger=...).records(plan)`:
1. `POST /jobs/query` with the plan's query, without `ORDER BY`: Salesforce splits a large Bulk API 2.0
   query into chunks by Id (PK chunking) only when it has no ORDER BY, and without chunks a big
   object's job runs long and can time out (Salesforce's troubleshooting advice is to drop ORDER BY
   first). So the rows come in no order of their stamps, and none of them is a bookmark: the records
   carry no stamp, and once every row is read `completed_stamp` is the job's highest, which becomes
   the bookmark. A run stopped during a job reads its window again next time (the target absorbs the
   repeats). The query travels in the body, so wide objects need no splitting.
2. Poll `GET /jobs/query/{id}` with growing waits until JobComplete (each poll is reported to
   `on_wait`, the progress display's hook), for at most `job_timeout_seconds` (0: no limit; a job
   still queued or running then is aborted); `expected_records` is then the job's
   `numberRecordsProcessed`; a job that processed none ends there (its results would be a header).
3. `GET /jobs/query/{id}/results?maxRecords=N[&locator=L]` page after page until `Sforce-Locator` is
   `null`. Each page (bounded by `maxRecords`, sized from the field count) goes through three
   stages that overlap: download (a background thread), parsing into Arrow columns and their
   column-wise conversion (a second one; Arrow's C++ work releases the GIL), and records
   (bulk_pages.CsvPageConverter, in the consuming thread). With one page queued between stages
   (prefetch.py), memory holds a few pages, never the result.
4. The job is deleted at the end (aborted first when unfinished) however the read ends: its end, an
   error, the quota guard (these calls pass it), SIGTERM/SIGINT. When a create's answer was lost (the
   client retried it, or the run stopped while it was on its way) Salesforce may hold a job whose id the
   tap never saw: the org's job list (`GET /jobs/query`) is searched for jobs like it (same object,
   operation and format, same user, created since the first attempt) and those are removed too, at
   once when the retried create got its job (not to run beside it for the whole read).

A job Salesforce refuses (an object or field Bulk cannot serve), that ends Failed/Aborted or that
outlasts `job_timeout_seconds` raises
`BulkUnavailable`, on which `Extraction` reads the rest of the window through REST. INVALID_FIELD is
raised as is (the stream describes the object again and drops the field).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from tap_salesforce_seg.errors import SalesforceApiError, ServiceUnavailable, TapError, TransientError
from tap_salesforce_seg.extract import BulkUnavailable, QueryPlan, Stamped
from tap_salesforce_seg.extract.prefetch import prefetched
from tap_salesforce_seg.soql import build_query

if TYPE_CHECKING:
    from tap_salesforce_seg.client import SalesforceClient

JOBS_PATH = "/jobs/query"
# A result page should stay under this size; Salesforce CSV cells average a few bytes (quoted, often
# empty), so 12 bytes a cell is a generous estimate.
PAGE_BYTES_TARGET = 16 * 1024 * 1024
ESTIMATED_BYTES_PER_CELL = 12
MIN_PAGE_RECORDS = 1_000
MAX_PAGE_RECORDS = 50_000
# Errors at job creation that mean "the query is fine, Bulk cannot serve it" (read it through REST).
_PASS_THROUGH_CODES = frozenset({"INVALID_FIELD"})
TERMINAL_STATES = ("JobComplete", "Failed", "Aborted")
# Pages of the org's job list read when looking for a job whose create answer was lost: the bound
# keeps a cleanup's cost (API calls) small in an org that lists very many jobs.
MAX_LIST_PAGES = 10
# Salesforce's clock as the client knows it follows the Date header (whole seconds), and its servers'
# clocks differ a little: the window of an orphan's createdDate is this much wider on each side.
CLOCK_MARGIN = timedelta(seconds=2)


# The results are CSV (the job's contentType); the client's default Accept is JSON.
_CSV_ACCEPTED = {"Accept": "text/csv"}


class BulkExtractor:
    """Reads a plan through a Bulk API 2.0 queryAll job (see the module docstring)."""

    name = "bulk"
    poll_first_seconds = 0.1
    poll_max_seconds = 10.0
    poll_growth = 1.5
    progress_every_seconds = 30.0

    def __init__(
        self,
        client: SalesforceClient,
        *,
        logger: logging.Logger | None = None,
        page_records: int | None = None,
        job_timeout_seconds: float = 0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.logger = logger or logging.getLogger(__name__)
        self.page_records = page_records
        self.job_timeout_seconds = job_timeout_seconds
        self.sleep = sleep
        self.expected_records: int | None = None
        self.completed_stamp: str | None = None  # the highest stamp of a job read whole
        self.job_id: str | None = None
        # The jobs of the current read not yet deleted, with the state seen last.
        self._created: dict[str, str | None] = {}
        # Set when a create's answer was lost (a retry, an interruption): the job may exist unseen.
        self._search: _OrphanSearch | None = None
        # Called at each poll while the job runs (job id, state, seconds so far): the stream's progress
        # display sets it; without it, a log line every `progress_every_seconds`.
        self.on_wait: Callable[[str, str, float], None] | None = None

    def records(self, plan: QueryPlan) -> Iterator[Stamped]:
        self.completed_stamp = None
        soql = build_query(
            plan.sobject,
            plan.field_names,
            replication_field=plan.replication_field,
            window_start=plan.window_start,
            window_end=plan.window_end,
            ordered=False,
        )
        self._created.clear()
        self._search = None
        try:
            job_id = self._create(plan, soql)
            if self._search is not None:
                # The create was retried: a job its lost answer created would run on beside this one
                # for the whole read, doubling the load on the org; it goes now.
                self._clean_up(keep=job_id)
            # Imported here, while Salesforce runs the job: pyarrow loads only for Bulk syncs.
            from tap_salesforce_seg.extract.bulk_pages import CsvPageConverter

            job = self._wait(plan, job_id)
            processed = job.get("numberRecordsProcessed")
            if processed is not None:
                self.expected_records = int(processed)
                if self.expected_records == 0:
                    return  # nothing matched: reading the (empty) results would only spend an API call
            converter = CsvPageConverter(
                plan.fields, stamp_property=plan.replication_property, hidden=plan.hidden, unordered=True
            )
            # Three stages at once: the next page downloads, the one before is parsed, the one
            # before that becomes records.
            pages = prefetched(self._pages(job_id, self._page_size(plan)))
            read = 0
            for page in prefetched(converter.prepare(page) for page in pages):
                read += page.rows
                yield from converter.records(page)
            if self.expected_records is not None and read < self.expected_records:
                # Salesforce answers a results page it failed to read with 204 No Content (no locator),
                # which reads as the end: the window is read again through REST (the rows come in no
                # order, so there is no point to go on from) instead of counting as read.
                raise BulkUnavailable(
                    f"the results of Bulk job {job_id} on {plan.sobject} ended after {read:,} of "
                    f"{self.expected_records:,} records"
                )
            self.completed_stamp = converter.high_stamp
        finally:
            # Whatever ended the read (its end, an error, the quota guard, SIGTERM/SIGINT's SystemExit,
            # the consumer closing this generator): no job of this read stays in the org.
            self._clean_up()

    def _create(self, plan: QueryPlan, soql: str) -> str:
        body = {
            "operation": "queryAll" if plan.include_deleted else "query",
            "query": soql,
            "contentType": "CSV",
            "columnDelimiter": "COMMA",
            "lineEnding": "LF",
        }
        search = _OrphanSearch(body=body, sobject=plan.sobject, since=self.client.server_time())

        def retried() -> None:
            # The lost answer's job may exist: look for it (see `_clean_up`).
            self._search = search

        try:
            job = self.client.post(JOBS_PATH, json=body, on_retry=retried).json()
        except SalesforceApiError as error:
            if error.error_code in _PASS_THROUGH_CODES or error.status >= 500:
                raise
            raise BulkUnavailable(
                f"Bulk API 2.0 refused the query on {plan.sobject} ({error.error_code}: {error.api_message})"
            ) from error
        except BaseException as error:
            if not _answered(error):
                # No answer from Salesforce (a connection lost, the retries spent, a signal while the
                # answer was on its way): the job may have been created all the same.
                self._search = search
            raise
        self.job_id = str(job["id"])
        self._created[self.job_id] = job.get("state")
        search.created_by = job.get("createdById")
        return self.job_id

    def _wait(self, plan: QueryPlan, job_id: str) -> dict[str, Any]:
        delay = self.poll_first_seconds
        started = last_report = time.monotonic()
        while True:
            job = self.client.get_json(f"{JOBS_PATH}/{job_id}")
            state = self._created[job_id] = job.get("state")
            if state == "JobComplete":
                return job
            if state in ("Failed", "Aborted"):
                message = job.get("errorMessage") or "no errorMessage"
                raise BulkUnavailable(f"Bulk job {job_id} on {plan.sobject} ended {state}: {message}")
            now = time.monotonic()
            waited = now - started
            self._check_timeout(plan, job_id, str(state), waited)
            if self.on_wait is not None:
                self.on_wait(job_id, str(state), waited)
            elif now - last_report >= self.progress_every_seconds:
                self.logger.info("%s: Bulk job %s is %s after %.0f s.", plan.sobject, job_id, state, waited)
                last_report = now
            if self.job_timeout_seconds:
                # The last poll falls on the limit, not up to a whole delay after it (time is left:
                # `_check_timeout` passed).
                delay = min(delay, self.job_timeout_seconds - waited)
            self.sleep(delay)
            delay = min(delay * self.poll_growth, self.poll_max_seconds)

    def _check_timeout(self, plan: QueryPlan, job_id: str, state: str, waited: float) -> None:
        """Give up on a job that outlasted the limit; `records` then aborts and deletes it."""
        if self.job_timeout_seconds and waited >= self.job_timeout_seconds:
            raise BulkUnavailable(
                f"Bulk job {job_id} on {plan.sobject} is still {state} after {waited:.0f} s "
                f"(bulk_job_timeout_seconds {self.job_timeout_seconds:g}); aborting it"
            )

    def _page_size(self, plan: QueryPlan) -> int:
        if self.page_records:
            return self.page_records
        estimate = PAGE_BYTES_TARGET // (ESTIMATED_BYTES_PER_CELL * max(1, len(plan.fields)))
        return max(MIN_PAGE_RECORDS, min(MAX_PAGE_RECORDS, estimate))

    def _pages(self, job_id: str, page_size: int) -> Iterator[bytes]:
        locator: str | None = None
        while True:
            params = {"maxRecords": str(page_size)}
            if locator:
                params["locator"] = locator
            page, locator = self._page(f"{JOBS_PATH}/{job_id}/results", params)
            yield page
            if not locator or locator == "null":
                return

    def _page(self, path: str, params: dict[str, str]) -> tuple[bytes, str | None]:
        """One result page and the locator of the next. The client reads the body whole, in 1 MiB
        chunks, and asks for it again if it is cut short (the locator names the same page)."""
        response = self.client.get(path, params=params, headers=_CSV_ACCEPTED)
        return response.content, response.headers.get("Sforce-Locator")

    def _clean_up(self, keep: str | None = None) -> None:
        """Abort and delete every job this read created but `keep`, those whose create answer was lost
        included."""
        search, self._search = self._search, None
        if search is not None and search.created_by is None:
            search.created_by = self._user_id()
        if search is not None and search.created_by is None:
            # No attempt got an answer and the login did not name the user (SOAP): a like job of
            # another program's (a parallel sync under another user) would match, and deleting it
            # would fail that program's read. Say what may remain instead.
            self.logger.warning(
                "%s: Salesforce never answered the request that creates the Bulk job; should it have "
                "created one all the same, the job stays in Salesforce (Setup: Bulk Data Load Jobs) "
                "until Salesforce removes it.",
                search.sobject,
            )
        elif search is not None:
            for job in self._orphans(search):
                self._created.setdefault(str(job["id"]), job.get("state"))
        for job_id in [job_id for job_id in self._created if job_id != keep]:
            self._delete_quietly(job_id, self._created.pop(job_id))

    def _user_id(self) -> str | None:
        try:
            return self.client.user_id
        except Exception:  # not logged in any more: nothing to compare
            return None

    def _orphans(self, search: _OrphanSearch) -> list[dict[str, Any]]:
        """Jobs the org lists that a lost create answer may have left: this read's query, by the same
        user, created since the first attempt (Salesforce's job list does not show a job's query, and
        Bulk API 2.0 has no idempotency key)."""
        until = self.client.server_time()
        found: list[dict[str, Any]] = []
        path: str | None = JOBS_PATH
        params: dict[str, str] | None = {"jobType": "V2Query"}
        try:
            for _ in range(MAX_LIST_PAGES):
                if not path:
                    break
                page = _json(self.client.get(path, params=params, past_quota=True))
                found += [job for job in page.get("records") or () if search.matches(job, until)]
                path = None if page.get("done", True) else page.get("nextRecordsUrl")
                params = None
            if path:
                self.logger.warning(
                    "%s: read %d pages of the org's Bulk jobs without reaching their end; a job whose "
                    "create answer was lost may stay in Salesforce (Setup: Bulk Data Load Jobs).",
                    search.sobject,
                    MAX_LIST_PAGES,
                )
        except Exception as error:
            self.logger.warning(
                "%s: could not list the org's Bulk jobs to remove one whose create answer was lost (%s); "
                "it stays in Salesforce (Setup: Bulk Data Load Jobs) until Salesforce removes it.",
                search.sobject,
                error,
            )
        return found

    def _delete_quietly(self, job_id: str, state: str | None) -> None:
        """Remove the job and its stored results (they count against the org's Bulk storage).

        A job still running is aborted first (Salesforce deletes only finished jobs). Cleanup never
        hides the outcome of the sync: its errors are logged, not raised. Both calls pass the quota
        guard (`past_quota`): when it stops the run, a job left running would spend the org's Bulk
        limits for hours, two calls spend its API allowance far less.
        """
        if state not in TERMINAL_STATES:
            # The state seen last may be stale (the job finished since, and Salesforce then refuses the
            # abort): the delete is tried whatever the abort's answer.
            try:
                self.client.patch(f"{JOBS_PATH}/{job_id}", json={"state": "Aborted"}, past_quota=True)
            except Exception as error:
                self.logger.debug("Could not abort Bulk job %s: %s", job_id, error)
        try:
            self.client.delete(f"{JOBS_PATH}/{job_id}", past_quota=True)
        except Exception as error:
            self.logger.warning(
                "Could not delete Bulk job %s (%s); it stays in Salesforce (Setup: Bulk Data Load Jobs) "
                "until Salesforce removes it.",
                job_id,
                error,
            )


@dataclasses.dataclass
class _OrphanSearch:
    """What identifies a job created by a create request whose answer was lost (see `_orphans`)."""

    body: dict[str, str]  # the create request's body
    sobject: str
    since: datetime  # Salesforce's clock before the first attempt
    created_by: str | None = None  # the user, from the answer of an attempt that got through

    def matches(self, job: dict[str, Any], until: datetime) -> bool:
        if job.get("object") != self.sobject or job.get("jobType", "V2Query") != "V2Query":
            return False
        if any(
            job.get(key) != self.body[key]
            for key in ("operation", "contentType", "columnDelimiter", "lineEnding")
        ):
            return False
        # 15 characters: the case-sensitive id (an 18-character one adds a checksum of its case).
        if self.created_by is None or str(job.get("createdById"))[:15] != self.created_by[:15]:
            return False
        created = _parse_created(job.get("createdDate"))
        return created is not None and self.since - CLOCK_MARGIN <= created <= until + CLOCK_MARGIN


def _answered(error: BaseException) -> bool:
    """Whether `error` is Salesforce's answer to the create, or a refusal before it was sent (no job
    then); the client's network errors and anything else leave the outcome unknown."""
    return isinstance(error, TapError) and not isinstance(error, (TransientError, ServiceUnavailable))


def _parse_created(value: Any) -> datetime | None:
    """A job's createdDate (`2022-01-02T17:38:59.000+0000`) as an aware datetime, or None."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z")
    except ValueError:
        return None


def _json(response: Any) -> dict[str, Any]:
    body = response.json()
    return body if isinstance(body, dict) else {}
