"""The `salesforce-emulator` command: its one start line, its flags and its clean shutdown."""

from __future__ import annotations

import json
import os
import select
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

V = "/services/data/v58.0"
COMMAND = Path(sys.executable).parent / "salesforce-emulator"
SMALL = ["--scale", "0.001", "--no-tags", "--no-schedules"]


@contextmanager
def running(*arguments: str, command: list[str] | None = None) -> Iterator[tuple[subprocess.Popen, str]]:
    """Start the emulator; yield the process and its start line; always end the process."""
    process = subprocess.Popen(
        [*(command or [sys.executable, "-m", "salesforce_emulator"]), *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([process.stdout], [], [], 120)
        assert ready, "no start line within 120 s"
        line = process.stdout.readline()
        assert line, f"exited early: {process.stderr.read()}"
        yield process, line
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        process.stdout.close()
        process.stderr.close()


def parse(line: str) -> tuple[str, dict[str, str]]:
    base_url, *pairs = shlex.split(line)
    return base_url, dict(pair.split("=", 1) for pair in pairs)


def stop(process: subprocess.Popen, signal_number: int) -> tuple[int, str]:
    process.send_signal(signal_number)
    remaining_stdout = process.stdout.read()
    return process.wait(timeout=30), remaining_stdout


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_start_line_then_clean_shutdown(signal_number: int) -> None:
    with running(*SMALL) as (process, line):
        assert line.endswith("\n")
        base_url, pairs = parse(line)
        assert base_url.startswith("http://127.0.0.1:")
        assert pairs == {
            "username": "admin@example.com",
            "password": "password",
            "security_token": "TOKEN",
            "client_id": "emulator-client-id",
            "client_secret": "emulator-client-secret",
            "refresh_token": "emulator-refresh-token",
        }
        assert requests.get(base_url + "/services/data/", timeout=30).status_code == 200
        status, rest_of_stdout = stop(process, signal_number)
        assert status == 0
        assert rest_of_stdout == ""  # exactly one line on stdout
        assert "stopped" in process.stderr.read()
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(base_url + "/services/data/", timeout=5)


def test_console_script_with_flags(tmp_path: Path, monkeypatch) -> None:
    arguments = [
        *SMALL,
        "--seed", "7",
        "--count", "Account=25",
        "--api-limit", "5",
        "--session-lifetime", "600",
        "--username", "ops@example.com",
        "--password", "s3cret pass",
        "--security-token", "",
        "--tls",
        "--tls-dir", str(tmp_path),
        "--fail-http", "503:1:/limits",
    ]  # fmt: skip
    with running(*arguments, command=[str(COMMAND)]) as (process, line):
        base_url, pairs = parse(line)
        assert base_url.startswith("https://127.0.0.1:")
        assert pairs["username"] == "ops@example.com"
        assert pairs["password"] == "s3cret pass"
        assert pairs["ca_file"] == str(tmp_path / "salesforce-emulator-ca.pem")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", pairs["ca_file"])
        token = requests.post(
            base_url + "/services/oauth2/token",
            data={
                "grant_type": "password",
                "client_id": pairs["client_id"],
                "client_secret": pairs["client_secret"],
                "username": "ops@example.com",
                "password": "s3cret pass",  # the security token is empty
            },
            timeout=30,
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        assert requests.get(base_url + V + "/limits", headers=headers, timeout=30).status_code == 503
        limits = requests.get(base_url + V + "/limits", headers=headers, timeout=30).json()
        assert limits["DailyApiRequests"] == {"Max": 5, "Remaining": 4}
        page = requests.get(
            base_url + V + "/query", params={"q": "SELECT COUNT() FROM Account"}, headers=headers
        )
        assert page.json()["totalSize"] <= 25
        assert stop(process, signal.SIGTERM)[0] == 0


def test_fault_flags_are_armed(monkeypatch) -> None:
    arguments = [*SMALL, "--expire-sessions-after", "1", "--slow", "0.01:*", "--query-timeout-rows", "0:1"]
    with running(*arguments) as (process, line):
        base_url, _ = parse(line)
        faults = requests.post(base_url + "/__emulator__/faults/active", timeout=30).json()["result"]
        assert sorted(fault["kind"] for fault in faults) == ["expire_sessions_after", "query_timeout", "slow"]
        assert stop(process, signal.SIGINT)[0] == 0


@pytest.mark.parametrize(
    "arguments",
    [
        ["--host", "0.0.0.0"],  # loopback only unless --allow-remote
        ["--count", "Account"],
        ["--fail-http", "404:1"],
        ["--describe-dir-only"],
    ],
)
def test_bad_invocations_fail_with_a_message(arguments: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "salesforce_emulator", *SMALL, *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert "error" in result.stderr.lower()


WIDGET_DESCRIBE = {
    "name": "Widget__c",
    "label": "Widget",
    "labelPlural": "Widgets",
    "keyPrefix": "a0W",
    "custom": True,
    "queryable": True,
    "fields": [
        {"name": "Id", "type": "id", "length": 18, "nillable": False},
        {"name": "IsDeleted", "type": "boolean", "nillable": False},
        {"name": "Name", "type": "string", "length": 80, "nameField": True, "createable": True},
        {"name": "CreatedDate", "type": "datetime", "nillable": False},
        {"name": "LastModifiedDate", "type": "datetime", "nillable": False},
        {"name": "SystemModstamp", "type": "datetime", "nillable": False},
        {
            "name": "Weight__c",
            "type": "double",
            "precision": 10,
            "scale": 2,
            "custom": True,
            "createable": True,
        },
    ],
}


def test_describe_dir_only_serves_the_files_objects(tmp_path: Path) -> None:
    (tmp_path / "Widget__c.json").write_text(json.dumps(WIDGET_DESCRIBE), encoding="utf-8")
    arguments = ["--describe-dir", str(tmp_path), "--describe-dir-only", "--count", "Widget__c=12"]
    with running(*arguments) as (process, line):
        base_url, pairs = parse(line)
        token = requests.post(
            base_url + "/services/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "client_id": pairs["client_id"],
                "client_secret": pairs["client_secret"],
                "refresh_token": pairs["refresh_token"],
            },
            timeout=30,
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        names = {
            item["name"]
            for item in requests.get(base_url + V + "/sobjects", headers=headers).json()["sobjects"]
        }
        assert "Widget__c" in names
        assert "Account" not in names
        describe = requests.get(
            base_url + V + "/sobjects/Widget__c/describe", headers=headers, timeout=30
        ).json()
        assert [field["name"] for field in describe["fields"]] == [
            field["name"] for field in WIDGET_DESCRIBE["fields"]
        ]
        page = requests.get(
            base_url + V + "/query",
            params={"q": "SELECT Id, Name, Weight__c FROM Widget__c"},
            headers=headers,
        ).json()
        assert page["totalSize"] == 12
        assert all(record["Id"].startswith("a0W") for record in page["records"])
        assert stop(process, signal.SIGTERM)[0] == 0


def test_a_bad_describe_dir_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "Widget__c.json").write_text("{not json", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "salesforce_emulator", "--describe-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Widget__c.json" in result.stderr
