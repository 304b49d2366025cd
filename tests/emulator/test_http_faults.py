"""The daily API allowance and every scripted fault, as a client over real sockets sees them."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from http.client import HTTPConnection, IncompleteRead
from urllib.parse import urlsplit

import pytest
import requests
from emulator_fixtures import API_VERSION, bearer_session, start_emulator

from salesforce_emulator import Emulator

V = f"/services/data/v{API_VERSION}"
LIMIT_EXCEEDED = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    emulator = start_emulator(scale=0.001, counts={"Account": 600})
    yield emulator
    emulator.stop()


@pytest.fixture(autouse=True)
def no_faults_left(emu: Emulator) -> Iterator[None]:
    yield
    emu.faults.reset()


@pytest.fixture(scope="module")
def http(emu: Emulator) -> requests.Session:
    return bearer_session(emu)


def query(
    http: requests.Session, emu: Emulator, soql: str = "SELECT Id FROM Account", **kwargs
) -> requests.Response:
    return http.get(f"{emu.base_url}{V}/query", params={"q": soql}, timeout=60, **kwargs)


# ---------------------------------------------------------------- quota
def test_past_the_allowance_every_call_is_refused(emulator_factory) -> None:
    emu = emulator_factory(scale=0.001, api_limit=3)
    http = bearer_session(emu)
    url = f"{emu.base_url}{V}/limits"
    answers = [http.get(url, timeout=30) for _ in range(3)]
    assert [response.status_code for response in answers] == [200, 200, 200]
    assert answers[0].json()["DailyApiRequests"] == {"Max": 3, "Remaining": 2}
    assert answers[-1].headers["Sforce-Limit-Info"] == "api-usage=3/3"
    for path in ("/limits", "/sobjects", "/query?q=SELECT+Id+FROM+Account", "/jobs/query"):
        refused = http.get(f"{emu.base_url}{V}{path}", timeout=30)
        assert refused.status_code == 403, path
        assert refused.json() == LIMIT_EXCEEDED
        assert refused.headers["Sforce-Limit-Info"] == "api-usage=3/3"
    assert emu.api_usage == 3
    # Logins and the versions list still work; raising the count back down (a new day) unblocks.
    assert bearer_session(emu) is not None
    assert requests.get(emu.base_url + "/services/data/", timeout=30).status_code == 200
    emu.api_usage = 0
    assert http.get(url, timeout=30).status_code == 200


def test_usage_can_be_set_near_the_limit(emulator_factory) -> None:
    emu = emulator_factory(scale=0.001, api_limit=1000)
    emu.api_usage = 998
    http = bearer_session(emu)
    assert http.get(f"{emu.base_url}{V}/limits", timeout=30).json()["DailyApiRequests"]["Remaining"] == 1
    assert http.get(f"{emu.base_url}{V}/limits", timeout=30).status_code == 200
    assert http.get(f"{emu.base_url}{V}/limits", timeout=30).status_code == 403


# ---------------------------------------------------------------- HTTP 500 / 503
def test_http_500_for_the_next_n_requests(http: requests.Session, emu: Emulator) -> None:
    emu.faults.http_error(500, count=2)
    first, second, third = (query(http, emu) for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (500, 500, 200)
    body = first.json()
    assert body[0]["errorCode"] == "UNKNOWN_EXCEPTION"
    assert body[0]["message"].startswith("An unexpected error occurred. Please include this ErrorId")


def test_http_503_only_for_matching_paths(http: requests.Session, emu: Emulator) -> None:
    emu.faults.http_error(503, count=1, path="/jobs/query")
    assert query(http, emu).status_code == 200
    assert http.get(f"{emu.base_url}{V}/limits", timeout=30).status_code == 200
    refused = http.get(f"{emu.base_url}{V}/jobs/query", timeout=30)
    assert refused.status_code == 503
    assert refused.json()[0]["errorCode"] == "SERVER_UNAVAILABLE"
    assert http.get(f"{emu.base_url}{V}/jobs/query", timeout=30).status_code == 200


def test_faults_until_reset_and_their_counters(http: requests.Session, emu: Emulator) -> None:
    fault = emu.faults.http_error(500, count=None, path="/limits")
    for _ in range(3):
        assert http.get(f"{emu.base_url}{V}/limits", timeout=30).status_code == 500
    (active,) = emu.faults.active()
    assert (active["id"], active["fired"], active["remaining"]) == (fault["id"], 3, None)
    assert emu.faults.remove(fault["id"]) is True
    assert http.get(f"{emu.base_url}{V}/limits", timeout=30).status_code == 200


# ---------------------------------------------------------------- sessions
def test_sessions_expire_after_n_calls(http: requests.Session, emu: Emulator) -> None:
    emu.faults.expire_sessions_after(calls=2)
    assert query(http, emu).status_code == 200
    assert query(http, emu).status_code == 200
    expired = query(http, emu)
    assert expired.status_code == 401
    assert expired.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    fresh = bearer_session(emu)
    assert query(fresh, emu).status_code == 200
    assert emu.faults.active() == []
    http.headers.update(fresh.headers)  # the module's session logs in again, as a client would


# ---------------------------------------------------------------- a connection dropped mid-body
def test_connection_dropped_in_the_middle_of_the_body(http: requests.Session, emu: Emulator) -> None:
    emu.faults.drop_connection(count=1, path="/query")
    parts = urlsplit(emu.base_url)
    connection = HTTPConnection(parts.hostname, parts.port, timeout=30)
    connection.request(
        "GET",
        f"{V}/query?q=SELECT+Id,Name+FROM+Account",
        headers={"Authorization": http.headers["Authorization"]},
    )
    response = connection.getresponse()
    assert response.status == 200
    declared = int(response.getheader("Content-Length"))
    with pytest.raises(IncompleteRead) as caught:
        response.read()
    assert 0 < len(caught.value.partial) < declared
    connection.close()
    assert query(http, emu).status_code == 200  # the next request is served normally
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        emu.faults.drop_connection(count=1)
        query(http, emu)


def test_drop_after_a_given_number_of_bytes(http: requests.Session, emu: Emulator) -> None:
    emu.faults.drop_connection(count=1, after_bytes=10)
    parts = urlsplit(emu.base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as raw:
        authorization = http.headers["Authorization"]
        raw.sendall(f"GET {V}/limits HTTP/1.1\r\nHost: x\r\nAuthorization: {authorization}\r\n\r\n".encode())
        received = b""
        while chunk := raw.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"200" in head.split(b"\r\n")[0]
    assert len(body) == 10


# ---------------------------------------------------------------- slow responses
def test_slow_responses(http: requests.Session, emu: Emulator) -> None:
    emu.faults.slow(0.4, count=1, path="/limits")
    started = time.monotonic()
    assert http.get(f"{emu.base_url}{V}/limits", timeout=30).status_code == 200
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    assert http.get(f"{emu.base_url}{V}/limits", timeout=30).status_code == 200
    assert time.monotonic() - started < 0.4
    emu.faults.slow(2.0, count=1)
    with pytest.raises(requests.exceptions.ReadTimeout):
        http.get(f"{emu.base_url}{V}/limits", timeout=0.5)


# ---------------------------------------------------------------- QUERY_TIMEOUT
def test_query_timeout_for_queries_over_n_rows(http: requests.Session, emu: Emulator) -> None:
    emu.faults.query_timeout(rows=100, count=None)
    timed_out = query(http, emu)
    assert timed_out.status_code == 400
    assert timed_out.json() == [
        {"message": "Your query request was running for too long.", "errorCode": "QUERY_TIMEOUT"}
    ]
    accounts = sorted(record["Id"] for record in emu.org.records("Account", include_deleted=False))
    narrow = f"SELECT Id FROM Account WHERE Id <= '{accounts[50]}'"
    assert query(http, emu, narrow).status_code == 200  # a smaller window passes, as singer's halving expects
    assert emu.faults.active()[0]["fired"] == 1


def test_query_timeout_leaves_query_more_alone(http: requests.Session, emu: Emulator) -> None:
    first = query(http, emu, headers={"Sforce-Query-Options": "batchSize=200"}).json()
    emu.faults.query_timeout(rows=0, count=None)
    assert http.get(emu.base_url + first["nextRecordsUrl"], timeout=30).status_code == 200


# ---------------------------------------------------------------- closed cursors
def test_a_closed_cursor_answers_invalid_query_locator_and_stays_closed(
    http: requests.Session, emu: Emulator
) -> None:
    first = query(http, emu, headers={"Sforce-Query-Options": "batchSize=200"}).json()
    second = query(http, emu, headers={"Sforce-Query-Options": "batchSize=200"}).json()
    emu.faults.close_cursors(count=1, path=first["nextRecordsUrl"])
    for _ in range(2):
        closed = http.get(emu.base_url + first["nextRecordsUrl"], timeout=30)
        assert closed.status_code == 400
        assert closed.json() == [{"message": "invalid query locator", "errorCode": "INVALID_QUERY_LOCATOR"}]
    assert http.get(emu.base_url + second["nextRecordsUrl"], timeout=30).status_code == 200  # only that one
    assert emu.faults.active() == []


# ---------------------------------------------------------------- QUERY_TOO_COMPLICATED
def test_queries_selecting_too_many_fields_are_too_complicated(http: requests.Session, emu: Emulator) -> None:
    emu.faults.query_too_complicated(fields=2, count=None)
    refused = query(http, emu, "SELECT Id, Name, Phone FROM Account")
    assert refused.status_code == 400
    assert refused.json() == [
        {
            "message": "Query is either selecting too many fields or the filter conditions are too "
            "complicated.",
            "errorCode": "QUERY_TOO_COMPLICATED",
        }
    ]
    assert query(http, emu, "SELECT Id, Name FROM Account").status_code == 200
    job = {"operation": "queryAll", "query": "SELECT Id, Name, Phone FROM Account"}
    created = http.post(f"{emu.base_url}{V}/jobs/query", json=job, timeout=30)
    assert created.status_code == 400 and created.json()[0]["errorCode"] == "QUERY_TOO_COMPLICATED"
    assert emu.faults.active()[0]["fired"] == 2
