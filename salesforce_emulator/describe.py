"""Describe payloads in Salesforce's REST JSON shape, built from the object model.

- `describe_object(obj, catalog, api_version, instance_url)`: `GET /services/data/vXX.X/sobjects/X/describe`,
  every top-level key and every field key of a real payload, urls for the requested version.
- `describe_global(catalog, api_version)`: `GET /services/data/vXX.X/sobjects`,
  `{"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": [...]}` with the real entry keys.

Objects loaded from describe files (`ObjectDef.raw_describe`) are served as they were recorded, with
their urls rewritten for the requested version and with fields added or removed at run time applied.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from .model import FIELD_TYPES, TEXT_TYPES, Catalog, FieldDef, ObjectDef

MASTER_RECORD_TYPE_ID = "012000000000000AAA"
_VERSION_IN_URL = re.compile(r"/services/data/v\d+\.\d+/")
_TEAM_SCOPES = frozenset(["Account", "Opportunity", "Contact", "Case", "Lead"])
_PERSON_NAME_PARTS = frozenset(["FirstName", "LastName", "MiddleName", "Salutation", "Suffix", "Name"])
_PERSON_OBJECTS = frozenset(["Contact", "Lead", "User"])


def version_prefix(api_version: str) -> str:
    return f"/services/data/v{api_version}"


# --------------------------------------------------------------------------------------------------
# fields
# --------------------------------------------------------------------------------------------------


def describe_field(obj: ObjectDef, f: FieldDef) -> dict[str, Any]:
    """One entry of `fields`, keys in Salesforce's (alphabetical) order."""
    if f.raw is not None:
        return copy.deepcopy(f.raw)
    return {
        "aggregatable": f.aggregatable and f.type != "boolean",
        "aiPredictionField": False,
        "autoNumber": f.auto_number,
        "byteLength": f.byte_length,
        "calculated": f.calculated,
        "calculatedFormula": None,
        "cascadeDelete": False,
        "caseSensitive": False,
        "compoundFieldName": _compound_name(obj, f),
        "controllerName": None,
        "createable": f.createable and not obj.readonly,
        "custom": f.custom,
        "defaultValue": False if f.type == "boolean" else None,
        "defaultValueFormula": None,
        "defaultedOnCreate": f.defaulted_on_create,
        "dependentPicklist": False,
        "deprecatedAndHidden": False,
        "digits": f.digits if f.type in ("int", "long") else 0,
        "displayLocationInDecimal": False,
        "encrypted": f.type == "encryptedstring",
        "externalId": f.external_id,
        "extraTypeInfo": _extra_type_info(obj, f),
        "filterable": f.filterable,
        "filteredLookupInfo": None,
        "formulaTreatNullNumberAsZero": False,
        "groupable": f.groupable,
        "highScaleNumber": False,
        "htmlFormatted": False,
        "idLookup": f.id_lookup,
        "inlineHelpText": None,
        "label": f.label,
        "length": f.length if f.type in _LENGTH_TYPES else 0,
        "mask": None,
        "maskType": None,
        "name": f.name,
        "nameField": f.name_field,
        "namePointing": len(f.reference_to) > 1,
        "nillable": f.nillable,
        "permissionable": f.nillable
        and not f.calculated
        and f.name not in ("Id", "IsDeleted")
        and f.updateable,
        "picklistValues": [_picklist_entry(value) for value in f.picklist],
        "polymorphicForeignKey": len(f.reference_to) > 1,
        "precision": f.precision if f.type in ("double", "currency", "percent") else 0,
        "queryByDistance": f.compound,
        "referenceTargetField": None,
        "referenceTo": list(f.reference_to),
        "relationshipName": f.relationship_name if f.type == "reference" else None,
        "relationshipOrder": None,
        "restrictedDelete": False,
        "restrictedPicklist": f.type == "picklist" and f.name.endswith(_RESTRICTED_PICKLISTS),
        "scale": f.scale if f.type in ("double", "currency", "percent") else 0,
        "searchPrefilterable": f.type == "reference" and f.updateable,
        "soapType": f.soap_type,
        "sortable": f.sortable,
        "type": f.type,
        "unique": f.unique,
        "updateable": f.updateable and not obj.readonly,
        "writeRequiresMasterRead": False,
    }


_LENGTH_TYPES = TEXT_TYPES | frozenset(["id", "reference"])


_RESTRICTED_PICKLISTS = (
    "GeocodeAccuracy",
    "CountryCode",
    "StateCode",
    "ForecastCategory",
    "ForecastCategoryName",
)


def _compound_name(obj: ObjectDef, f: FieldDef) -> str | None:
    # Person names are compound fields too (FirstName, LastName, ... -> Name), outside the address kind.
    if (
        obj.name in _PERSON_OBJECTS
        and f.name in _PERSON_NAME_PARTS
        and f.name != "Name"
        and "Name" in obj.fields
    ):
        return "Name"
    return f.compound_field_name


def _picklist_entry(value: str) -> dict[str, Any]:
    return {"active": True, "defaultValue": False, "label": value, "validFor": None, "value": value}


def _extra_type_info(obj: ObjectDef, f: FieldDef) -> str | None:
    if f.type == "textarea":
        return "plaintextarea"
    if f.type == "url" and f.name.endswith("PhotoUrl"):
        return "imageurl"
    if obj.name in _PERSON_OBJECTS and f.name in _PERSON_NAME_PARTS:
        return "personname"
    if obj.name == "Account" and f.name == "Name":
        return "switchablepersonname"
    return None


# --------------------------------------------------------------------------------------------------
# objects
# --------------------------------------------------------------------------------------------------


def object_urls(name: str, api_version: str, instance_url: str, key_prefix: str | None) -> dict[str, str]:
    base = f"{version_prefix(api_version)}/sobjects/{name}"
    return {
        "compactLayouts": f"{base}/describe/compactLayouts",
        "rowTemplate": f"{base}/{{ID}}",
        "approvalLayouts": f"{base}/describe/approvalLayouts",
        "uiDetailTemplate": f"{instance_url}/{{ID}}",
        "uiEditTemplate": f"{instance_url}/{{ID}}/e",
        "defaultValues": f"{base}/defaultValues?recordTypeId&fields",
        "listviews": f"{base}/listviews",
        "describe": f"{base}/describe",
        "uiNewRecord": f"{instance_url}/{key_prefix or ''}/e",
        "quickActions": f"{base}/quickActions",
        "layouts": f"{base}/describe/layouts",
        "sobject": base,
    }


def _global_urls(name: str, api_version: str) -> dict[str, str]:
    base = f"{version_prefix(api_version)}/sobjects/{name}"
    return {
        "compactLayouts": f"{base}/describe/compactLayouts",
        "rowTemplate": f"{base}/{{ID}}",
        "approvalLayouts": f"{base}/describe/approvalLayouts",
        "listviews": f"{base}/listviews",
        "describe": f"{base}/describe",
        "quickActions": f"{base}/quickActions",
        "layouts": f"{base}/describe/layouts",
        "sobject": base,
    }


def _flags(obj: ObjectDef) -> dict[str, bool]:
    writable = obj.queryable and not obj.readonly
    everyday = writable and obj.replicateable and obj.feature is None
    return {
        "activateable": False,
        "createable": writable,
        "custom": obj.custom,
        "customSetting": False,
        "deepCloneable": False,
        "deletable": writable,
        "deprecatedAndHidden": False,
        "feedEnabled": everyday and ("OwnerId" in obj.fields),
        "hasSubtypes": False,
        "isInterface": False,
        "isSubtype": False,
        "layoutable": writable,
        "mergeable": obj.name in ("Account", "Contact", "Lead", "Case"),
        "mruEnabled": everyday,
        "queryable": obj.queryable,
        "replicateable": obj.replicateable,
        "retrieveable": obj.retrieveable,
        "searchable": everyday and any(f.name_field for f in obj.fields.values()),
        "triggerable": writable,
        "undeletable": writable and obj.has_is_deleted,
        "updateable": writable,
    }


def _supported_scopes(obj: ObjectDef) -> list[dict[str, str]]:
    if not obj.queryable:
        return []
    plural = obj.label_plural.lower()
    scopes = [{"label": f"All {plural}", "name": "everything"}]
    if "OwnerId" in obj.fields:
        scopes.append({"label": f"My {plural}", "name": "mine"})
    if obj.name in _TEAM_SCOPES:
        scopes.append({"label": f"My team's {plural}", "name": "team"})
    return scopes


def _record_type_infos(obj: ObjectDef, api_version: str) -> list[dict[str, Any]]:
    if obj.readonly or not obj.queryable:
        return []
    layout = f"{version_prefix(api_version)}/sobjects/{obj.name}/describe/layouts/{MASTER_RECORD_TYPE_ID}"
    return [
        {
            "active": True,
            "available": True,
            "defaultRecordTypeMapping": True,
            "developerName": "Master",
            "master": True,
            "name": "Master",
            "recordTypeId": MASTER_RECORD_TYPE_ID,
            "urls": {"layout": layout},
        }
    ]


def child_relationships(obj: ObjectDef, catalog: Catalog) -> list[dict[str, Any]]:
    """Reference fields of the org's objects that point at `obj`, sorted like Salesforce's list."""
    children = []
    for child in catalog:
        for f in child.fields.values():
            if f.type != "reference" or obj.name not in f.reference_to:
                continue
            children_name = child.label_plural.replace(" ", "").replace("'", "")
            if f.name in ("CreatedById", "LastModifiedById", "MasterRecordId"):
                name = None
            elif child.name == obj.name and f.name == "ParentId":
                name = f"Child{children_name}"
            elif f.custom:
                name = f"{children_name}__r"
            else:
                name = children_name
            children.append(
                {
                    "cascadeDelete": f.name in ("ItemId",) or child.name.endswith("Tag"),
                    "childSObject": child.name,
                    "deprecatedAndHidden": False,
                    "field": f.name,
                    "junctionIdListNames": [],
                    "junctionReferenceTo": [],
                    "relationshipName": name,
                    "restrictedDelete": False,
                }
            )
    children.sort(key=lambda c: (c["childSObject"], c["field"]))
    # A relationship name is unique per parent: keep the first, clear later duplicates.
    seen: set[str] = set()
    for child_entry in children:
        name = child_entry["relationshipName"]
        if name is not None:
            if name in seen:
                child_entry["relationshipName"] = None
            seen.add(name)
    return children


def describe_object(
    obj: ObjectDef, catalog: Catalog, api_version: str, instance_url: str = "https://localhost"
) -> dict[str, Any]:
    if obj.raw_describe is not None:
        return _served_describe_file(obj, api_version)
    flags = _flags(obj)
    body: dict[str, Any] = {
        "actionOverrides": [],
        "activateable": flags["activateable"],
        "associateEntityType": None,
        "associateParentEntity": None,
        "childRelationships": child_relationships(obj, catalog),
        "compactLayoutable": flags["layoutable"],
        "createable": flags["createable"],
        "custom": flags["custom"],
        "customSetting": False,
        "deepCloneable": False,
        "defaultImplementation": None,
        "deletable": flags["deletable"],
        "deprecatedAndHidden": False,
        "extendedBy": None,
        "extendsInterfaces": None,
        "feedEnabled": flags["feedEnabled"],
        "fields": [describe_field(obj, f) for f in obj.fields.values()],
        "hasSubtypes": False,
        "implementedBy": None,
        "implementsInterfaces": None,
        "isInterface": False,
        "isSubtype": False,
        "keyPrefix": obj.key_prefix,
        "label": obj.label,
        "labelPlural": obj.label_plural,
        "layoutable": flags["layoutable"],
        "listviewable": None,
        "lookupLayoutable": None,
        "mergeable": flags["mergeable"],
        "mruEnabled": flags["mruEnabled"],
        "name": obj.name,
        "namedLayoutInfos": [],
        "networkScopeFieldName": None,
        "queryable": flags["queryable"],
        "recordTypeInfos": _record_type_infos(obj, api_version),
        "replicateable": flags["replicateable"],
        "retrieveable": flags["retrieveable"],
        "searchLayoutable": flags["searchable"],
        "searchable": flags["searchable"],
        "sobjectDescribeOption": "FULL",
        "supportedScopes": _supported_scopes(obj),
        "triggerable": flags["triggerable"],
        "undeletable": flags["undeletable"],
        "updateable": flags["updateable"],
        "urls": object_urls(obj.name, api_version, instance_url, obj.key_prefix),
    }
    return body


def describe_global_entry(obj: ObjectDef, api_version: str) -> dict[str, Any]:
    if obj.raw_describe is not None:
        raw = obj.raw_describe
        flags = {key: raw.get(key, value) for key, value in _flags(obj).items()}
    else:
        flags = _flags(obj)
    entry: dict[str, Any] = {
        "activateable": flags["activateable"],
        "associateEntityType": None,
        "associateParentEntity": None,
        "createable": flags["createable"],
        "custom": flags["custom"],
        "customSetting": flags["customSetting"],
        "deepCloneable": flags["deepCloneable"],
        "deletable": flags["deletable"],
        "deprecatedAndHidden": flags["deprecatedAndHidden"],
        "feedEnabled": flags["feedEnabled"],
        "hasSubtypes": flags["hasSubtypes"],
        "isInterface": flags["isInterface"],
        "isSubtype": flags["isSubtype"],
        "keyPrefix": obj.key_prefix,
        "label": obj.label,
        "labelPlural": obj.label_plural,
        "layoutable": flags["layoutable"],
        "mergeable": flags["mergeable"],
        "mruEnabled": flags["mruEnabled"],
        "name": obj.name,
        "queryable": flags["queryable"],
        "replicateable": flags["replicateable"],
        "retrieveable": flags["retrieveable"],
        "searchable": flags["searchable"],
        "triggerable": flags["triggerable"],
        "undeletable": flags["undeletable"],
        "updateable": flags["updateable"],
        "urls": _global_urls(obj.name, api_version),
    }
    return entry


def describe_global(catalog: Catalog, api_version: str) -> dict[str, Any]:
    objects = sorted(catalog, key=lambda o: o.name)
    return {
        "encoding": "UTF-8",
        "maxBatchSize": 200,
        "sobjects": [describe_global_entry(obj, api_version) for obj in objects],
    }


# --------------------------------------------------------------------------------------------------
# describe files
# --------------------------------------------------------------------------------------------------


def _served_describe_file(obj: ObjectDef, api_version: str) -> dict[str, Any]:
    raw = obj.raw_describe
    assert raw is not None
    body = {key: copy.deepcopy(value) for key, value in raw.items() if key != "fields"}
    body = _rewrite_versions(body, api_version)
    present = set(obj.fields)
    raw_entries = raw.get("fields", [])
    # Entries of types outside the emulator's set stay as recorded; removed fields are gone from raw.
    fields = [
        copy.deepcopy(entry)
        for entry in raw_entries
        if entry.get("name") in present or entry.get("type") not in FIELD_TYPES
    ]
    recorded = {entry.get("name") for entry in raw_entries}
    fields.extend(describe_field(obj, f) for f in obj.fields.values() if f.name not in recorded)
    body["fields"] = fields
    return body


def _rewrite_versions(value: Any, api_version: str) -> Any:
    if isinstance(value, str):
        return _VERSION_IN_URL.sub(f"/services/data/v{api_version}/", value)
    if isinstance(value, dict):
        return {key: _rewrite_versions(item, api_version) for key, item in value.items()}
    if isinstance(value, list):
        return [_rewrite_versions(item, api_version) for item in value]
    return value
