"""The HTTP control API's client, for scripts that run the emulator as a separate process.

`ControlClient(base_url)` offers the same methods as the in-process objects, over
`POST /__emulator__/<group>/<method>` (JSON keyword arguments in, `{"result": ...}` out):

- `client.<Org method>(...)`: create, update, delete, undelete, hard_delete, late_commit, recalculate,
  add_field, remove_field, add_object, remove_object, reset, get, records, object_names.
- `client.clock.now() / set(moment, frozen=False) / advance(seconds) / freeze() / unfreeze()`.
- `client.faults.http_error(...) / expire_sessions_after(...) / drop_connection(...) / slow(...) /
  query_timeout(...) / fail_bulk_jobs(...) / close_cursors(...) / query_too_complicated(...) /
  end_bulk_results(...) / active() / remove(id) / reset()` (see faults.py).
- `client.counters()` (API usage and limit, requests seen per route, logins, Bulk jobs),
  `client.requests(last=N)` (the recent request log), `client.expire_sessions()`,
  `client.set_api_usage(n)`, `client.reset_counters()`, `client.info()`.

Values keep their Python types across the wire: date, datetime, time and Decimal travel as tagged JSON
objects (`{"$datetime": "2024-01-02T03:04:05.000+00:00"}`, `{"$date": ...}`, `{"$time": ...}`,
`{"$decimal": "1.50"}`); plain JSON values are sent as they are, so curl users can write
`curl -X POST $URL/__emulator__/org/update -d '{"sobject": "Account", "record_id": "001...",
"values": {"Name": "Acme"}}'`. Errors come back as HTTP 400/404 with `{"error": {"type", "message"}}`
and are raised here as `ControlError`. The control API answers loopback clients only and needs no login.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

_TAGS = ("$datetime", "$date", "$time", "$decimal")


def encode_value(value: Any) -> Any:
    """Python value -> JSON-ready value with tags for the types JSON lacks."""
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat(timespec="microseconds")}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, time):
        return {"$time": value.isoformat(timespec="microseconds")}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, dict):
        return {str(key): encode_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_value(item) for item in value]
    return value


def decode_value(value: Any) -> Any:
    """The inverse of encode_value."""
    if isinstance(value, dict):
        if len(value) == 1:
            ((tag, text),) = value.items()
            if tag in _TAGS and isinstance(text, str):
                return _decode_tagged(tag, text)
        return {key: decode_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [decode_value(item) for item in value]
    return value


def _decode_tagged(tag: str, text: str) -> Any:
    if tag == "$datetime":
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    if tag == "$date":
        return date.fromisoformat(text)
    if tag == "$time":
        return time.fromisoformat(text.replace("Z", "+00:00"))
    return Decimal(text)


class ControlError(RuntimeError):
    """The control API refused a call (bad arguments, unknown record or object, ...)."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.status = status
        self.error_type = error_type
        self.message = message


class _Group:
    def __init__(self, client: ControlClient, group: str) -> None:
        self._client = client
        self._group = group

    def _call(self, method: str, **kwargs: Any) -> Any:
        return self._client.call(self._group, method, **kwargs)


class ClockClient(_Group):
    def now(self) -> datetime:
        return self._call("now")

    def set(self, moment: datetime | str, frozen: bool = False) -> datetime:
        return self._call("set", moment=moment, frozen=frozen)

    def advance(self, seconds: float) -> datetime:
        return self._call("advance", seconds=seconds)

    def freeze(self) -> datetime:
        return self._call("freeze")

    def unfreeze(self) -> datetime:
        return self._call("unfreeze")


class FaultsClient(_Group):
    def http_error(self, status: int = 500, count: int | None = 1, path: str | None = None) -> dict:
        return self._call("http_error", status=status, count=count, path=path)

    def expire_sessions_after(self, calls: int = 0) -> dict:
        return self._call("expire_sessions_after", calls=calls)

    def drop_connection(
        self, count: int | None = 1, path: str | None = None, after_bytes: int | None = None
    ) -> dict:
        return self._call("drop_connection", count=count, path=path, after_bytes=after_bytes)

    def slow(self, seconds: float, count: int | None = 1, path: str | None = None) -> dict:
        return self._call("slow", seconds=seconds, count=count, path=path)

    def query_timeout(self, rows: int = 0, count: int | None = 1, path: str | None = None) -> dict:
        return self._call("query_timeout", rows=rows, count=count, path=path)

    def fail_bulk_jobs(self, count: int | None = 1, message: str | None = None) -> dict:
        kwargs: dict[str, Any] = {"count": count}
        if message is not None:
            kwargs["message"] = message
        return self._call("fail_bulk_jobs", **kwargs)

    def close_cursors(self, count: int | None = 1, path: str | None = None) -> dict:
        return self._call("close_cursors", count=count, path=path)

    def end_bulk_results(self, count: int | None = 1, path: str | None = None) -> dict:
        return self._call("end_bulk_results", count=count, path=path)

    def query_too_complicated(self, fields: int, count: int | None = 1, path: str | None = None) -> dict:
        return self._call("query_too_complicated", fields=fields, count=count, path=path)

    def active(self) -> list[dict]:
        return self._call("active")

    def remove(self, fault_id: int) -> bool:
        return self._call("remove", fault_id=fault_id)

    def reset(self) -> None:
        self._call("reset")


class ControlClient:
    """Drive a running emulator through its control API (same method names as `Org`)."""

    def __init__(self, base_url: str, ca_file: str | None = None, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._context = ssl.create_default_context(cafile=ca_file) if ca_file else None
        self.clock = ClockClient(self, "clock")
        self.faults = FaultsClient(self, "faults")

    def call(self, group: str, method: str, **kwargs: Any) -> Any:
        body = json.dumps(encode_value(kwargs)).encode()
        request = urllib.request.Request(
            f"{self.base_url}/__emulator__/{group}/{method}",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._context) as response:
                payload = json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            try:
                details = json.loads(error.read())["error"]
                raise ControlError(error.code, details["type"], details["message"]) from None
            except (ValueError, KeyError, TypeError):
                raise ControlError(error.code, "HTTPError", str(error)) from None
        return decode_value(payload["result"])

    # ---- Org ----
    def object_names(self) -> list[str]:
        return self.call("org", "object_names")

    def create(self, sobject: str, values: dict) -> str:
        return self.call("org", "create", sobject=sobject, values=values)

    def update(self, sobject: str, record_id: str, values: dict) -> None:
        self.call("org", "update", sobject=sobject, record_id=record_id, values=values)

    def delete(self, sobject: str, record_id: str) -> None:
        self.call("org", "delete", sobject=sobject, record_id=record_id)

    def undelete(self, sobject: str, record_id: str) -> None:
        self.call("org", "undelete", sobject=sobject, record_id=record_id)

    def hard_delete(self, sobject: str, record_id: str) -> None:
        self.call("org", "hard_delete", sobject=sobject, record_id=record_id)

    def late_commit(
        self, sobject: str, values: dict, record_id: str | None = None, seconds_ago: float = 60.0
    ) -> str:
        return self.call(
            "org", "late_commit", sobject=sobject, values=values, record_id=record_id, seconds_ago=seconds_ago
        )

    def recalculate(self, sobject: str, record_id: str, values: dict) -> None:
        self.call("org", "recalculate", sobject=sobject, record_id=record_id, values=values)

    def add_field(self, sobject: str, name: str, type: str, **attributes: Any) -> None:
        self.call("org", "add_field", sobject=sobject, name=name, type=type, **attributes)

    def remove_field(self, sobject: str, name: str) -> None:
        self.call("org", "remove_field", sobject=sobject, name=name)

    def add_object(self, name: str, fields: dict[str, str], count: int = 0) -> None:
        self.call("org", "add_object", name=name, fields=fields, count=count)

    def remove_object(self, name: str) -> None:
        self.call("org", "remove_object", name=name)

    def reset(self) -> None:
        self.call("org", "reset")

    def get(self, sobject: str, record_id: str) -> dict | None:
        return self.call("org", "get", sobject=sobject, record_id=record_id)

    def records(self, sobject: str, include_deleted: bool = True) -> list[dict]:
        return self.call("org", "records", sobject=sobject, include_deleted=include_deleted)

    # ---- the emulator itself ----
    def counters(self) -> dict:
        return self.call("emulator", "counters")

    def requests(self, last: int | None = None) -> list[dict]:
        return self.call("emulator", "requests", last=last)

    def expire_sessions(self) -> int:
        return self.call("emulator", "expire_sessions")

    def set_api_usage(self, used: int) -> None:
        self.call("emulator", "set_api_usage", used=used)

    def reset_counters(self) -> None:
        self.call("emulator", "reset_counters")

    def info(self) -> dict:
        return self.call("emulator", "info")
