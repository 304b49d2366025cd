"""The emulated org's object model: objects, fields and their describe-level facts.

Sources, in the order an org is assembled (`build_catalog`):
- `objects/standard_objects.txt`: the project's own compact description of the 48 standard objects behind
  Segment's collections (format documented at the top of that file). Objects tied to an org feature
  (`feature=tags`, `feature=schedules`) are left out when the feature is off.
- `objects/custom_objects.txt` (when `custom`): `Invoice__c` and custom fields on Account.
- the wide-object switch: `wide_fields` typed custom fields added to one object.
- a describe directory: real REST describe files `<Object>.json`, served as they are (see describe.py),
  with an `ObjectDef` built from their fields so that data can be generated and queried.

`FieldDef`/`ObjectDef` hold what describe.py, the generator and the store need. `Catalog` is the org's
mutable set of objects (add/remove objects and fields at run time) and implements `soql.SchemaLookup`.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .soql import SoqlField, SoqlObject

OBJECTS_DIR = Path(__file__).parent / "objects"
STANDARD_OBJECTS = OBJECTS_DIR / "standard_objects.txt"
CUSTOM_OBJECTS = OBJECTS_DIR / "custom_objects.txt"

TEXT_TYPES = frozenset(
    [
        "string",
        "textarea",
        "picklist",
        "multipicklist",
        "combobox",
        "email",
        "phone",
        "url",
        "encryptedstring",
    ]
)
# Describe types the emulator knows how to store, generate and render.
FIELD_TYPES = TEXT_TYPES | frozenset(
    [
        "id",
        "reference",
        "boolean",
        "int",
        "long",
        "double",
        "currency",
        "percent",
        "date",
        "datetime",
        "time",
        "base64",
        "address",
        "location",
        "anyType",
        "junctionidlist",
    ]
)
DECIMAL_TYPES = frozenset(["double", "currency", "percent"])
COMPOUND_TYPES = frozenset(["address", "location"])
SYSTEM_FIELDS = (
    "Id",
    "IsDeleted",
    "CreatedDate",
    "CreatedById",
    "LastModifiedDate",
    "LastModifiedById",
    "SystemModstamp",
)
AUDIT_TIMESTAMPS = ("CreatedDate", "LastModifiedDate", "SystemModstamp")

# Address components, in the order Salesforce lists them, with the compound value's key for each.
ADDRESS_PARTS = (
    ("Street", "street"),
    ("City", "city"),
    ("State", "state"),
    ("PostalCode", "postalCode"),
    ("Country", "country"),
    ("StateCode", "stateCode"),
    ("CountryCode", "countryCode"),
    ("Latitude", "latitude"),
    ("Longitude", "longitude"),
    ("GeocodeAccuracy", "geocodeAccuracy"),
)
LOCATION_PARTS = (("Latitude", "latitude"), ("Longitude", "longitude"))

_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "boolean": "xsd:boolean",
    "int": "xsd:int",
    "long": "xsd:long",
    "double": "xsd:double",
    "currency": "xsd:double",
    "percent": "xsd:double",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
    "time": "xsd:time",
    "base64": "xsd:base64Binary",
    "address": "urn:address",
    "location": "urn:location",
    "anyType": "xsd:anyType",
    "junctionidlist": "urn:JunctionIdListNames",
}
_DEFAULT_LENGTHS = {
    "string": 255,
    "textarea": 255,
    "picklist": 255,
    "multipicklist": 4099,
    "combobox": 255,
    "email": 80,
    "phone": 40,
    "url": 255,
    "encryptedstring": 175,
    "id": 18,
    "reference": 18,
}
_DEFAULT_NUMBERS = {"double": (18, 0), "currency": (18, 2), "percent": (5, 2)}
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


class ModelError(ValueError):
    """A description (built-in, custom, describe file or run-time change) that cannot be used."""


@dataclass
class FieldDef:
    """One field of an object, with the describe facts the emulator serves and uses."""

    name: str
    type: str
    length: int = 0
    precision: int = 0
    scale: int = 0
    digits: int = 0
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    defaulted_on_create: bool = False
    calculated: bool = False
    auto_number: bool = False
    name_field: bool = False
    unique: bool = False
    external_id: bool = False
    id_lookup: bool = False
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    picklist: tuple[str, ...] = ()
    compound_field_name: str | None = None
    dormant: bool = False  # the org never fills it (generator leaves it null / false)
    fill: float | None = None  # share of generated records with a value (None: the generator decides)
    label: str = ""
    custom: bool = False
    raw: dict[str, Any] | None = None  # the describe entry, for objects loaded from describe files

    def __post_init__(self) -> None:
        if self.type not in FIELD_TYPES:
            raise ModelError(f"field {self.name}: unsupported type {self.type!r}")
        if not self.label:
            self.label = field_label(self.name)
        if self.type in _DEFAULT_LENGTHS and not self.length:
            self.length = _DEFAULT_LENGTHS[self.type]
        if self.type in _DEFAULT_NUMBERS and not self.precision:
            self.precision, self.scale = _DEFAULT_NUMBERS[self.type]
        if self.type == "int" and not self.digits:
            self.digits = 9
        if self.type == "boolean":
            # Salesforce booleans are never null and default to false on create.
            self.nillable = False
            self.defaulted_on_create = True
        if self.type in COMPOUND_TYPES or self.calculated or self.auto_number:
            self.createable = self.updateable = False
        if self.type == "reference" and self.relationship_name is None and self.reference_to:
            self.relationship_name = relationship_name(self.name)

    # ---- derived describe facts ----
    @property
    def soap_type(self) -> str:
        return _SOAP_TYPES.get(self.type, "xsd:string")

    @property
    def byte_length(self) -> int:
        if self.type in ("id", "reference"):
            return 18
        if self.type in TEXT_TYPES:
            return self.length * 3
        return 0

    @property
    def long_text(self) -> bool:
        return self.type == "textarea" and self.length > 255

    @property
    def filterable(self) -> bool:
        return not (self.long_text or self.type in ("base64", "location", "junctionidlist", "anyType"))

    @property
    def sortable(self) -> bool:
        return not (
            self.long_text
            or self.type in ("multipicklist", "address", "location", "base64", "junctionidlist", "anyType")
        )

    @property
    def groupable(self) -> bool:
        return not (
            self.long_text
            or self.type
            in ("double", "currency", "percent", "datetime", "address", "location", "base64", "multipicklist")
            or self.type in ("junctionidlist", "anyType")
        )

    @property
    def aggregatable(self) -> bool:
        return not (self.long_text or self.type in ("address", "location", "base64", "junctionidlist"))

    @property
    def compound(self) -> bool:
        return self.type in COMPOUND_TYPES


@dataclass
class ObjectDef:
    """One sObject: flags, key prefix and fields in describe order."""

    name: str
    key_prefix: str | None
    fields: dict[str, FieldDef] = field(default_factory=dict)
    label: str = ""
    label_plural: str = ""
    queryable: bool = True
    retrieveable: bool = True
    replicateable: bool = True
    readonly: bool = False
    feature: str | None = None
    base_count: int = 0  # records at scale 1.0
    custom: bool = False
    raw_describe: dict[str, Any] | None = None  # served as-is for objects loaded from describe files

    def __post_init__(self) -> None:
        if not self.label:
            self.label = field_label(self.name)
        if not self.label_plural:
            self.label_plural = plural(self.label)
        self.custom = self.custom or self.name.endswith("__c")
        self._lower: dict[str, str] = {}
        self._reindex()

    def _reindex(self) -> None:
        self._lower = {name.lower(): name for name in self.fields}

    # ---- lookup ----
    def field(self, name: str) -> FieldDef | None:
        canonical = self._lower.get(name.lower())
        return self.fields[canonical] if canonical else None

    def has(self, name: str) -> bool:
        return name in self.fields

    @property
    def has_is_deleted(self) -> bool:
        return "IsDeleted" in self.fields

    @property
    def createable(self) -> bool:
        return not self.readonly and self.queryable

    @property
    def replication_key(self) -> str | None:
        """The field the common taps use as bookmark (SystemModstamp > LastModifiedDate > CreatedDate)."""
        for name in AUDIT_TIMESTAMPS[::-1]:
            if name in self.fields:
                return name
        return None

    def stored_fields(self) -> list[FieldDef]:
        """Fields that hold values (compound fields are derived from their components)."""
        return [f for f in self.fields.values() if not f.compound]

    def compound_parts(self, compound: FieldDef) -> list[tuple[str, FieldDef]]:
        """(compound key, component field) pairs of an address/location field, in key order."""
        parts: list[tuple[str, FieldDef]] = []
        for component in self.fields.values():
            if component.compound_field_name == compound.name:
                parts.append((component_key(compound, component), component))
        return sorted(parts, key=lambda item: item[0])

    # ---- changes ----
    def add_field(self, definition: FieldDef) -> None:
        if definition.name.lower() in self._lower:
            raise ModelError(f"{self.name}.{definition.name} already exists")
        self.fields[definition.name] = definition
        self._reindex()

    def remove_field(self, name: str) -> FieldDef:
        found = self.field(name)
        if found is None:
            raise ModelError(f"{self.name} has no field {name}")
        del self.fields[found.name]
        if self.raw_describe is not None:
            self.raw_describe["fields"] = [
                entry for entry in self.raw_describe.get("fields", []) if entry.get("name") != found.name
            ]
        for other in self.fields.values():
            if other.compound_field_name == found.name:
                other.compound_field_name = None
        self._reindex()
        return found

    def soql_object(self) -> SoqlObject:
        return SoqlObject(
            self.name,
            self.queryable,
            {
                name.lower(): SoqlField(f.name, f.type, filterable=f.filterable, sortable=f.sortable)
                for name, f in self.fields.items()
            },
        )


# --------------------------------------------------------------------------------------------------
# names and labels
# --------------------------------------------------------------------------------------------------


def field_label(name: str) -> str:
    """A describe label from an API name: `AnnualRevenue` -> `Annual Revenue`, `OwnerId` -> `Owner ID`."""
    base = name[:-3] if name.endswith("__c") else name
    if base.startswith("Is") and len(base) > 2 and base[2].isupper():
        base = base[2:]
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", base.replace("_", " ")).split()
    if words and words[-1] == "Id":
        words[-1] = "ID"
    return " ".join(words) or name


def plural(label: str) -> str:
    if label.endswith("y") and not label.endswith(("ay", "ey", "oy")):
        return label[:-1] + "ies"
    if label.endswith(("s", "x", "ch", "sh")):
        return label + "es"
    return label + "s"


def relationship_name(field_name: str) -> str | None:
    if field_name.endswith("__c"):
        return field_name[:-3] + "__r"
    for suffix in ("Id", "ID"):
        if field_name.endswith(suffix) and len(field_name) > len(suffix):
            return field_name[: -len(suffix)]
    return None


def component_key(compound: FieldDef, component: FieldDef) -> str:
    """The key of a component inside its compound value (`BillingCity` -> `city`)."""
    prefix = compound.name[: -len("Address")] if compound.type == "address" else compound.name
    if compound.name.endswith("__c"):
        prefix = compound.name[: -len("__c")]
    rest = component.name
    if rest.endswith("__s"):  # custom geolocation components: Place__Latitude__s
        rest = rest[: -len("__s")]
        rest = rest.split("__")[-1]
    elif rest.startswith(prefix):
        rest = rest[len(prefix) :]
    return rest[:1].lower() + rest[1:]


def key_prefix_for(name: str) -> str:
    """A stable 3-character key prefix for objects described without one (custom: `a` + 2 chars)."""
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    code = zlib.crc32(name.encode())
    return "a" + alphabet[code % 62] + alphabet[(code // 62) % 62]


def validate_name(name: str, what: str) -> None:
    if not _NAME_RE.fullmatch(name) or "___" in name or (name.endswith("_") and not name.endswith("__c")):
        raise ModelError(f"invalid {what} name {name!r}")


# --------------------------------------------------------------------------------------------------
# the compact description format (objects/*.txt)
# --------------------------------------------------------------------------------------------------

_FIELD_RE = re.compile(r"(?P<name>\w+)\s+(?P<type>\w+)(?:\((?P<arg>[\d,]+)\))?(?P<attrs>.*)")


@dataclass
class Description:
    """A parsed description file: picklist sets, new objects and additions to existing objects."""

    picklists: dict[str, tuple[str, ...]]
    objects: list[ObjectDef]
    additions: dict[str, list[FieldDef]]


def parse_description(text: str, source: str = "<description>") -> Description:
    picklists: dict[str, tuple[str, ...]] = {}
    objects: list[ObjectDef] = []
    additions: dict[str, list[FieldDef]] = {}
    pending: list[tuple[int, str, str]] = []  # (line, owner, field line) resolved after the sets are known
    current: ObjectDef | None = None
    adding: str | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if not line or line.lstrip().startswith("#"):
            continue
        try:
            if line.startswith("= "):
                set_name, _, values = line[2:].partition(":")
                picklists[set_name.strip()] = tuple(v.strip() for v in values.split("|") if v.strip())
            elif not line[0].isspace():
                if line.startswith("+"):
                    adding, current = line[1:].strip(), None
                    additions.setdefault(adding, [])
                else:
                    current, adding = _parse_header(line), None
                    objects.append(current)
            else:
                owner = current.name if current is not None else adding
                if owner is None:
                    raise ModelError("field line outside an object")
                pending.append((number, owner, line.strip()))
        except ModelError as error:
            raise ModelError(f"{source}:{number}: {error}") from None
    by_name = {o.name: o for o in objects}
    for number, owner, line in pending:
        try:
            for definition in _parse_field_line(line, owner, picklists):
                if owner in by_name:
                    by_name[owner].fields[definition.name] = definition
                else:
                    additions[owner].append(definition)
        except ModelError as error:
            raise ModelError(f"{source}:{number}: {error}") from None
    for obj in objects:
        _finish_object(obj)
    return Description(picklists, objects, additions)


def _parse_header(line: str) -> ObjectDef:
    tokens = line.split()
    if len(tokens) < 2:
        raise ModelError(f"object header needs a name and a key prefix: {line!r}")
    name, prefix = tokens[0], tokens[1]
    validate_name(name, "object")
    obj = ObjectDef(name, None if prefix == "-" else prefix)
    for token in tokens[2:]:
        key, _, value = token.partition("=")
        if key == "noquery":
            obj.queryable = obj.retrieveable = False
        elif key == "norepl":
            obj.replicateable = False
        elif key == "readonly":
            obj.readonly = True
        elif key == "feature":
            obj.feature = value
        elif key == "n":
            obj.base_count = int(value)
        elif key == "label":
            obj.label = value.replace("_", " ")
        elif key == "plural":
            obj.label_plural = value.replace("_", " ")
        else:
            raise ModelError(f"unknown object flag {token!r}")
    if obj.label and not any(t.startswith("plural=") for t in tokens):
        obj.label_plural = plural(obj.label)
    return obj


def _parse_field_line(line: str, owner: str, picklists: dict[str, tuple[str, ...]]) -> Iterator[FieldDef]:
    if line.startswith("*"):
        type_name, *names = line[1:].split()
        for name in names:
            dormant = name.endswith("~")
            yield _system_rules(owner, FieldDef(name.rstrip("~"), type_name, dormant=dormant))
        return
    match = _FIELD_RE.fullmatch(line)
    if match is None:
        raise ModelError(f"cannot read field line {line!r}")
    name, type_name, arg = match.group("name"), match.group("type"), match.group("arg")
    validate_name(name, "field")
    kwargs: dict[str, Any] = {}
    if arg:
        numbers = [int(part) for part in arg.split(",")]
        if type_name in DECIMAL_TYPES:
            kwargs["precision"], kwargs["scale"] = numbers[0], numbers[1] if len(numbers) > 1 else 0
        elif type_name in ("int", "long"):
            kwargs["digits"] = numbers[0]
        else:
            kwargs["length"] = numbers[0]
    for attr in match.group("attrs").split():
        if attr == "!":
            kwargs["nillable"] = False
        elif attr == "~":
            kwargs["dormant"] = True
        elif attr.startswith(">"):
            kwargs["reference_to"] = tuple(t for t in attr[1:].split("|") if t)
        elif attr.startswith("@"):
            set_name = attr[1:]
            if set_name not in picklists:
                raise ModelError(f"unknown picklist set {set_name!r}")
            kwargs["picklist"] = picklists[set_name]
        elif attr == "ro":
            kwargs["createable"] = kwargs["updateable"] = False
        elif attr == "cr":
            kwargs["updateable"] = False
        elif attr == "name":
            kwargs["name_field"] = True
        elif attr == "uniq":
            kwargs["unique"] = True
        elif attr == "ext":
            kwargs["external_id"] = kwargs["id_lookup"] = True
        elif attr == "auto":
            kwargs["auto_number"] = True
            kwargs["nillable"] = False
            kwargs["defaulted_on_create"] = True
        elif attr.startswith("fill="):
            kwargs["fill"] = int(attr[5:]) / 100
        elif attr.startswith("rel="):
            kwargs["relationship_name"] = attr[4:]
        else:
            raise ModelError(f"unknown field attribute {attr!r}")
    yield _system_rules(owner, FieldDef(name, type_name, custom=name.endswith("__c"), **kwargs))


def parse_field_spec(name: str, spec: str, owner: str = "") -> FieldDef:
    """A field from a name and a spec in the description format (`currency(18,2)`, `reference >Account`)."""
    definitions = list(_parse_field_line(f"{name} {spec}", owner, {}))
    return definitions[0]


def _system_rules(owner: str, f: FieldDef) -> FieldDef:
    """The real flags of system fields, which the description only lists."""
    if f.name == "Id" and f.type == "id":
        return replace(
            f,
            nillable=False,
            createable=False,
            updateable=False,
            defaulted_on_create=True,
            id_lookup=True,
            label=f"{field_label(owner)} ID",
        )
    if f.name in ("CreatedDate", "LastModifiedDate", "SystemModstamp"):
        return replace(f, nillable=False, createable=False, updateable=False, defaulted_on_create=True)
    if f.name in ("CreatedById", "LastModifiedById"):
        return replace(
            f,
            nillable=False,
            createable=False,
            updateable=False,
            defaulted_on_create=True,
            reference_to=f.reference_to or ("User",),
            relationship_name=f.name[:-2],
        )
    if f.name == "IsDeleted":
        return replace(f, createable=False, updateable=False)
    if f.name == "OwnerId":
        return replace(f, defaulted_on_create=True)
    return f


def _finish_object(obj: ObjectDef) -> None:
    """Link compound fields with their components and apply object-level read-only-ness."""
    for compound in [f for f in obj.fields.values() if f.compound]:
        link_compound(obj, compound)
    if obj.readonly:
        for f in obj.fields.values():
            f.createable = f.updateable = False
    if "Name" in obj.fields and not any(f.name_field for f in obj.fields.values()):
        obj.fields["Name"].name_field = True
    obj._reindex()


def link_compound(obj: ObjectDef, compound: FieldDef) -> None:
    if compound.type == "address":
        prefix = compound.name[: -len("Address")]
        parts = ADDRESS_PARTS
    else:
        prefix = compound.name[: -len("__c")] if compound.name.endswith("__c") else compound.name
        parts = LOCATION_PARTS
    for suffix, _ in parts:
        for candidate in (prefix + suffix, f"{prefix}__{suffix}__s"):
            component = obj.fields.get(candidate)
            if component is not None:
                component.compound_field_name = compound.name


# --------------------------------------------------------------------------------------------------
# describe files (--describe-dir)
# --------------------------------------------------------------------------------------------------


def object_from_describe(describe: dict[str, Any], source: str = "<describe>") -> ObjectDef:
    """An ObjectDef from a real REST describe payload; the payload is kept and served as-is."""
    try:
        name = describe["name"]
        entries = describe["fields"]
    except (KeyError, TypeError):
        raise ModelError(f"{source}: not a describe payload (needs 'name' and 'fields')") from None
    validate_name(name, "object")
    obj = ObjectDef(
        name,
        describe.get("keyPrefix") or key_prefix_for(name),
        label=describe.get("label") or "",
        label_plural=describe.get("labelPlural") or "",
        queryable=bool(describe.get("queryable", True)),
        retrieveable=bool(describe.get("retrieveable", True)),
        replicateable=bool(describe.get("replicateable", True)),
        readonly=not describe.get("createable", True),
        custom=bool(describe.get("custom", name.endswith("__c"))),
        base_count=500,
        raw_describe=describe,
    )
    for entry in entries:
        definition = field_from_describe(entry, source)
        if definition is not None:
            obj.fields[definition.name] = definition
    if "Id" not in obj.fields:
        raise ModelError(f"{source}: {name} has no Id field")
    for f in obj.fields.values():
        if f.compound_field_name and f.compound_field_name not in obj.fields:
            f.compound_field_name = None
    obj._reindex()
    return obj


def field_from_describe(entry: dict[str, Any], source: str) -> FieldDef | None:
    try:
        name, type_name = entry["name"], entry["type"]
    except (KeyError, TypeError):
        raise ModelError(f"{source}: a field entry without name/type") from None
    if type_name not in FIELD_TYPES:
        # Types outside the emulator's set (complexvalue, json, ...) stay in the served describe only.
        return None
    picklist = tuple(
        str(v["value"]) for v in entry.get("picklistValues") or [] if v.get("active", True) and "value" in v
    )
    return FieldDef(
        name,
        type_name,
        length=int(entry.get("length") or 0),
        precision=int(entry.get("precision") or 0),
        scale=int(entry.get("scale") or 0),
        digits=int(entry.get("digits") or 0),
        nillable=bool(entry.get("nillable", True)),
        createable=bool(entry.get("createable", False)),
        updateable=bool(entry.get("updateable", False)),
        defaulted_on_create=bool(entry.get("defaultedOnCreate", False)),
        calculated=bool(entry.get("calculated", False)),
        auto_number=bool(entry.get("autoNumber", False)),
        name_field=bool(entry.get("nameField", False)),
        unique=bool(entry.get("unique", False)),
        external_id=bool(entry.get("externalId", False)),
        id_lookup=bool(entry.get("idLookup", False)),
        reference_to=tuple(entry.get("referenceTo") or ()),
        relationship_name=entry.get("relationshipName"),
        picklist=picklist,
        compound_field_name=entry.get("compoundFieldName"),
        label=entry.get("label") or "",
        custom=bool(entry.get("custom", name.endswith("__c"))),
        raw=entry,
    )


def load_describe_dir(directory: Path) -> list[ObjectDef]:
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelError(f"describe directory {directory} does not exist")
    objects = []
    for path in sorted(directory.glob("*.json")):
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ModelError(f"{path}: cannot read describe JSON ({error})") from None
        obj = object_from_describe(payload, str(path))
        if obj.name != path.stem:
            raise ModelError(f"{path}: describes {obj.name}, expected {path.stem} (file name = object name)")
        objects.append(obj)
    if not objects:
        raise ModelError(f"describe directory {directory} holds no <Object>.json files")
    return objects


# --------------------------------------------------------------------------------------------------
# the wide-object switch
# --------------------------------------------------------------------------------------------------

_WIDE_TYPES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("string", {"length": 255}),
    ("double", {"precision": 18, "scale": 2}),
    ("boolean", {}),
    ("date", {}),
    ("datetime", {}),
    ("picklist", {"picklist": ("Red", "Amber", "Green")}),
    ("currency", {"precision": 16, "scale": 2}),
    ("percent", {"precision": 5, "scale": 2}),
    ("email", {}),
    ("phone", {}),
    ("url", {}),
    ("textarea", {"length": 255}),
)


def wide_fields(count: int) -> list[FieldDef]:
    """`count` typed custom fields (Wide_Field_0001__c, ...) cycling through the common types."""
    fields = []
    for index in range(count):
        type_name, kwargs = _WIDE_TYPES[index % len(_WIDE_TYPES)]
        fields.append(FieldDef(f"Wide_Field_{index + 1:04d}__c", type_name, custom=True, fill=0.7, **kwargs))
    return fields


# --------------------------------------------------------------------------------------------------
# the org's catalog
# --------------------------------------------------------------------------------------------------

_STANDARD_CACHE: dict[str, str] = {}


def _read(path: Path) -> str:
    key = str(path)
    if key not in _STANDARD_CACHE:
        _STANDARD_CACHE[key] = path.read_text(encoding="utf-8")
    return _STANDARD_CACHE[key]


def standard_objects() -> list[ObjectDef]:
    """Fresh ObjectDefs of the 48 standard objects (callers may change them)."""
    return parse_description(_read(STANDARD_OBJECTS), STANDARD_OBJECTS.name).objects


class Catalog:
    """The org's objects by name (case-insensitive lookup); implements `soql.SchemaLookup`."""

    def __init__(self, objects: Iterable[ObjectDef] = ()):
        self._objects: dict[str, ObjectDef] = {}
        self._soql: dict[str, SoqlObject] = {}
        for obj in objects:
            self.add(obj)

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def __iter__(self) -> Iterator[ObjectDef]:
        return iter(self._objects.values())

    def names(self) -> list[str]:
        return sorted(o.name for o in self._objects.values())

    def get(self, name: str) -> ObjectDef | None:
        return self._objects.get(name.lower())

    def require(self, name: str) -> ObjectDef:
        obj = self.get(name)
        if obj is None:
            raise KeyError(name)
        return obj

    def add(self, obj: ObjectDef) -> None:
        self._objects[obj.name.lower()] = obj
        self._soql.pop(obj.name.lower(), None)

    def remove(self, name: str) -> ObjectDef:
        obj = self._objects.pop(name.lower())
        self._soql.pop(name.lower(), None)
        return obj

    def changed(self, name: str) -> None:
        """Forget cached SOQL views of an object after its fields changed."""
        self._soql.pop(name.lower(), None)

    def soql_object(self, name: str) -> SoqlObject | None:
        key = name.lower()
        cached = self._soql.get(key)
        if cached is None:
            obj = self._objects.get(key)
            if obj is None:
                return None
            cached = self._soql[key] = obj.soql_object()
        return cached


def build_catalog(
    *,
    tags: bool = True,
    schedules: bool = True,
    custom: bool = True,
    wide_object: str | None = None,
    wide_field_count: int = 1000,
    describe_dir: Path | None = None,
    describe_dir_only: bool = False,
) -> Catalog:
    """The org's objects for a configuration (see OrgConfig)."""
    features = {"tags": tags, "schedules": schedules}
    objects: dict[str, ObjectDef] = {}
    if not describe_dir_only:
        for obj in standard_objects():
            if obj.feature is None or features.get(obj.feature, False):
                objects[obj.name] = obj
        if custom:
            description = parse_description(_read(CUSTOM_OBJECTS), CUSTOM_OBJECTS.name)
            for obj in description.objects:
                objects[obj.name] = obj
            for owner, fields in description.additions.items():
                if owner in objects:
                    for definition in fields:
                        objects[owner].add_field(definition)
    if describe_dir is not None:
        for obj in load_describe_dir(describe_dir):
            objects[obj.name] = obj  # a describe file replaces a built-in object of the same name
    elif describe_dir_only:
        raise ModelError("describe_dir_only needs describe_dir")
    if wide_object is not None:
        target = next((o for name, o in objects.items() if name.lower() == wide_object.lower()), None)
        if target is None:
            raise ModelError(f"wide_object {wide_object!r} is not an object of this org")
        for definition in wide_fields(wide_field_count):
            target.add_field(definition)
    return Catalog(objects.values())
