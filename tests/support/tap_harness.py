"""Running the tap against the emulator in tests and benchmarks, and what the org says it should emit.

- `tap_settings(emu, **overrides)`: settings for the emulator (OAuth refresh token, `domain` = its URL).
- `discover_catalog(settings)`: the discovery catalog (in-process).
- `select(catalog, streams, deselect={stream: {prop}}, select={stream: {prop}})`: a catalog with only
  `streams` selected, and properties (de)selected.
- `run_tap(settings, catalog, state=None, subprocess=False)`: one sync, in-process (fast) or through
  the real CLI (exit status, stdout purity) -> `TapRun` (messages, exit code, stderr).
- `start_tap(...)`: the CLI as a running process (for the crash tests).
- `expected_records(emu, entry)`: the org's records as the tap must emit them (selected properties,
  output spellings of values.py), keyed by Id; `upserted(runs, stream)`: what target-warehouse-seg
  holds after loading the given runs (upserts by `id`; NULL where the last writer's SCHEMA lacked a column).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess as sp
import sys
import tempfile
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

from singer_sdk.singerlib.catalog import MetadataMapping
from stdout_capture import captured_stdout

from tap_salesforce_seg.values import exact_number, format_datetime, strip_text

TAP_MODULE = "tap_salesforce_seg.tap"


def tap_settings(emu: Any, **overrides: Any) -> dict[str, Any]:
    credentials = emu.credentials
    settings = {
        "client_id": credentials.client_id,
        "client_secret": credentials.client_secret,
        "refresh_token": credentials.refresh_token,
        "domain": emu.base_url,
        "api_version": "58.0",
    }
    settings.update(overrides)
    return settings


def discover_catalog(settings: Mapping[str, Any]) -> dict[str, Any]:
    from tap_salesforce_seg.tap import TapSalesforceSeg

    return TapSalesforceSeg(config=dict(settings)).catalog_dict


def entry(catalog: Mapping[str, Any], stream: str) -> dict[str, Any]:
    return next(e for e in catalog["streams"] if e["tap_stream_id"] == stream)


def select(
    catalog: Mapping[str, Any],
    streams: Iterable[str],
    *,
    deselect: Mapping[str, Iterable[str]] | None = None,
    select: Mapping[str, Iterable[str]] | None = None,
) -> dict[str, Any]:
    """A copy of `catalog` with exactly `streams` selected and the given properties (de)selected."""
    chosen = set(streams)
    result = json.loads(json.dumps(catalog))
    for stream_entry in result["streams"]:
        name = stream_entry["tap_stream_id"]
        off = set((deselect or {}).get(name, ()))
        on = set((select or {}).get(name, ()))
        for item in stream_entry["metadata"]:
            breadcrumb = item["breadcrumb"]
            if not breadcrumb:
                item["metadata"]["selected"] = name in chosen
            elif breadcrumb[-1] in off:
                item["metadata"]["selected"] = False
            elif breadcrumb[-1] in on:
                item["metadata"]["selected"] = True
    return result


@dataclasses.dataclass
class TapRun:
    messages: list[dict[str, Any]]
    exit_code: int
    stderr: str
    stdout_lines: int = 0

    def records(self, stream: str) -> list[dict[str, Any]]:
        return [m["record"] for m in self.messages if m["type"] == "RECORD" and m["stream"] == stream]

    def states(self) -> list[dict[str, Any]]:
        return [m["value"] for m in self.messages if m["type"] == "STATE"]

    @property
    def final_state(self) -> dict[str, Any] | None:
        states = self.states()
        return states[-1] if states else None

    def schema(self, stream: str) -> dict[str, Any]:
        return next(m for m in self.messages if m["type"] == "SCHEMA" and m["stream"] == stream)


def parse_messages(stdout: bytes) -> list[dict[str, Any]]:
    """Every stdout line must be a Singer message (JSON, numbers exact)."""
    messages = []
    for number, line in enumerate(stdout.splitlines(), 1):
        try:
            message = json.loads(line, parse_float=Decimal)
        except ValueError as error:
            raise AssertionError(f"stdout line {number} is not JSON: {line[:200]!r}") from error
        assert isinstance(message, dict) and "type" in message, f"stdout line {number}: {line[:200]!r}"
        messages.append(message)
    return messages


def run_tap(
    settings: Mapping[str, Any],
    catalog: Mapping[str, Any],
    state: Mapping[str, Any] | None = None,
    *,
    subprocess: bool = False,
    timeout: float = 300,
) -> TapRun:
    if subprocess:
        with tempfile.TemporaryDirectory() as folder:
            process = start_tap(settings, catalog, state, folder=folder, stderr=sp.PIPE)
            stdout, stderr = process.communicate(timeout=timeout)
        return TapRun(parse_messages(stdout), process.returncode, stderr.decode(), len(stdout.splitlines()))
    return _run_in_process(settings, catalog, state)


def _run_in_process(
    settings: Mapping[str, Any], catalog: Mapping[str, Any], state: Mapping[str, Any] | None
) -> TapRun:
    from tap_salesforce_seg.errors import TapError
    from tap_salesforce_seg.tap import TapSalesforceSeg

    exit_code = 0
    error_text = ""
    with captured_stdout() as captured:
        try:
            tap = TapSalesforceSeg(
                config=dict(settings), catalog=json.loads(json.dumps(catalog)), state=dict(state or {})
            )
            tap.sync_all()
        except TapError as error:
            exit_code = error.exit_code
            error_text = error.message
    return TapRun(parse_messages(captured.getvalue()), exit_code, error_text)


def start_tap(
    settings: Mapping[str, Any],
    catalog: Mapping[str, Any],
    state: Mapping[str, Any] | None = None,
    *,
    folder: str | os.PathLike[str],
    stderr: Any = sp.PIPE,
) -> sp.Popen[bytes]:
    """The real CLI (`python -m tap_salesforce_seg.tap`) as a running process; stdout is a pipe."""
    folder = Path(folder)
    config_path = folder / "config.json"
    catalog_path = folder / "catalog.json"
    config_path.write_text(json.dumps(dict(settings)))
    catalog_path.write_text(json.dumps(catalog))
    command = [sys.executable, "-m", TAP_MODULE, "--config", str(config_path), "--catalog", str(catalog_path)]
    if state:
        state_path = folder / "state.json"
        state_path.write_text(json.dumps(state))
        command += ["--state", str(state_path)]
    return sp.Popen(command, stdout=sp.PIPE, stderr=stderr)


# --- what the org says ----------------------------------------------------------------------------


def selected_properties(catalog_entry: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """property -> (salesforce field, salesforce type) for the selected properties of one entry."""
    mask = MetadataMapping.from_iterable(catalog_entry["metadata"]).resolve_selection()
    result = {}
    for item in catalog_entry["metadata"]:
        breadcrumb = tuple(item["breadcrumb"])
        if breadcrumb and mask[breadcrumb]:
            meta = item["metadata"]
            result[breadcrumb[-1]] = (meta["salesforce-field"], meta["salesforce-type"])
    return result


def sobject_of(catalog_entry: Mapping[str, Any]) -> str:
    root = next(item for item in catalog_entry["metadata"] if not item["breadcrumb"])
    return root["metadata"]["salesforce-object"]


def expected_value(value: Any, sf_type: str) -> Any:
    """A Python value from `Org.records()` in the tap's output spelling (values.py)."""
    if value is None:
        return None
    if sf_type == "anyType":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, datetime):
            return format_datetime(value)
        if isinstance(value, (date, Decimal, int)):
            return str(value)
        return strip_text(str(value))
    if isinstance(value, bool):
        return value
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.strftime("%H:%M:%S.%f")
    if isinstance(value, Decimal):
        return exact_number(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return exact_number(Decimal(repr(value)))
    if isinstance(value, str):
        return strip_text(value)
    raise TypeError(f"unexpected value {value!r} of type {sf_type}")


def expected_records(emu: Any, catalog_entry: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The org's records (soft-deleted included) as the tap must emit them, keyed by Id."""
    properties = selected_properties(catalog_entry)
    result = {}
    for record in emu.org.records(sobject_of(catalog_entry), include_deleted=True):
        result[record["Id"]] = {
            prop: expected_value(record.get(field), sf_type) for prop, (field, sf_type) in properties.items()
        }
    return result


def normalised(record: Mapping[str, Any]) -> dict[str, Any]:
    """Emitted numbers parsed as Decimal compare by value with the expected ints/Decimals."""
    return {
        key: exact_number(value) if isinstance(value, Decimal) else value for key, value in record.items()
    }


def upserted(runs: Iterable[TapRun], stream: str, key: str = "id") -> dict[str, dict[str, Any]]:
    """What target-warehouse-seg holds, keyed by `key`, after loading the runs' output in order.

    Its rules (issue 4): a record writes its row's latest state whole, so a property its SCHEMA lacks
    (deselected for that run, or vanished in Salesforce) is NULL in the row it writes, even where an
    earlier run stored a value; a property never leaves the table, so every row has every property of
    every SCHEMA of the stream, NULL where the run that last wrote the row did not carry it. Later runs and
    later lines win: the target would also refuse an older `system_modstamp` (never regress), but a tap
    must not emit one after a newer one (other targets just upsert), so the model does not forgive it.
    A record with a property outside its SCHEMA fails here: the target would drop that value."""
    table: dict[str, dict[str, Any]] = {}
    columns: dict[str, None] = {}  # every property of every SCHEMA so far, in order
    properties: set[str] | None = None  # the current SCHEMA's
    for run in runs:
        for message in run.messages:
            if message.get("stream") != stream:
                continue
            if message["type"] == "SCHEMA":
                properties = set(message["schema"]["properties"])
                columns.update(dict.fromkeys(message["schema"]["properties"]))
            elif message["type"] == "RECORD":
                record = message["record"]
                assert properties is not None, f"{stream}: RECORD before its SCHEMA"
                outside = set(record) - properties
                assert not outside, f"{stream} {record.get(key)}: properties not in the SCHEMA: {outside}"
                table[record[key]] = {**dict.fromkeys(properties), **normalised(record)}
    return {record_id: {**dict.fromkeys(columns), **row} for record_id, row in table.items()}
