"""The tap's HTTP client for Salesforce's REST API: login, retries, re-login, the quota guard.

```python
client = SalesforceClient(config, logger)        # logs in lazily, on the first call
client.get(path, params=None, headers=None) -> requests.Response   # body already read whole
client.post(path, json) / client.patch(path, json) / client.delete(path)
client.post(path, json, on_retry=callback)       # callback() before each retry (a create may have landed)
client.get(..., past_quota=True)                 # also patch/delete: cleanup calls, see below
client.get_json(path, params=None, headers=None) -> Any
client.server_time() -> datetime                 # Salesforce's clock (Date header), UTC
client.api_usage -> (used, limit) | None         # from Sforce-Limit-Info
client.instance_url, client.api_version, client.data_path ("/services/data/v58.0")
```
`path` is joined to `/services/data/vXX.X` (`"/sobjects/Account/describe"`), or is an absolute
`/services/...` path (a `nextRecordsUrl`), or a full URL on the instance.

Behaviour:
- Bearer auth. Every answer's body is read whole inside the retry loop, in chunks of
  `READ_CHUNK_BYTES` (1 MiB: requests' own 10 KiB reads of `.content` cost about three times the CPU
  on large pages), so a body cut midway is retried like any dropped connection, with the same
  attempts, backoff and log lines; callers get a response whose `.content`/`.json()` is in memory.
- Retries with exponential backoff and jitter on 5xx, 406, 429, connection errors, timeouts, bodies
  cut short and REQUEST_LIMIT_EXCEEDED for concurrency; `ServiceUnavailable` when attempts run out.
- 401 INVALID_SESSION_ID: log in again once, then retry the call.
- Quota: `Sforce-Limit-Info: api-usage=N/M` is read from every answer; a call is not sent once N/M
  reaches `quota_percent`, and a 403 REQUEST_LIMIT_EXCEEDED (daily total) stops at once: both raise
  `QuotaExceeded`, whose message says when to retry (the allowance is a rolling 24 hours). Calls sent
  with `past_quota=True` skip the guard: the few that remove the run's own Bulk jobs, which otherwise
  run on in the org and spend its Bulk limits (see extract/bulk.py).
- INVALID_OPERATION_WITH_EXPIRED_PASSWORD (whatever the status) stops at once, saying what to do; a
  404 NOT_FOUND asks once whether the instance serves `api_version` at all (versions.py).
- Other error answers raise `SalesforceApiError(status, error_code, message)`.
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from tap_salesforce_seg.auth import Authenticator, LoginResult, password_expired_error
from tap_salesforce_seg.config import TapConfig
from tap_salesforce_seg.errors import (
    AuthenticationError,
    ConfigError,
    QuotaExceeded,
    SalesforceApiError,
    ServiceUnavailable,
    TransientError,
)
from tap_salesforce_seg.http_errors import network_failure, page_summary
from tap_salesforce_seg.versions import unserved_version

USER_AGENT = "tap-salesforce-seg"
_LIMIT_INFO = re.compile(r"api-usage=(\d+)/(\d+)")
_TRANSIENT_STATUSES = frozenset({406, 420, 429})
_ROLLING_WINDOW = timedelta(hours=24)
# Bodies are read in chunks of this size (a Bulk result page is several MiB; most REST answers fit one).
READ_CHUNK_BYTES = 1 << 20


class _TimeoutSession(requests.Session):
    """A session whose calls always carry a timeout (simple-salesforce's login sends none)."""

    def __init__(self, timeout: tuple[float, float]) -> None:
        super().__init__()
        self.default_timeout = timeout

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs.setdefault("timeout", self.default_timeout)
        return super().request(method, url, *args, **kwargs)


class SalesforceClient:
    """A thin, careful client; see the module docstring."""

    # Class-level defaults so tests (and the tap's fault tests) can shorten the waits.
    # 9 attempts wait 92 to 183 s in all (ceilings 1, 2, 4, ... 60 s): a Salesforce instance's restart
    # or a minute-long outage passes within one run instead of failing it.
    max_attempts = 9
    backoff_base_seconds = 1.0
    backoff_max_seconds = 60.0
    connect_timeout_seconds = 30.0
    read_timeout_seconds = 300.0

    def __init__(
        self,
        config: TapConfig,
        logger: logging.Logger,
        *,
        http: requests.Session | None = None,
    ) -> None:
        self.config = config
        self.logger = logger
        self.api_version = config.api_version
        self.data_path = f"/services/data/v{config.api_version}"
        self.http = http or _TimeoutSession((self.connect_timeout_seconds, self.read_timeout_seconds))
        self.http.headers["User-Agent"] = USER_AGENT
        self.http.headers["Sforce-Call-Options"] = f"client={USER_AGENT}"
        self.api_usage: tuple[int, int] | None = None
        self.requests_sent = 0
        self._authenticator = Authenticator(config, self.http, logger)
        self._login: LoginResult | None = None
        self._login_lock = threading.Lock()
        self._server_date: datetime | None = None
        self._server_date_seen_at = 0.0
        self._version_unserved: tuple[ConfigError | None] | None = None  # see _unserved_version

    # --- public API -------------------------------------------------------------------------------

    @property
    def instance_url(self) -> str:
        return self._session().instance_url

    @property
    def user_id(self) -> str | None:
        """The logged-in user's id when the login's answer named it (OAuth), else None."""
        return self._session().user_id

    @property
    def organization_id(self) -> str | None:
        """The logged-in org's 15-character id (logging in first when needed), or None if unknown."""
        return self._session().organization_id

    def get(
        self,
        path: str,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        *,
        past_quota: bool = False,
    ) -> requests.Response:
        return self.request("GET", path, params=params, headers=headers, past_quota=past_quota)

    def post(
        self,
        path: str,
        json: Any = None,
        headers: dict[str, str] | None = None,
        *,
        on_retry: Callable[[], None] | None = None,
    ) -> requests.Response:
        return self.request("POST", path, json=json, headers=headers, on_retry=on_retry)

    def patch(self, path: str, json: Any = None, *, past_quota: bool = False) -> requests.Response:
        return self.request("PATCH", path, json=json, past_quota=past_quota)

    def delete(self, path: str, *, past_quota: bool = False) -> requests.Response:
        return self.request("DELETE", path, past_quota=past_quota)

    def get_json(
        self, path: str, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> Any:
        return _json_body(self.get(path, params=params, headers=headers), "GET", path)

    def post_json(self, path: str, json: Any = None) -> Any:
        return _json_body(self.post(path, json=json), "POST", path)

    def server_time(self) -> datetime:
        """Salesforce's clock: the latest Date header plus the time since it arrived; else local UTC."""
        if self._server_date is None:
            return datetime.now(UTC)
        elapsed = time.monotonic() - self._server_date_seen_at
        return self._server_date + timedelta(seconds=elapsed)

    def login(self) -> LoginResult:
        """Log in now (with retries); later calls reuse the session until it expires."""
        with self._login_lock:
            self._login = self._with_retries("POST", "login", self._authenticator.login)
            return self._login

    # --- the request loop -------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        past_quota: bool = False,
        on_retry: Callable[[], None] | None = None,
    ) -> requests.Response:
        """`past_quota`: send even past `quota_percent` (cleanup). `on_retry`: called before each retry
        (a POST whose answer was lost may have taken effect)."""
        relogged = False
        while True:
            session = self._session()
            url = self._url(session.instance_url, path)

            def attempt(url: str = url, token: str = session.access_token) -> requests.Response:
                return self._send(
                    method, url, token, params=params, json=json, headers=headers, past_quota=past_quota
                )

            try:
                return self._with_retries(method, _display_path(url), attempt, on_retry)
            except _SessionExpired:
                if relogged:
                    raise AuthenticationError(
                        f"Salesforce rejected a fresh session for {method} {_display_path(url)} "
                        "(INVALID_SESSION_ID); check the user's API permissions"
                    ) from None
                relogged = True
                self.logger.info("Salesforce session expired; logging in again.")
                self._relogin(session)

    def _send(
        self,
        method: str,
        url: str,
        token: str,
        *,
        params: dict[str, Any] | None,
        json: Any,
        headers: dict[str, str] | None,
        past_quota: bool = False,
    ) -> requests.Response:
        if not past_quota:
            self._check_quota(method, url)
        request_headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        request_headers.update(headers or {})
        self.requests_sent += 1
        try:
            # stream=True: the body is read below, in large chunks, while a failure is still retried.
            response = self.http.request(
                method, url, params=params, json=json, headers=request_headers, stream=True
            )
            self._observe(response)
            _read_body(response)
            if response.status_code < 400:
                return response
        except (requests.ConnectionError, requests.Timeout) as error:
            raise network_failure(error, f"{method} {_display_path(url)}") from None
        except requests.exceptions.ChunkedEncodingError as error:
            raise TransientError(f"body cut short ({_first_line(error)})") from None
        raise self._error_for(response, method, url)

    def _with_retries(
        self, method: str, path: str, attempt: Any, on_retry: Callable[[], None] | None = None
    ) -> Any:
        started = time.monotonic()
        for number in range(1, self.max_attempts + 1):
            try:
                return attempt()
            except TransientError as error:
                if number == self.max_attempts:
                    elapsed = time.monotonic() - started
                    raise ServiceUnavailable(
                        f"Salesforce kept failing for {method} {path}: {number} attempts over "
                        f"{elapsed:.0f} s, last: {error}"
                    ) from None
                delay = self._backoff(number, error.retry_after)
                self.logger.warning(
                    "%s %s: %s; retry %d of %d in %.1f s",
                    method,
                    path,
                    error,
                    number,
                    self.max_attempts - 1,
                    delay,
                )
                if on_retry is not None:
                    on_retry()
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        ceiling = min(self.backoff_max_seconds, self.backoff_base_seconds * 2 ** (attempt - 1))
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)  # "equal jitter": grows, never zero
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max_seconds))
        return delay

    # --- session ----------------------------------------------------------------------------------

    def _session(self) -> LoginResult:
        login = self._login
        if login is not None:
            return login
        with self._login_lock:
            if self._login is None:
                self._login = self._with_retries("POST", "login", self._authenticator.login)
            return self._login

    def _relogin(self, expired: LoginResult) -> None:
        with self._login_lock:
            if self._login is expired:  # another thread may have logged in already
                self._login = self._with_retries("POST", "login", self._authenticator.login)

    def _url(self, instance_url: str, path: str) -> str:
        if path.startswith(("https://", "http://")):
            if not path.startswith(instance_url + "/"):
                raise ValueError(f"refusing to send the session to another host: {path.split('?')[0]}")
            return path
        if path.startswith("/services/"):
            return instance_url + path
        return f"{instance_url}{self.data_path}/{path.lstrip('/')}"

    # --- answers ----------------------------------------------------------------------------------

    def _observe(self, response: requests.Response) -> None:
        limit_info = response.headers.get("Sforce-Limit-Info")
        if limit_info and (match := _LIMIT_INFO.search(limit_info)):
            self.api_usage = (int(match.group(1)), int(match.group(2)))
        date = response.headers.get("Date")
        if date:
            try:
                parsed = email.utils.parsedate_to_datetime(date)
            except (TypeError, ValueError):
                return
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            self._server_date = parsed.astimezone(UTC)
            self._server_date_seen_at = time.monotonic()

    def _check_quota(self, method: str, url: str) -> None:
        if self.api_usage is None:
            return
        used, limit = self.api_usage
        if limit > 0 and used * 100 >= self.config.quota_percent * limit:
            raise QuotaExceeded(
                f"The org has used {used:,} of its {limit:,} daily API requests "
                f"({used * 100 / limit:.1f}%), at or above quota_percent {self.config.quota_percent:g}: "
                f"stopping before {method} {_display_path(url)}. {self._retry_advice()}"
            )

    def _retry_advice(self) -> str:
        latest = (self.server_time() + _ROLLING_WINDOW).strftime("%Y-%m-%d %H:%M UTC")
        return (
            "Salesforce counts calls over a rolling 24 hours, so room returns as earlier calls age out: "
            f"retry in a few hours, at the latest by {latest}, or raise quota_percent."
        )

    def _error_for(self, response: requests.Response, method: str, url: str) -> Exception:
        status = response.status_code
        error_code, message = _parse_error(response)
        path = _display_path(url)
        if status == 401 and error_code in ("INVALID_SESSION_ID", ""):
            return _SessionExpired()
        if status == 403 and error_code == "REQUEST_LIMIT_EXCEEDED":
            if "TotalRequests" in message or not message:
                usage = ""
                if self.api_usage:
                    usage = f" ({self.api_usage[0]:,} of {self.api_usage[1]:,} requests used)"
                return QuotaExceeded(
                    f"Salesforce refused {method} {path}: the org's daily API limit is used up{usage} "
                    f"(REQUEST_LIMIT_EXCEEDED: {message}). {self._retry_advice()}"
                )
            # ConcurrentPerOrgLongTxn and friends: too many calls at once, worth waiting for.
            return TransientError(f"{status} {error_code}: {message}", status=status)
        if error_code == "INVALID_OPERATION_WITH_EXPIRED_PASSWORD":  # whatever the status: no retry helps
            return password_expired_error(self.config.username)
        if status == 404 and error_code == "NOT_FOUND" and self.data_path in url:
            # Also what every call answers when the org does not serve the API version (see versions.py).
            unserved = self._unserved_version()
            if unserved is not None:
                return unserved
        if status >= 500 or status in _TRANSIENT_STATUSES:
            retry_after = _retry_after(response)
            return TransientError(
                f"{status} {error_code or response.reason}", status=status, retry_after=retry_after
            )
        return SalesforceApiError(
            status, error_code or str(response.reason or "HTTP_ERROR"), message, method=method, path=path
        )

    def _unserved_version(self) -> ConfigError | None:
        """Whether the instance serves the API version, asked once per run (after a 404)."""
        if self._version_unserved is None:
            instance = self._session().instance_url
            self._version_unserved = (unserved_version(self.http, instance, self.api_version),)
        return self._version_unserved[0]


class _SessionExpired(Exception):
    """401 INVALID_SESSION_ID: the request loop logs in again once."""


def _parse_error(response: requests.Response) -> tuple[str, str]:
    """(errorCode, message) from Salesforce's JSON error array, an object, or plain text."""
    try:
        body = response.json()
    except ValueError:
        return "", page_summary(response.text)  # a proxy's or load balancer's page, by its title
    if isinstance(body, list) and body and isinstance(body[0], dict):
        body = body[0]
    if isinstance(body, dict):
        code = body.get("errorCode") or body.get("error") or ""
        message = body.get("message") or body.get("error_description") or ""
        return str(code), str(message)
    return "", str(body)[:500]


def _read_body(response: requests.Response) -> None:
    """Read the whole body in `READ_CHUNK_BYTES` chunks and keep it as the response's content.

    requests keeps a read body in `_content` (what `.content`, `.text` and `.json()` return); filling
    it here is the same step `.content` takes, with larger reads. A read that fails closes the response
    (its connection is not reused) and lets the error reach the retry loop.
    """
    try:
        body = b"".join(response.iter_content(READ_CHUNK_BYTES))
    except BaseException:
        response.close()
        raise
    response._content = body
    response._content_consumed = True


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _json_body(response: requests.Response, method: str, path: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise SalesforceApiError(
            response.status_code,
            "INVALID_RESPONSE",
            f"expected JSON, got {response.headers.get('Content-Type', 'no content type')}",
            method=method,
            path=_display_path(path),
        ) from None


def _display_path(path_or_url: str) -> str:
    """The path without scheme, host or query string (queries can be long; hosts add nothing)."""
    text = path_or_url.split("?", 1)[0]
    if "://" in text:
        text = "/" + text.split("://", 1)[1].partition("/")[2]
    return text


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__
