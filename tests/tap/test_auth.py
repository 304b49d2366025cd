"""Logins against the emulator over real HTTP: SOAP, refresh token (and rotation), client credentials."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from emulator_fixtures import login_redirect_session

from salesforce_emulator import Emulator
from salesforce_emulator.auth import Credentials
from tap_salesforce_seg.client import SalesforceClient
from tap_salesforce_seg.config import TapConfig
from tap_salesforce_seg.errors import AuthenticationError

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
