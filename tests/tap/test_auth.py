"""Logins against the emulator over real HTTP: SOAP, refresh token (and rotation), client credentials."""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from emulator_fixtures import login_redirect_session

from salesforce_emulator import Emulator
from salesforce_emulator.auth import Credentials
from tap_salesforce_seg.auth import LoginResult
from tap_salesforce_seg.client import SalesforceClient
from tap_salesforce_seg.config import TapConfig
from tap_salesforce_seg.errors import AuthenticationError, ConfigError, ServiceUnavailable, TapError

LOGGER = logging.getLogger("test-auth")


def password_settings(emu: Emulator, **overrides: Any) -> dict[str, Any]:
    credentials = emu.credentials
    return {
        "username": credentials.username,
        "password": credentials.password,
        "security_token": credentials.security_token,
        "domain": emu.base_url,
        **overrides,
    }


def oauth_settings(emu: Emulator, *, refresh: bool = True, **overrides: Any) -> dict[str, Any]:
    credentials = emu.credentials
    settings = {
        "client_id": credentials.client_id,
        "client_secret": credentials.client_secret,
        "domain": emu.base_url,
        **overrides,
    }
    if refresh:
        settings.setdefault("refresh_token", credentials.refresh_token)
    return settings


def client_for(settings: dict[str, Any], **kwargs: Any) -> SalesforceClient:
    return SalesforceClient(TapConfig.from_mapping(settings), LOGGER, **kwargs)


@pytest.mark.parametrize(
    "settings_for",
    [password_settings, oauth_settings, lambda emu: oauth_settings(emu, refresh=False)],
    ids=["soap", "refresh-token", "client-credentials"],
)
def test_login_then_call_the_api(emulator: Emulator, settings_for: Callable[[Emulator], dict]) -> None:
    client = client_for(settings_for(emulator))
    body = client.get_json("sobjects")
    assert client.instance_url == emulator.base_url
    assert any(entry["name"] == "Account" for entry in body["sobjects"])
    assert client.api_usage is not None and client.api_usage[0] >= 1


def test_rotated_refresh_token_is_announced_and_used_for_the_next_login(
    emulator_factory: Callable[..., Emulator], caplog: pytest.LogCaptureFixture
) -> None:
    emu = emulator_factory(rotate_refresh_tokens=True)
    client = client_for(oauth_settings(emu))
    with caplog.at_level(logging.INFO):
        client.get_json("limits")
        emu.expire_sessions()
        # The original refresh token no longer works: only the rotated one can log in again.
        client.get_json("limits")
    rotations = [record for record in caplog.records if "new refresh token" in record.getMessage()]
    assert len(rotations) == 2  # each refresh rotates once more
    assert "session expired" in caplog.text.lower()
    assert emu.credentials.refresh_token not in caplog.text
    assert "5Aep" not in caplog.text  # the emulator's rotated tokens start so


def test_a_rotated_refresh_token_is_saved_in_the_token_file_for_the_next_run(
    emulator_factory: Callable[..., Emulator], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """With rotation on, the token a run started with is revoked at its first login: kept in
    refresh_token_file, the tap saves each new one there, and the next run logs in with it."""
    emu = emulator_factory(rotate_refresh_tokens=True)
    token_path = tmp_path / "refresh-token"
    token_path.write_text(emu.credentials.refresh_token + "\n")
    token_path.chmod(0o640)
    settings = oauth_settings(emu, refresh=False, refresh_token_file=str(token_path))
    with caplog.at_level(logging.INFO):
        client_for(settings).get_json("limits")
        first_saved = token_path.read_text().strip()
        emu.expire_sessions()
        client_for(settings).get_json("limits")  # the next run: the saved token logs in
    saved = token_path.read_text().strip()
    assert first_saved.startswith("5Aep") and saved.startswith("5Aep") and saved != first_saved
    assert token_path.stat().st_mode & 0o777 == 0o640  # the file's own permissions kept
    assert [path.name for path in tmp_path.iterdir()] == ["refresh-token"]  # no temporary file left
    assert caplog.text.count(f"the new one is saved in {token_path}") == 2
    assert first_saved not in caplog.text and saved not in caplog.text
    assert emu.credentials.refresh_token not in caplog.text


def test_a_token_file_reached_through_a_link_is_saved_where_the_link_points(
    emulator_factory: Callable[..., Emulator], tmp_path: Path
) -> None:
    """A secrets manager's file behind a symbolic link: the file it names gets the new token, and the
    link stays a link."""
    emu = emulator_factory(rotate_refresh_tokens=True)
    (tmp_path / "secrets").mkdir()
    real = tmp_path / "secrets" / "token"
    real.write_text(emu.credentials.refresh_token)
    link = tmp_path / "refresh-token"
    link.symlink_to(real)
    client_for(oauth_settings(emu, refresh=False, refresh_token_file=str(link))).get_json("limits")
    assert link.is_symlink()
    assert real.read_text().strip().startswith("5Aep")


def test_a_rotated_token_that_cannot_be_saved_is_warned_about_and_used(
    emulator_factory: Callable[..., Emulator], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    emu = emulator_factory(rotate_refresh_tokens=True)
    token_path = tmp_path / "refresh-token"
    token_path.write_text(emu.credentials.refresh_token)
    (tmp_path / f".refresh-token.{os.getpid()}.tmp").mkdir()  # the new file cannot be made there
    client = client_for(oauth_settings(emu, refresh=False, refresh_token_file=str(token_path)))
    with caplog.at_level(logging.INFO):
        client.get_json("limits")
        emu.expire_sessions()
        client.get_json("limits")  # this run logs in again with the rotated token it holds
    assert token_path.read_text() == emu.credentials.refresh_token
    assert f"could not be saved in {token_path} (Is a directory)" in caplog.text
    assert "the next run's login will be refused" in caplog.text
    assert "5Aep" not in caplog.text.replace(emu.credentials.refresh_token, "")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "refresh_token_file: cannot read {path}: No such file or directory"),
        ("  \n", "refresh_token_file: {path} is empty: put the connected app's refresh token in it"),
        (
            "a\nb\n",
            "refresh_token_file: {path} holds more than one line or word; it must hold the token alone",
        ),
    ],
    ids=["missing", "empty", "two-lines"],
)
def test_a_token_file_that_cannot_serve_is_one_config_line(
    emulator: Emulator, tmp_path: Path, content: str | None, expected: str
) -> None:
    token_path = tmp_path / "refresh-token"
    if content is not None:
        token_path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        TapConfig.from_mapping(oauth_settings(emulator, refresh=False, refresh_token_file=str(token_path)))
    assert str(caught.value) == expected.format(path=token_path)


def test_a_token_in_the_settings_and_a_token_file_are_refused_together(
    emulator: Emulator, tmp_path: Path
) -> None:
    token_path = tmp_path / "refresh-token"
    token_path.write_text("x")
    with pytest.raises(ConfigError) as caught:
        TapConfig.from_mapping(oauth_settings(emulator, refresh_token_file=str(token_path)))
    assert str(caught.value).startswith("refresh_token, refresh_token_file: both are set; keep one")


@pytest.mark.parametrize(
    ("settings_for", "what"),
    [
        (lambda emu: password_settings(emu, password="wrong-SECRET"), "INVALID_LOGIN"),
        (lambda emu: oauth_settings(emu, refresh_token="wrong-SECRET"), "invalid_grant"),
        (lambda emu: oauth_settings(emu, refresh=False, client_secret="wrong-SECRET"), "invalid_client"),
    ],
    ids=["soap", "refresh-token", "client-credentials"],
)
def test_bad_credentials_are_one_line_without_the_sandbox_hint_off_login(
    emulator: Emulator, settings_for: Callable[[Emulator], dict], what: str
) -> None:
    with pytest.raises(AuthenticationError) as caught:
        client_for(settings_for(emulator)).login()
    message = str(caught.value)
    assert what in message
    assert "\n" not in message
    assert "sandbox" not in message
    assert "SECRET" not in message  # the wrong secret is not echoed (Salesforce's reason may say "password")


@pytest.mark.parametrize(
    "settings_for",
    [
        lambda emu: password_settings(emu, password="wrong-SECRET", domain="login"),
        lambda emu: oauth_settings(emu, refresh_token="wrong-SECRET", domain="login"),
    ],
    ids=["soap", "refresh-token"],
)
def test_bad_credentials_at_login_salesforce_com_hint_at_sandboxes(
    emulator: Emulator, settings_for: Callable[[Emulator], dict]
) -> None:
    # login.salesforce.com is routed to the emulator; the tap's code is unchanged.
    client = client_for(settings_for(emulator), http=login_redirect_session(emulator))
    with pytest.raises(AuthenticationError) as caught:
        client.login()
    message = str(caught.value)
    assert "https://login.salesforce.com" in message
    assert "If this is a sandbox org, set domain: test (or is_sandbox: true)." in message
    assert "SECRET" not in message


# --- secrets never reach stdout, stderr, state or messages ---------------------------------------------

SECRET_CREDENTIALS = Credentials(
    username="integration@example.com",
    password="pw-Qz81Lm",
    security_token="tok-Hx44Vb",
    client_id="cid-Pw20Ns",
    client_secret="cs-Rt93Kd",
    refresh_token="rt-Yg57Jc",
)
SECRETS = ("pw-Qz81Lm", "tok-Hx44Vb", "cs-Rt93Kd", "rt-Yg57Jc")
# Sessions the emulator issues contain "!AQ"; its rotated refresh tokens start with "5Aep".
ISSUED_TOKEN_MARKS = ("!AQ", "5Aep")


def run_cli(args: list[str], settings: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess:
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(settings))
    return subprocess.run(
        [sys.executable, "-m", "tap_salesforce_seg.tap", "--config", str(config_file), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def assert_no_secret(*outputs: str) -> None:
    for output in outputs:
        for secret in SECRETS + ISSUED_TOKEN_MARKS:
            assert secret not in output, f"{secret!r} leaked"


@pytest.mark.parametrize("login", ["soap", "refresh-token"])
def test_secrets_never_reach_any_output(
    emulator_factory: Callable[..., Emulator], tmp_path: Path, login: str
) -> None:
    emu = emulator_factory(credentials=SECRET_CREDENTIALS, scale=0.005)
    settings = password_settings(emu) if login == "soap" else oauth_settings(emu)
    settings["start_date"] = "2000-01-01T00:00:00Z"
    discovery = run_cli(["--discover"], settings, tmp_path)
    assert discovery.returncode == 0, discovery.stderr
    catalog = json.loads(discovery.stdout)
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["selected"] = entry["tap_stream_id"] in ("accounts", "_group")
    (tmp_path / "catalog.json").write_text(json.dumps(catalog))
    sync = run_cli(["--catalog", str(tmp_path / "catalog.json")], settings, tmp_path)
    assert sync.returncode == 0, sync.stderr
    states = [line for line in sync.stdout.splitlines() if '"type":"STATE"' in line.replace(" ", "")]
    records = [line for line in sync.stdout.splitlines() if '"type":"RECORD"' in line.replace(" ", "")]
    assert states and records
    refused = run_cli(
        ["--discover"], {**settings, "password": "pw-Wrong1", "refresh_token": "rt-Wrong2"}, tmp_path
    )
    assert refused.returncode == 1
    assert_no_secret(
        discovery.stdout, discovery.stderr, sync.stdout, sync.stderr, refused.stdout, refused.stderr
    )
    assert "pw-Wrong1" not in refused.stderr and "rt-Wrong2" not in refused.stderr


# --- a domain that is not Salesforce's login ----------------------------------------------------------


class _NotSalesforce(http.server.BaseHTTPRequestHandler):
    """A web server that is not Salesforce (a mistyped domain, a proxy's error page)."""

    status = 404
    body = b"<!DOCTYPE html><html><head><title>Page Not Found</title></head><body>no</body></html>"
    requests_seen = 0

    def do_POST(self) -> None:
        type(self).requests_seen += 1
        body = self.body
        self.send_response(self.status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _not_salesforce(status: int, page: bytes) -> Iterator[str]:
    """A web server answering every POST with ``status`` and ``page``; yields its base URL."""
    _NotSalesforce.status, _NotSalesforce.body, _NotSalesforce.requests_seen = status, page, 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotSalesforce)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


WELL_FORMED = _NotSalesforce.body
NOT_XML = b"<html><head><title>Page Not Found</title><body><p>no<br>such page</body></html>"


@pytest.mark.parametrize(
    ("status", "page"),
    [(404, WELL_FORMED), (404, NOT_XML), (405, NOT_XML), (501, NOT_XML), (200, WELL_FORMED), (200, NOT_XML)],
)
@pytest.mark.parametrize("login", ["soap", "refresh-token"])
def test_a_server_that_is_not_salesforce_is_refused_at_once_by_its_page_title(
    emulator: Emulator, status: int, page: bytes, login: str
) -> None:
    """Such answers were retried six times over half a minute (SOAP) and quoted as raw HTML, or (a
    page answered with 200) ended in a parser's traceback."""
    with _not_salesforce(status, page) as domain:
        settings = password_settings(emulator, domain=domain)
        if login == "refresh-token":
            settings = oauth_settings(emulator, domain=domain)
        with pytest.raises(AuthenticationError) as caught:
            client_for(settings).login()
    message = str(caught.value)
    assert _NotSalesforce.requests_seen == 1, "not retried"
    assert f"HTTP {status}" in message and 'an HTML page titled "Page Not Found"' in message, message
    assert "<html" not in message and "\n" not in message
    if login == "soap":
        assert "check the domain setting" in message


def test_a_busy_page_in_front_of_the_login_is_retried(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 503 page (maintenance, a load balancer) is worth waiting for, SOAP fault or not."""
    monkeypatch.setattr(SalesforceClient, "backoff_base_seconds", 0.01)
    monkeypatch.setattr(SalesforceClient, "backoff_max_seconds", 0.02)
    with _not_salesforce(503, NOT_XML) as domain, pytest.raises(ServiceUnavailable) as caught:
        client_for(password_settings(emulator, domain=domain)).login()
    assert _NotSalesforce.requests_seen > 1
    assert 'HTTP 503 an HTML page titled "Page Not Found"' in str(caught.value)


# --- no HTTP answer at all -------------------------------------------------------------------------------


@pytest.mark.parametrize("login", ["soap", "refresh-token"])
def test_a_certificate_that_does_not_verify_is_one_line_with_what_to_do(
    emulator_factory: Callable[..., Emulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, login: str
) -> None:
    """A proxy that re-signs HTTPS (or a server with its own CA): the login was retried for half a
    minute and then said only `SSLError`."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    emu = emulator_factory(scale=0.001, tls=True, tls_dir=tmp_path / "tls")
    settings = password_settings(emu) if login == "soap" else oauth_settings(emu)
    with pytest.raises(TapError) as caught:
        client_for(settings).login()
    message = str(caught.value)
    assert not isinstance(caught.value, ServiceUnavailable), "not retried"
    assert "TLS certificate does not verify (self-signed certificate in certificate chain)" in message
    assert "REQUESTS_CA_BUNDLE" in message and "\n" not in message
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", emu.ca_file)  # as the message says
    assert client_for(settings).get_json("limits") is not None


def test_a_refused_connection_is_retried_and_named(
    monkeypatch: pytest.MonkeyPatch, emulator: Emulator
) -> None:
    monkeypatch.setattr(SalesforceClient, "backoff_base_seconds", 0.01)
    monkeypatch.setattr(SalesforceClient, "backoff_max_seconds", 0.02)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ServiceUnavailable) as caught:
        client_for(password_settings(emulator, domain=f"http://127.0.0.1:{port}")).login()
    assert str(caught.value).endswith(f"SOAP login at http://127.0.0.1:{port}: the connection was refused")


@pytest.mark.parametrize(
    ("settings_for", "version", "advice"),
    [
        (password_settings, "99.0", "set api_version to 64.0 or older"),
        (oauth_settings, "99.0", "set api_version to 64.0 or older"),
        (lambda emu, **overrides: oauth_settings(emu, refresh=False, **overrides), "65.0", "64.0 or older"),
    ],
    ids=["soap", "refresh-token", "client-credentials"],
)
def test_an_api_version_the_org_does_not_serve_says_which_it_does(
    emulator: Emulator, settings_for: Callable[..., dict], version: str, advice: str
) -> None:
    """A version newer than the org's release (set during a release's roll-out, when sandboxes have it
    first): the SOAP login's fault UNSUPPORTED_API_VERSION, or REST's 404 NOT_FOUND for every call, said
    neither what was wrong nor what to set."""
    client = client_for(settings_for(emulator, api_version=version))
    with pytest.raises(TapError) as raised:
        client.get_json("sobjects")
    message = str(raised.value)
    assert message.startswith("api_version: ") and "\n" not in message, message
    assert f"serves API versions 40.0 to 64.0, not {version}" in message and advice in message, message
    assert "sandbox" not in message


def test_a_missing_object_is_not_taken_for_an_unserved_version(emulator: Emulator) -> None:
    client = client_for(oauth_settings(emulator))
    with pytest.raises(TapError) as raised:
        client.get_json("sobjects/NoSuchObject__c/describe")
    assert "NOT_FOUND" in str(raised.value) and "api_version" not in str(raised.value)


def test_an_expired_password_stops_at_the_login_with_what_to_do(emulator: Emulator) -> None:
    """Salesforce expires a password every 90 days by default; the login still succeeds, saying
    `passwordExpired`, and every call then failed with INVALID_OPERATION_WITH_EXPIRED_PASSWORD."""
    emulator.auth.password_expired = True
    try:
        client = client_for(password_settings(emulator))
        with pytest.raises(AuthenticationError) as refused:
            client.get_json("sobjects")
    finally:
        emulator.auth.password_expired = False
    message = str(refused.value)
    assert message.startswith("the password of user admin@example.com has expired: log in to Salesforce")
    assert "security_token" in message and "\n" not in message and "password'" not in message
    assert client.requests_sent == 0, "no API call is made with the session of an expired password"


@pytest.mark.parametrize("status", [403, 500])
def test_a_call_refused_for_an_expired_password_is_not_retried(requests_mock: Any, status: int) -> None:
    settings = {"username": "etl@acme.com", "password": "p", "security_token": "t", "domain": "login"}
    client = client_for(settings)
    client._login = LoginResult(access_token="token", instance_url="https://acme.my.salesforce.com")
    requests_mock.get(
        "https://acme.my.salesforce.com/services/data/v58.0/sobjects",
        status_code=status,
        json=[
            {
                "errorCode": "INVALID_OPERATION_WITH_EXPIRED_PASSWORD",
                "message": "The users password has expired, you must call SetPassword before attempting "
                "any other API operations",
            }
        ],
    )
    with pytest.raises(AuthenticationError, match=r"^the password of user etl@acme.com has expired"):
        client.get_json("sobjects")
    assert requests_mock.call_count == 1


@pytest.mark.parametrize(
    ("code", "salesforce_says", "advice"),
    [
        (
            "LOGIN_MUST_USE_SECURITY_TOKEN",
            "Invalid username, password, security token; or user locked out. Are you at a new location? "
            "When accessing Salesforce--either via a desktop client or the API--from outside of your "
            "company's trusted networks, you must add a security token to your password to log in.",
            "set security_token (Salesforce emails a new one",
        ),
        (
            "API_DISABLED_FOR_ORG",
            "API is not enabled for this Organization or Partner",
            "needs the API Enabled permission",
        ),
        ("PASSWORD_LOCKOUT", "Your account has been locked", "an administrator can unlock it"),
    ],
)
def test_a_login_refused_by_the_users_own_org_says_what_to_do_without_the_sandbox_hint(
    emulator: Emulator, code: str, salesforce_says: str, advice: str
) -> None:
    """Faults that come from the user's org (the user was found) are no case for `domain: test`:
    the hint sent people to the wrong fix for the commonest first-run failure, a missing token."""
    client = client_for(password_settings(emulator, domain="login"), http=login_redirect_session(emulator))
    emulator.auth.login_fault = (code, salesforce_says)
    try:
        with pytest.raises(AuthenticationError) as refused:
            client.login()
    finally:
        emulator.auth.login_fault = None
    message = str(refused.value)
    assert message.startswith(
        f"Salesforce refused the login with user admin@example.com at https://login.salesforce.com ({code}: "
    ), message
    assert advice in message and "sandbox" not in message and "\n" not in message


def test_a_login_while_the_api_is_down_is_retried(emulator: Emulator) -> None:
    """API_CURRENTLY_DISABLED: 'because of a system problem, API functionality is temporarily
    unavailable': worth waiting for, like SERVER_UNAVAILABLE."""
    client = client_for(password_settings(emulator))
    emulator.auth.login_fault = ("API_CURRENTLY_DISABLED", "API is currently disabled")
    answered = threading.Timer(1.0, lambda: setattr(emulator.auth, "login_fault", None))
    answered.start()
    try:
        assert client.get_json("sobjects")["sobjects"]
    finally:
        answered.cancel()
        emulator.auth.login_fault = None


_SOAP_LOGIN_ANSWER = """<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns="urn:partner.soap.sforce.com"><soapenv:Body><loginResponse><result>
<metadataServerUrl>{server}/services/Soap/m/58.0/00D000000000001</metadataServerUrl>
<passwordExpired>false</passwordExpired><sandbox>false</sandbox>
<serverUrl>{server}/services/Soap/u/58.0/00D000000000001</serverUrl>
<sessionId>00D000000000001!AQ0AQsession</sessionId><userId>005000000000001AAA</userId>
</result></loginResponse></soapenv:Body></soapenv:Envelope>"""


@pytest.mark.parametrize(
    ("server", "instance"),
    [
        # A My Domain whose name ends in "-api": simple-salesforce strips "-api" from every host, which
        # sent the session to another org's host (globex.my.salesforce.com).
        ("https://globex-api.my.salesforce.com", "https://globex-api.my.salesforce.com"),
        (
            "https://acme--uat-api.sandbox.my.salesforce.com",
            "https://acme--uat-api.sandbox.my.salesforce.com",
        ),
        # A legacy pod host answers the login as na15-api and serves the REST API as na15.
        ("https://na15-api.salesforce.com", "https://na15.salesforce.com"),
        ("https://acme.my.salesforce.com", "https://acme.my.salesforce.com"),
    ],
)
def test_the_soap_login_keeps_the_orgs_host(requests_mock: Any, server: str, instance: str) -> None:
    settings = {"username": "etl@acme.com", "password": "p", "security_token": "t", "domain": "login"}
    requests_mock.post(
        "https://login.salesforce.com/services/Soap/u/58.0",
        text=_SOAP_LOGIN_ANSWER.format(server=server),
        headers={"Content-Type": "text/xml;charset=UTF-8"},
    )
    requests_mock.get(f"{instance}/services/data/v58.0/sobjects", json={"sobjects": []})
    client = client_for(settings)
    assert client.get_json("sobjects") == {"sobjects": []}
    assert client._login is not None and client._login.instance_url == instance
