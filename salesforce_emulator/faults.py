"""Scripted faults: the failures a Salesforce client must survive, on demand.

A `FaultPlan` holds armed faults. Each fault matches requests (optionally only those whose request target,
path plus query string, contains `path`), fires on the next `count` matches and then disarms itself
(`count=None` keeps it armed until `reset()`/`remove()`). Tests script it through the Python API
(`emulator.faults`), the HTTP control API (`POST /__emulator__/faults/<method>`, see control.py) or the
CLI flags (see cli.py). Every fault can be inspected (`active()`, each fault's `fired` counter) and removed.

Kinds and what the client sees:
- `http_error(status=500|503)`: HTTP 500 with Salesforce's UNKNOWN_EXCEPTION body, or 503
  SERVER_UNAVAILABLE. Checked before authentication (a load balancer or pod failing); not counted
  against the API allowance.
- `expire_sessions_after(calls=N)`: the next N authenticated API calls succeed, then every session
  issued so far expires (the call after them answers 401 INVALID_SESSION_ID); new logins work.
- `drop_connection()`: the status line and headers (with the full Content-Length) are sent, then part of
  the body (`after_bytes`, default half), then the connection is closed.
- `slow(seconds)`: the response is delayed by `seconds` before anything is sent.
- `query_timeout(rows=N)`: a REST query (query/queryAll, not query-more) whose matching row count
  (QueryResult.total_size) exceeds N answers 400 QUERY_TIMEOUT "Your query request was running for too
  long."
- `fail_bulk_jobs(message=...)`: the next Bulk API 2.0 query jobs created end in state Failed with
  `errorMessage` instead of JobComplete.
- `query_too_complicated(fields=N)`: a REST query (query/queryAll) or a Bulk API 2.0 query job whose
  SELECT lists more than N fields answers 400 QUERY_TOO_COMPLICATED, as Salesforce does for objects
  whose formula fields make a wide query too costly to compile (`path` matches a Bulk job's query).
- `close_cursors()`: the next query-more requests find their query's cursor gone, as Salesforce answers
  for a locator it no longer holds (its results expire two days after the query since API 56.0; before,
  a cursor idle for 15 minutes or a user's eleventh closed): 400 INVALID_QUERY_LOCATOR, and the cursor
  stays closed.
- `end_bulk_results()`: the next Bulk API 2.0 results requests answer 204 No Content without a body or a
  `Sforce-Locator` (Salesforce's documented answer when reading a results page fails), so a client that
  takes that for the end reads a job's results short.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ApiError
from .soql import TOO_COMPLICATED_MESSAGE

HTTP_ERROR = "http_error"
EXPIRE_SESSIONS = "expire_sessions_after"
DROP_CONNECTION = "drop_connection"
SLOW = "slow"
QUERY_TIMEOUT = "query_timeout"
FAIL_BULK_JOBS = "fail_bulk_jobs"
CLOSE_CURSORS = "close_cursors"
QUERY_TOO_COMPLICATED = "query_too_complicated"
END_BULK_RESULTS = "end_bulk_results"
KINDS = (
    HTTP_ERROR,
    EXPIRE_SESSIONS,
    DROP_CONNECTION,
    SLOW,
    QUERY_TIMEOUT,
    FAIL_BULK_JOBS,
    CLOSE_CURSORS,
    QUERY_TOO_COMPLICATED,
    END_BULK_RESULTS,
)

# Salesforce's own wording for a failed Bulk query (the message clients such as singer's tap look for).
DEFAULT_BULK_FAILURE_MESSAGE = "InternalServerError : retried more than 15 times"
UNKNOWN_EXCEPTION_MESSAGE = (
    "An unexpected error occurred. Please include this ErrorId if you contact support: "
    "1170837491-52418 (-1571937104)"
)


def query_timeout_error() -> ApiError:
    return ApiError(400, "QUERY_TIMEOUT", "Your query request was running for too long.")


def http_error_for(status: int) -> ApiError:
    if status == 500:
        return ApiError(500, "UNKNOWN_EXCEPTION", UNKNOWN_EXCEPTION_MESSAGE)
    if status == 503:
        return ApiError(503, "SERVER_UNAVAILABLE", "Server is unavailable. Please try again later.")
    raise ValueError(f"http_error supports statuses 500 and 503, not {status}")


@dataclass
class Fault:
    """One armed fault. `remaining` None means it fires until removed."""

    id: int
    kind: str
    remaining: int | None
    path: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    fired: int = 0

    def matches(self, target: str) -> bool:
        return self.path is None or self.path in target

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FaultPlan:
    """Thread-safe set of armed faults; the HTTP layer consumes them, tests arm and inspect them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    # ---- arming (the public, scriptable API) ----
    def http_error(self, status: int = 500, count: int | None = 1, path: str | None = None) -> dict:
        http_error_for(status)  # validates the status early
        return self._arm(HTTP_ERROR, count, path, status=status)

    def expire_sessions_after(self, calls: int = 0) -> dict:
        if calls < 0:
            raise ValueError("calls must be >= 0")
        return self._arm(EXPIRE_SESSIONS, 1, None, calls=calls, seen=0)

    def drop_connection(
        self, count: int | None = 1, path: str | None = None, after_bytes: int | None = None
    ) -> dict:
        return self._arm(DROP_CONNECTION, count, path, after_bytes=after_bytes)

    def slow(self, seconds: float, count: int | None = 1, path: str | None = None) -> dict:
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        return self._arm(SLOW, count, path, seconds=float(seconds))

    def query_timeout(self, rows: int = 0, count: int | None = 1, path: str | None = None) -> dict:
        return self._arm(QUERY_TIMEOUT, count, path, rows=int(rows))

    def fail_bulk_jobs(self, count: int | None = 1, message: str = DEFAULT_BULK_FAILURE_MESSAGE) -> dict:
        return self._arm(FAIL_BULK_JOBS, count, None, message=message)

    def close_cursors(self, count: int | None = 1, path: str | None = None) -> dict:
        return self._arm(CLOSE_CURSORS, count, path)

    def end_bulk_results(self, count: int | None = 1, path: str | None = None) -> dict:
        return self._arm(END_BULK_RESULTS, count, path)

    def query_too_complicated(self, fields: int, count: int | None = 1, path: str | None = None) -> dict:
        if fields < 1:
            raise ValueError("fields must be >= 1")
        return self._arm(QUERY_TOO_COMPLICATED, count, path, fields=int(fields))

    # ---- inspection ----
    def active(self) -> list[dict]:
        with self._lock:
            return [fault.to_dict() for fault in self._faults]

    def remove(self, fault_id: int) -> bool:
        with self._lock:
            before = len(self._faults)
            self._faults = [fault for fault in self._faults if fault.id != fault_id]
            return len(self._faults) != before

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()

    # ---- consumption (the HTTP layer) ----
    def check_too_complicated(self, target: str, columns: int) -> None:
        """Raise QUERY_TOO_COMPLICATED when an armed fault matches `target` and `columns` passes its limit."""
        if self.take(QUERY_TOO_COMPLICATED, target, when=lambda fault: columns > fault.params["fields"]):
            raise ApiError(400, QUERY_TOO_COMPLICATED.upper(), TOO_COMPLICATED_MESSAGE)

    def take(self, kind: str, target: str = "", when: Callable[[Fault], bool] | None = None) -> Fault | None:
        """The first armed fault of `kind` matching `target` (and `when`): counted down, returned."""
        with self._lock:
            for fault in self._faults:
                if fault.kind != kind or not fault.matches(target):
                    continue
                if when is not None and not when(fault):
                    continue
                self._fire(fault)
                return fault
        return None

    def session_call(self) -> bool:
        """Count one authenticated call for `expire_sessions_after`; True when sessions must expire now."""
        with self._lock:
            for fault in self._faults:
                if fault.kind != EXPIRE_SESSIONS:
                    continue
                if fault.params["seen"] >= fault.params["calls"]:
                    self._fire(fault)
                    return True
                fault.params["seen"] += 1
        return False

    def _fire(self, fault: Fault) -> None:
        fault.fired += 1
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._faults.remove(fault)

    def _arm(self, kind: str, count: int | None, path: str | None, **params: Any) -> dict:
        if count is not None and count < 1:
            raise ValueError("count must be >= 1, or None for 'until reset'")
        fault = Fault(next(self._ids), kind, count, path or None, params)
        with self._lock:
            self._faults.append(fault)
        return fault.to_dict()
