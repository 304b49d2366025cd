"""JSON-schema types for Salesforce describe fields, and the shape of one stream.

- `field_schema(field) -> dict | None`: the JSON schema of one describe field entry; None when the
  field is not a column (compound `address` / `location`: their components are fields of their own
  and Bulk API rejects them). Everything is nullable except `Id`.
- `FieldInfo(salesforce_name, type, selected_by_default, calculated)`: what a stream needs to know about
  one property (keyed by property name in `StreamShape.fields`); `calculated` marks a formula field.
- `replication_field(field_names)`: SystemModstamp, else LastModifiedDate, else CreatedDate, else None
  (the object syncs in full).
- `stream_shape(describe, naming)`: schema, fields and replication key (property name) of an object.

Types: id/string/picklist/multipicklist/textarea/email/phone/url/reference/combobox/encryptedstring/
anyType (and other text-like types) -> string; boolean; int/long -> integer; double/currency/percent ->
number (the values are carried as exact decimals); date -> string/date; datetime -> string/date-time
(UTC); time -> string/time. base64 fields are discovered but not selected by default: a query returns
a URL to the content, not the content.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from tap_salesforce_seg.naming import NAMING_SEGMENT, property_names

ID_FIELD = "Id"
ID_PROPERTY_SEGMENT = "id"
# Order of preference for the replication key (Segment checkpoints on SystemModstamp).
REPLICATION_FIELDS = ("SystemModstamp", "LastModifiedDate", "CreatedDate")

COMPOUND_TYPES = frozenset({"address", "location"})
NOT_SELECTED_BY_DEFAULT_TYPES = frozenset({"base64"})

_STRING_TYPES = frozenset(
    {
        "id",
        "string",
        "picklist",
        "multipicklist",
        "textarea",
        "email",
        "phone",
        "url",
        "reference",
        "combobox",
        "encryptedstring",
        "anyType",
        "base64",
        "masterrecord",
        "datacategorygroupreference",
        "byte",
        "json",
        "complexvalue",
    }
)
_JSON_TYPES: Mapping[str, tuple[str, str | None]] = {
    "boolean": ("boolean", None),
    "int": ("integer", None),
    "long": ("integer", None),
    "double": ("number", None),
    "currency": ("number", None),
    "percent": ("number", None),
    "date": ("string", "date"),
    "datetime": ("string", "date-time"),
    "time": ("string", "time"),
}


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    """One property of a stream: the Salesforce field behind it and its describe type."""

    salesforce_name: str
    type: str
    selected_by_default: bool = True
    # A formula field: Salesforce computes its value when it is read, so the value can change (a formula
    # over TODAY() or a parent's field) while the record's SystemModstamp stays.
    calculated: bool = False


@dataclasses.dataclass(frozen=True)
class StreamShape:
    """What discovery learns about one object: JSON schema, properties, replication key."""

    schema: dict[str, Any]
    fields: dict[str, FieldInfo]
    replication_key: str | None


def field_schema(field: Mapping[str, Any]) -> dict[str, Any] | None:
    """JSON schema of one describe field entry, or None for compound fields (not columns)."""
    sf_type = str(field.get("type") or "string")
    if sf_type in COMPOUND_TYPES:
        return None
    json_type, json_format = _JSON_TYPES.get(sf_type, ("string", None))
    # Types this table does not know (future API versions) travel as text: nothing is lost.
    nullable = field.get("name") != ID_FIELD
    schema: dict[str, Any] = {"type": [json_type, "null"] if nullable else json_type}
    if json_format:
        schema["format"] = json_format
    return schema


def is_selected_by_default(field: Mapping[str, Any]) -> bool:
    return str(field.get("type")) not in NOT_SELECTED_BY_DEFAULT_TYPES


def replication_field(field_names: Iterable[str]) -> str | None:
    """The Salesforce field to bookmark on, or None when the object syncs in full."""
    present = set(field_names)
    return next((name for name in REPLICATION_FIELDS if name in present), None)


def stream_shape(describe: Mapping[str, Any], naming: str = NAMING_SEGMENT) -> StreamShape:
    """Schema, properties (keyed by property name) and replication key of one described object."""
    columns = [
        (field, schema) for field in describe.get("fields", []) if (schema := field_schema(field)) is not None
    ]
    names = property_names(
        [field["name"] for field, _ in columns], naming, context=str(describe.get("name", ""))
    )
    properties: dict[str, Any] = {}
    fields: dict[str, FieldInfo] = {}
    for field, schema in columns:
        name = names[field["name"]]
        properties[name] = schema
        fields[name] = FieldInfo(
            salesforce_name=field["name"],
            type=str(field.get("type")),
            selected_by_default=is_selected_by_default(field),
            calculated=field.get("calculated") is True,
        )
    replication = replication_field(info.salesforce_name for info in fields.values())
    replication_key = names[replication] if replication else None
    required = [names[ID_FIELD]] if ID_FIELD in names else []
    schema = {"type": "object", "properties": properties, "required": required}
    return StreamShape(schema=schema, fields=fields, replication_key=replication_key)
