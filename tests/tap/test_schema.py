"""JSON-schema types of describe fields and the shape of a stream."""

from __future__ import annotations

import pytest
from jsonschema import Draft7Validator

from tap_salesforce_seg.schema import FieldInfo, field_schema, replication_field, stream_shape

STRING = {"type": ["string", "null"]}


@pytest.mark.parametrize(
    ("sf_type", "expected"),
    [
        ("string", STRING),
        ("picklist", STRING),
        ("multipicklist", STRING),
        ("textarea", STRING),
        ("email", STRING),
        ("phone", STRING),
        ("url", STRING),
        ("reference", STRING),
        ("combobox", STRING),
        ("encryptedstring", STRING),
        ("anyType", STRING),
        ("base64", STRING),
        ("id", STRING),  # an id-typed field other than Id itself (rare) stays nullable
        ("boolean", {"type": ["boolean", "null"]}),
        ("int", {"type": ["integer", "null"]}),
        ("long", {"type": ["integer", "null"]}),
        ("double", {"type": ["number", "null"]}),
        ("currency", {"type": ["number", "null"]}),
        ("percent", {"type": ["number", "null"]}),
        ("date", {"type": ["string", "null"], "format": "date"}),
        ("datetime", {"type": ["string", "null"], "format": "date-time"}),
        ("time", {"type": ["string", "null"], "format": "time"}),
        ("some_future_type", STRING),
    ],
)
def test_field_schema_by_describe_type(sf_type: str, expected: dict) -> None:
    assert field_schema({"name": "Field__c", "type": sf_type}) == expected


def test_id_is_the_only_non_nullable_property() -> None:
    assert field_schema({"name": "Id", "type": "id"}) == {"type": "string"}


@pytest.mark.parametrize("sf_type", ["address", "location"])
def test_compound_fields_are_not_columns(sf_type: str) -> None:
    assert field_schema({"name": "BillingAddress", "type": sf_type}) is None


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (["Id", "CreatedDate", "LastModifiedDate", "SystemModstamp"], "SystemModstamp"),
        (["Id", "CreatedDate", "LastModifiedDate"], "LastModifiedDate"),
        (["Id", "CreatedDate"], "CreatedDate"),
        (["Id", "Name"], None),
    ],
)
def test_replication_field_preference(fields: list[str], expected: str | None) -> None:
    assert replication_field(fields) == expected


def describe(name: str, fields: list[tuple[str, str]]) -> dict:
    return {"name": name, "fields": [{"name": field, "type": sf_type} for field, sf_type in fields]}


def test_stream_shape() -> None:
    shape = stream_shape(
        describe(
            "Account",
            [
                ("Id", "id"),
                ("IsDeleted", "boolean"),
                ("BillingCity", "string"),
                ("BillingAddress", "address"),
                ("AnnualRevenue", "currency"),
                ("Logo__c", "base64"),
                ("SystemModstamp", "datetime"),
            ],
        )
    )
    assert list(shape.schema["properties"]) == [
        "id",
        "is_deleted",
        "billing_city",
        "annual_revenue",
        "logo_c",
        "system_modstamp",
    ]
    assert shape.schema["required"] == ["id"]
    assert shape.replication_key == "system_modstamp"
    assert shape.fields["annual_revenue"] == FieldInfo("AnnualRevenue", "currency", True)
    assert shape.fields["logo_c"] == FieldInfo("Logo__c", "base64", selected_by_default=False)
    Draft7Validator.check_schema(shape.schema)


def test_stream_shape_with_salesforce_naming() -> None:
    shape = stream_shape(describe("Period", [("Id", "id"), ("SystemModstamp", "datetime")]), "salesforce")
    assert list(shape.schema["properties"]) == ["Id", "SystemModstamp"]
    assert shape.replication_key == "SystemModstamp"
    assert shape.schema["required"] == ["Id"]


def test_stream_shape_without_replication_field() -> None:
    shape = stream_shape(describe("Thing__c", [("Id", "id"), ("Name", "string")]))
    assert shape.replication_key is None
