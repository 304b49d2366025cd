"""The emulated org: objects, generated data, queries and the Python control API (thread-safe).

    org = Org(OrgConfig(seed=1, scale=0.02))
    org.describe_global("58.0"); org.describe("Account", "58.0")
    result = org.query("SELECT Id, Name FROM Account ORDER BY SystemModstamp", include_deleted=False)
    result.total_size; result.rest_records(0, 2000, "58.0"); result.csv_page(0, 50000); result.rows()
    new_id = org.create("Account", {"Name": "Acme"}); org.update("Account", new_id, {"Rating": "Hot"})
    org.delete(...); org.undelete(...); org.hard_delete(...); org.late_commit(...); org.reset()
    org.add_field("Account", "Days_Open__c", "double", calculated=True)  # a formula field
    org.recalculate("Account", new_id, {"Days_Open__c": 12})  # its value moves, no stamp does
    org.clock.set(datetime(2026, 1, 2, tzinfo=timezone.utc), frozen=True); org.clock.advance(5)

Mutations stamp the audit fields from `clock.now()` (UTC, milliseconds) as Salesforce does:
- create: CreatedDate = LastModifiedDate = SystemModstamp = now, CreatedById = LastModifiedById = the
  admin user (User #1, `admin@example.com`), IsDeleted false, booleans default false, OwnerId defaults to
  the admin, auto-number fields numbered; person Name = FirstName + LastName.
- update: LastModifiedDate = SystemModstamp = now, LastModifiedById = admin.
- delete (soft; objects with IsDeleted only): IsDeleted = true, SystemModstamp = now; the row then shows
  only through queryAll. undelete clears it and bumps SystemModstamp. hard_delete removes the row.
- late_commit: a change made by a long transaction, visible from now on but stamped `seconds_ago`
  earlier (LastModifiedDate = SystemModstamp = now - seconds_ago; CreatedDate too for a new record).
- recalculate: new values of calculated (formula) fields only, and no stamp at all: Salesforce computes a
  formula when it is read, so a formula over TODAY() or a parent record's field changes its value while
  the record's SystemModstamp stays.
Values are validated against the describe (names case-insensitive, types coerced from their usual Python
or ISO-text forms); errors are `ApiError`s with Salesforce's codes (INVALID_TYPE, INVALID_FIELD,
INVALID_FIELD_FOR_INSERT_UPDATE, INVALID_TYPE_ON_FIELD_IN_RECORD, STRING_TOO_LONG, REQUIRED_FIELD_MISSING,
NOT_FOUND, ENTITY_IS_DELETED, ...). The control API may write fields the API user could not (calculated,
read-only objects): it stands for the org itself. Only the system-managed fields are refused.

Schema changes (add_field, remove_field, add_object, remove_object) show in describe and queries at once;
existing rows read NULL in a new field (false for a boolean, as Salesforce never returns null booleans).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from . import describe as describe_module
from . import soql
from .clock import Clock, parse_instant
from .errors import ApiError, not_found
from .generator import DEFAULT_EPOCH, generate_object, generate_org, id_suffix, make_id, record_counts
from .model import (
    COMPOUND_TYPES,
    FIELD_TYPES,
    Catalog,
    FieldDef,
    ModelError,
    ObjectDef,
    build_catalog,
    key_prefix_for,
    parse_field_spec,
    validate_name,
)
from .store import Chunk, QueryResult, Store, TableData, drop_row, python_values, set_value

# Objects the Bulk API refuses (INVALIDENTITY), besides non-queryable ones.
BULK_UNSUPPORTED_SUFFIXES = ("Tag",)
_PROTECTED = frozenset(["Id", "IsDeleted", "CreatedDate", "LastModifiedDate", "SystemModstamp"])
_PERSON_OBJECTS = frozenset(["Contact", "Lead", "User", "CampaignMember"])


@dataclass
class OrgConfig:
    seed: int = 1
    scale: float = 1.0
    counts: dict[str, int] = field(default_factory=dict)  # per-object record counts (override the scale)
    tags: bool = True  # the 13 *Tag objects
    schedules: bool = True  # OpportunityLineItemSchedule
    custom: bool = True  # Invoice__c and custom fields on Account (Tier__c, Renewal_Date__c, Seats__c)
    wide_object: str | None = None  # give this object `wide_fields` more custom fields
    wide_fields: int = 1000
    describe_dir: Path | None = None  # serve real describe files <Object>.json from here too
    describe_dir_only: bool = False  # ... and nothing else
    epoch: datetime = DEFAULT_EPOCH  # the generated history ends here


class Org:
    def __init__(self, config: OrgConfig | None = None):
        self.config = config or OrgConfig()
        if self.config.scale < 0:
            raise ValueError("scale must be >= 0")
        self.clock = Clock()
        self.instance_url = "https://localhost"  # the HTTP layer may set its base URL (describe ui* urls)
        self._store = Store()
        self._lock = self._store.lock
        try:
            self._catalog = self._build_catalog()
            self._counts = record_counts(self._catalog, self.config.scale, self.config.counts)
        except ModelError as error:
            raise ValueError(str(error)) from None
        generated = generate_org(self._catalog, self.config.seed, self._counts, self.config.epoch)
        tables = {}
        for obj in self._catalog:
            table = generated.get(obj.name)
            chunks = (
                []
                if table is None
                else [Chunk(n, c) for n, c in zip(table.lengths, table.chunks, strict=True)]
            )
            tables[obj.name] = TableData(chunks, (table.count if table else 0) + 1)
        self._store.tables = tables
        self._pristine = {name: (list(t.chunks), t.next_counter) for name, t in tables.items()}

    def _build_catalog(self) -> Catalog:
        c = self.config
        return build_catalog(
            tags=c.tags,
            schedules=c.schedules,
            custom=c.custom,
            wide_object=c.wide_object,
            wide_field_count=c.wide_fields,
            describe_dir=Path(c.describe_dir) if c.describe_dir is not None else None,
            describe_dir_only=c.describe_dir_only,
        )

    # ------------------------------------------------------------------------------------------
    # metadata
    # ------------------------------------------------------------------------------------------
    def object_names(self) -> list[str]:
        with self._lock:
            return self._catalog.names()

    def describe_global(self, api_version: str) -> dict[str, Any]:
        with self._lock:
            return describe_module.describe_global(self._catalog, api_version)

    def describe(self, sobject: str, api_version: str) -> dict[str, Any]:
        with self._lock:
            obj = self._catalog.get(sobject)
            if obj is None:
                raise not_found()
            return describe_module.describe_object(obj, self._catalog, api_version, self.instance_url)

    def soql_object(self, name: str) -> soql.SoqlObject | None:
        with self._lock:
            return self._catalog.soql_object(name)

    def count(self, sobject: str, include_deleted: bool = True) -> int:
        """Records of an object (for tests and progress reports)."""
        name = self._object(sobject).name
        return self.query(f"SELECT COUNT() FROM {name}", include_deleted).total_size

    @property
    def admin_user_id(self) -> str | None:
        user = self._catalog.get("User")
        return make_id(user.key_prefix, 1) if user is not None and user.key_prefix else None

    # ------------------------------------------------------------------------------------------
    # queries
    # ------------------------------------------------------------------------------------------
    def query(self, soql_text: str, include_deleted: bool = False) -> QueryResult:
        """Parse, bind and run a SOQL query; the result is a snapshot (later changes do not show)."""
        parsed = soql.parse(soql_text)
        with self._lock:
            bound = soql.bind(parsed, self._catalog)
            obj = self._catalog.get(bound.sobject)
            assert obj is not None
            return self._store.execute(obj, bound, include_deleted)

    def bulk_check(self, soql_text: str) -> None:
        """Raise the errors Bulk API 2.0 gives for queries it cannot run (REST would run them)."""
        parsed = soql.parse(soql_text)
        with self._lock:
            bound = soql.bind(parsed, self._catalog)
            obj = self._catalog.get(bound.sobject)
            assert obj is not None
            if obj.name.endswith(BULK_UNSUPPORTED_SUFFIXES) and obj.feature == "tags":
                raise ApiError(400, "INVALIDENTITY", f"Entity '{obj.name}' is not supported by the Bulk API.")
            if bound.is_count:
                # Bulk 2.0 does not run aggregate queries (documented); the message is the emulator's.
                raise ApiError(
                    400, "API_ERROR", "Aggregate functions such as COUNT() are not supported in Bulk Query"
                )
            for ref in bound.select if not bound.is_count else ():
                f = obj.fields[ref.name]
                if f.type in COMPOUND_TYPES:
                    raise ApiError(400, "API_ERROR", "Selecting compound data not supported in Bulk Query")
                if f.type == "base64":
                    raise ApiError(400, "API_ERROR", "Selecting base64 data not supported in Bulk Query")

    # ------------------------------------------------------------------------------------------
    # reading the org's truth (tests)
    # ------------------------------------------------------------------------------------------
    def get(self, sobject: str, record_id: str) -> dict[str, Any] | None:
        """Every field of one record as Python values (deleted records included), or None."""
        with self._lock:
            obj = self._object(sobject)
            table = self._table(obj)
            found = table.locate("Id", _full_id(record_id))
            if found is None:
                return None
            chunk = table.chunks[found[0]]
            return self._row_dict(obj, chunk, found[1])

    def records(self, sobject: str, include_deleted: bool = True) -> list[dict[str, Any]]:
        """Every record of an object as dicts of Python values, in physical order."""
        with self._lock:
            obj = self._object(sobject)
            table = self._table(obj)
            chunks = list(table.chunks)
            fields = list(obj.fields.values())
        out: list[dict[str, Any]] = []
        for chunk in chunks:
            columns = {f.name: _chunk_values(obj, chunk, f) for f in fields}
            for index in range(chunk.length):
                row = {name: values[index] for name, values in columns.items()}
                if include_deleted or not row.get("IsDeleted"):
                    out.append(row)
        return out

    def _row_dict(self, obj: ObjectDef, chunk: Chunk, row: int) -> dict[str, Any]:
        single = Chunk(1, {name: array.slice(row, 1) for name, array in chunk.columns.items()})
        return {f.name: _chunk_values(obj, single, f)[0] for f in obj.fields.values()}

    # ------------------------------------------------------------------------------------------
    # mutations
    # ------------------------------------------------------------------------------------------
    def create(self, sobject: str, values: dict[str, Any]) -> str:
        """Insert a record now; returns its 18-character Id."""
        return self._insert(sobject, values, self.clock.now())

    def update(self, sobject: str, record_id: str, values: dict[str, Any]) -> None:
        self._modify(sobject, record_id, values, self.clock.now())

    def delete(self, sobject: str, record_id: str) -> None:
        now = self.clock.now()
        with self._lock:
            obj = self._object(sobject)
            if not obj.has_is_deleted:
                raise ApiError(
                    400,
                    "INVALID_OPERATION",
                    f"{obj.name} has no IsDeleted field, so its records cannot be soft-deleted; "
                    "use hard_delete",
                )
            table, index, row, current = self._find(obj, record_id)
            if current.get("IsDeleted"):
                raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted")
            self._write(obj, table, index, row, {"IsDeleted": True, "SystemModstamp": now})

    def undelete(self, sobject: str, record_id: str) -> None:
        now = self.clock.now()
        with self._lock:
            obj = self._object(sobject)
            if not obj.has_is_deleted:
                raise ApiError(
                    400, "INVALID_OPERATION", f"{obj.name} records cannot be undeleted (no IsDeleted field)"
                )
            table, index, row, current = self._find(obj, record_id, allow_deleted=True)
            if not current.get("IsDeleted"):
                raise ApiError(400, "UNDELETE_FAILED", "Entity is not in the recycle bin")
            self._write(obj, table, index, row, {"IsDeleted": False, "SystemModstamp": now})

    def hard_delete(self, sobject: str, record_id: str) -> None:
        with self._lock:
            obj = self._object(sobject)
            table, index, row, _ = self._find(obj, record_id, allow_deleted=True)
            table.replace_chunk(index, drop_row(table.chunks[index], row))

    def late_commit(
        self, sobject: str, values: dict[str, Any], record_id: str | None = None, seconds_ago: float = 60.0
    ) -> str:
        """A change visible from now on but stamped `seconds_ago` earlier; creates a record without an Id."""
        if seconds_ago < 0:
            raise ValueError("seconds_ago must be >= 0")
        stamp = self.clock.now() - timedelta(seconds=float(seconds_ago))
        if record_id is None:
            return self._insert(sobject, values, stamp)
        self._modify(sobject, record_id, values, stamp)
        return _full_id(record_id)

    def recalculate(self, sobject: str, record_id: str, values: dict[str, Any]) -> None:
        """New values of calculated fields, the record's stamps unchanged (see the module docstring)."""
        with self._lock:
            obj = self._object(sobject)
            fields = {name: obj.field(str(name)) for name in values} if isinstance(values, dict) else {}
            plain = sorted(str(name) for name, f in fields.items() if f is None or not f.calculated)
            if not isinstance(values, dict) or plain:
                raise ApiError(
                    400,
                    "INVALID_FIELD",
                    f"recalculate takes calculated fields of {obj.name} only, not: {', '.join(plain)}",
                    plain,
                )
            table, index, row, _ = self._find(obj, record_id, allow_deleted=True)
            changes = {f.name: coerce(f, values[name]) for name, f in fields.items() if f is not None}
            self._write(obj, table, index, row, changes)

    # ---- mutation helpers ----
    def _object(self, sobject: str) -> ObjectDef:
        obj = self._catalog.get(sobject) if isinstance(sobject, str) else None
        if obj is None or not obj.queryable:
            raise ApiError(400, "INVALID_TYPE", f"sObject type '{sobject}' is not supported.")
        return obj

    def _table(self, obj: ObjectDef) -> TableData:
        table = self._store.tables.get(obj.name)
        if table is None:
            table = self._store.tables[obj.name] = TableData([], 1)
        table.flush(obj)
        return table

    def _find(
        self, obj: ObjectDef, record_id: str, allow_deleted: bool = False
    ) -> tuple[TableData, int, int, dict[str, Any]]:
        table = self._table(obj)
        found = table.locate("Id", _full_id(record_id))
        if found is None:
            raise not_found()
        index, row = found
        current = self._row_dict(obj, table.chunks[index], row)
        if current.get("IsDeleted") and not allow_deleted:
            raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted")
        return table, index, row, current

    def _write(self, obj: ObjectDef, table: TableData, index: int, row: int, values: dict[str, Any]) -> None:
        chunk = table.chunks[index]
        changes = {}
        for name, value in values.items():
            f = obj.fields[name]
            array = chunk.columns.get(name, pa.nulls(chunk.length))
            changes[name] = set_value(array, row, f, value)
        table.replace_chunk(index, chunk.with_columns(changes))

    def _insert(self, sobject: str, values: dict[str, Any], stamp: datetime) -> str:
        with self._lock:
            obj = self._object(sobject)
            clean = self._validate(obj, values, creating=True)
            table = self._store.tables.setdefault(obj.name, TableData([], 1))
            record: dict[str, Any] = {f.name: False for f in obj.stored_fields() if f.type == "boolean"}
            record.update(clean)
            record_id = make_id(obj.key_prefix or key_prefix_for(obj.name), table.next_counter)
            for f in obj.fields.values():
                if f.auto_number and f.name not in clean:
                    record[f.name] = (
                        f"{table.next_counter:08d}"
                        if f.name != "Name"
                        else f"{obj.label[:3].upper()}-{table.next_counter:06d}"
                    )
            table.next_counter += 1
            record["Id"] = record_id
            admin = self.admin_user_id
            for name in ("CreatedDate", "LastModifiedDate", "SystemModstamp"):
                if name in obj.fields:
                    record[name] = stamp
            for name in ("CreatedById", "LastModifiedById"):
                if name in obj.fields and name not in clean:
                    record[name] = admin
            if "OwnerId" in obj.fields and "OwnerId" not in clean:
                record["OwnerId"] = admin
            if "IsDeleted" in obj.fields:
                record["IsDeleted"] = False
            _derive_person_name(obj, record)
            missing = [
                f.name
                for f in obj.fields.values()
                if not f.nillable
                and f.createable
                and not f.defaulted_on_create
                and not f.compound
                and record.get(f.name) is None
            ]
            if missing:
                raise ApiError(
                    400,
                    "REQUIRED_FIELD_MISSING",
                    f"Required fields are missing: [{', '.join(missing)}]",
                    missing,
                )
            table.pending.append(record)
            return record_id

    def _modify(self, sobject: str, record_id: str, values: dict[str, Any], stamp: datetime) -> None:
        with self._lock:
            obj = self._object(sobject)
            clean = self._validate(obj, values, creating=False)
            table, index, row, current = self._find(obj, record_id)
            created = current.get("CreatedDate")
            if created is not None and stamp < created:
                raise ApiError(
                    400,
                    "INVALID_OPERATION",
                    f"the change would be stamped {stamp.isoformat()}, before the record's CreatedDate "
                    f"{created.isoformat()}",
                )
            changes = dict(clean)
            for name in ("LastModifiedDate", "SystemModstamp"):
                if name in obj.fields:
                    changes[name] = stamp
            if "LastModifiedById" in obj.fields and "LastModifiedById" not in clean:
                changes["LastModifiedById"] = self.admin_user_id
            merged = {**current, **changes}
            if _derive_person_name(obj, merged):
                changes["Name"] = merged["Name"]
            self._write(obj, table, index, row, changes)

    def _validate(self, obj: ObjectDef, values: dict[str, Any], creating: bool) -> dict[str, Any]:
        if not isinstance(values, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "values must be an object of field names to values")
        clean: dict[str, Any] = {}
        for name, value in values.items():
            f = obj.field(str(name))
            if f is None:
                raise ApiError(
                    400,
                    "INVALID_FIELD",
                    f"No such column '{name}' on sobject of type {obj.name}",
                    [str(name)],
                )
            if f.name in _PROTECTED or f.compound:
                raise ApiError(
                    400,
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {f.name}. Please check the security settings of this "
                    "field and verify that it is read/write for your profile or permission set.",
                    [f.name],
                )
            clean[f.name] = coerce(f, value)
        return clean

    # ------------------------------------------------------------------------------------------
    # schema changes
    # ------------------------------------------------------------------------------------------
    def add_field(self, sobject: str, name: str, type: str, **attributes: Any) -> None:
        """Add a field (existing rows read NULL, false for booleans); shows in describe and SOQL at once."""
        with self._lock:
            obj = self._object(sobject)
            definition = _field_from_request(name, type, attributes)
            try:
                obj.add_field(definition)
            except ModelError as error:
                raise ApiError(400, "DUPLICATE_DEVELOPER_NAME", str(error)) from None
            self._catalog.changed(obj.name)
            if definition.type == "boolean":
                table = self._table(obj)
                table.chunks = [
                    chunk.with_columns({definition.name: pa.array(np.zeros(chunk.length, dtype=bool))})
                    for chunk in table.chunks
                ]

    def remove_field(self, sobject: str, name: str) -> None:
        with self._lock:
            obj = self._object(sobject)
            f = obj.field(name)
            if f is None:
                raise ApiError(
                    400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {obj.name}", [name]
                )
            if f.name == "Id":
                raise ApiError(400, "INVALID_OPERATION", "the Id field cannot be removed")
            table = self._table(obj)
            obj.remove_field(f.name)
            self._catalog.changed(obj.name)
            table.chunks = [
                Chunk(chunk.length, {k: v for k, v in chunk.columns.items() if k != f.name})
                for chunk in table.chunks
            ]

    def add_object(self, name: str, fields: dict[str, Any], count: int = 0) -> None:
        """Add an object with `fields` ({name: "type" or "type(args) attrs"}) and `count` records."""
        with self._lock:
            try:
                validate_name(name, "object")
            except ModelError as error:
                raise ApiError(400, "INVALID_TYPE", str(error)) from None
            if self._catalog.get(name) is not None:
                raise ApiError(400, "DUPLICATE_DEVELOPER_NAME", f"an object named {name} already exists")
            used = {o.key_prefix for o in self._catalog}
            prefix = key_prefix_for(name)
            salt = 0
            while prefix in used:
                salt += 1
                prefix = key_prefix_for(f"{name}#{salt}")
            obj = ObjectDef(name, prefix, base_count=0)
            system = {
                "Id": "id",
                "IsDeleted": "boolean",
                "Name": "string(80) name",
                "CreatedDate": "datetime",
                "CreatedById": "reference",
                "LastModifiedDate": "datetime",
                "LastModifiedById": "reference",
                "SystemModstamp": "datetime",
            }
            for field_name, spec in {**system, **fields}.items():
                definition = _field_from_request(field_name, spec, {}, owner=name)
                obj.fields[definition.name] = definition
            obj._reindex()
            self._catalog.add(obj)
            self._counts[obj.name] = int(count)
            generated = generate_object(obj, self._catalog, self._counts, self.config.seed, self.config.epoch)
            chunks = [Chunk(n, c) for n, c in zip(generated.lengths, generated.chunks, strict=True)]
            self._store.tables[obj.name] = TableData(chunks, generated.count + 1)

    def remove_object(self, name: str) -> None:
        with self._lock:
            obj = self._catalog.get(name)
            if obj is None:
                raise not_found()
            self._catalog.remove(obj.name)
            self._store.tables.pop(obj.name, None)
            self._counts.pop(obj.name, None)

    def reset(self) -> None:
        """Back to the freshly generated org (objects, fields and records; the clock is left alone)."""
        with self._lock:
            self._catalog = self._build_catalog()
            self._counts = record_counts(self._catalog, self.config.scale, self.config.counts)
            tables = {}
            for name, (chunks, next_counter) in self._pristine.items():
                tables[name] = TableData(list(chunks), next_counter)
            self._store.tables = tables


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def _full_id(record_id: str) -> str:
    if isinstance(record_id, str) and len(record_id) == 15:
        return record_id + id_suffix(record_id)
    return record_id


def _chunk_values(obj: ObjectDef, chunk: Chunk, f: FieldDef) -> list[Any]:
    if f.compound:
        parts = obj.compound_parts(f)
        columns = [(key, _chunk_values(obj, chunk, component)) for key, component in parts]
        out: list[Any] = []
        for index in range(chunk.length):
            item = {key: values[index] for key, values in columns}
            out.append(item if any(v is not None for v in item.values()) else None)
        return out
    array = chunk.columns.get(f.name)
    return python_values(f, array if array is not None else pa.nulls(chunk.length))


def _derive_person_name(obj: ObjectDef, record: dict[str, Any]) -> bool:
    if obj.name not in _PERSON_OBJECTS or "Name" not in obj.fields or "LastName" not in obj.fields:
        return False
    parts = [record.get("FirstName"), record.get("LastName")]
    name = " ".join(p for p in parts if p)
    if not name or record.get("Name") == name:
        return False
    record["Name"] = name
    return True


def _field_from_request(name: str, spec: Any, attributes: dict[str, Any], owner: str = "") -> FieldDef:
    try:
        validate_name(name, "field")
        if isinstance(spec, str) and spec.split("(")[0].split()[0] in FIELD_TYPES and not attributes:
            definition = parse_field_spec(name, spec, owner)
        else:
            kwargs = dict(attributes)
            if "picklist" not in kwargs and "values" in kwargs:
                kwargs["picklist"] = kwargs.pop("values")
            if "picklist" in kwargs:
                kwargs["picklist"] = tuple(str(v) for v in kwargs["picklist"])
            if "reference_to" in kwargs:
                targets = kwargs["reference_to"]
                kwargs["reference_to"] = (targets,) if isinstance(targets, str) else tuple(targets)
            definition = FieldDef(name, str(spec), custom=name.endswith("__c"), **kwargs)
    except (ModelError, TypeError) as error:
        raise ApiError(400, "INVALID_FIELD", f"cannot define field {name}: {error}") from None
    if (definition.type in ("id",) and name != "Id") or definition.type in COMPOUND_TYPES:
        raise ApiError(400, "INVALID_FIELD", f"fields of type {definition.type} cannot be added")
    return definition


def coerce(f: FieldDef, value: Any) -> Any:
    """A caller's value for field `f` in its stored Python form, or ApiError."""
    if value is None:
        return None

    def bad() -> ApiError:
        return ApiError(
            400,
            "INVALID_TYPE_ON_FIELD_IN_RECORD",
            f"{f.name}: value not of required type: {value!r}",
            [f.name],
        )

    t = f.type
    try:
        if t == "boolean":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise bad()
        if t in ("int", "long"):
            if isinstance(value, bool):
                raise bad()
            number = Decimal(str(value))
            if number != number.to_integral_value():
                raise bad()
            result = int(number)
            if t == "int" and not -(2**31) <= result < 2**31:
                raise ApiError(
                    400, "NUMBER_OUTSIDE_VALID_RANGE", f"{f.name}: value outside of valid range", [f.name]
                )
            return result
        if t in ("double", "currency", "percent"):
            if isinstance(value, bool):
                raise bad()
            number = Decimal(str(value)) if not isinstance(value, Decimal) else value
            if not number.is_finite():
                raise bad()
            with localcontext() as context:
                context.prec = 80
                quantized = number.quantize(Decimal(1).scaleb(-f.scale), rounding=ROUND_HALF_UP)
            if quantized and quantized.adjusted() + 1 > max(f.precision - f.scale, 1):
                raise ApiError(
                    400, "NUMBER_OUTSIDE_VALID_RANGE", f"{f.name}: value outside of valid range", [f.name]
                )
            return quantized
        if t == "date":
            if isinstance(value, datetime):
                return value.date()
            if isinstance(value, date):
                return value
            return date.fromisoformat(str(value))
        if t == "datetime":
            return parse_instant(value)
        if t == "time":
            if isinstance(value, time):
                return value.replace(microsecond=value.microsecond // 1000 * 1000, tzinfo=None)
            text = str(value).rstrip("Z")
            parsed = time.fromisoformat(text)
            return parsed.replace(microsecond=parsed.microsecond // 1000 * 1000)
        if t in ("id", "reference"):
            if not isinstance(value, str) or len(value) not in (15, 18) or not value.isalnum():
                raise ApiError(
                    400, "MALFORMED_ID", f"{f.name}: id value of incorrect type: {value}", [f.name]
                )
            return _full_id(value)
        if t == "multipicklist" and isinstance(value, (list, tuple)):
            value = ";".join(str(v) for v in value)
        if not isinstance(value, str):
            if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
                value = str(value)
            else:
                raise bad()
        if f.length and len(value) > f.length and t not in ("base64", "anyType", "junctionidlist"):
            raise ApiError(
                400,
                "STRING_TOO_LONG",
                f"{f.name}: data value too large: {value[:40]} (max length={f.length})",
                [f.name],
            )
        return value
    except (ValueError, InvalidOperation, TypeError):
        raise bad() from None


__all__ = ["Org", "OrgConfig", "QueryResult", "coerce"]
