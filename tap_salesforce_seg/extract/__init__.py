"""Extraction: two strategies (REST query, Bulk API 2.0) behind one interface, and the run of a plan.

```python
plan = QueryPlan(sobject, fields, replication_field, window_start, window_end, include_deleted=True)
extractor = choose_extractor(client, plan, api_type="auto", bulk_min_records=50_000, logger=log)
for stamp, record in Extraction(client, plan, extractor, refresh=..., logger=log, stream=name).records():
    ...   # record: converted values keyed by property name (an output Struct or a dict, values.py),
          # stamp: its replication value; in (replication field, Id) order, or None (Bulk)
```
After the loop, `completed_stamp` is the highest stamp of the records that came without one.
- `Extractor` (Protocol): `name`, `expected_records` (known after the first page or the Bulk job),
  `records(plan)` -> `(stamp, record)` pairs; `QueryPlan.hidden` properties are queried (the stamp
  needs them) but not in the records. REST reads in (replication field, Id) order, so each stamp is a
  bookmark; Bulk reads in no order (see extract/bulk.py), so its pairs carry None and, once a job is
  read whole, its `completed_stamp` is the highest. `RestExtractor` (extract/rest.py), `BulkExtractor`
  (extract/bulk.py).
- `choose_extractor`: `rest` and `bulk` as configured (Bulk falls back to REST, with a log line, for
  objects and fields Bulk cannot serve); `auto` counts the matching records (`SELECT COUNT()` with the
  same window) and picks Bulk at or above `bulk_min_records`, or when the count itself times out.
- `Extraction.records()` runs a plan to its end and survives what a long sync meets on the way:
  - QUERY_TIMEOUT: the remaining window is halved (and halved again) from the last record seen, down
    to `MIN_TIMEOUT_WINDOW`; below that a `TapError` says what to do.
  - INVALID_FIELD: `refresh(plan)` (the stream describes the object again and drops vanished fields,
    with a warning) and the query restarts from the last record seen.
  - INVALID_QUERY_LOCATOR (Salesforce no longer holds the query's cursor: its results expired, two days
    after the query since API 56.0, or were dropped on Salesforce's side): the query restarts
    from the last record seen, with a warning; after `MAX_CURSOR_LOSSES` such losses in a row that moved
    the restart point no further (thousands of records sharing one SystemModstamp, read from their
    first each time), a `TapError` says what to check.
  - QUERY_TOO_COMPLICATED (a wide object whose formula fields make the query too costly to compile):
    the fields each query selects are halved (REST field chunks joined by Id, at most
    `rest.MAX_JOINED_QUERIES` of them), with a warning, and the query restarts from the last record
    seen; a `TapError` when the narrowest split is still refused.
  - A Bulk job that cannot run, fails, or is still unfinished after `bulk_job_timeout_seconds` (it is
    then aborted): the rest of the window goes through REST, with a warning.
  Restarts read `>=` the last replication value seen (the window's start when the records came in no
  order), so records sharing it are read again: the target's upsert absorbs the repeats, and nothing
  is skipped.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from tap_salesforce_seg.errors import SalesforceApiError, TapError
from tap_salesforce_seg.soql import ID_FIELD, QueryField, build_count_query, truncate_to_millisecond
from tap_salesforce_seg.values import decode_json, parse_datetime

if TYPE_CHECKING:
    from tap_salesforce_seg.client import SalesforceClient

API_TYPES = ("auto", "rest", "bulk")
# A window that still times out at this width cannot be split usefully any further.
MIN_TIMEOUT_WINDOW = timedelta(seconds=1)
# Cursors lost in a row at the same restart point before the run gives up (see the docstring).
MAX_CURSOR_LOSSES = 3
# Where a window without a start begins when it has to be split (before any Salesforce data).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
# Field types the Bulk API cannot return (binary content; compound values).
BULK_UNSUPPORTED_TYPES = frozenset({"base64", "address", "location"})


@dataclasses.dataclass(frozen=True)
class QueryPlan:
    """What to read: the object, its columns (Id and the replication field among them), a window."""

    sobject: str
    fields: tuple[QueryField, ...]
    replication_field: str | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    include_deleted: bool = True
    hidden: frozenset[str] = frozenset()  # properties queried but left out of the records

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(QueryField(*field) for field in self.fields))
        object.__setattr__(self, "hidden", frozenset(self.hidden))
        names = self.field_names
        if ID_FIELD not in names:
            raise ValueError(f"a query plan on {self.sobject} must select Id")
        if self.replication_field and self.replication_field not in names:
            raise ValueError(f"a query plan on {self.sobject} must select {self.replication_field}")

    @property
    def field_names(self) -> list[str]:
        return [field.salesforce_name for field in self.fields]

    @property
    def id_property(self) -> str:
        return self._property_of(ID_FIELD)

    @property
    def replication_property(self) -> str | None:
        return self._property_of(self.replication_field) if self.replication_field else None

    def _property_of(self, salesforce_name: str) -> str:
        return next(f.property_name for f in self.fields if f.salesforce_name == salesforce_name)

    def with_window(self, start: datetime | None, end: datetime | None) -> QueryPlan:
        return dataclasses.replace(self, window_start=start, window_end=end)

    def without_fields(self, salesforce_names: set[str]) -> QueryPlan:
        kept = tuple(field for field in self.fields if field.salesforce_name not in salesforce_names)
        return dataclasses.replace(self, fields=kept)


Stamped = tuple["str | None", Any]  # (replication value in output spelling, record)


class Extractor(Protocol):
    """One way of reading a plan's records: `(stamp, record)` pairs in (replication field, Id) order,
    or with None stamps when read in no order (then `completed_stamp`, when present, is the highest
    stamp of a read that finished), records being output Structs or dicts (values.record_dict) without
    the plan's hidden properties."""

    name: str
    expected_records: int | None

    def records(self, plan: QueryPlan) -> Iterator[Stamped]: ...


class BulkUnavailable(TapError):
    """Bulk API 2.0 cannot serve this plan (refused job, failed job): read it through REST instead."""


def bulk_unsupported_reason(plan: QueryPlan) -> str | None:
    """Why Bulk API 2.0 cannot serve `plan`, or None when it can."""
    if plan.sobject.endswith("Tag") and not plan.sobject.endswith("__c"):
        return f"{plan.sobject} is a Tag object, which the Bulk API does not support"
    binary = [field.salesforce_name for field in plan.fields if field.type in BULK_UNSUPPORTED_TYPES]
    if binary:
        return f"the Bulk API cannot return the selected field(s) {', '.join(binary)} (binary or compound)"
    return None


def count_records(client: SalesforceClient, plan: QueryPlan) -> int:
    """How many records the plan's window holds (deleted ones included when the plan includes them)."""
    soql = build_count_query(
        plan.sobject,
        replication_field=plan.replication_field,
        window_start=plan.window_start,
        window_end=plan.window_end,
    )
    endpoint = "/queryAll" if plan.include_deleted else "/query"
    body = decode_json(client.get(endpoint, params={"q": soql}).content)
    return int(body.get("totalSize", 0))


def choose_extractor(
    client: SalesforceClient,
    plan: QueryPlan,
    *,
    api_type: str,
    bulk_min_records: int,
    bulk_job_timeout_seconds: float = 0,
    logger: logging.Logger,
    stream: str,
) -> Extractor:
    """The strategy for this plan (see the module docstring); logs the choice and why.
    `bulk_job_timeout_seconds` bounds a Bulk job's wait (0: no bound)."""
    from tap_salesforce_seg.extract.bulk import BulkExtractor
    from tap_salesforce_seg.extract.rest import RestExtractor

    def bulk() -> BulkExtractor:
        return BulkExtractor(client, logger=logger, job_timeout_seconds=bulk_job_timeout_seconds)

    if api_type not in API_TYPES:
        raise ValueError(f"api_type must be one of {', '.join(API_TYPES)}, not {api_type!r}")
    if api_type == "rest":
        return RestExtractor(client, logger=logger)
    reason = bulk_unsupported_reason(plan)
    if reason:
        logger.info("%s: using the REST API: %s.", stream, reason)
        return RestExtractor(client, logger=logger)
    if api_type == "bulk":
        return bulk()
    try:
        matching = count_records(client, plan)
    except SalesforceApiError as error:
        if error.error_code != "QUERY_TIMEOUT":
            raise
        # Counting timed out: the window holds more than Salesforce counts in its query time, which is
        # what Bulk API 2.0 is for (and a Bulk job that cannot run falls back to REST).
        logger.info(
            "%s: counting the matching records timed out (QUERY_TIMEOUT): using Bulk API 2.0.", stream
        )
        return bulk()
    if matching >= bulk_min_records:
        logger.info(
            "%s: %s matching records >= bulk_min_records %s: using Bulk API 2.0.",
            stream,
            f"{matching:,}",
            f"{bulk_min_records:,}",
        )
        extractor: Extractor = bulk()
    else:
        extractor = RestExtractor(client, logger=logger)
    extractor.expected_records = matching
    return extractor


Refresh = Callable[[QueryPlan, SalesforceApiError], "QueryPlan | None"]


class Extraction:
    """Runs one plan to its end (see the module docstring)."""

    def __init__(
        self,
        client: SalesforceClient,
        plan: QueryPlan,
        extractor: Extractor,
        *,
        refresh: Refresh | None = None,
        logger: logging.Logger,
        stream: str,
    ) -> None:
        self.client = client
        self.plan = plan
        self.extractor = extractor
        self.refresh = refresh
        self.logger = logger
        self.stream = stream
        self.restarts = 0
        self._cursor_losses = 0  # INVALID_QUERY_LOCATOR answers in a row at one restart point
        self._lost_at: datetime | None = None  # that restart point
        # The highest stamp of the records read without stamps, from reads that finished (Bulk jobs).
        self.completed_stamp: str | None = None

    @property
    def expected_records(self) -> int | None:
        return self.extractor.expected_records

    def records(self) -> Iterator[Stamped]:
        plan = self.plan
        final_end = plan.window_end
        cursor = plan.window_start  # everything before it has been read
        span: timedelta | None = None  # None: the whole rest of the window at once
        while True:
            sub_end = final_end if span is None else min(_start(cursor) + span, final_end)
            last_seen: str | None = None
            try:
                for item in self.extractor.records(plan.with_window(cursor, sub_end)):
                    last_seen = item[0]
                    yield item
            except SalesforceApiError as error:
                if last_seen is not None:
                    cursor = parse_datetime(last_seen)
                if error.error_code == "QUERY_TIMEOUT":
                    span = self._halved(plan, cursor, sub_end, error)
                elif error.error_code == "INVALID_FIELD" and self.refresh is not None:
                    plan = self._refreshed(plan, error)
                elif error.error_code == "INVALID_QUERY_LOCATOR":
                    self._cursor_lost(plan, cursor, error)
                elif error.error_code == "QUERY_TOO_COMPLICATED":
                    self._narrowed(plan, cursor, error)
                else:
                    raise
                self.restarts += 1
                continue
            except BulkUnavailable as error:
                from tap_salesforce_seg.extract.rest import RestExtractor

                if last_seen is not None:
                    cursor = parse_datetime(last_seen)
                self.logger.warning("%s: %s; reading the rest through the REST API.", self.stream, error)
                expected = self.extractor.expected_records
                self.extractor = RestExtractor(self.client, logger=self.logger)
                self.extractor.expected_records = expected
                self.restarts += 1
                continue
            self._note_completed()
            if sub_end == final_end:
                return
            cursor = sub_end
            span = span * 2 if span is not None else None

    def _note_completed(self) -> None:
        done = getattr(self.extractor, "completed_stamp", None)
        if done is not None and (self.completed_stamp is None or done > self.completed_stamp):
            self.completed_stamp = done

    def _halved(
        self, plan: QueryPlan, cursor: datetime | None, sub_end: datetime | None, error: Exception
    ) -> timedelta:
        if plan.replication_field is None or sub_end is None:
            raise TapError(
                f"{self.stream}: Salesforce timed out (QUERY_TIMEOUT) reading {plan.sobject}, which has no "
                "time field to split the query by; deselect wide fields or ask Salesforce for an index"
            ) from error
        width = sub_end - _start(cursor)
        if width <= MIN_TIMEOUT_WINDOW:
            raise TapError(
                f"{self.stream}: Salesforce timed out (QUERY_TIMEOUT) reading {plan.sobject} even for "
                f"a window under {MIN_TIMEOUT_WINDOW.total_seconds():g} s from "
                f"{_start(cursor).isoformat()}; deselect fields (wide text fields slow queries), "
                "try api_type bulk, or ask Salesforce support for a custom index"
            ) from error
        # Never under the smallest window, which is tried before giving up: a window of 1.4 s that timed
        # out may hold a first second that passes.
        half = max(timedelta(milliseconds=int(width / 2 / timedelta(milliseconds=1))), MIN_TIMEOUT_WINDOW)
        self.logger.warning(
            "%s: QUERY_TIMEOUT on %s from %s; retrying with a window of %s.",
            self.stream,
            plan.sobject,
            _start(cursor).isoformat(),
            half,
        )
        return half

    def _narrowed(self, plan: QueryPlan, cursor: datetime | None, error: SalesforceApiError) -> None:
        from tap_salesforce_seg.extract.rest import MAX_JOINED_QUERIES

        narrow = getattr(self.extractor, "narrow", None)  # REST; Bulk refuses such a job (BulkUnavailable)
        chunks = narrow(plan) if narrow is not None else None
        if chunks is None:
            raise TapError(
                f"{self.stream}: Salesforce found the query on {plan.sobject} too complicated "
                f"(QUERY_TOO_COMPLICATED) even with its fields split into {MAX_JOINED_QUERIES} queries "
                "joined by Id (each with its own pages and API calls): deselect the object's heaviest "
                "formula fields"
            ) from error
        self.logger.warning(
            "%s: Salesforce found the query on %s too complicated (QUERY_TOO_COMPLICATED: formula fields "
            "are costly to compile); reading its fields in %d queries joined by Id instead, from %s.",
            self.stream,
            plan.sobject,
            chunks,
            _restart_point(plan, cursor),
        )

    def _cursor_lost(self, plan: QueryPlan, cursor: datetime | None, error: SalesforceApiError) -> None:
        """Salesforce no longer holds the query's cursor (its results expired or were dropped): read
        again from the last record seen (`>=`: the target absorbs the repeats)."""
        moved_on = self._cursor_losses == 0 or (
            cursor is not None and (self._lost_at is None or cursor > self._lost_at)
        )
        self._cursor_losses = 1 if moved_on else self._cursor_losses + 1
        self._lost_at = cursor
        where = _restart_point(plan, cursor)
        if self._cursor_losses > MAX_CURSOR_LOSSES:
            raise TapError(
                f"{self.stream}: Salesforce dropped the query's cursor on {plan.sobject} "
                f"{self._cursor_losses} times in a row, each time before the sync got past {where} "
                "(INVALID_QUERY_LOCATOR): try again later, or read the object through Bulk API 2.0 "
                "(api_type bulk)"
            ) from error
        self.logger.warning(
            "%s: Salesforce no longer holds the query's cursor on %s (INVALID_QUERY_LOCATOR: its results "
            "expired or were dropped); reading again from %s.",
            self.stream,
            plan.sobject,
            where,
        )

    def _refreshed(self, plan: QueryPlan, error: SalesforceApiError) -> QueryPlan:
        assert self.refresh is not None
        fresh = self.refresh(plan, error)
        if fresh is None or fresh.field_names == plan.field_names:
            raise error
        return fresh


def _restart_point(plan: QueryPlan, cursor: datetime | None) -> str:
    """Where a restarted query reads from, in words."""
    if not plan.replication_field:
        return "the start (no time field)"
    if cursor is None:
        return "the window's start" if plan.window_start is None else plan.window_start.isoformat()
    return truncate_to_millisecond(cursor).isoformat()


def _start(cursor: datetime | None) -> datetime:
    return truncate_to_millisecond(cursor) if cursor is not None else EARLIEST
