"""Pytest fixtures (and helpers) that run the Salesforce emulator over real sockets.

Fixtures (registered by `pytest_plugins = ["emulator_fixtures"]` in tests/conftest.py):
- `emulator`: a fresh small org (scale SMALL_SCALE) served over plain http for one test.
- `emulator_factory(**kwargs)`: starts emulators with any `OrgConfig` field (seed, scale, counts, tags,
  schedules, custom, wide_object, describe_dir, ...) and any `Emulator` keyword (tls, session_lifetime,
  api_limit, credentials, rotate_refresh_tokens, bulk_timing, ...); all are stopped after the test.
  Their orgs come from a pool: a used org is `reset()` and given a new real-time clock before the next
  test with the same configuration gets it (as fresh as a new one, without generating it again).

Helpers for tests that keep one emulator per module (`start_emulator`), log in (`oauth_login`,
`bearer_session`), or point unmodified clients that hard-code `https://login.salesforce.com` at the
emulator (`login_redirect_session`). Over TLS, requests reads REQUESTS_CA_BUNDLE before a session's own
`verify` (and this machine sets it), so trust the emulator's CA through the environment:
`monkeypatch.setenv("REQUESTS_CA_BUNDLE", emu.ca_file)`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from salesforce_emulator import Emulator

SMALL_SCALE = 0.02
API_VERSION = "58.0"
SALESFORCE_LOGIN_HOSTS = ("https://login.salesforce.com", "https://test.salesforce.com")


def _split(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    from salesforce_emulator import OrgConfig  # the org's heavy imports wait until a test needs one

    org_fields = {field.name for field in dataclasses.fields(OrgConfig)}
    org_kwargs = {key: value for key, value in kwargs.items() if key in org_fields}
    emulator_kwargs = {key: value for key, value in kwargs.items() if key not in org_fields}
    org_kwargs.setdefault("scale", SMALL_SCALE)
    return org_kwargs, emulator_kwargs


def start_emulator(**kwargs: Any) -> Emulator:
    """Start an emulator; keyword arguments go to OrgConfig when they name one of its fields."""
    from salesforce_emulator import OrgConfig

    org_kwargs, emulator_kwargs = _split(kwargs)
    return Emulator(OrgConfig(**org_kwargs), **emulator_kwargs).start()


class _OrgPool:
    """Generated orgs kept for reuse between tests: `Org.reset()` (plus a new clock) makes a used org
    fresh again far faster than generating it anew, which keeps the suites quick."""

    MAX_KEPT = 24

    def __init__(self) -> None:
        self._free: dict[str, list[Any]] = {}

    @staticmethod
    def _key(config: Any) -> str:
        return repr([(field.name, repr(getattr(config, field.name))) for field in dataclasses.fields(config)])

    def take(self, org_kwargs: dict[str, Any]) -> Any:
        from salesforce_emulator import Org, OrgConfig

        config = OrgConfig(**org_kwargs)
        free = self._free.get(self._key(config))
        return free.pop() if free else Org(config)

    def give_back(self, org: Any) -> None:
        from salesforce_emulator.clock import Clock

        if sum(len(orgs) for orgs in self._free.values()) >= self.MAX_KEPT:
            return  # memory stays bounded: the org is dropped instead
        org.reset()
        org.clock = Clock()
        self._free.setdefault(self._key(org.config), []).append(org)


_POOL = _OrgPool()


@pytest.fixture
def emulator_factory() -> Iterator[Callable[..., Emulator]]:
    started: list[Emulator] = []

    def factory(**kwargs: Any) -> Emulator:
        org_kwargs, emulator_kwargs = _split(kwargs)
        emulator = Emulator(org=_POOL.take(org_kwargs), **emulator_kwargs).start()
        started.append(emulator)
        return emulator

    yield factory
    for emulator in reversed(started):
        emulator.stop()
        _POOL.give_back(emulator.org)


@pytest.fixture
def emulator(emulator_factory: Callable[..., Emulator]) -> Emulator:
    return emulator_factory()


def oauth_login(emulator: Emulator, session: requests.Session | None = None) -> dict[str, Any]:
    """The token endpoint's answer to the default refresh-token grant."""
    credentials = emulator.credentials
    response = (session or requests).post(
        f"{emulator.base_url}/services/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "client_id": credentials.client_id,
            "client_secret": credentials.client_secret,
            "refresh_token": credentials.refresh_token,
        },
        timeout=30,
    )
    response.raise_for_status()
    return response.json()


def bearer_session(emulator: Emulator) -> requests.Session:
    """A requests session logged in to the emulator (Authorization: Bearer ...)."""
    session = requests.Session()
    token = oauth_login(emulator, session)["access_token"]
    session.headers["Authorization"] = f"Bearer {token}"
    return session


class LoginRedirectAdapter(HTTPAdapter):
    """Sends requests for Salesforce's login hosts to the emulator instead (everything else unchanged)."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_url = base_url.rstrip("/")

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        for host in SALESFORCE_LOGIN_HOSTS:
            if request.url and request.url.startswith(host + "/"):
                request.url = self.base_url + request.url[len(host) :]
        return super().send(request, **kwargs)


def login_redirect_session(emulator: Emulator) -> requests.Session:
    """A session whose logins to login.salesforce.com / test.salesforce.com reach the emulator."""
    session = requests.Session()
    adapter = LoginRedirectAdapter(emulator.base_url)
    for host in SALESFORCE_LOGIN_HOSTS:
        session.mount(host + "/", adapter)
    return session


def rest_value(value: Any) -> Any:
    """A Python value from `Org.records()` as Salesforce's REST JSON writes it (parse floats as Decimal)."""
    if isinstance(value, datetime):
        utc = value.astimezone(UTC)
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.strftime("%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    if isinstance(value, dict):
        return {key: rest_value(item) for key, item in value.items()}
    return value


def csv_value(value: Any) -> str:
    """A Python value from `Org.records()` as a Bulk 2.0 CSV cell (after the csv module's unquoting)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        utc = value.astimezone(UTC)
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    if isinstance(value, (date, time)):
        return rest_value(value)
    return str(value)
