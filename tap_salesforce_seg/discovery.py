"""Which streams the tap offers, from the org (discovery) or from a --catalog (no describes).

- `StreamDefinition`: name, sobject, schema, fields (property -> `FieldInfo`), replication_key
  (property name or None), selected_by_default. tap.py turns each into a `SalesforceStream`.
- `discover(client, naming, logger) -> list[StreamDefinition]`: describeGlobal, then describes (25 per
  composite batch) of the objects that become streams: Segment's 48 collections the org has, selected
  by default, and custom objects (`__c`), not selected by default. A collection the org lacks (Tags or
  Schedules off) and a non-queryable object (`Name`) each get one line and no stream. Other standard
  objects are not streams (Segment syncs these 48 plus custom objects).
- `definitions_from_catalog(catalog_dict, naming)`: the same definitions read back from a catalog's
  metadata (`salesforce-object`, `salesforce-field`, `salesforce-type`, `salesforce-calculated` (on
  formula fields only), `replication-key`, `selected-by-default`). A stream that is neither a Segment
  collection nor a custom object raises `CatalogError` listing the valid names.
- `check_selected_against_org(definitions, sobjects, naming)`: one describeGlobal's worth of checking
  that every selected stream's object exists and is queryable; `CatalogError` lists the org's streams.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from singer_sdk.singerlib import MetadataMapping

from tap_salesforce_seg.describe import describe_global, describe_objects
from tap_salesforce_seg.errors import CatalogError
from tap_salesforce_seg.naming import (
    NAMING_SALESFORCE,
    SEGMENT_COLLECTIONS,
    is_custom_object,
    stream_names,
)
from tap_salesforce_seg.schema import FieldInfo, stream_shape

OBJECT_KEY = "salesforce-object"
FIELD_KEY = "salesforce-field"
TYPE_KEY = "salesforce-type"
CALCULATED_KEY = "salesforce-calculated"


@dataclasses.dataclass(frozen=True)
class StreamDefinition:
    name: str
    sobject: str
    schema: dict[str, Any]
    fields: dict[str, FieldInfo]
    replication_key: str | None
    selected_by_default: bool


# --- discovery --------------------------------------------------------------------------------------


def discover(client: Any, naming: str, logger: logging.Logger) -> list[StreamDefinition]:
    """Describe the org and return its streams, in Segment's table order then custom objects by name."""
    org = {entry["name"]: entry for entry in describe_global(client) if entry.get("name")}
    wanted = _stream_objects(org, logger)
    names = stream_names(wanted, naming)
    describes = describe_objects(client, wanted, logger)
    definitions: list[StreamDefinition] = []
    for sobject in wanted:
        describe = describes.get(sobject)
        if describe is None:
            logger.info("Salesforce object %s vanished during discovery: no stream.", sobject)
            continue
        shape = stream_shape(describe, naming)
        if not any(info.salesforce_name == "Id" for info in shape.fields.values()):
            logger.warning("Salesforce object %s has no Id field: no stream.", sobject)
            continue
        definitions.append(
            StreamDefinition(
                name=names[sobject],
                sobject=sobject,
                schema=shape.schema,
                fields=shape.fields,
                replication_key=shape.replication_key,
                selected_by_default=sobject in SEGMENT_COLLECTIONS,
            )
        )
    customs = sum(1 for d in definitions if d.sobject not in SEGMENT_COLLECTIONS)
    logger.info(
        "Discovered %s (%d of Segment's collections, %s).",
        _count(len(definitions), "stream"),
        len(definitions) - customs,
        _count(customs, "custom object"),
    )
    return definitions


def _stream_objects(org: Mapping[str, Mapping[str, Any]], logger: logging.Logger) -> list[str]:
    wanted: list[str] = []
    for sobject, collection in SEGMENT_COLLECTIONS.items():
        entry = org.get(sobject)
        if entry is None:
            logger.info(
                "Salesforce object %s (collection %s) is not in this org (a feature such as Tags or "
                "Schedules is off): no stream.",
                sobject,
                collection,
            )
        elif not entry.get("queryable", True):
            logger.info(
                "Salesforce object %s (collection %s) is not queryable (Salesforce does not support "
                "queries on it): no stream.",
                sobject,
                collection,
            )
        else:
            wanted.append(sobject)
    for sobject in sorted(name for name in org if is_custom_object(name)):
        if org[sobject].get("queryable", True):
            wanted.append(sobject)
        else:
            logger.info("Custom object %s is not queryable: no stream.", sobject)
    return wanted


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


# --- from a catalog ---------------------------------------------------------------------------------


def check_catalog_shape(catalog: Any) -> None:
    """Raise CatalogError (one line, naming the entry) unless the catalog has the Singer shape that the
    tap and singer-sdk read: ``streams``, a list of objects whose ``schema`` and ``properties`` are
    objects and whose ``metadata`` is a list of ``{"breadcrumb": [...], "metadata": {...}}``."""
    if not isinstance(catalog, Mapping):
        raise CatalogError("catalog: not a JSON object")
    if "streams" not in catalog:  # another JSON file given as the catalog synced nothing, silently
        raise CatalogError(
            "catalog: no `streams` list; a catalog is what `--discover` writes (was another file given?)"
        )
    streams = catalog["streams"]
    if not isinstance(streams, list):
        raise CatalogError("catalog: `streams` is not a list")
    for index, entry in enumerate(streams):
        where = f"catalog: streams[{index}]"
        if not isinstance(entry, Mapping):
            raise CatalogError(f"{where} is not an object")
        for key in ("tap_stream_id", "stream"):
            if entry.get(key) is not None and not isinstance(entry[key], str):
                raise CatalogError(f"{where}: `{key}` is not a string")
        where = f"{where} ({entry.get('tap_stream_id') or entry.get('stream') or 'unnamed'})"
        schema = entry.get("schema", {})
        if not isinstance(schema, Mapping):
            raise CatalogError(f"{where}: `schema` is not an object")
        properties = schema.get("properties", {})
        if not isinstance(properties, Mapping) or not all(
            isinstance(p, Mapping) for p in properties.values()
        ):
            raise CatalogError(f"{where}: `schema.properties` is not an object of property schemas")
        metadata = entry.get("metadata", [])
        if not isinstance(metadata, list):
            raise CatalogError(f"{where}: `metadata` is not a list")
        for item in metadata:
            if not (
                isinstance(item, Mapping)
                and isinstance(item.get("breadcrumb", []), list)
                and isinstance(item.get("metadata", {}), Mapping)
            ):
                raise CatalogError(
                    f'{where}: a `metadata` entry is not {{"breadcrumb": [...], "metadata": {{...}}}}'
                )
            _check_selection_flags(item, where)


def _check_selection_flags(item: Mapping[str, Any], where: str) -> None:
    """`selected` and `selected-by-default` must be JSON booleans: singer-sdk reads any other value by
    its truth, so `"selected": "false"` (a string) selected the stream."""
    for key in ("selected", "selected-by-default"):
        value = item.get("metadata", {}).get(key)
        if value is not None and not isinstance(value, bool):
            breadcrumb = "/".join(str(part) for part in item.get("breadcrumb", [])) or "the stream"
            raise CatalogError(
                f"{where}: `{key}` of {breadcrumb} is {json.dumps(value, default=str)}, not true or false"
            )


def definitions_from_catalog(catalog: Mapping[str, Any], naming: str) -> list[StreamDefinition]:
    """Stream definitions from a catalog that discovery wrote (its metadata names the Salesforce side)."""
    definitions = [_definition(entry, naming) for entry in catalog.get("streams", [])]
    seen: dict[str, str] = {}
    for definition in definitions:
        if definition.name in seen:
            raise CatalogError(f"catalog: stream '{definition.name}' appears twice")
        seen[definition.name] = definition.sobject
    return definitions


def _definition(entry: Mapping[str, Any], naming: str) -> StreamDefinition:
    name = str(entry.get("tap_stream_id") or entry.get("stream") or "")
    raw_metadata = entry.get("metadata") or []
    by_breadcrumb = {tuple(item.get("breadcrumb", ())): item.get("metadata", {}) for item in raw_metadata}
    root = by_breadcrumb.get((), {})
    sobject = root.get(OBJECT_KEY) or _collection_object(name, naming)
    if not sobject:
        raise CatalogError(
            f"catalog: stream '{name}' is not one of Segment's collections or a custom object of the "
            f"tap; valid names: {_valid_names_text(naming)}. Run --discover for a fresh catalog."
        )
    expected = stream_names([sobject], naming)[sobject]
    valid_object = (sobject in SEGMENT_COLLECTIONS and sobject != "Name") or is_custom_object(sobject)
    if valid_object and sobject in SEGMENT_COLLECTIONS and name != expected:
        raise CatalogError(
            f"catalog: stream '{name}' (Salesforce object {sobject}) is '{expected}' with naming "
            f"'{naming}': the catalog was made with the other naming, or edited; run --discover again "
            "after changing `naming` (tables and bookmarks are named after the streams, so the new names "
            "start afresh)"
        )
    if not valid_object:
        raise CatalogError(
            f"catalog: stream '{name}' (Salesforce object {sobject}) is not one of Segment's collections "
            f"or a custom object; valid names: {_valid_names_text(naming)}"
        )
    schema = entry.get("schema") or {}
    fields: dict[str, FieldInfo] = {}
    for prop in schema.get("properties") or {}:
        metadata = by_breadcrumb.get(("properties", prop), {})
        field_name, sf_type = metadata.get(FIELD_KEY), metadata.get(TYPE_KEY)
        if not field_name or not sf_type:
            raise CatalogError(
                f"catalog: stream '{name}' property '{prop}' lacks {FIELD_KEY}/{TYPE_KEY} metadata; "
                "run --discover for a fresh catalog"
            )
        selected_by_default = metadata.get("selected-by-default")
        fields[prop] = FieldInfo(
            str(field_name),
            str(sf_type),
            selected_by_default is not False,
            calculated=metadata.get(CALCULATED_KEY) is True,
        )
    if not any(info.salesforce_name == "Id" for info in fields.values()):
        raise CatalogError(f"catalog: stream '{name}' has no property for the Id field")
    replication_key = (
        entry.get("replication_key")
        or root.get("replication-key")
        or next(iter(root.get("valid-replication-keys") or []), None)
    )
    if replication_key is not None and replication_key not in fields:
        raise CatalogError(f"catalog: stream '{name}' replication key '{replication_key}' is not a property")
    return StreamDefinition(
        name=name,
        sobject=str(sobject),
        schema=dict(schema),
        fields=fields,
        replication_key=replication_key,
        selected_by_default=root.get("selected-by-default", sobject in SEGMENT_COLLECTIONS) is not False,
    )


def _collection_object(name: str, naming: str) -> str | None:
    """The object of a hand-written catalog entry without metadata, when its name says it."""
    for sobject in SEGMENT_COLLECTIONS:
        if stream_names([sobject], naming)[sobject] == name:
            return sobject
    return None


def _valid_names_text(naming: str, extra: Iterable[str] = ()) -> str:
    names = [stream_names([sobject], naming)[sobject] for sobject in SEGMENT_COLLECTIONS if sobject != "Name"]
    return ", ".join(sorted(set(names) | set(extra))) + (
        " and custom objects (e.g. invoice_c)" if naming != NAMING_SALESFORCE else " and custom objects"
    )


def is_selected(entry_metadata: list[dict[str, Any]]) -> bool:
    """singer-sdk's own reading of a catalog entry's stream selection."""
    return MetadataMapping.from_iterable(entry_metadata).resolve_selection()[()]


def check_selected_against_org(
    definitions: Iterable[StreamDefinition],
    selected: set[str],
    org_sobjects: Iterable[Mapping[str, Any]],
    naming: str,
) -> None:
    """Every selected stream's object must exist in the org and be queryable."""
    queryable = {entry["name"] for entry in org_sobjects if entry.get("queryable", True)}
    missing = [d for d in definitions if d.name in selected and d.sobject not in queryable]
    if not missing:
        return
    offered = [s for s in SEGMENT_COLLECTIONS if s in queryable] + sorted(
        s for s in queryable if is_custom_object(s)
    )
    valid = sorted(stream_names(offered, naming).values())
    listing = ", ".join(f"'{d.name}' (Salesforce object {d.sobject})" for d in missing)
    raise CatalogError(
        f"catalog: selected stream {listing} is not in this org (deleted in Salesforce, this user cannot "
        "see it, or the catalog is another org's): deselect it in the catalog, or run --discover again "
        "(Meltano: `meltano run --refresh-catalog ...`; its table and bookmark stay as they are); "
        f"valid names: {', '.join(valid)}"
    )
