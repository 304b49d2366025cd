"""The checked-in catalogs (catalogs/): what discovery produces now, Segment's default selection, and an
example of selective sync that loads exactly its tables and columns.

When a test here fails because the tap's discovery changed on purpose, run `make catalogs` and commit
the regenerated files.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from pipeline import SYSTEM_COLUMNS, Pipeline, Warehouse, assert_warehouse_equals_org, selected_streams
from tap_harness import tap_settings

from tap_salesforce_seg.naming import SEGMENT_COLLECTIONS

REPO_DIR = Path(__file__).resolve().parents[2]
GENERATOR_PATH = REPO_DIR / "catalogs" / "generate.py"


def load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("catalogs_generate", GENERATOR_PATH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generate = load_generator()


@pytest.fixture(scope="module")
def regenerated() -> dict[Path, str]:
    """What `make catalogs` would write now (one discovery against the default org)."""
    return generate.expected_files()


def root(entry: dict[str, Any]) -> dict[str, Any]:
    return next(item["metadata"] for item in entry["metadata"] if not item["breadcrumb"])


def drift(checked_in: dict[str, Any], discovered: dict[str, Any]) -> list[str]:
    """What changed between two catalogs, stream by stream, in words."""
    old = {entry["tap_stream_id"]: entry for entry in checked_in["streams"]}
    new = {entry["tap_stream_id"]: entry for entry in discovered["streams"]}
    lines = [f"stream {name} is new" for name in sorted(set(new) - set(old))]
    lines += [f"stream {name} is gone" for name in sorted(set(old) - set(new))]
    for name in sorted(set(old) & set(new)):
        before, after = old[name], new[name]
        properties_before, properties_after = before["schema"]["properties"], after["schema"]["properties"]
        for prop in sorted(set(properties_after) - set(properties_before)):
            lines.append(f"{name}.{prop} is new")
        for prop in sorted(set(properties_before) - set(properties_after)):
            lines.append(f"{name}.{prop} is gone")
        for prop in sorted(set(properties_before) & set(properties_after)):
            if properties_before[prop] != properties_after[prop]:
                lines.append(f"{name}.{prop}: {properties_before[prop]} -> {properties_after[prop]}")
        if before != after and not any(line.startswith(f"{name}.") for line in lines):
            lines.append(f"{name}: metadata or stream settings differ")
    return lines or ["the same catalog, written differently"]


@pytest.mark.parametrize("name", ["segment-default.json", "selective-sync.example.json"])
def test_checked_in_catalog_is_what_make_catalogs_writes_now(name: str, regenerated: dict[Path, str]) -> None:
    path = REPO_DIR / "catalogs" / name
    expected = regenerated[path]
    current = path.read_text()
    if current != expected:
        changes = drift(json.loads(current), json.loads(expected))
        pytest.fail(
            f"catalogs/{name} drifted from what discovery produces now; run `make catalogs` and commit.\n"
            + "\n".join(changes[:30]),
            pytrace=False,
        )


def test_default_catalog_is_segments_default_selection() -> None:
    catalog = json.loads(generate.DEFAULT_CATALOG.read_text())
    selected = {entry["tap_stream_id"] for entry in selected_streams(catalog)}
    # Salesforce's Name object is not queryable: Segment lists it, discovery gives no stream.
    assert selected == set(SEGMENT_COLLECTIONS.values()) - {"names"}
    custom = [entry for entry in catalog["streams"] if root(entry)["salesforce-object"].endswith("__c")]
    assert [entry["tap_stream_id"] for entry in custom] == ["invoice_c"]
    assert not any(root(entry)["selected"] for entry in custom)  # custom objects: present, not selected
    documents = next(entry for entry in catalog["streams"] if entry["tap_stream_id"] == "documents")
    body = next(item for item in documents["metadata"] if item["breadcrumb"] == ["properties", "body"])
    assert body["metadata"]["selected-by-default"] is False  # base64: a query returns a URL


def test_selective_example_selects_the_declared_properties() -> None:
    catalog = json.loads(generate.SELECTIVE_CATALOG.read_text())
    assert [entry["tap_stream_id"] for entry in catalog["streams"]] == sorted(generate.SELECTIVE_SYNC)
    for entry in catalog["streams"]:
        assert root(entry)["selected"] is True
        chosen = {
            item["breadcrumb"][-1]
            for item in entry["metadata"]
            if item["breadcrumb"] and item["metadata"].get("selected")
        }
        assert chosen == set(generate.SELECTIVE_SYNC[entry["tap_stream_id"]])


def test_check_mode_reports_a_drifted_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    copy = tmp_path / "segment-default.json"
    shutil.copy(generate.DEFAULT_CATALOG, copy)
    text = copy.read_text()
    monkeypatch.setattr(generate, "expected_files", lambda: {copy: text})
    assert generate.main(["--check"]) == 0
    copy.write_text(text.replace('"selected": true', '"selected": false', 1))
    assert generate.main(["--check"]) == 1
    assert "segment-default.json: differs from what discovery produces now" in capsys.readouterr().out
    assert copy.read_text() != text  # --check never writes
    assert generate.main([]) == 0 and copy.read_text() == text


def test_selective_example_loads_exactly_its_tables_and_columns(emulator: Any, tmp_path: Path) -> None:
    target_settings = {"engine": "duckdb", "path": str(tmp_path / "warehouse.duckdb")}
    pipeline = Pipeline(tmp_path / "sfdc", tap_settings(emulator), target_settings)
    shutil.copy(generate.SELECTIVE_CATALOG, pipeline.catalog_path)
    pipeline.sync()

    warehouse = Warehouse(target_settings)
    assert warehouse.tables() == set(generate.SELECTIVE_SYNC)
    for stream, properties in generate.SELECTIVE_SYNC.items():
        assert warehouse.columns(stream) == {"id", *properties, *SYSTEM_COLUMNS}, stream
    catalog = json.loads(generate.SELECTIVE_CATALOG.read_text())
    assert_warehouse_equals_org(warehouse, emulator, catalog)
