"""Regenerate the checked-in catalogs (`make catalogs`; `python catalogs/generate.py --check` only compares).

- `segment-default.json`: what `tap-salesforce-seg --discover` produces against the emulator's default org
  (seed 1, scale 1.0, custom objects on): Segment's 47 collections selected as Segment syncs them by
  default, custom objects (`invoice_c`) present but not selected.
- `selective-sync.example.json`: derived from the default by `SELECTIVE_SYNC` below: only those streams,
  each with only the listed properties selected (`id` is always synced). `is_deleted` and the replication
  key are kept so the streams stay incremental and soft deletes show (deselecting `system_modstamp` is
  Segment's full re-sync switch).

Both are written as deterministic, pretty JSON (`render`): discovery's own order, two-space indent, and
each property's schema and metadata on one line, so a selection is edited (and reviewed) line by line.
tests/e2e/test_catalogs.py fails when the files drift from what discovery produces now.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CATALOGS_DIR = Path(__file__).resolve().parent
DEFAULT_CATALOG = CATALOGS_DIR / "segment-default.json"
SELECTIVE_CATALOG = CATALOGS_DIR / "selective-sync.example.json"
DISCOVERY_TIMEOUT_SECONDS = 300

# stream -> the properties it syncs, besides `id` (a custom object included: selective sync adds them).
SELECTIVE_SYNC: dict[str, tuple[str, ...]] = {
    "accounts": (
        "name", "industry", "annual_revenue", "number_of_employees", "owner_id", "is_deleted",
        "system_modstamp",
    ),
    "contacts": ("account_id", "first_name", "last_name", "email", "title", "is_deleted", "system_modstamp"),
    "opportunities": (
        "account_id", "name", "stage_name", "amount", "close_date", "is_won", "is_deleted", "system_modstamp",
    ),
    "invoice_c": (
        "account_c", "amount_c", "status_c", "invoice_date_c", "is_paid_c", "is_deleted", "system_modstamp",
    ),
}  # fmt: skip


def tap_executable() -> str:
    """The tap's console script next to this Python (the project's venv), else the one on PATH."""
    beside = Path(sys.executable).with_name("tap-salesforce-seg")
    if beside.exists():
        return str(beside)
    found = shutil.which("tap-salesforce-seg")
    if not found:
        raise SystemExit("tap-salesforce-seg is not installed: run `make install` first")
    return found


def discover(settings: Mapping[str, Any]) -> dict[str, Any]:
    """`tap-salesforce-seg --config tap.json --discover`, as users run it; its stdout parsed."""
    with tempfile.TemporaryDirectory() as folder:
        config_path = Path(folder) / "tap.json"
        config_path.write_text(json.dumps(dict(settings)))
        done = subprocess.run(
            [tap_executable(), "--config", str(config_path), "--discover"],
            capture_output=True,
            timeout=DISCOVERY_TIMEOUT_SECONDS,
            check=False,
        )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.decode(errors="replace").splitlines()[-10:])
        raise RuntimeError(f"discovery failed (exit {done.returncode}):\n{tail}")
    return json.loads(done.stdout)


def emulator_settings(base_url: str, credentials: Any) -> dict[str, Any]:
    return {
        "client_id": credentials.client_id,
        "client_secret": credentials.client_secret,
        "refresh_token": credentials.refresh_token,
        "domain": base_url,
    }


def discover_default() -> dict[str, Any]:
    """The catalog discovery produces against a fresh emulator with the default org."""
    from salesforce_emulator import Emulator, OrgConfig

    with Emulator(OrgConfig()) as emulator:
        return discover(emulator_settings(emulator.base_url, emulator.credentials))


def selective_sync(default: Mapping[str, Any], selection: Mapping[str, tuple[str, ...]] = SELECTIVE_SYNC):
    """`default` narrowed to the streams of `selection`, each with only the listed properties selected."""
    entries = {entry["tap_stream_id"]: entry for entry in default["streams"]}
    unknown = sorted(set(selection) - set(entries))
    if unknown:
        raise ValueError(f"SELECTIVE_SYNC names streams discovery does not offer: {unknown}")
    streams = []
    for entry in default["streams"]:
        name = entry["tap_stream_id"]
        if name in selection:
            streams.append(_select_properties(copy.deepcopy(entry), set(selection[name])))
    return {"streams": streams}


def _select_properties(entry: dict[str, Any], chosen: set[str]) -> dict[str, Any]:
    missing = sorted(chosen - set(entry["schema"]["properties"]))
    if missing:
        raise ValueError(f"SELECTIVE_SYNC: stream {entry['tap_stream_id']} has no properties {missing}")
    for item in entry["metadata"]:
        metadata = item["metadata"]
        if not item["breadcrumb"]:
            metadata["selected"] = True
        elif metadata.get("inclusion") != "automatic":
            # First among the keys, so the selection reads down one column of the file.
            selected = item["breadcrumb"][-1] in chosen
            item["metadata"] = {"selected": selected, **metadata}
    return entry


def _flat(value: Any) -> bool:
    """A scalar, a list of scalars, or an object whose values are those: one line in the file."""
    if isinstance(value, dict):
        return all(not isinstance(item, dict) and _flat(item) for item in value.values())
    if isinstance(value, list):
        return all(not isinstance(item, (dict, list)) for item in value)
    return True


def render(value: Any, indent: int = 0) -> str:
    """Pretty JSON with one rule: flat values (`_flat`) on one line, other containers one item per line.
    A property's schema and its metadata each take one line, so a selection is edited line by line."""
    if _flat(value):
        return json.dumps(value, ensure_ascii=False)
    inner = " " * (indent + 2)
    if isinstance(value, dict):
        items = [
            f"{inner}{json.dumps(key, ensure_ascii=False)}: {render(item, indent + 2)}"
            for key, item in value.items()
        ]
        opening, closing = "{", "}"
    else:
        items = [inner + render(item, indent + 2) for item in value]
        opening, closing = "[", "]"
    return opening + "\n" + ",\n".join(items) + "\n" + " " * indent + closing


def catalog_text(catalog: Mapping[str, Any]) -> str:
    return render(catalog) + "\n"


def expected_files() -> dict[Path, str]:
    default = discover_default()
    return {
        DEFAULT_CATALOG: catalog_text(default),
        SELECTIVE_CATALOG: catalog_text(selective_sync(default)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a file differs")
    args = parser.parse_args(argv)
    stale = []
    for path, text in expected_files().items():
        current = path.read_text() if path.exists() else None
        if current == text:
            print(f"{path.name}: up to date")
        elif args.check:
            stale.append(path.name)
            print(f"{path.name}: differs from what discovery produces now (run `make catalogs`)")
        else:
            path.write_text(text)
            print(f"{path.name}: written ({len(text):,} bytes)")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
