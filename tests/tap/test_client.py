"""The HTTP client's error mapping and retries: unit tests with requests-mock, then the same
behaviours over real HTTP against the emulator's scripted faults (the second half of this file).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import requests_mock as requests_mock_module
from tap_harness import discover_catalog, entry, expected_records, run_tap, select, tap_settings, upserted
from urllib3.exceptions import ProtocolError

from salesforce_emulator import Emulator
from tap_salesforce_seg import client as client_module
from tap_salesforce_seg.client import SalesforceClient
from tap_salesforce_seg.config import TapConfig
from tap_salesforce_seg.errors import (
    AuthenticationError,
    QuotaExceeded,
    SalesforceApiError,
    ServiceUnavailable,
)

BASE = "https://acme.my.salesforce.com"
INSTANCE = "https://na1.salesforce.com"
DATA = f"{INSTANCE}/services/data/v58.0"
TOKEN_URL = f"{BASE}/services/oauth2/token"
SECRETS = {"client_id": "cid", "client_secret": "cs-SECRET-1", "refresh_token": "rt-SECRET-2"}


# The backoff as shipped (the fixture below shortens it for every other test).
SHIPPED_BACKOFF = (SalesforceClient.backoff_base_seconds, SalesforceClient.backoff_max_seconds)


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SalesforceClient, "backoff_base_seconds", 0.001)
    monkeypatch.setattr(SalesforceClient, "backoff_max_seconds", 0.01)


@pytest.fixture
def mock() -> requests_mock_module.Mocker:
    with requests_mock_module.Mocker() as mocker:
        mocker.post(
            TOKEN_URL,
            [{"json": {"access_token": f"token-{n}", "instance_url": INSTANCE}} for n in range(1, 5)],
        )
        yield mocker


def make_client(**settings: object) -> SalesforceClient:
    config = TapConfig.from_mapping({**SECRETS, "domain": BASE, **settings})
    return SalesforceClient(config, logging.getLogger("test-client"))


def data_calls(mock: requests_mock_module.Mocker) -> list:
    return [call for call in mock.request_history if call.url.startswith(DATA)]


def test_logs_in_lazily_and_sends_bearer_token(mock: requests_mock_module.Mocker) -> None:
    mock.get(f"{DATA}/sobjects", json={"sobjects": []})
    client = make_client()
    assert mock.call_count == 0
    assert client.get_json("/sobjects") == {"sobjects": []}
    login, call = mock.request_history
    assert "grant_type=refresh_token" in login.text
    assert call.headers["Authorization"] == "Bearer token-1"
    assert client.instance_url == INSTANCE


def test_path_forms(mock: requests_mock_module.Mocker) -> None:
    mock.get(requests_mock_module.ANY, json={})
    client = make_client()
    client.get("sobjects/Account/describe")
    client.get("/services/data/v58.0/query/01g-2000")
    client.get(f"{INSTANCE}/services/data/v58.0/query/01g-4000")
    urls = [call.url for call in data_calls(mock)]
    assert urls == [
        f"{DATA}/sobjects/Account/describe",
        f"{DATA}/query/01g-2000",
        f"{DATA}/query/01g-4000",
    ]
    with pytest.raises(ValueError, match="another host"):
        client.get("https://evil.example.com/services/data/v58.0/query")


@pytest.mark.parametrize(
    "failure",
    [
        {"status_code": 500, "json": [{"errorCode": "UNKNOWN_EXCEPTION", "message": "oops"}]},
        {"status_code": 503, "text": "Service Unavailable"},
        {"status_code": 502, "text": "<html>bad gateway</html>"},
        {"status_code": 406, "text": ""},
        {"status_code": 429, "text": "slow down"},
        {
            "status_code": 403,
            "json": [
                {"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "ConcurrentPerOrgLongTxn Limit exceeded."}
            ],
        },
        {"exc": requests.ConnectionError("connection reset")},
        {"exc": requests.exceptions.ReadTimeout("read timed out")},
        {"exc": requests.exceptions.ConnectTimeout("connect timed out")},
    ],
    ids=[
        "500",
        "503",
        "502-html",
        "406",
        "429",
        "403-concurrency",
        "reset",
        "read-timeout",
        "connect-timeout",
    ],
)
def test_transient_failures_are_retried(
    mock: requests_mock_module.Mocker, failure: dict, caplog: pytest.LogCaptureFixture
) -> None:
    mock.get(f"{DATA}/limits", [failure, failure, {"json": {"ok": True}}])
    with caplog.at_level(logging.WARNING):
        assert make_client().get_json("limits") == {"ok": True}
    assert len(data_calls(mock)) == 3
    retries = [record.getMessage() for record in caplog.records if "retry" in record.getMessage()]
    assert len(retries) == 2
    assert "retry 1 of 8" in retries[0]


class _CutBody(io.RawIOBase):
    """A body whose connection drops after a few bytes."""

    def __init__(self) -> None:
        self.sent = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:
        if self.sent:
            raise ProtocolError("Connection broken: IncompleteRead(10 bytes read, 90 more expected)")
        self.sent = True
        buffer[:10] = b'{"records"'
        return 10


def test_a_body_cut_midway_is_retried(mock: requests_mock_module.Mocker) -> None:
    mock.get(f"{DATA}/query", [{"body": _CutBody()}, {"json": {"records": []}}])
    assert make_client().get_json("query", params={"q": "SELECT Id FROM Account"}) == {"records": []}
    assert len(data_calls(mock)) == 2


def test_bodies_cut_every_time_run_out_of_the_same_attempts(
    mock: requests_mock_module.Mocker, caplog: pytest.LogCaptureFixture
) -> None:
    mock.get(f"{DATA}/query", body=lambda request, context: _CutBody())  # a fresh cut each time
    with caplog.at_level(logging.WARNING), pytest.raises(ServiceUnavailable) as caught:
        make_client().get("query", params={"q": "SELECT Id FROM Account"})
    assert len(data_calls(mock)) == SalesforceClient.max_attempts
    message = str(caught.value)
    assert message.startswith("Salesforce kept failing for GET /services/data/v58.0/query: 9 attempts")
    assert "last: body cut short (" in message and "\n" not in message and "SELECT" not in message
    retries = [r.getMessage() for r in caplog.records if "body cut short" in r.getMessage()]
    assert len(retries) == 8 and "retry 8 of 8" in retries[-1]


def test_gives_up_after_the_attempts(mock: requests_mock_module.Mocker) -> None:
    mock.get(f"{DATA}/limits", status_code=503, text="down")
    client = make_client()
    with pytest.raises(ServiceUnavailable) as caught:
        client.get("limits")
    assert len(data_calls(mock)) == SalesforceClient.max_attempts
    assert "9 attempts" in str(caught.value) and "503" in str(caught.value)


def test_the_retries_ride_out_an_outage_of_a_minute_and_a_half(monkeypatch: pytest.MonkeyPatch) -> None:
    """The backoff's least total wait (equal jitter: at least half of each ceiling) before giving up."""
    base, most = SHIPPED_BACKOFF
    monkeypatch.setattr(SalesforceClient, "backoff_base_seconds", base)
    monkeypatch.setattr(SalesforceClient, "backoff_max_seconds", most)
    client = make_client()
    ceilings = [min(most, base * 2 ** (n - 1)) for n in range(1, SalesforceClient.max_attempts)]
    assert sum(ceilings) / 2 >= 90
    assert all(ceiling / 2 <= client._backoff(n, None) <= ceiling for n, ceiling in enumerate(ceilings, 1))


def test_retry_after_is_honoured_within_the_cap(mock: requests_mock_module.Mocker) -> None:
    client = make_client()
    assert client._backoff(1, retry_after=0.005) >= 0.005
    assert client._backoff(1, retry_after=3600) <= SalesforceClient.backoff_max_seconds


def test_backoff_grows_exponentially_with_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SalesforceClient, "backoff_base_seconds", 1.0)
    monkeypatch.setattr(SalesforceClient, "backoff_max_seconds", 60.0)
    client = make_client()
    delays = {attempt: [client._backoff(attempt, None) for _ in range(200)] for attempt in (1, 2, 3, 8)}
    assert all(0.5 <= delay <= 1 for delay in delays[1])
    assert all(1 <= delay <= 2 for delay in delays[2])
    assert all(2 <= delay <= 4 for delay in delays[3])
    assert all(30 <= delay <= 60 for delay in delays[8])
    assert len(set(delays[3])) > 100  # jitter


def test_expired_session_logs_in_again_once(mock: requests_mock_module.Mocker) -> None:
    expired = {
        "status_code": 401,
        "json": [{"errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid"}],
    }
    mock.get(f"{DATA}/sobjects", [expired, {"json": {"ok": 1}}])
    client = make_client()
    assert client.get_json("sobjects") == {"ok": 1}
    calls = data_calls(mock)
    assert [call.headers["Authorization"] for call in calls] == ["Bearer token-1", "Bearer token-2"]


def test_a_session_rejected_twice_is_an_authentication_error(mock: requests_mock_module.Mocker) -> None:
    mock.get(f"{DATA}/sobjects", status_code=401, json=[{"errorCode": "INVALID_SESSION_ID", "message": "x"}])
    with pytest.raises(AuthenticationError, match="fresh session"):
        make_client().get("sobjects")
    assert len(data_calls(mock)) == 2


def test_daily_limit_raises_quota_exceeded_with_when_to_retry(mock: requests_mock_module.Mocker) -> None:
    mock.get(
        f"{DATA}/query",
        status_code=403,
        json=[{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}],
        headers={"Sforce-Limit-Info": "api-usage=15001/15000", "Date": "Fri, 02 Jan 2026 10:00:00 GMT"},
    )
    with pytest.raises(QuotaExceeded) as caught:
        make_client().get("query")
    message = str(caught.value)
    assert "REQUEST_LIMIT_EXCEEDED" in message
    assert "rolling 24 hours" in message
    assert "at the latest by 2026-01-03 10:00 UTC" in message
    assert "15,001 of 15,000" in message
    assert caught.value.exit_code == 2
    assert len(data_calls(mock)) == 1  # not retried


def test_quota_guard_stops_before_passing_quota_percent(mock: requests_mock_module.Mocker) -> None:
    mock.get(f"{DATA}/limits", json={}, headers={"Sforce-Limit-Info": "api-usage=79/100"})
    mock.get(f"{DATA}/sobjects", json={}, headers={"Sforce-Limit-Info": "api-usage=80/100"})
    client = make_client(quota_percent=80)
    client.get("limits")
    assert client.api_usage == (79, 100)
    client.get("sobjects")  # allowed: 79% before it
    assert client.api_usage == (80, 100)
    with pytest.raises(QuotaExceeded) as caught:
        client.get("limits")
    assert "80 of its 100 daily API requests" in str(caught.value)
    assert "quota_percent 80" in str(caught.value)
    assert len(data_calls(mock)) == 2  # the third call was never sent


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (
            400,
            [{"errorCode": "INVALID_FIELD", "message": "\nSELECT Foo\n       ^\nNo such column 'Foo'"}],
            "INVALID_FIELD",
        ),
        (
            400,
            [{"errorCode": "QUERY_TIMEOUT", "message": "Your query request was running for too long."}],
            "QUERY_TIMEOUT",
        ),
        (400, [{"errorCode": "MALFORMED_QUERY", "message": "unexpected token"}], "MALFORMED_QUERY"),
        (404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}], "NOT_FOUND"),
        (403, [{"errorCode": "INSUFFICIENT_ACCESS", "message": "no"}], "INSUFFICIENT_ACCESS"),
        (414, "URI Too Long", "URI Too Long"),
    ],
)
def test_api_errors_are_mapped(
    mock: requests_mock_module.Mocker, status: int, body: object, code: str
) -> None:
    if isinstance(body, str):
        mock.get(f"{DATA}/query", status_code=status, text=body, reason=body)
    else:
        mock.get(f"{DATA}/query", status_code=status, json=body)
    with pytest.raises(SalesforceApiError) as caught:
        make_client().get("query", params={"q": "SELECT Foo FROM Account"})
    error = caught.value
    assert (error.status, error.error_code) == (status, code)
    assert "\n" not in str(error)
    assert "/services/data/v58.0/query" in str(error)
    assert "SELECT" not in str(error).split(":")[0]
    assert len(data_calls(mock)) == 1


def test_an_html_error_page_is_named_by_its_title(mock: requests_mock_module.Mocker) -> None:
    """A proxy's or load balancer's page in front of the API: its title, not 500 characters of HTML."""
    page = "<html><head><title>403 Forbidden</title></head><body>" + "<p>blocked</p>" * 100 + "</body></html>"
    mock.get(f"{DATA}/query", status_code=403, text=page, reason="Forbidden")
    with pytest.raises(SalesforceApiError) as caught:
        make_client().get("query", params={"q": "SELECT Id FROM Account"})
    assert 'an HTML page titled "403 Forbidden"' in str(caught.value)
    assert "<p>" not in str(caught.value)


@pytest.mark.parametrize(
    ("raised", "said"),
    [
        (
            requests.ConnectionError(
                "HTTPSConnectionPool(host='acme.my.salesforce.com', port=443): Max retries exceeded with "
                'url: /services/data/v58.0/limits (Caused by NameResolutionError("<urllib3.connection.'
                "HTTPSConnection object>: Failed to resolve 'acme.my.salesforce.com' ([Errno -2] Name or "
                'service not known)"))'
            ),
            "the host name does not resolve",
        ),
        (requests.ConnectTimeout("HTTPSConnectionPool(...): Max retries exceeded"), "no answer in time"),
    ],
    ids=["dns", "timeout"],
)
def test_a_request_without_an_answer_is_named_by_its_cause(
    mock: requests_mock_module.Mocker, raised: Exception, said: str
) -> None:
    mock.get(f"{DATA}/limits", exc=raised)
    with pytest.raises(ServiceUnavailable) as caught:
        make_client().get("limits")
    assert f"GET /services/data/v58.0/limits: {said}" in str(caught.value)
    assert "urllib3" not in str(caught.value) and "HTTPSConnectionPool" not in str(caught.value)


def test_server_time_comes_from_the_date_header(mock: requests_mock_module.Mocker) -> None:
    mock.get(f"{DATA}/limits", json={}, headers={"Date": "Fri, 02 Jan 2026 10:00:00 GMT"})
    client = make_client()
    before = client.server_time()
    assert abs((before - datetime.now(UTC)).total_seconds()) < 5  # no answer yet: local clock
    client.get("limits")
    now = client.server_time()
    assert now.tzinfo is not None
    assert datetime(2026, 1, 2, 10, tzinfo=UTC) <= now < datetime(2026, 1, 2, 10, 0, 5, tzinfo=UTC)


def test_login_failures_are_retried_when_transient(mock: requests_mock_module.Mocker) -> None:
    mock.post(
        TOKEN_URL,
        [{"status_code": 503, "text": "down"}, {"json": {"access_token": "t", "instance_url": INSTANCE}}],
    )
    mock.get(f"{DATA}/limits", json={})
    make_client().get("limits")
    assert [call.url for call in mock.request_history].count(TOKEN_URL) == 2


def test_refused_refresh_token_is_one_line_without_secrets(mock: requests_mock_module.Mocker) -> None:
    mock.post(
        TOKEN_URL,
        status_code=400,
        json={"error": "invalid_grant", "error_description": "expired access/refresh token"},
    )
    with pytest.raises(AuthenticationError) as caught:
        make_client().get("limits")
    message = str(caught.value)
    assert "invalid_grant" in message and "\n" not in message
    assert "SECRET" not in message
    assert "sandbox" not in message  # a My Domain login: no sandbox hint


def test_refused_login_at_login_salesforce_com_hints_at_sandboxes() -> None:
    config = TapConfig.from_mapping({**SECRETS})
    with requests_mock_module.Mocker() as mock:
        mock.post(
            "https://login.salesforce.com/services/oauth2/token",
            status_code=400,
            json={"error": "invalid_grant", "error_description": "authentication failure"},
        )
        with pytest.raises(AuthenticationError, match="set domain: test"):
            SalesforceClient(config, logging.getLogger("t")).login()


def test_rotated_refresh_token_is_announced_but_not_shown(
    mock: requests_mock_module.Mocker, caplog: pytest.LogCaptureFixture
) -> None:
    mock.post(
        TOKEN_URL,
        [
            {"json": {"access_token": "t1", "instance_url": INSTANCE, "refresh_token": "rt-NEW-SECRET"}},
            {"json": {"access_token": "t2", "instance_url": INSTANCE}},
        ],
    )
    mock.get(
        f"{DATA}/sobjects",
        [{"status_code": 401, "json": [{"errorCode": "INVALID_SESSION_ID", "message": "x"}]}, {"json": {}}],
    )
    with caplog.at_level(logging.INFO):
        make_client().get("sobjects")
    assert "new refresh token" in caplog.text
    assert "rt-NEW-SECRET" not in caplog.text
    logins = [call for call in mock.request_history if call.url == TOKEN_URL]
    assert "refresh_token=rt-NEW-SECRET" in logins[1].text  # the re-login uses the rotated token


def test_client_credentials_login(mock: requests_mock_module.Mocker) -> None:
    mock.get(f"{DATA}/limits", json={})
    client = make_client(refresh_token=None)
    client.get("limits")
    assert "grant_type=client_credentials" in mock.request_history[0].text


SOAP_OK = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
    'xmlns="urn:partner.soap.sforce.com"><soapenv:Body><loginResponse><result>'
    "<serverUrl>https://na15.salesforce.com/services/Soap/u/58.0/00Di0000000icUB</serverUrl>"
    "<sessionId>SESSION-SECRET</sessionId></result></loginResponse></soapenv:Body></soapenv:Envelope>"
)


def test_soap_login_through_simple_salesforce() -> None:
    config = TapConfig.from_mapping(
        {"username": "u@example.com", "password": "pw&<", "security_token": "TOK"}
    )
    with requests_mock_module.Mocker() as mock:
        mock.post("https://login.salesforce.com/services/Soap/u/58.0", text=SOAP_OK)
        result = SalesforceClient(config, logging.getLogger("t")).login()
        body = mock.request_history[0].text
    assert result.instance_url == "https://na15.salesforce.com"
    assert result.access_token == "SESSION-SECRET"
    assert "SESSION-SECRET" not in repr(result)
    assert "pw&amp;&lt;TOK" in body  # XML-escaped password + token


# --- over real HTTP, against the emulator's faults -----------------------------------------------------


def emulator_client(emu: Emulator, **settings: object) -> SalesforceClient:
    credentials = emu.credentials
    config = TapConfig.from_mapping(
        {
            "client_id": credentials.client_id,
            "client_secret": credentials.client_secret,
            "refresh_token": credentials.refresh_token,
            "domain": emu.base_url,
            **settings,
        }
    )
    return SalesforceClient(config, logging.getLogger("test-client-http"))


def served(emu: Emulator, fragment: str) -> list[dict]:
    return [request for request in emu.requests() if fragment in request["target"]]


@pytest.mark.parametrize("status", [500, 503])
def test_http_server_errors_are_retried(emulator: Emulator, status: int) -> None:
    client = emulator_client(emulator)
    emulator.faults.http_error(status=status, count=2, path="/sobjects")
    body = client.get_json("sobjects")
    assert any(entry["name"] == "Account" for entry in body["sobjects"])
    assert [request["status"] for request in served(emulator, "/sobjects")] == [status, status, 200]


def test_http_body_dropped_midway_is_read_again(emulator: Emulator) -> None:
    client = emulator_client(emulator)
    expected = client.get_json("sobjects/Account/describe")
    emulator.faults.drop_connection(count=2, path="/sobjects/Account/describe")
    assert client.get_json("sobjects/Account/describe") == expected
    assert len(served(emulator, "/sobjects/Account/describe")) == 4


def test_http_a_login_answer_cut_short_is_retried(emulator: Emulator) -> None:
    emulator.faults.drop_connection(count=1, path="/services/oauth2/token", after_bytes=20)
    assert "DailyApiRequests" in emulator_client(emulator).get_json("limits")
    assert len(served(emulator, "/services/oauth2/token")) == 2


def test_http_every_body_is_read_in_the_clients_chunk_size(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not requests' 10 KiB `.content` reads: the client's own chunk size, for every API answer (the
    login's small answer is read by auth.py's session call, outside this loop)."""
    sizes: list[int] = []
    iter_content = requests.Response.iter_content

    def recording(self: requests.Response, chunk_size: int = 1, *args: Any, **kwargs: Any) -> Any:
        if "/services/data/" in self.url:
            sizes.append(chunk_size)
        return iter_content(self, chunk_size, *args, **kwargs)

    monkeypatch.setattr(requests.Response, "iter_content", recording)
    client = emulator_client(emulator)
    describe = client.get_json("sobjects/Account/describe")
    page = client.get("query", params={"q": "SELECT Id FROM Account"})
    assert describe["name"] == "Account" and isinstance(page.json()["records"], list)
    assert len(sizes) == 2 and set(sizes) == {client_module.READ_CHUNK_BYTES} == {1 << 20}


@pytest.mark.parametrize(("page", "fragment"), [("first", "/queryAll?"), ("next", "/query/")])
def test_http_a_rest_page_cut_short_once_is_retried_and_the_sync_is_complete(
    emulator_factory: Callable[..., Emulator], caplog: pytest.LogCaptureFixture, page: str, fragment: str
) -> None:
    # 2,500 Accounts: a first queryAll page of 2,000 records and one next page.
    org = emulator_factory(scale=0.001, counts={"Account": 2500}, tags=False)
    org.org.clock.advance(2)
    catalog = select(discover_catalog(tap_settings(org)), ["accounts"])
    org.faults.drop_connection(count=1, path=fragment)
    with caplog.at_level(logging.WARNING):
        run = run_tap(tap_settings(org, api_type="rest"), catalog)
    assert run.exit_code == 0, run.stderr
    assert org.faults.active() == [], f"the {page} page was cut"
    expected = expected_records(org, entry(catalog, "accounts"))
    assert len(run.records("accounts")) == len(expected) == 2500
    assert upserted([run], "accounts") == expected
    targets = [request["target"] for request in served(org, fragment)]
    assert len(targets) == 2 and targets[0] == targets[1], "the same page, asked for again"
    retries = [r.getMessage() for r in caplog.records if "body cut short" in r.getMessage()]
    assert len(retries) == 1 and "retry 1 of 8" in retries[0]


def test_http_timeout_is_retried(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SalesforceClient, "read_timeout_seconds", 0.5)
    client = emulator_client(emulator)
    client.login()
    emulator.faults.slow(seconds=2, count=1, path="/limits")
    assert "DailyApiRequests" in client.get_json("limits")


def test_http_expired_session_logs_in_again(emulator: Emulator) -> None:
    client = emulator_client(emulator)
    client.get_json("limits")
    logins_before = emulator.auth.logins
    emulator.faults.expire_sessions_after(calls=1)
    client.get_json("limits")  # the one call still allowed
    client.get_json("limits")  # 401 INVALID_SESSION_ID, log in, retry
    assert emulator.auth.logins == logins_before + 1
    assert [request["status"] for request in served(emulator, "/limits")][-2:] == [401, 200]


def test_http_daily_limit_stops_with_quota_exceeded(emulator_factory: Callable[..., Emulator]) -> None:
    emu = emulator_factory(api_limit=3)
    for _ in range(3):
        emulator_client(emu).get_json("limits")
    # A client that has not seen the usage yet (another job spent the allowance) gets Salesforce's 403.
    with pytest.raises(QuotaExceeded) as caught:
        emulator_client(emu, quota_percent=100).get_json("limits")
    assert [request["status"] for request in served(emu, "/limits")] == [200, 200, 200, 403]
    assert "REQUEST_LIMIT_EXCEEDED" in str(caught.value) and "rolling 24 hours" in str(caught.value)
    assert caught.value.exit_code == 2


def test_http_quota_percent_guard_stops_before_passing_it(emulator: Emulator) -> None:
    client = emulator_client(emulator, quota_percent=50)
    emulator.api_usage = emulator.api_limit // 2 - 2
    client.get_json("limits")  # usage now limit/2 - 1
    client.get_json("limits")  # usage now limit/2: at quota_percent
    used = emulator.api_usage
    with pytest.raises(QuotaExceeded, match="quota_percent 50"):
        client.get_json("limits")
    assert emulator.api_usage == used  # the call was never sent
    assert client.api_usage == (used, emulator.api_limit)


def test_http_server_time_is_the_orgs_clock(emulator: Emulator) -> None:
    org_now = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)
    emulator.org.clock.set(org_now, frozen=True)
    client = emulator_client(emulator)
    client.get_json("limits")
    assert org_now <= client.server_time() < org_now + timedelta(seconds=5)
