"""Settings and their validation: one line naming the setting, before any network call."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tap_salesforce_seg.config import (
    AUTH_CLIENT_CREDENTIALS,
    AUTH_PASSWORD,
    AUTH_REFRESH_TOKEN,
    TapConfig,
)
from tap_salesforce_seg.errors import CatalogError, ConfigError, StateError
from tap_salesforce_seg.tap import TapSalesforceSeg

PASSWORD_LOGIN = {"username": "admin@example.com", "password": "pw-SECRET", "security_token": "tok-SECRET"}
REFRESH_LOGIN = {"client_id": "cid", "client_secret": "cs-SECRET", "refresh_token": "rt-SECRET"}
CLIENT_CREDENTIALS = {"client_id": "cid", "client_secret": "cs-SECRET", "domain": "acme.my"}


def config(**settings: Any) -> TapConfig:
    return TapConfig.from_mapping({**PASSWORD_LOGIN, **settings})


def error_of(settings: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        TapConfig.from_mapping(settings)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_defaults() -> None:
    settings = config()
    assert settings.auth_mode == AUTH_PASSWORD
    assert settings.domain == "login"
    assert settings.login_base_url == "https://login.salesforce.com"
    assert settings.api_version == "58.0"
    assert settings.start_date is None
    assert settings.lookback_seconds == 600
    assert settings.api_type == "auto"
    assert settings.bulk_min_records == 50_000
    assert settings.bulk_job_timeout_seconds == 4 * 60 * 60
    assert settings.quota_percent == 80
    assert settings.state_every_records == 10_000
    assert settings.naming == "segment"


def test_secrets_stay_out_of_repr() -> None:
    text = repr(TapConfig.from_mapping({**PASSWORD_LOGIN}))
    assert "SECRET" not in text
    assert "admin@example.com" in text


@pytest.mark.parametrize(
    ("settings", "mode"),
    [
        (PASSWORD_LOGIN, AUTH_PASSWORD),
        ({**PASSWORD_LOGIN, "security_token": ""}, AUTH_PASSWORD),  # trusted IP range: no token
        (REFRESH_LOGIN, AUTH_REFRESH_TOKEN),
        (CLIENT_CREDENTIALS, AUTH_CLIENT_CREDENTIALS),
    ],
)
def test_login_methods(settings: dict, mode: str) -> None:
    assert TapConfig.from_mapping(settings).auth_mode == mode


@pytest.mark.parametrize(
    ("domain", "base_url"),
    [
        ("login", "https://login.salesforce.com"),
        ("test", "https://test.salesforce.com"),
        ("TEST", "https://test.salesforce.com"),
        ("acme.my", "https://acme.my.salesforce.com"),
        ("acme--uat.sandbox.my", "https://acme--uat.sandbox.my.salesforce.com"),
        ("acme.my.salesforce.com", "https://acme.my.salesforce.com"),
        ("https://acme.my.salesforce.com", "https://acme.my.salesforce.com"),
        ("https://acme.my.salesforce.com/", "https://acme.my.salesforce.com"),
        ("http://127.0.0.1:8123", "http://127.0.0.1:8123"),
        ("http://localhost:8123", "http://localhost:8123"),
        ("https://127.0.0.1:8443", "https://127.0.0.1:8443"),
    ],
)
def test_domains(domain: str, base_url: str) -> None:
    assert config(domain=domain).login_base_url == base_url


def test_is_sandbox_means_test() -> None:
    assert config(is_sandbox=True).domain == "test"
    assert config(is_sandbox="true").login_base_url == "https://test.salesforce.com"
    assert config(is_sandbox=True, domain="acme--uat.sandbox.my").domain == "acme--uat.sandbox.my"
    assert config(is_sandbox=False).domain == "login"


def test_start_date_forms() -> None:
    utc = UTC
    assert config(start_date="2024-01-02T03:04:05Z").start_date == datetime(2024, 1, 2, 3, 4, 5, tzinfo=utc)
    assert config(start_date="2024-01-02").start_date == datetime(2024, 1, 2, tzinfo=utc)
    assert config(start_date="2024-01-02T05:04:05+02:00").start_date == datetime(
        2024, 1, 2, 3, 4, 5, tzinfo=utc
    )
    assert config(start_date="2024-01-02T03:04:05.000+0000").start_date == datetime(
        2024, 1, 2, 3, 4, 5, tzinfo=utc
    )
    assert config(start_date="").start_date is None


def test_numbers_from_strings_and_choices() -> None:
    settings = config(
        lookback_seconds="0",
        bulk_min_records=0,
        bulk_job_timeout_seconds="0",
        quota_percent="95.5",
        api_type="BULK",
        naming="salesforce",
    )
    assert settings.lookback_seconds == 0
    assert settings.bulk_min_records == 0
    assert settings.bulk_job_timeout_seconds == 0
    assert settings.quota_percent == 95.5
    assert settings.api_type == "bulk"
    assert settings.naming == "salesforce"
    assert config(api_version=59).api_version == "59.0"


def test_numbers_read_as_decimals() -> None:
    # singer-sdk reads JSON config files with floats as Decimal.
    settings = config(
        quota_percent=Decimal("80.5"), lookback_seconds=Decimal("30.0"), api_version=Decimal("58.0")
    )
    assert settings.quota_percent == 80.5
    assert settings.lookback_seconds == 30
    assert settings.api_version == "58.0"
    with pytest.raises(ConfigError, match=r"^lookback_seconds: must be a whole number"):
        config(lookback_seconds=Decimal("1.5"))


@pytest.mark.parametrize(
    ("settings", "setting", "fragment"),
    [
        ({}, "username", "no credentials"),
        ({"username": "u", "password": "p"}, "security_token", "missing"),
        ({"username": "u", "security_token": "t"}, "password", "missing"),
        ({"password": "p", "security_token": "t"}, "username", "missing"),
        ({**PASSWORD_LOGIN, "client_id": "cid"}, "username, client_id", "two login methods"),
        ({**PASSWORD_LOGIN, "refresh_token": "rt"}, "username, refresh_token", "two login methods"),
        ({"client_id": "cid", "refresh_token": "rt"}, "client_secret", "missing"),
        ({"client_secret": "cs", "refresh_token": "rt"}, "client_id", "missing"),
        ({"client_id": "cid"}, "client_secret", "missing"),
        ({"client_id": "c", "client_secret": "s"}, "domain", "My Domain"),
        ({"client_id": "c", "client_secret": "s", "domain": "test"}, "domain", "My Domain"),
        ({**PASSWORD_LOGIN, "domain": "acme"}, "domain", "'acme' is not login, test"),
        ({**PASSWORD_LOGIN, "domain": "ftp://acme.my.salesforce.com"}, "domain", "not an http(s) URL"),
        ({**PASSWORD_LOGIN, "domain": "https://"}, "domain", "no host"),
        ({**PASSWORD_LOGIN, "domain": "https://acme.my.salesforce.com/x"}, "domain", "without a path"),
        ({**PASSWORD_LOGIN, "domain": "http://acme.my.salesforce.com"}, "domain", "plain http"),
        ({**PASSWORD_LOGIN, "domain": "https://h:99999"}, "domain", "not a valid URL"),
        ({**PASSWORD_LOGIN, "domain": "my domain.my"}, "domain", "is not login"),
        ({**PASSWORD_LOGIN, "domain": 5}, "domain", "must be a string"),
        ({**PASSWORD_LOGIN, "is_sandbox": True, "domain": "login"}, "is_sandbox", "remove one"),
        ({**PASSWORD_LOGIN, "is_sandbox": "maybe"}, "is_sandbox", "true or false"),
        ({**PASSWORD_LOGIN, "api_version": "58"}, "api_version", 'like "58.0"'),
        ({**PASSWORD_LOGIN, "api_version": "v58"}, "api_version", 'like "58.0"'),
        ({**PASSWORD_LOGIN, "api_version": "58.1"}, "api_version", 'like "58.0"'),
        ({**PASSWORD_LOGIN, "api_version": True}, "api_version", 'like "58.0"'),
        ({**PASSWORD_LOGIN, "api_version": "40.0"}, "api_version", "too old"),
        ({**PASSWORD_LOGIN, "start_date": "yesterday"}, "start_date", "not a date-time"),
        ({**PASSWORD_LOGIN, "start_date": "2024-13-01"}, "start_date", "not a date-time"),
        ({**PASSWORD_LOGIN, "start_date": 20240101}, "start_date", "not a date-time"),
        ({**PASSWORD_LOGIN, "lookback_seconds": -1}, "lookback_seconds", "0 or more"),
        ({**PASSWORD_LOGIN, "lookback_seconds": "ten"}, "lookback_seconds", "whole number"),
        ({**PASSWORD_LOGIN, "lookback_seconds": True}, "lookback_seconds", "whole number"),
        ({**PASSWORD_LOGIN, "bulk_min_records": -5}, "bulk_min_records", "0 or more"),
        ({**PASSWORD_LOGIN, "bulk_min_records": 1.5}, "bulk_min_records", "whole number"),
        ({**PASSWORD_LOGIN, "bulk_job_timeout_seconds": -1}, "bulk_job_timeout_seconds", "0 or more"),
        ({**PASSWORD_LOGIN, "bulk_job_timeout_seconds": "4h"}, "bulk_job_timeout_seconds", "whole number"),
        ({**PASSWORD_LOGIN, "state_every_records": 0}, "state_every_records", "1 or more"),
        ({**PASSWORD_LOGIN, "quota_percent": -10}, "quota_percent", "more than 0"),
        ({**PASSWORD_LOGIN, "quota_percent": 101}, "quota_percent", "at most 100"),
        ({**PASSWORD_LOGIN, "quota_percent": "lots"}, "quota_percent", "a number"),
        ({**PASSWORD_LOGIN, "api_type": "soap"}, "api_type", "auto, rest, bulk"),
        ({**PASSWORD_LOGIN, "naming": "camel"}, "naming", "segment, salesforce"),
        ({**PASSWORD_LOGIN, "username": 42}, "username", "must be a string"),
    ],
)
def test_bad_settings_name_the_setting(settings: dict, setting: str, fragment: str) -> None:
    message = error_of(settings)
    assert message.startswith(f"{setting}: ")
    assert fragment in message


def test_errors_never_echo_secrets() -> None:
    message = error_of({"username": "u", "password": "pw-SECRET", "client_secret": "cs-SECRET"})
    assert "SECRET" not in message
    message = error_of({**PASSWORD_LOGIN, "password": 12345})
    assert "12345" not in message


# --- through the tap and its command line ------------------------------------------------------------

TAP = [sys.executable, "-m", "tap_salesforce_seg.tap"]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_tap(args: list[str], settings: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess:
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(settings))
    return subprocess.run(
        [*TAP, "--config", str(config_file), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_about_lists_the_settings_with_secrets_flagged() -> None:
    result = subprocess.run([*TAP, "--about", "--format", "json"], capture_output=True, text=True, check=True)
    about = json.loads(result.stdout)
    properties = about["settings"]["properties"]
    own = [
        "username",
        "password",
        "security_token",
        "client_id",
        "client_secret",
        "refresh_token",
        "domain",
        "is_sandbox",
        "api_version",
        "start_date",
        "lookback_seconds",
        "api_type",
        "bulk_min_records",
        "bulk_job_timeout_seconds",
        "quota_percent",
        "state_every_records",
        "naming",
    ]
    assert set(own) <= set(properties)
    secrets = {name for name, schema in properties.items() if schema.get("secret")}
    assert secrets == {"password", "security_token", "client_secret", "refresh_token"}
    assert properties["api_version"]["default"] == "58.0"
    assert properties["api_type"]["enum"] == ["auto", "rest", "bulk"]
    assert properties["naming"]["enum"] == ["segment", "salesforce"]
    assert properties["quota_percent"]["default"] == 80
    assert all(properties[name].get("description") for name in own)
    assert "discover" in about["capabilities"] and "catalog" in about["capabilities"]


@pytest.mark.parametrize("mode", [["--discover"], []], ids=["discover", "sync"])
@pytest.mark.parametrize(
    ("bad", "setting"),
    [
        ({"start_date": "yesterday"}, "start_date"),
        ({"api_version": "58"}, "api_version"),
        ({"client_id": "cid"}, "username, client_id"),
        ({"lookback_seconds": -1}, "lookback_seconds"),
        ({"api_type": "soap"}, "api_type"),
        ({"stream_maps": "not an object"}, "stream_maps"),
    ],
)
def test_bad_setting_is_one_line_before_any_network_call(
    tmp_path: Path, mode: list[str], bad: dict, setting: str
) -> None:
    # The domain points at a closed port: any network call would fail differently (and slowly).
    settings = {**PASSWORD_LOGIN, "domain": f"http://127.0.0.1:{closed_port()}", **bad}
    result = run_tap(mode, settings, tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, result.stderr
    assert f"| {setting}: " in errors[0]
    assert "Traceback" not in result.stderr
    assert "SECRET" not in result.stderr


def test_bad_domain_is_reported_without_touching_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("network used before the settings were validated")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(ConfigError, match=r"^domain: "):
        TapSalesforceSeg(config={**PASSWORD_LOGIN, "domain": "login.salesforce"})
    with pytest.raises(ConfigError, match=r"^naming: "):
        TapSalesforceSeg(config={**PASSWORD_LOGIN, "domain": "http://127.0.0.1:9", "naming": "camel"})


def test_unknown_settings_are_reported(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(TapSalesforceSeg, "discover_streams", lambda self: [])
    with caplog.at_level(logging.WARNING):
        tap = TapSalesforceSeg(config={**PASSWORD_LOGIN, "start-date": "2024-01-01"})
    assert "Unknown setting 'start-date' is ignored (did you mean 'start_date'?)" in caplog.text
    assert tap.tap_config.start_date is None


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TapSalesforceSeg, "discover_streams", lambda self: [])
    monkeypatch.setenv("TAP_SALESFORCE_SEG_LOOKBACK_SECONDS", "30")
    monkeypatch.setenv("TAP_SALESFORCE_SEG_IS_SANDBOX", "true")
    tap = TapSalesforceSeg(config={**PASSWORD_LOGIN}, parse_env_config=True)
    assert tap.tap_config.lookback_seconds == 30
    assert tap.tap_config.login_base_url == "https://test.salesforce.com"


FILE_PROBLEMS = {
    "missing": (None, "was not found"),
    "not JSON": (
        '{"username": "u", "password": "SECRET"',
        "is not valid JSON: Expecting ',' delimiter or '}' at line 1, column 39",
    ),
    "an array": ("[1, 2]", "holds a JSON array, not an object"),
    "empty": ("", "is empty"),
    "a folder": ("folder", "is a folder, not a file"),
}


def write_problem(tmp_path: Path, text: str | None) -> Path:
    path = tmp_path / "given.json"
    if text == "folder":
        path.mkdir()
    elif text is not None:
        path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "problem"), FILE_PROBLEMS.values(), ids=FILE_PROBLEMS.keys())
@pytest.mark.parametrize("option", ["--config", "--state", "--catalog"])
def test_a_bad_file_on_the_command_line_is_one_line(
    tmp_path: Path, option: str, text: str | None, problem: str
) -> None:
    given = write_problem(tmp_path, text)
    settings = {**PASSWORD_LOGIN, "domain": f"http://127.0.0.1:{closed_port()}"}
    if option == "--config":
        result = subprocess.run([*TAP, "--config", str(given)], capture_output=True, text=True, timeout=60)
    else:
        result = run_tap([option, str(given)], settings, tmp_path)
    assert result.returncode != 0 and result.stdout == ""
    assert "Traceback" not in result.stderr and "SECRET" not in result.stderr
    if option != "--config" and text in (None, "folder"):
        # click opens --state and --catalog itself, and says so in its own one line.
        assert "Invalid value for" in result.stderr, result.stderr
        return
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, result.stderr
    what = {"--config": "config", "--state": "state", "--catalog": "catalog"}[option]
    assert f"| {what} file '{given}' {problem}" in errors[0]


def test_config_and_state_files_given_as_paths_are_read(tmp_path: Path) -> None:
    config_file, state_file = tmp_path / "config.json", tmp_path / "state.json"
    config_file.write_text(json.dumps({**PASSWORD_LOGIN, "lookback_seconds": 7}))
    state_file.write_text(
        json.dumps({"bookmarks": {"accounts": {"replication_key_value": "2024-01-01T00:00:00Z"}}})
    )
    catalog_file = tmp_path / "catalog.json"
    catalog_file.write_text('{"streams": []}')  # no discovery: nothing here reaches the network
    tap = TapSalesforceSeg(config=[str(config_file)], state=str(state_file), catalog=str(catalog_file))
    assert tap.config["lookback_seconds"] == 7
    assert tap.state["bookmarks"]["accounts"]["replication_key_value"] == "2024-01-01T00:00:00Z"
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(StateError, match=r"^state file '.*bad.json' is not valid JSON"):
        TapSalesforceSeg(
            config=[str(config_file)], state=str(tmp_path / "bad.json"), catalog=str(catalog_file)
        )


CATALOG_SHAPES = {
    # Another JSON file given as the catalog (here a config) synced nothing and exited 0, silently.
    "no streams": (
        {"username": "someone", "password": "x"},
        "catalog: no `streams` list; a catalog is what `--discover` writes (was another file given?)",
    ),
    "streams not a list": ({"streams": 5}, "catalog: `streams` is not a list"),
    "a stream not an object": ({"streams": [5]}, "catalog: streams[0] is not an object"),
    "a numeric id": (
        {"streams": [{"tap_stream_id": 1}]},
        "catalog: streams[0]: `tap_stream_id` is not a string",
    ),
    "schema not an object": (
        {"streams": [{"tap_stream_id": "accounts", "schema": 5}]},
        "catalog: streams[0] (accounts): `schema` is not an object",
    ),
    "a property schema not an object": (
        {"streams": [{"stream": "accounts", "schema": {"properties": {"id": "string"}}}]},
        "catalog: streams[0] (accounts): `schema.properties` is not an object of property schemas",
    ),
    "metadata not a list": (
        {"streams": [{"tap_stream_id": "accounts", "metadata": {}}]},
        "catalog: streams[0] (accounts): `metadata` is not a list",
    ),
    "a breadcrumb not a list": (
        {"streams": [{"tap_stream_id": "accounts", "metadata": [{"breadcrumb": "x", "metadata": {}}]}]},
        "catalog: streams[0] (accounts): a `metadata` entry is not",
    ),
    # singer-sdk reads `selected` by its truth: the string "false" selected the stream.
    "selected as a string": (
        {
            "streams": [
                {
                    "tap_stream_id": "accounts",
                    "metadata": [{"breadcrumb": [], "metadata": {"selected": "false"}}],
                }
            ]
        },
        'catalog: streams[0] (accounts): `selected` of the stream is "false", not true or false',
    ),
    "a property's selected as a number": (
        {
            "streams": [
                {
                    "tap_stream_id": "accounts",
                    "metadata": [{"breadcrumb": ["properties", "name"], "metadata": {"selected": 0}}],
                }
            ]
        },
        "catalog: streams[0] (accounts): `selected` of properties/name is 0, not true or false",
    ),
}
STATE_SHAPES = {
    "bookmarks not an object": ({"bookmarks": []}, "state: `bookmarks` is not an object"),
    "a bookmark not an object": (
        {"bookmarks": {"accounts": "2024"}},
        "state: the bookmark of stream 'accounts' is not an object",
    ),
    # What `meltano state get` prints: read as no state, it synced every stream in full, silently.
    "Meltano's wrapper": (
        {"singer_state": {"bookmarks": {"accounts": {"replication_key_value": "2024-01-01T00:00:00Z"}}}},
        "state: this is Meltano's wrapper",
    ),
}


@pytest.mark.parametrize(
    ("option", "content", "message"),
    [
        *(("--catalog", content, message) for content, message in CATALOG_SHAPES.values()),
        *(("--state", content, message) for content, message in STATE_SHAPES.values()),
    ],
    ids=[*CATALOG_SHAPES, *STATE_SHAPES],
)
def test_a_catalog_or_state_of_the_wrong_shape_is_one_line(
    tmp_path: Path, option: str, content: object, message: str
) -> None:
    given = tmp_path / "given.json"
    given.write_text(json.dumps(content))
    settings = {**PASSWORD_LOGIN, "domain": f"http://127.0.0.1:{closed_port()}"}
    extra = [] if option == "--catalog" else ["--catalog", str(catalog_without_streams(tmp_path))]
    result = run_tap([*extra, option, str(given)], settings, tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and f"| {message}" in errors[0], result.stderr


def catalog_without_streams(tmp_path: Path) -> Path:
    path = tmp_path / "empty-catalog.json"
    path.write_text('{"streams": []}')
    return path


def test_shapes_are_checked_when_the_tap_is_made_in_code() -> None:
    with pytest.raises(CatalogError, match="`streams` is not a list"):
        TapSalesforceSeg(config=dict(PASSWORD_LOGIN), catalog={"streams": {}})
    with pytest.raises(StateError, match="bookmark of stream 'x'"):
        TapSalesforceSeg(config=dict(PASSWORD_LOGIN), catalog={"streams": []}, state={"bookmarks": {"x": 1}})


def test_a_state_file_of_several_lines_says_to_keep_the_last(tmp_path: Path) -> None:
    """A run's whole STATE output (`state-out.jsonl`) given as the state."""
    lines = tmp_path / "state-out.jsonl"
    lines.write_text('{"bookmarks": {}}\n{"bookmarks": {}}\n')
    with pytest.raises(StateError) as caught:
        TapSalesforceSeg(config=dict(PASSWORD_LOGIN), catalog={"streams": []}, state=str(lines))
    assert str(caught.value) == (
        f"state file '{lines}' is not valid JSON: Extra data at line 2, column 1 (several JSON lines? "
        "a state is one: the last STATE line of a run, tail -1)"
    )


@pytest.mark.parametrize(
    "arguments",
    [["--no-such-option"], ["--catalog", "no-such-catalog.json"], ["--state", "no-such-state.json"]],
    ids=["unknown option", "missing catalog", "missing state"],
)
def test_a_wrong_command_line_exits_1_not_the_quota_status(tmp_path: Path, arguments: list[str]) -> None:
    """click ends a usage error with status 2, which a pipeline reports as the quota stop (retry later)."""
    settings = {**PASSWORD_LOGIN, "domain": f"http://127.0.0.1:{closed_port()}"}
    result = run_tap(arguments, settings, tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: "), result.stderr
    assert result.stdout == ""


def test_a_state_file_that_cannot_be_read_says_what_to_do(tmp_path: Path) -> None:
    """A scheduler's state copy cut short or left empty stopped every run with a line that gave no way
    out; and a control character read "Invalid control character %r at at line 1"."""
    from tap_salesforce_seg.inputs import read_json_object

    restore = (
        ": put back the last whole STATE line of the run that wrote it, or remove the file to sync every "
        "stream from the start"
    )
    cases = {
        "": "is empty",
        '{"bookmarks":{"accounts":{"replication_key_value":"2024-0': "is not valid JSON: Unterminated string "
        "starting at line 1, column 51",
        '{"a":"x\ty"}': "is not valid JSON: Invalid control character at line 1, column 8",
    }
    for text, problem in cases.items():
        path = tmp_path / "state.json"
        path.write_text(text)
        with pytest.raises(StateError) as refused:
            read_json_object(path, "state file", StateError)
        assert str(refused.value) == f"state file '{path}' {problem}{restore}"
