"""SOAP login, the OAuth token endpoint and sessions, over real sockets."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import xml.dom.minidom
from collections.abc import Iterator

import pytest
import requests
from emulator_fixtures import API_VERSION, bearer_session, oauth_login, start_emulator

from salesforce_emulator import Credentials, Emulator

SOAP_BODY = """<?xml version="1.0" encoding="utf-8" ?>
<env:Envelope xmlns:xsd="http://www.w3.org/2001/XMLSchema"
        xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
        xmlns:env="http://schemas.xmlsoap.org/soap/envelope/"
        xmlns:urn="urn:partner.soap.sforce.com">
    <env:Body>
        <n1:login xmlns:n1="urn:partner.soap.sforce.com">
            <n1:username>{username}</n1:username>
            <n1:password>{password}</n1:password>
        </n1:login>
    </env:Body>
</env:Envelope>"""
SOAP_HEADERS = {"content-type": "text/xml", "charset": "UTF-8", "SOAPAction": "login"}


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    emulator = start_emulator(scale=0.002)
    yield emulator
    emulator.stop()


def soap_login(emu: Emulator, username: str, password: str) -> requests.Response:
    return requests.post(
        f"{emu.base_url}/services/Soap/u/{API_VERSION}",
        SOAP_BODY.format(username=username, password=password),
        headers=SOAP_HEADERS,
        timeout=30,
    )


def xml_text(body: bytes, tag: str) -> str:
    return xml.dom.minidom.parseString(body).getElementsByTagName(tag)[0].firstChild.nodeValue


def limits(emu: Emulator, token: str) -> requests.Response:
    return requests.get(
        f"{emu.base_url}/services/data/v{API_VERSION}/limits",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def token_request(emu: Emulator, auth: tuple[str, str] | None = None, **form: str) -> requests.Response:
    return requests.post(f"{emu.base_url}/services/oauth2/token", data=form, auth=auth, timeout=30)


def test_soap_login_returns_a_session_pointing_at_the_emulator(emu: Emulator) -> None:
    response = soap_login(emu, "admin@example.com", "passwordTOKEN")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/xml")
    session_id = xml_text(response.content, "sessionId")
    server_url = xml_text(response.content, "serverUrl")
    assert server_url.startswith(f"{emu.base_url}/services/Soap/u/{API_VERSION}/00D")
    assert xml_text(response.content, "sessionSecondsValid") == "7200"
    assert limits(emu, session_id).status_code == 200


def test_soap_login_on_a_version_not_served_is_salesforces_fault(emu: Emulator) -> None:
    """As Salesforce answers a login URL naming a version it does not serve (yet, or any more); the REST
    API answers such a version 404 NOT_FOUND, and `/services/data/` lists the versions it does serve."""
    response = requests.post(
        f"{emu.base_url}/services/Soap/u/99.0",
        SOAP_BODY.format(username="admin@example.com", password="passwordTOKEN"),
        headers=SOAP_HEADERS,
        timeout=30,
    )
    assert response.status_code == 500
    assert xml_text(response.content, "faultcode") == "sf:UNSUPPORTED_API_VERSION"
    assert xml_text(response.content, "sf:exceptionCode") == "UNSUPPORTED_API_VERSION"
    rest = requests.get(f"{emu.base_url}/services/data/v99.0/limits", timeout=30)
    assert rest.status_code == 404 and rest.json()[0]["errorCode"] == "NOT_FOUND"
    versions = requests.get(f"{emu.base_url}/services/data/", timeout=30).json()
    assert versions[0]["version"] == "40.0" and versions[-1]["version"] == "64.0"


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("admin@example.com", "password"),  # the security token is missing
        ("admin@example.com", "wrongTOKEN"),
        ("someone@example.com", "passwordTOKEN"),
        ("", ""),
    ],
)
def test_soap_login_with_bad_credentials_is_the_invalid_login_fault(
    emu: Emulator, username: str, password: str
) -> None:
    response = soap_login(emu, username, password)
    assert response.status_code == 500
    assert xml_text(response.content, "sf:exceptionCode") == "INVALID_LOGIN"
    assert xml_text(response.content, "sf:exceptionMessage") == (
        "Invalid username, password, security token; or user locked out."
    )
    assert xml_text(response.content, "faultcode") == "INVALID_LOGIN"


def test_soap_login_unescapes_xml_in_credentials(emulator_factory) -> None:
    emu = emulator_factory(
        scale=0.001, credentials=Credentials(username="a&b@example.com", password="p<w>d", security_token="T")
    )
    response = soap_login(emu, "a&amp;b@example.com", "p&lt;w&gt;dT")
    assert response.status_code == 200


def test_refresh_token_grant_answers_salesforce_token_json(emu: Emulator) -> None:
    payload = oauth_login(emu)
    assert set(payload) == {
        "access_token",
        "signature",
        "scope",
        "instance_url",
        "id",
        "token_type",
        "issued_at",
    }
    assert payload["instance_url"] == emu.base_url
    assert payload["token_type"] == "Bearer"
    assert payload["id"].startswith(f"{emu.base_url}/id/00D")
    expected = hmac.new(
        b"emulator-client-secret", (payload["id"] + payload["issued_at"]).encode(), hashlib.sha256
    ).digest()
    assert base64.b64decode(payload["signature"]) == expected
    assert "refresh_token" not in payload
    assert limits(emu, payload["access_token"]).status_code == 200


def test_password_grant(emu: Emulator) -> None:
    response = token_request(
        emu,
        grant_type="password",
        client_id="emulator-client-id",
        client_secret="emulator-client-secret",
        username="admin@example.com",
        password="passwordTOKEN",
    )
    assert response.status_code == 200
    assert limits(emu, response.json()["access_token"]).status_code == 200


def test_client_credentials_grant_with_basic_auth_or_form(emu: Emulator) -> None:
    basic = token_request(
        emu, ("emulator-client-id", "emulator-client-secret"), grant_type="client_credentials"
    )
    form = token_request(
        emu,
        grant_type="client_credentials",
        client_id="emulator-client-id",
        client_secret="emulator-client-secret",
    )
    for response in (basic, form):
        assert response.status_code == 200, response.text
        assert response.json()["instance_url"] == emu.base_url


@pytest.mark.parametrize(
    ("form", "auth", "error", "description"),
    [
        (
            {"grant_type": "refresh_token", "refresh_token": "nope"},
            None,
            "invalid_grant",
            "expired access/refresh token",
        ),
        (
            {"grant_type": "password", "username": "admin@example.com", "password": "password"},
            None,
            "invalid_grant",
            "authentication failure",
        ),
        (
            {"grant_type": "refresh_token", "client_id": "other"},
            None,
            "invalid_client_id",
            "client identifier invalid",
        ),
        (
            {"grant_type": "refresh_token", "client_id": "emulator-client-id", "client_secret": "bad"},
            None,
            "invalid_client",
            "invalid client credentials",
        ),
        (
            {"grant_type": "client_credentials"},
            ("emulator-client-id", "bad"),
            "invalid_client",
            "invalid client credentials",
        ),
        ({"grant_type": "authorization_code"}, None, "unsupported_grant_type", "grant type not supported"),
        ({}, None, "unsupported_grant_type", "grant type not supported"),
    ],
)
def test_token_endpoint_errors_are_salesforce_oauth_errors(
    emu: Emulator, form: dict, auth: tuple | None, error: str, description: str
) -> None:
    defaults = (
        {"client_id": "emulator-client-id", "client_secret": "emulator-client-secret"}
        if form.get("grant_type") in ("refresh_token", "password") and "client_id" not in form
        else {}
    )
    response = token_request(emu, auth, **{**defaults, **form})
    assert response.status_code == 400
    assert response.json() == {"error": error, "error_description": description}


def test_rotating_refresh_tokens(emulator_factory) -> None:
    emu = emulator_factory(scale=0.001, rotate_refresh_tokens=True)
    first = oauth_login(emu)
    rotated = first["refresh_token"]
    assert rotated != "emulator-refresh-token"
    reused = token_request(
        emu,
        grant_type="refresh_token",
        client_id="emulator-client-id",
        client_secret="emulator-client-secret",
        refresh_token="emulator-refresh-token",
    )
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    again = token_request(
        emu,
        grant_type="refresh_token",
        client_id="emulator-client-id",
        client_secret="emulator-client-secret",
        refresh_token=rotated,
    )
    assert again.status_code == 200
    assert again.json()["refresh_token"] not in (rotated, "emulator-refresh-token")


def test_changed_credentials_replace_the_defaults(emulator_factory) -> None:
    emu = emulator_factory(
        scale=0.001,
        credentials=Credentials(client_id="cid", client_secret="secret", refresh_token="rt"),
    )
    assert oauth_login(emu)["instance_url"] == emu.base_url
    assert emu.start_line().split()[1:] == [
        "username=admin@example.com",
        "password=password",
        "security_token=TOKEN",
        "client_id=cid",
        "client_secret=secret",
        "refresh_token=rt",
    ]


def test_revoked_token_stops_working(emu: Emulator) -> None:
    token = oauth_login(emu)["access_token"]
    assert limits(emu, token).status_code == 200
    revoked = requests.post(f"{emu.base_url}/services/oauth2/revoke", data={"token": token}, timeout=30)
    assert revoked.status_code == 200
    assert limits(emu, token).status_code == 401


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer not-a-session", "Basic YWRtaW46cGFzc3dvcmQ="],
)
def test_requests_without_a_live_session_answer_invalid_session_id(
    emu: Emulator, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = requests.get(
        f"{emu.base_url}/services/data/v{API_VERSION}/sobjects", headers=headers, timeout=30
    )
    assert response.status_code == 401
    assert response.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    assert "Sforce-Limit-Info" not in response.headers


def test_oauth_scheme_is_accepted_like_bearer(emu: Emulator) -> None:
    token = oauth_login(emu)["access_token"]
    response = requests.get(
        f"{emu.base_url}/services/data/v{API_VERSION}/limits",
        headers={"Authorization": f"OAuth {token}"},
        timeout=30,
    )
    assert response.status_code == 200


def test_sessions_expire_after_their_lifetime(emulator_factory) -> None:
    emu = emulator_factory(scale=0.001, session_lifetime=0.3)
    session = bearer_session(emu)
    url = f"{emu.base_url}/services/data/v{API_VERSION}/limits"
    assert session.get(url, timeout=30).status_code == 200
    time.sleep(0.35)
    expired = session.get(url, timeout=30)
    assert expired.status_code == 401
    assert expired.json()[0]["errorCode"] == "INVALID_SESSION_ID"
    assert bearer_session(emu).get(url, timeout=30).status_code == 200  # a new login works


def test_expire_sessions_ends_every_session_at_once(emulator_factory) -> None:
    emu = emulator_factory(scale=0.001)
    first, second = bearer_session(emu), bearer_session(emu)
    url = f"{emu.base_url}/services/data/v{API_VERSION}/limits"
    assert emu.expire_sessions() == 2
    assert first.get(url, timeout=30).status_code == 401
    assert second.get(url, timeout=30).status_code == 401


def test_logins_do_not_count_against_the_api_allowance(emulator_factory) -> None:
    emu = emulator_factory(scale=0.001, api_limit=10)
    for _ in range(3):
        oauth_login(emu)
        assert soap_login(emu, "admin@example.com", "passwordTOKEN").status_code == 200
    assert emu.api_usage == 0
    assert emu.counters()["logins"] == 6
