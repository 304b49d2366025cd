"""Discovery against the emulator over real HTTP: streams, names, types, metadata, and --catalog."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from test_naming import EXPECTED_COLLECTIONS, EXPECTED_REPLICATION_KEYS

from salesforce_emulator import Emulator
from tap_salesforce_seg.client import SalesforceClient
from tap_salesforce_seg.config import TapConfig
from tap_salesforce_seg.discovery import StreamDefinition, discover
from tap_salesforce_seg.errors import CatalogError
from tap_salesforce_seg.naming import segment_snake_case
from tap_salesforce_seg.tap import TapSalesforceSeg

LOGGER = logging.getLogger("test-discovery")
TAGS = {name for name in EXPECTED_COLLECTIONS if name.endswith(("_tags", "_tag"))}
SCHEDULES = {"opportunity_line_item_schedules"}
QUERYABLE_COLLECTIONS = set(EXPECTED_COLLECTIONS) - {"names"}


def settings(emu: Emulator, **overrides: Any) -> dict[str, Any]:
    credentials = emu.credentials
    return {
        "client_id": credentials.client_id,
        "client_secret": credentials.client_secret,
        "refresh_token": credentials.refresh_token,
        "domain": emu.base_url,
        **overrides,
    }


def discovered(emu: Emulator, naming: str = "segment") -> dict[str, StreamDefinition]:
    client = SalesforceClient(TapConfig.from_mapping(settings(emu)), LOGGER)
    return {definition.name: definition for definition in discover(client, naming, LOGGER)}


@pytest.fixture(scope="module")
def module_emulator() -> Emulator:
    from emulator_fixtures import start_emulator

    emu = start_emulator()
    yield emu
    emu.stop()


@pytest.fixture(scope="module")
def streams(module_emulator: Emulator) -> dict[str, StreamDefinition]:
    return discovered(module_emulator)


def test_the_47_queryable_collections_and_custom_objects_become_streams(
    streams: dict[str, StreamDefinition],
) -> None:
    collections = {name: d for name, d in streams.items() if d.selected_by_default}
    custom = {name: d for name, d in streams.items() if not d.selected_by_default}
    assert set(collections) == QUERYABLE_COLLECTIONS
    assert len(collections) == 47
    assert {name: d.sobject for name, d in collections.items()} == {
        name: EXPECTED_COLLECTIONS[name] for name in collections
    }
    assert "invoice_c" in custom and custom["invoice_c"].sobject == "Invoice__c"
    assert all(d.sobject.endswith("__c") for d in custom.values())


def test_replication_keys_of_the_collections(streams: dict[str, StreamDefinition]) -> None:
    assert {
        name: streams[name].replication_key for name in QUERYABLE_COLLECTIONS
    } == EXPECTED_REPLICATION_KEYS
    assert streams["invoice_c"].replication_key == "system_modstamp"


def test_name_object_gets_one_line_saying_it_is_not_queryable(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        streams = discovered(emulator)
    assert "names" not in streams
    lines = [
        record.getMessage() for record in caplog.records if "Name (collection names)" in record.getMessage()
    ]
    assert len(lines) == 1
    assert "not queryable" in lines[0]


def test_other_standard_objects_are_not_streams(module_emulator: Emulator, streams: dict) -> None:
    client = SalesforceClient(TapConfig.from_mapping(settings(module_emulator)), LOGGER)
    org_objects = {entry["name"] for entry in client.get_json("sobjects")["sobjects"]}
    offered = {d.sobject for d in streams.values()}
    assert offered == {o for o in org_objects if o in EXPECTED_COLLECTIONS.values() or o.endswith("__c")} - {
        "Name"
    }


def test_objects_the_org_lacks_give_one_info_line_each(
    emulator_factory: Callable[..., Emulator], caplog: pytest.LogCaptureFixture
) -> None:
    emu = emulator_factory(tags=False, schedules=False)
    with caplog.at_level(logging.INFO):
        streams = discovered(emu)
    assert set(streams) & (TAGS | SCHEDULES) == set()
    assert set(streams) >= QUERYABLE_COLLECTIONS - TAGS - SCHEDULES
    missing = [record for record in caplog.records if "is not in this org" in record.getMessage()]
    assert len(missing) == len(TAGS | SCHEDULES) == 14
    assert all(record.levelno == logging.INFO for record in missing)
    assert any("OpportunityLineItemSchedule" in record.getMessage() for record in missing)


def test_describes_go_through_composite_batches_of_25(emulator: Emulator) -> None:
    emulator.reset_counters()
    before = len(emulator.requests())
    streams = discovered(emulator)
    requests = emulator.requests()[before:]
    data = [r for r in requests if r["target"].startswith("/services/data/")]
    batches = [r for r in data if r["target"].startswith("/services/data/v58.0/composite/batch")]
    assert len(batches) == math.ceil(len(streams) / 25)
    assert all(r["method"] == "POST" for r in batches)
    assert [r for r in data if r not in batches] == [
        r for r in data if r["target"].rstrip("/") == "/services/data/v58.0/sobjects"
    ]
    assert len(data) == len(batches) + 1


def test_properties_follow_segment_naming_one_to_one(streams: dict[str, StreamDefinition]) -> None:
    for definition in streams.values():
        names = list(definition.schema["properties"])
        assert len(names) == len(set(names))
        assert set(names) == set(definition.fields)
        for prop, info in definition.fields.items():
            assert prop == segment_snake_case(info.salesforce_name), (definition.name, info.salesforce_name)
    accounts = streams["accounts"].fields
    assert accounts["is_deleted"].salesforce_name == "IsDeleted"
    assert accounts["created_by_id"].salesforce_name == "CreatedById"
    assert accounts["tier_c"].salesforce_name == "Tier__c"


def test_compound_fields_are_left_out_and_their_components_kept(streams: dict[str, StreamDefinition]) -> None:
    accounts = streams["accounts"].schema["properties"]
    assert "billing_address" not in accounts and "shipping_address" not in accounts
    assert {"billing_city", "billing_street", "billing_postal_code"} <= set(accounts)


def test_base64_fields_are_discovered_but_not_selected(streams: dict[str, StreamDefinition]) -> None:
    base64 = [
        (d.name, prop) for d in streams.values() for prop, info in d.fields.items() if info.type == "base64"
    ]
    assert base64, "the org should have a base64 field (Document.Body)"
    for stream, prop in base64:
        assert streams[stream].fields[prop].selected_by_default is False
    others = [info for d in streams.values() for info in d.fields.values() if info.type != "base64"]
    assert all(info.selected_by_default for info in others)


def test_key_property_id_is_required_and_not_nullable(streams: dict[str, StreamDefinition]) -> None:
    for definition in streams.values():
        assert definition.schema["properties"]["id"] == {"type": "string"}
        assert definition.schema["required"] == ["id"]
        nullable = [p for p, s in definition.schema["properties"].items() if "null" not in s["type"]]
        assert nullable == ["id"], definition.name


EVERY_TYPE = {
    "Id": "id",
    "Name": "string",
    "Pick__c": "picklist",
    "Multi__c": "multipicklist",
    "Text_Area__c": "textarea",
    "Email__c": "email",
    "Phone__c": "phone",
    "Site__c": "url",
    "Account__c": "reference",
    "Combo__c": "combobox",
    "Secret__c": "encryptedstring",
    "Any__c": "anyType",
    "Flag__c": "boolean",
    "Count__c": "int",
    "Big_Count__c": "long",
    "Ratio__c": "double",
    "Price__c": "currency",
    "Share__c": "percent",
    "Day__c": "date",
    "Moment__c": "datetime",
    "Clock__c": "time",
    "Blob__c": "base64",
    "SystemModstamp": "datetime",
}
EXPECTED_TYPES = {
    "id": {"type": "string"},
    "name": {"type": ["string", "null"]},
    "pick_c": {"type": ["string", "null"]},
    "multi_c": {"type": ["string", "null"]},
    "text_area_c": {"type": ["string", "null"]},
    "email_c": {"type": ["string", "null"]},
    "phone_c": {"type": ["string", "null"]},
    "site_c": {"type": ["string", "null"]},
    "account_c": {"type": ["string", "null"]},
    "combo_c": {"type": ["string", "null"]},
    "secret_c": {"type": ["string", "null"]},
    "any_c": {"type": ["string", "null"]},
    "flag_c": {"type": ["boolean", "null"]},
    "count_c": {"type": ["integer", "null"]},
    "big_count_c": {"type": ["integer", "null"]},
    "ratio_c": {"type": ["number", "null"]},
    "price_c": {"type": ["number", "null"]},
    "share_c": {"type": ["number", "null"]},
    "day_c": {"type": ["string", "null"], "format": "date"},
    "moment_c": {"type": ["string", "null"], "format": "date-time"},
    "clock_c": {"type": ["string", "null"], "format": "time"},
    "blob_c": {"type": ["string", "null"]},
    "system_modstamp": {"type": ["string", "null"], "format": "date-time"},
    # The system fields every custom object gets.
    "is_deleted": {"type": ["boolean", "null"]},
    "created_date": {"type": ["string", "null"], "format": "date-time"},
    "created_by_id": {"type": ["string", "null"]},
    "last_modified_date": {"type": ["string", "null"], "format": "date-time"},
    "last_modified_by_id": {"type": ["string", "null"]},
}


def test_types_of_every_describe_type(emulator: Emulator) -> None:
    emulator.org.add_object("Typed__c", EVERY_TYPE)
    typed = discovered(emulator)["typed_c"]
    assert typed.schema["properties"] == EXPECTED_TYPES
    described = {name: info.type for name, info in ((i.salesforce_name, i) for i in typed.fields.values())}
    assert {name: described[name] for name in EVERY_TYPE} == EVERY_TYPE
    assert typed.fields["blob_c"].selected_by_default is False


def test_colliding_field_names_get_distinct_names_with_a_warning(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.org.add_field("Account", "My_Field__c", "string")
    emulator.org.add_field("Account", "MyField__c", "string")
    with caplog.at_level(logging.WARNING):
        accounts = discovered(emulator)["accounts"]
    assert accounts.fields["my_field_c"].salesforce_name == "My_Field__c"
    assert accounts.fields["myfield_c"].salesforce_name == "MyField__c"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("MyField__c" in w and "My_Field__c" in w and "Account" in w for w in warnings)


def test_salesforce_naming_keeps_api_names(emulator: Emulator) -> None:
    streams = discovered(emulator, naming="salesforce")
    assert "Account" in streams and "Invoice__c" in streams and "accounts" not in streams
    account = streams["Account"]
    assert account.replication_key == "SystemModstamp"
    assert all(prop == info.salesforce_name for prop, info in account.fields.items())


# --- the tap: catalog metadata, --catalog, Meltano-style selection, the CLI ---------------------------


def metadata_of(entry: dict) -> dict[tuple, dict]:
    return {tuple(item["breadcrumb"]): item["metadata"] for item in entry["metadata"]}


@pytest.fixture(scope="module")
def catalog(module_emulator: Emulator) -> dict:
    return TapSalesforceSeg(config=settings(module_emulator), setup_mapper=False).catalog_dict


def test_catalog_metadata_records_the_salesforce_names(catalog: dict) -> None:
    entries = {entry["tap_stream_id"]: entry for entry in catalog["streams"]}
    assert set(entries) >= QUERYABLE_COLLECTIONS | {"invoice_c"}
    accounts = entries["accounts"]
    assert accounts["key_properties"] == ["id"]
    assert accounts["replication_key"] == "system_modstamp"
    assert accounts["replication_method"] == "INCREMENTAL"
    metadata = metadata_of(accounts)
    root = metadata[()]
    assert root["salesforce-object"] == "Account"
    assert root["table-key-properties"] == ["id"]
    assert root["valid-replication-keys"] == ["system_modstamp"]
    assert root["selected"] is True
    assert metadata[("properties", "id")]["inclusion"] == "automatic"
    # The replication key stays deselectable: Segment's full re-sync switch.
    assert metadata[("properties", "system_modstamp")]["inclusion"] == "available"
    assert metadata[("properties", "system_modstamp")]["selected-by-default"] is True
    assert metadata[("properties", "is_deleted")]["salesforce-field"] == "IsDeleted"
    assert metadata[("properties", "is_deleted")]["salesforce-type"] == "boolean"
    for name, entry in entries.items():
        for breadcrumb, item in metadata_of(entry).items():
            if breadcrumb:
                assert item["salesforce-field"] and item["salesforce-type"], (name, breadcrumb)
        assert metadata_of(entry)[()]["salesforce-object"] == streams_object(name, entry)


def streams_object(name: str, entry: dict) -> str:
    return EXPECTED_COLLECTIONS.get(name) or metadata_of(entry)[()]["salesforce-object"]


def test_custom_objects_and_base64_fields_are_not_selected_by_default(catalog: dict) -> None:
    entries = {entry["tap_stream_id"]: entry for entry in catalog["streams"]}
    invoice = metadata_of(entries["invoice_c"])[()]
    assert invoice["selected"] is False and invoice["selected-by-default"] is False
    body = metadata_of(entries["documents"])[("properties", "body")]
    assert body["salesforce-type"] == "base64" and body["selected-by-default"] is False
    for name in QUERYABLE_COLLECTIONS:
        assert metadata_of(entries[name])[()]["selected-by-default"] is True


def test_an_object_without_a_replication_field_syncs_in_full(
    module_emulator: Emulator, catalog: dict
) -> None:
    # Every object of the emulated org has SystemModstamp (custom objects get it too); a catalog entry
    # without a replication key stands for an object that has none.
    entries = json.loads(json.dumps(catalog))["streams"]
    invoice = next(entry for entry in entries if entry["tap_stream_id"] == "invoice_c")
    invoice.pop("replication_key", None)
    invoice["replication_method"] = "FULL_TABLE"
    root = metadata_of(invoice)[()]
    for key in ("replication-key", "valid-replication-keys", "forced-replication-method"):
        root.pop(key, None)
    stream = TapSalesforceSeg(config=settings(module_emulator), catalog={"streams": [invoice]}).streams[
        "invoice_c"
    ]
    assert stream.replication_key is None
    assert stream.replication_method == "FULL_TABLE"


def count_requests(emu: Emulator, action: Callable[[], Any]) -> list[dict]:
    before = len(emu.requests())
    action()
    return [r for r in emu.requests()[before:] if r["target"].startswith("/services/data/")]


def test_catalog_builds_streams_without_describing(module_emulator: Emulator, catalog: dict) -> None:
    tap: list[TapSalesforceSeg] = []
    requests = count_requests(
        module_emulator,
        lambda: tap.append(TapSalesforceSeg(config=settings(module_emulator), catalog=catalog)),
    )
    requests += count_requests(module_emulator, lambda: tap[0].streams)
    streams = tap[0].streams
    assert set(streams) == {entry["tap_stream_id"] for entry in catalog["streams"]}
    assert [r["target"].rstrip("/") for r in requests] == ["/services/data/v58.0/sobjects"]  # describeGlobal
    accounts = streams["accounts"]
    assert accounts.sobject == "Account"
    assert accounts.replication_key == "system_modstamp"
    assert accounts.fields["is_deleted"].salesforce_name == "IsDeleted"
    assert streams["invoice_c"].selected is False
    assert streams["accounts"].selected is True


def test_formula_fields_are_marked_in_the_catalog_and_read_back(emulator: Emulator) -> None:
    emulator.org.add_field("Account", "Days_Open__c", "double", precision=18, scale=0, calculated=True)
    written = TapSalesforceSeg(config=settings(emulator), setup_mapper=False).catalog_dict
    accounts = next(entry for entry in written["streams"] if entry["tap_stream_id"] == "accounts")
    metadata = metadata_of(accounts)
    assert metadata[("properties", "days_open_c")]["salesforce-calculated"] is True
    # Only formula fields carry the key (a catalog stays as it was for the others).
    plain = [item for crumb, item in metadata.items() if crumb != ("properties", "days_open_c")]
    assert all("salesforce-calculated" not in item for item in plain)
    streams = TapSalesforceSeg(config=settings(emulator), catalog=written).streams
    assert streams["accounts"].fields["days_open_c"].calculated is True
    assert streams["accounts"].fields["name"].calculated is False
    # ... and written again by a run from that catalog (e.g. into Meltano's catalog of the run).
    assert streams["accounts"].metadata[("properties", "days_open_c")].to_dict()["salesforce-calculated"]


def test_meltano_style_selection_through_the_catalog(module_emulator: Emulator, catalog: dict) -> None:
    selected = json.loads(json.dumps(catalog))
    for entry in selected["streams"]:
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["selected"] = entry["tap_stream_id"] in ("accounts", "invoice_c")
            elif entry["tap_stream_id"] == "accounts" and item["breadcrumb"][1] in ("system_modstamp", "fax"):
                item["metadata"]["selected"] = False
    streams = TapSalesforceSeg(config=settings(module_emulator), catalog=selected).streams
    assert {name for name, stream in streams.items() if stream.selected} == {"accounts", "invoice_c"}
    mask = streams["accounts"].mask
    assert mask[("properties", "system_modstamp")] is False  # deselectable replication key
    assert mask[("properties", "fax")] is False
    assert mask[("properties", "id")] is True
    assert mask[("properties", "name")] is True


def with_stream(catalog: dict, entry: dict) -> dict:
    return {"streams": [*catalog["streams"], entry]}


def test_catalog_with_an_unknown_stream_lists_the_valid_names(
    module_emulator: Emulator, catalog: dict
) -> None:
    widget = {
        "tap_stream_id": "widgets",
        "stream": "widgets",
        "schema": {"type": "object", "properties": {"id": {"type": "string"}}},
        "metadata": [
            {"breadcrumb": [], "metadata": {"salesforce-object": "Widget", "selected": True}},
            {
                "breadcrumb": ["properties", "id"],
                "metadata": {"salesforce-field": "Id", "salesforce-type": "id"},
            },
        ],
    }
    with pytest.raises(CatalogError) as caught:
        _ = TapSalesforceSeg(config=settings(module_emulator), catalog=with_stream(catalog, widget)).streams
    message = str(caught.value)
    assert "'widgets'" in message and "valid names" in message
    assert "accounts" in message and "opportunity_product" in message and "custom objects" in message
    assert "\n" not in message


def test_a_catalog_of_the_other_naming_says_to_discover_again(
    module_emulator: Emulator, catalog: dict
) -> None:
    """After `naming` changed, the old catalog's error listed the valid names only."""
    config = {**settings(module_emulator), "naming": "salesforce"}
    with pytest.raises(CatalogError) as caught:
        _ = TapSalesforceSeg(config=config, catalog=catalog).streams
    message = str(caught.value)
    assert message.startswith(
        "catalog: stream '_group' (Salesforce object Group) is 'Group' with naming 'salesforce': "
        "the catalog was made with the other naming, or edited; run --discover again"
    ), message
    assert "\n" not in message


def test_discovery_counts_in_words(emulator_factory: Callable[..., Emulator], caplog) -> None:
    emu = emulator_factory(tags=False)
    with caplog.at_level(logging.INFO):
        discovered(emu)
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("Discovered "))
    assert line.endswith(", 1 custom object)."), line


def test_selected_stream_missing_from_the_org_lists_the_orgs_streams(
    emulator_factory: Callable[..., Emulator], catalog: dict
) -> None:
    emu = emulator_factory(tags=False)
    selected = json.loads(json.dumps(catalog))
    for entry in selected["streams"]:
        metadata_of(entry)[()]["selected"] = entry["tap_stream_id"] in (
            "accounts",
            "account_tags",
            "case_tags",
        )
    with pytest.raises(CatalogError) as caught:
        _ = TapSalesforceSeg(config=settings(emu), catalog=selected).streams
    message = str(caught.value)
    assert "'account_tags' (Salesforce object AccountTag)" in message
    assert "'case_tags'" in message and "not in this org" in message
    valid = message.split("valid names: ")[1].split(", ")
    assert "accounts" in valid and "invoice_c" in valid and "account_tags" not in valid
    # Deselected streams of objects the org lacks are no error.
    for entry in selected["streams"]:
        metadata_of(entry)[()]["selected"] = entry["tap_stream_id"] == "accounts"
    assert "account_tags" in TapSalesforceSeg(config=settings(emu), catalog=selected).streams


def test_discover_on_the_command_line_writes_only_the_catalog_to_stdout(
    module_emulator: Emulator, tmp_path: Any
) -> None:
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(settings(module_emulator)))
    result = subprocess.run(
        [sys.executable, "-m", "tap_salesforce_seg.tap", "--config", str(config_file), "--discover"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    catalog = json.loads(result.stdout)
    assert {entry["tap_stream_id"] for entry in catalog["streams"]} >= QUERYABLE_COLLECTIONS
    assert "not queryable" in result.stderr and "Discovered" in result.stderr


# --- describe_objects' handling of subrequest answers (unit test, requests-mock) ------------------------


def test_describe_objects_batches_and_subrequest_failures(caplog: pytest.LogCaptureFixture) -> None:
    import requests_mock

    from tap_salesforce_seg.describe import describe_objects

    base = "https://acme.my.salesforce.com"
    names = [f"Obj{n}__c" for n in range(60)]

    def batch(request: Any, context: Any) -> dict:
        results = []
        for sub in request.json()["batchRequests"]:
            name = sub["url"].split("/")[2]
            assert sub["url"] == f"v58.0/sobjects/{name}/describe" and sub["method"] == "GET"
            if name == "Obj3__c":
                results.append({"statusCode": 404, "result": [{"errorCode": "NOT_FOUND", "message": "gone"}]})
            elif name == "Obj4__c":
                results.append(
                    {"statusCode": 503, "result": [{"errorCode": "SERVER_UNAVAILABLE", "message": "x"}]}
                )
            elif name == "Obj5__c":
                results.append(
                    {"statusCode": 403, "result": [{"errorCode": "INSUFFICIENT_ACCESS", "message": "no"}]}
                )
            else:
                results.append({"statusCode": 200, "result": {"name": name, "fields": []}})
        return {"hasErrors": True, "results": results}

    config = TapConfig.from_mapping(
        {"client_id": "c", "client_secret": "s", "refresh_token": "r", "domain": base}
    )
    with requests_mock.Mocker() as mock:
        mock.post(f"{base}/services/oauth2/token", json={"access_token": "t", "instance_url": base})
        mock.post(f"{base}/services/data/v58.0/composite/batch", json=batch)
        mock.get(
            f"{base}/services/data/v58.0/sobjects/Obj4__c/describe", json={"name": "Obj4__c", "fields": []}
        )
        with caplog.at_level(logging.WARNING):
            described = describe_objects(SalesforceClient(config, LOGGER), names, LOGGER)
        batches = [r for r in mock.request_history if r.url.endswith("/composite/batch")]
    assert [len(r.json()["batchRequests"]) for r in batches] == [25, 25, 10]
    assert set(described) == set(names) - {"Obj3__c", "Obj5__c"}
    assert described["Obj4__c"] == {"name": "Obj4__c", "fields": []}  # described again on its own
    assert "Salesforce refused to describe Obj5__c (403 INSUFFICIENT_ACCESS: no): no stream." in caplog.text
