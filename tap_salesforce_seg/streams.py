"""The tap's singer-sdk Stream: one Salesforce object, its selection, bookmarks and state.

```python
SalesforceStream(tap, name="accounts", schema=..., sobject="Account",
                 fields={"id": FieldInfo("Id", "id"), ...}, replication_key="system_modstamp",
                 selected_by_default=True)
```

At sync start the stream describes its object again (the org changes between runs):
- a selected field that no longer exists is dropped with a warning (also when it vanishes mid-run:
  INVALID_FIELD -> describe again, drop, go on);
- fields new since the catalog was made are listed in one line and synced only once selected;
- a selected field whose type changed is read with its new type and declared so in the SCHEMA, with a
  warning (the target widens its column);
- an incremental run names its selected formula fields (describe's `calculated`) in one line: Salesforce
  recalculates them without moving SystemModstamp, so their stored values can lag until a full re-sync.

What is queried: the selected fields, plus Id and the replication field always (the join key and
the bookmark). What is emitted: the selected properties (`id` is always selected, its inclusion is
`automatic`), and the replication key property even when deselected (see full re-sync).

Modes:
- incremental: `replication_key` selected. Window `[bookmark - lookback_seconds, sync start)`; the
  first run of a stream (no bookmark) reads its whole history from `start_date` (if set).
- full re-sync: the replication key property deselected (Segment's switch). The whole history is read
  (from `start_date`); the bookmark is still advanced to the highest SystemModstamp seen, so selecting
  the property again makes the next run incremental. The property is still emitted: deselecting it is
  the switch, not a wish to lose the column, and a run without it would leave the column NULL in every
  row it wrote (an upsert writes the record's latest state), where later incremental runs, reading
  only what changes, would never fill it again.
  The catalog's `replication-method: FULL_TABLE` (Meltano's `metadata:` extra) asks for the same.
- full: an object without SystemModstamp/LastModifiedDate/CreatedDate.

State (singer-sdk's state dict: `bookmarks.<stream>.replication_key[_value]`): REST records arrive
sorted by (replication field, Id), so after any record every earlier one has been written; the bookmark
is that record's value (Bulk records come in no order and carry no stamp: the bookmark moves when the
job is read whole, to its highest value), emitted every `state_every_records` records, at the stream's
end, and before the tap stops on an error (QuotaExceeded and any other): a crash or a stop resumes
from the last STATE with `>=`, reading the boundary records again (the target's upsert absorbs them).
The window ends at the moment the stream started by Salesforce's clock (`client.server_time()`), so a
bookmark never passes it; `lookback_seconds` re-reads a margin so late commits (long transactions
whose SystemModstamp is older than changes already visible) are never lost. Bookmarks only move forward.
A stream read to its window's end also records that end (`read_until`); a later run that starts more
than the Recycle Bin's 15 days after it warns that soft deletes purged meanwhile were never seen.

Column names stay with their fields: discovery decides names afresh, and a custom field added later
can win a name another field has filled for months (`Total_Seats__c` beside `TotalSeats__c`: both
conform to `total_seats_c`, and the field spelled like it wins). The state records, per stream, the
emitted properties whose field could so lose its name (`field_names`: property -> field); when the
catalog gives such a property to another field, the two swap names for the run, with a warning, so a
column never starts holding another field's values. Custom objects' stream names can be contested
alike (`Sales_Invoice__c` beside `SalesInvoice__c`): the state records the object behind such a
name (`salesforce_object`), and the tap stops before syncing when the catalog gives such a name to another
object while the recorded one is still in the org (tap.py): a human chooses which object keeps the
table.

Output: records are already typed by values.py and hold only selected properties, so singer-sdk's
per-record conformance and property popping are skipped (`TYPE_CONFORMANCE_LEVEL = NONE`) and RECORD
lines are encoded straight into a buffer with msgspec (Decimals as JSON numbers with all digits);
stream maps or flattening, when configured, go through singer-sdk's own path instead. Progress goes
to stderr (progress.py): records so far, rate, and percentage and time left when the total is known;
a live line on a terminal, a summary line every 30 s otherwise.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import io
import logging
import os
import stat
import sys
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import msgspec
from singer_sdk import Stream

try:
    import fcntl
except ImportError:  # not on Windows: the pipe keeps its size
    fcntl = None  # type: ignore[assignment]
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.singerlib import SchemaMessage
from singer_sdk.singerlib.catalog import Metadata, MetadataMapping, StreamMetadata

from tap_salesforce_seg.errors import OutputClosed, SalesforceApiError, TapError
from tap_salesforce_seg.extract import Extraction, QueryPlan, choose_extractor
from tap_salesforce_seg.naming import can_lose_name
from tap_salesforce_seg.output import whole_write, write_all
from tap_salesforce_seg.progress import StreamProgress
from tap_salesforce_seg.schema import FieldInfo, field_schema
from tap_salesforce_seg.soql import ID_FIELD, QueryField, check_identifier, truncate_to_millisecond
from tap_salesforce_seg.values import format_datetime, parse_datetime, record_dict

if TYPE_CHECKING:
    from singer_sdk import Tap

    from tap_salesforce_seg.client import SalesforceClient
    from tap_salesforce_seg.config import TapConfig

MODE_INCREMENTAL = "incremental"
MODE_FULL_RESYNC = "full re-sync"
MODE_FULL = "full"
# The hot loop asks the progress display whether a line is due every this many records (+1).
PROGRESS_TICK_MASK = 255
# The formula-field notice names this many columns, then counts the rest.
FORMULAS_NAMED = 8
# How long Salesforce keeps deleted records in the Recycle Bin, where queryAll still shows them.
RECYCLE_BIN_DAYS = 15
# The stream's state key for the end of its last window read whole (Salesforce's clock).
READ_UNTIL_KEY = "read_until"
# The stream's state key for the properties whose field could lose its name (property -> field).
FIELD_NAMES_KEY = "field_names"
# The stream's state key for the custom object behind a stream name that an object added later could win.
OBJECT_STATE_KEY = "salesforce_object"
# What a stream's state holds when singer-sdk and this tap wrote it (other keys come from elsewhere).
SDK_STATE_KEYS = frozenset(
    {
        "replication_key",
        "replication_key_value",
        "starting_replication_value",
        "replication_key_signpost",
        "progress_markers",
        "partitions",
        "context",
        READ_UNTIL_KEY,
        FIELD_NAMES_KEY,
        OBJECT_STATE_KEY,
    }
)
_OUTPUT_BUFFER_BYTES = 1 << 20


@dataclasses.dataclass(slots=True)
class SalesforceStreamMetadata(StreamMetadata):
    """Stream metadata plus the Salesforce object behind the stream (`salesforce-object`)."""

    salesforce_object: str | None = None


@dataclasses.dataclass(slots=True)
class SalesforcePropertyMetadata(Metadata):
    """Property metadata plus the Salesforce field behind it (`salesforce-field`, `-type`), and
    `salesforce-calculated: true` on a formula field (absent on the others)."""

    salesforce_field: str | None = None
    salesforce_type: str | None = None
    salesforce_calculated: bool | None = None


@dataclasses.dataclass(frozen=True)
class SyncPlan:
    """What one run of a stream reads and emits; built at sync start from a fresh describe."""

    mode: str
    query: QueryPlan
    emitted: tuple[str, ...]  # the catalog's names of the properties the records carry
    bookmark: str | None  # the state's value at start (output datetime spelling)
    # The JSON schemas of the properties whose field changed type in Salesforce since the catalog was
    # made: the SCHEMA declares them as their values are read (the target widens its column).
    retyped: Mapping[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # Catalog property -> the name it is emitted under, where the two differ (names kept by the state).
    renamed: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def output_name(self, prop: str) -> str:
        return self.renamed.get(prop, prop)


class SalesforceStream(Stream):
    """One Salesforce object as a Singer stream (see the module docstring)."""

    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    def __init__(
        self,
        tap: Tap,
        *,
        name: str,
        schema: dict,
        sobject: str,
        fields: Mapping[str, FieldInfo],
        replication_key: str | None,
        selected_by_default: bool = True,
    ) -> None:
        self.sobject = check_identifier(sobject)
        self.fields: dict[str, FieldInfo] = dict(fields)
        for info in self.fields.values():
            check_identifier(info.salesforce_name)
        ids = [prop for prop, info in self.fields.items() if info.salesforce_name == ID_FIELD]
        if not ids:
            raise TapError(f"stream {name}: the catalog has no property for {sobject}.Id")
        self.id_property = ids[0]
        if replication_key is not None and replication_key not in self.fields:
            raise TapError(f"stream {name}: replication key {replication_key} is not a property")
        self.selected_by_default = selected_by_default
        super().__init__(tap, schema=schema, name=name)
        self.primary_keys = [self.id_property]
        self.replication_key = replication_key
        self.sync_plan: SyncPlan | None = None
        self._client: SalesforceClient | None = None

    # --- catalog metadata ------------------------------------------------------------------------

    @property
    def metadata(self) -> MetadataMapping:
        """singer-sdk's metadata (or the input catalog's) with the Salesforce names added.

        The replication key stays `available` (never `automatic`) so it can be deselected.
        """
        if self._metadata is not None:
            return self._metadata
        mapping = super().metadata
        root = mapping.root
        mapping[()] = SalesforceStreamMetadata(
            **{f.name: getattr(root, f.name) for f in dataclasses.fields(StreamMetadata)},
            salesforce_object=self.sobject,
        )
        for prop, info in self.fields.items():
            breadcrumb = ("properties", prop)
            entry = mapping.get(breadcrumb) or Metadata(inclusion=Metadata.InclusionType.AVAILABLE)
            values = {f.name: getattr(entry, f.name) for f in dataclasses.fields(Metadata)}
            if prop == self.id_property:
                values["inclusion"] = Metadata.InclusionType.AUTOMATIC
            elif prop == self.replication_key:
                values["inclusion"] = Metadata.InclusionType.AVAILABLE
                if values["selected_by_default"] is None:
                    values["selected_by_default"] = True
            elif values["selected_by_default"] is None:
                values["selected_by_default"] = info.selected_by_default
            mapping[breadcrumb] = SalesforcePropertyMetadata(
                **values,
                salesforce_field=info.salesforce_name,
                salesforce_type=info.type,
                salesforce_calculated=True if info.calculated else None,
            )
        self._metadata = mapping
        self._mask = None
        return mapping

    def log(self, message: str, *args: Any, level: int = logging.INFO, **kwargs: Any) -> None:
        """singer-sdk logs `An unhandled error occurred while syncing` at ERROR before every error a
        stream raises; the tap's own errors are handled (the CLI prints them as one line and exits with
        their status), so for them say only which stream stopped."""
        if message.startswith("An unhandled error occurred") and isinstance(sys.exc_info()[1], TapError):
            message, level = "%s: the sync stops here (the error follows)", logging.INFO
        super().log(message, *args, level=level, **kwargs)

    def is_property_selected(self, prop: str) -> bool:
        return bool(self.mask[("properties", prop)])

    # --- collaborators -----------------------------------------------------------------------------

    @property
    def tap_config(self) -> TapConfig:
        config = getattr(self._tap, "tap_config", None)
        if config is None:
            from tap_salesforce_seg.config import TapConfig

            config = TapConfig.from_mapping(self.config)
        return config

    @property
    def client(self) -> SalesforceClient:
        shared = getattr(self._tap, "client", None)
        if shared is not None:
            return shared
        if self._client is None:
            from tap_salesforce_seg.client import SalesforceClient

            self._client = SalesforceClient(self.tap_config, self.logger)
        return self._client

    @property
    def is_sorted(self) -> bool:
        return True  # (replication field, Id) order: resumable mid-stream

    def get_replication_key_signpost(self, context: Any = None) -> None:
        """No singer-sdk signpost: the query window already ends at the sync's start."""
        return None

    # --- planning (at sync start) --------------------------------------------------------------------

    def prepare_sync(self) -> SyncPlan:
        """Describe the object again, reconcile the catalog with it, and fix this run's window."""
        self._record_object()
        describe = self._describe()
        live = {field["name"]: field for field in describe.get("fields", [])}
        live_columns = {name: f for name, f in live.items() if field_schema(f) is not None}
        self._report_new_fields(live_columns)

        selected = [prop for prop in self.fields if self.is_property_selected(prop)]
        vanished = [prop for prop in selected if self.fields[prop].salesforce_name not in live_columns]
        if vanished:
            self.logger.warning(
                "%s: selected field(s) no longer in Salesforce, dropped from the sync: %s",
                self.name,
                ", ".join(f"{self.fields[p].salesforce_name} ({p})" for p in vanished),
            )
        if self.fields[self.id_property].salesforce_name not in live_columns:
            raise TapError(f"{self.name}: {self.sobject} has no Id field any more")

        rk = self.replication_key
        rk_field = self.fields[rk].salesforce_name if rk else None
        if rk and rk_field not in live_columns:
            self.logger.warning(
                "%s: the replication field %s no longer exists; syncing in full.", self.name, rk_field
            )
            rk = rk_field = None
        if rk is None:
            mode = MODE_FULL
        elif self.is_property_selected(rk) and not self._full_table_asked():
            mode = MODE_INCREMENTAL
        else:
            mode = MODE_FULL_RESYNC

        emitted = [p for p in selected if p not in vanished]
        if mode == MODE_FULL_RESYNC and rk not in emitted:
            emitted.append(cast(str, rk))  # the switch, not a deselection (see the module docstring)
        if self.id_property not in emitted:
            emitted.insert(0, self.id_property)
        queried = list(emitted)
        if rk and rk not in queried:
            queried.append(rk)
        query_fields = tuple(
            QueryField(self.fields[p].salesforce_name, p, self._live_type(p, live_columns)) for p in queried
        )
        retyped = self._retyped(query_fields, live_columns)
        renamed = self._kept_names(live_columns)
        self._record_names(emitted, renamed)
        query_fields = tuple(
            f._replace(property_name=renamed.get(f.property_name, f.property_name)) for f in query_fields
        )

        window_end = truncate_to_millisecond(self.client.server_time()) if rk_field else None
        bookmark = self._bookmark() if rk else None
        window_start = self._window_start(mode, bookmark)
        if mode == MODE_INCREMENTAL and bookmark and window_end and parse_datetime(bookmark) > window_end:
            self._warn_bookmark_ahead(bookmark, window_end)
        if window_end and "IsDeleted" in live_columns:
            self._warn_purged_deletes(window_end)
        hidden = frozenset(renamed.get(p, p) for p in queried if p not in emitted)
        self.sync_plan = SyncPlan(
            mode=mode,
            query=QueryPlan(self.sobject, query_fields, rk_field, window_start, window_end, hidden=hidden),
            emitted=tuple(emitted),
            bookmark=bookmark,
            retyped=retyped,
            renamed=renamed,
        )
        self._log_plan(self.sync_plan)
        if mode == MODE_INCREMENTAL and bookmark is not None:  # a first run reads every record anyway
            self._report_formula_fields(emitted, live_columns)
        return self.sync_plan

    def _record_object(self) -> None:
        """Record the custom object behind a stream name that an object added later could win (the
        tap stops before syncing when that happens: tap.py). Reaching here with another object recorded
        means that object left the org: renamed in Salesforce, most likely, so the bookmark goes on."""
        state = self.stream_state
        recorded = state.get(OBJECT_STATE_KEY)
        if recorded is not None and recorded != self.sobject:
            self.logger.warning(
                "%s: the state was written for the object %s, which is no longer in the org; %s goes on "
                "from its bookmark (the object renamed in Salesforce). If %s is another object, sync it "
                "in full: jq 'del(.bookmarks.%s)'.",
                self.name,
                recorded,
                self.sobject,
                self.sobject,
                self.name,
            )
        if can_lose_name(self.sobject, self.name):
            state[OBJECT_STATE_KEY] = self.sobject
        else:
            state.pop(OBJECT_STATE_KEY, None)

    def _kept_names(self, live_columns: Mapping[str, dict]) -> dict[str, str]:
        """Catalog property -> the name its field keeps (module docstring: column names stay with their
        fields). A name moves back only from a field that took it at a later discovery, while its owner
        is still in the org and in the catalog; a catalog edited by hand keeps its names."""
        catalog = {info.salesforce_name: prop for prop, info in self.fields.items()}
        names = dict(catalog)  # field -> the name it is emitted under
        for prop, owner in self._recorded_names().items():
            current = names.get(owner)
            if current is None or current == prop or owner not in live_columns:
                continue  # the owner is gone (deleted, or renamed in Salesforce): its name is free
            holder = next((field for field, name in names.items() if name == prop), None)
            if holder is None:
                continue
            names[owner], names[holder] = prop, current
            self.logger.warning(
                "%s: column '%s' keeps field %s, which filled it first; the catalog gives that name to %s "
                "(both conform to it: discovery gives a contested name to the field spelled like it), "
                "which goes to column '%s' instead (README: Collisions).",
                self.name,
                prop,
                owner,
                holder,
                current,
            )
        return {catalog[field]: name for field, name in names.items() if catalog[field] != name}

    def _recorded_names(self) -> dict[str, str]:
        recorded = self.stream_state.get(FIELD_NAMES_KEY)
        if recorded is None:
            return {}
        if not isinstance(recorded, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in recorded.items()
        ):
            self.logger.warning(
                "%s: the state's %s is not an object of property names to field names; ignoring it.",
                self.name,
                FIELD_NAMES_KEY,
            )
            return {}
        return recorded

    def _record_names(self, emitted: Iterable[str], renamed: Mapping[str, str]) -> None:
        """Record the emitted names that a field added later could take (read back by `_kept_names`)."""
        names = {renamed.get(prop, prop): self.fields[prop].salesforce_name for prop in emitted}
        current = {name: field for name, field in names.items() if can_lose_name(field, name)}
        # An entry of a field emitted now under another name, or of a name another field fills now, is
        # over; the others stay (a field deselected for a while keeps its name for when it comes back).
        recorded = {
            p: f for p, f in self._recorded_names().items() if p not in names and f not in names.values()
        }
        recorded.update(current)
        if recorded:
            self.stream_state[FIELD_NAMES_KEY] = dict(sorted(recorded.items()))
        else:
            self.stream_state.pop(FIELD_NAMES_KEY, None)

    def _describe(self) -> dict[str, Any]:
        try:
            return self.client.get_json(f"/sobjects/{self.sobject}/describe")
        except SalesforceApiError as error:
            if error.status == 404:
                raise TapError(
                    f"{self.name}: the object {self.sobject} no longer exists in Salesforce; "
                    "deselect the stream or run discovery again (Meltano: `meltano run --refresh-catalog`)"
                ) from error
            raise

    def _report_new_fields(self, live_columns: Mapping[str, dict]) -> None:
        known = {info.salesforce_name for info in self.fields.values()}
        new = sorted(name for name in live_columns if name not in known)
        if new:
            self.logger.info(
                "%s: %d field(s) new in Salesforce since the catalog was made, synced once selected "
                "(run discovery to add them; Meltano: `meltano run --refresh-catalog ...`): %s",
                self.name,
                len(new),
                ", ".join(new),
            )

    def _report_formula_fields(self, emitted: list[str], live_columns: Mapping[str, dict]) -> None:
        """An incremental run reads a record only when its SystemModstamp moved, and Salesforce can
        change a formula's value without moving it: say which columns can therefore lag, and the cure."""
        live = [live_columns[self.fields[prop].salesforce_name] for prop in emitted]
        formulas = [prop for prop, f in zip(emitted, live, strict=True) if f.get("calculated") is True]
        if not formulas:
            return
        shown = ", ".join(formulas[:FORMULAS_NAMED])
        if len(formulas) > FORMULAS_NAMED:
            shown += f" and {len(formulas) - FORMULAS_NAMED} more"
        self.logger.info(
            "%s: %d formula field(s) (%s) are read with their record's other changes only: Salesforce "
            "recalculates a formula (over TODAY() or another record's fields) without moving "
            "SystemModstamp, so a stored value can lag until the record changes; a full re-sync "
            "refreshes them (README: Formula fields).",
            self.name,
            len(formulas),
            shown,
        )

    def _live_type(self, prop: str, live_columns: Mapping[str, dict]) -> str:
        info = self.fields[prop]
        return str(live_columns[info.salesforce_name].get("type") or info.type)

    def _retyped(
        self, query_fields: Iterable[QueryField], live_columns: Mapping[str, dict]
    ) -> dict[str, dict[str, Any]]:
        """The JSON schemas of the queried fields whose type changed since the catalog was made (each
        reported once): they are read with the live type, and declared so."""
        retyped = {}
        for field in query_fields:
            info = self.fields[field.property_name]
            if field.type == info.type:
                continue
            self.logger.warning(
                "%s: %s changed type in Salesforce from %s to %s; its values are read and declared as %s "
                "(run discovery to update the catalog). Rows already loaded keep the values read as %s "
                "until their records change (a full re-sync reloads them: README, Full re-syncs).",
                self.name,
                info.salesforce_name,
                info.type,
                field.type,
                field.type,
                info.type,
            )
            retyped[field.property_name] = cast(dict, field_schema(live_columns[field.salesforce_name]))
        return retyped

    def _bookmark(self) -> str | None:
        state = self.stream_state
        value = state.get("replication_key_value")
        if not value:
            foreign = sorted(str(key) for key in state if key not in SDK_STATE_KEYS)
            if foreign:  # another tap's bookmark (singer-io's tap-salesforce keeps {"SystemModstamp": ...})
                self.logger.warning(
                    "%s: the state's bookmark has no replication_key_value (it holds %s), so the stream "
                    "syncs in full: it comes from another tap or was edited.",
                    self.name,
                    ", ".join(foreign),
                )
            return None
        if state.get("replication_key") not in (None, self.replication_key):
            self.logger.warning(
                "%s: the state's bookmark is for %s, not %s; ignoring it.",
                self.name,
                state.get("replication_key"),
                self.replication_key,
            )
            return None
        try:
            return format_datetime(parse_datetime(str(value)))
        except ValueError:
            raise TapError(f"{self.name}: the state's bookmark {value!r} is not a datetime") from None

    def _warn_bookmark_ahead(self, bookmark: str, now: datetime) -> None:
        """A bookmark never passes the window's end, Salesforce's clock when it was written; one ahead of
        the clock now came from elsewhere, and would hold the stream back, silently, until then."""
        self.logger.warning(
            "%s: the state's bookmark %s is later than Salesforce's clock (%s), so the stream reads no "
            "change until the clock passes it: the state comes from another org (a sandbox refreshed "
            "since?) or was edited. Remove the stream's bookmark from the state to sync it in full.",
            self.name,
            bookmark,
            format_datetime(now),
        )

    def _warn_purged_deletes(self, now: datetime) -> None:
        """Soft deletes show through queryAll while they sit in the Recycle Bin, 15 days; a stream last
        read whole longer ago than that may have missed some, and the rows they left say so nowhere."""
        read_until = self.stream_state.get(READ_UNTIL_KEY)
        try:
            last = parse_datetime(read_until) if isinstance(read_until, str) else None
        except ValueError:
            return
        if last is None or now - last <= timedelta(days=RECYCLE_BIN_DAYS):
            return
        self.logger.warning(
            "%s: its last complete read ended %s, %d days ago, and Salesforce keeps deleted records in "
            "the Recycle Bin %d days: records deleted since and purged are invisible to the API, so "
            "their rows stay with is_deleted false. A rebuild drops them (README: Deletes).",
            self.name,
            format_datetime(last),
            (now - last).days,
            RECYCLE_BIN_DAYS,
        )

    def _window_start(self, mode: str, bookmark: str | None) -> datetime | None:
        config = self.tap_config
        start = config.start_date
        if mode == MODE_INCREMENTAL and bookmark:
            resume = parse_datetime(bookmark) - timedelta(seconds=config.lookback_seconds)
            start = max(resume, start) if start else resume
        return start

    def _full_table_asked(self) -> bool:
        """The catalog asks for FULL_TABLE: singer's `forced-replication-method` or `replication_method`
        (singer-sdk reads both), or the `replication-method` metadata Meltano's `metadata:` extra sets."""
        asked = [self.forced_replication_method]
        raw = getattr(self._tap, "_raw_catalog", None) or {}
        for entry in raw.get("streams") or []:
            if (entry.get("tap_stream_id") or entry.get("stream")) != self.name:
                continue
            for item in entry.get("metadata") or []:
                if isinstance(item, dict) and item.get("breadcrumb") in ([], ()):
                    metadata = item.get("metadata") or {}
                    asked += [metadata.get("replication-method"), metadata.get("forced-replication-method")]
        return any(str(method or "").upper() == "FULL_TABLE" for method in asked)

    def _log_plan(self, plan: SyncPlan) -> None:
        query = plan.query
        # In full re-sync mode with the replication key selected, the catalog asked for FULL_TABLE.
        if plan.mode == MODE_FULL_RESYNC and self.is_property_selected(cast(str, self.replication_key)):
            self.logger.info(
                "%s: the catalog's replication-method is FULL_TABLE, so the stream syncs in full; the "
                "bookmark is kept for when it is INCREMENTAL again.",
                self.name,
            )
        elif plan.mode == MODE_FULL_RESYNC:
            # A warning: a field list without it (Meltano `select: [accounts.id, accounts.name]`) makes
            # every run read the whole object, at a cost in time and API calls no one may have meant.
            self.logger.warning(
                "%s: %s is not selected, so every run reads the whole object (Segment's full re-sync "
                "switch); select it for incremental runs. It is still written (the rows would lose it "
                "otherwise), and the bookmark is kept for when it is selected again.",
                self.name,
                self.replication_key,
            )
        self.logger.info(
            "%s: %s of %s, %d field(s), window %s .. %s",
            self.name,
            plan.mode if plan.mode.endswith("sync") else f"{plan.mode} sync",
            query.sobject,
            len(query.fields),
            query.window_start.isoformat() if query.window_start else "the beginning",
            query.window_end.isoformat() if query.window_end else "now",
        )

    def _refresh_fields(self, plan: QueryPlan, error: SalesforceApiError) -> QueryPlan | None:
        """INVALID_FIELD mid-run: describe again and drop the fields that vanished."""
        describe = self._describe()
        live = {field["name"] for field in describe.get("fields", [])}
        keys = {ID_FIELD, plan.replication_field}
        vanished = {f.salesforce_name for f in plan.fields if f.salesforce_name not in live}
        if not vanished or vanished & keys:
            return None
        self.logger.warning(
            "%s: field(s) vanished from Salesforce during the sync, dropped: %s (%s)",
            self.name,
            ", ".join(sorted(vanished)),
            error.api_message[:200],
        )
        return plan.without_fields(vanished)

    # --- messages ------------------------------------------------------------------------------------

    def _write_schema_message(self) -> None:
        """singer-sdk writes SCHEMA first in `sync()`; the schema depends on the fresh describe, so
        this is where the run is planned."""
        plan = self.prepare_sync()
        schema = dict(self.schema)
        properties = self.schema.get("properties", {})
        schema["properties"] = {
            plan.output_name(p): plan.retyped.get(p, properties[p]) for p in plan.emitted if p in properties
        }
        required = [plan.output_name(p) for p in self.schema.get("required", [])]
        schema["required"] = [p for p in required if p in schema["properties"]]
        self._tap.mapper.register_raw_stream_schema(self.name, schema, self.primary_keys)
        self._stream_maps = None
        super()._write_schema_message()

    def _generate_schema_messages(self) -> Iterator[SchemaMessage]:
        plan = self.sync_plan
        bookmark_keys = [self.replication_key] if plan and plan.mode == MODE_INCREMENTAL else None
        for message in super()._generate_schema_messages():
            message.bookmark_properties = bookmark_keys
            yield message

    # --- records ---------------------------------------------------------------------------------------

    def get_records(self, context: Any = None) -> Iterable[dict]:
        """Records of this run, converted and holding only the emitted properties."""
        plan = self.sync_plan or self.prepare_sync()
        for _, record in self._extraction(plan).records():
            yield record_dict(record)

    def _extraction(self, plan: SyncPlan) -> Extraction:
        config = self.tap_config
        extractor = choose_extractor(
            self.client,
            plan.query,
            api_type=config.api_type,
            bulk_min_records=config.bulk_min_records,
            bulk_job_timeout_seconds=config.bulk_job_timeout_seconds,
            logger=self.logger,
            stream=self.name,
        )
        return Extraction(
            self.client,
            plan.query,
            extractor,
            refresh=self._refresh_fields,
            logger=self.logger,
            stream=self.name,
        )

    def _sync_records(  # type: ignore[override]
        self, context: Any = None, *, write_messages: bool = True
    ) -> Iterator[dict]:
        """The hot loop: extract, write, checkpoint. Replaces singer-sdk's per-record machinery."""
        plan = self.sync_plan or self.prepare_sync()
        extraction = self._extraction(plan)
        writer = self._record_writer() if write_messages else None
        progress = StreamProgress(self.name, self.logger, extraction)
        checkpoint = _Checkpoint(self, plan)
        every = max(1, self.tap_config.state_every_records)
        limit = self.ABORT_AT_RECORD_COUNT
        count = 0
        next_state = every
        stamp = None
        gc_settings = _relax_gc()
        try:
            for item in extraction.records():
                if limit is not None:
                    self._check_max_record_limit(current_record_index=count)
                stamp = item[0]
                if writer is not None:
                    writer(item[1])
                else:
                    yield record_dict(item[1])
                count += 1
                if count >= next_state:
                    next_state += every
                    self._flush(writer)
                    checkpoint.advance(stamp, write=write_messages)
                    progress.tick(count)
                elif not count & PROGRESS_TICK_MASK:
                    progress.tick(count)
        except BaseException:
            # What was written so far is safe to bookmark (REST reads in order; Bulk records carry no
            # stamp, so a job stopped part-way leaves the bookmark where it was): stopping loses nothing.
            self._flush(writer)
            checkpoint.advance(stamp, write=write_messages)
            progress.finish(count, stopped=True)
            raise
        finally:
            self.sync_plan = None  # the next sync describes and plans afresh
            _restore_gc(gc_settings)
        self._flush(writer)
        completed = extraction.completed_stamp  # records read in no order (Bulk) came without stamps
        if completed is not None and (stamp is None or completed > stamp):
            stamp = completed
        checkpoint.advance(stamp, write=write_messages, read_until=plan.query.window_end)
        progress.finish(count)

    def _record_writer(self) -> Any:
        maps = self.stream_maps
        plain = (
            len(maps) == 1
            and type(maps[0]) is SameRecordTransform
            and not maps[0].flattening_enabled
            and maps[0].stream_alias == self.name
        )
        if plain:
            self._fast_writer = RecordWriter(self.name, self._stream_version)
            return self._fast_writer.write
        self._fast_writer = None
        return lambda record: self._write_record_message(dict(record_dict(record)))

    def _flush(self, writer: Any) -> None:
        fast = getattr(self, "_fast_writer", None)
        if writer is not None and fast is not None:
            fast.flush()


def _relax_gc() -> tuple[int, int, int]:
    """Make the cyclic garbage collector rare while records stream through.

    Each record allocates a dict and a hundred-odd values that die a moment later (reference counting
    frees them); they form no cycles, yet with the default thresholds they trigger a collection every
    few records, which costs ~15% of the loop. Objects alive at the start (catalog, schemas, the SDK's
    state) are frozen out of the scans; collections still happen, every 100,000 allocations.
    """
    settings = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)
    return settings


def _restore_gc(settings: tuple[int, int, int]) -> None:
    gc.set_threshold(*settings)
    gc.unfreeze()


class _Checkpoint:
    """Moves the stream's bookmark forward and emits STATE (never backwards, never past the window)."""

    def __init__(self, stream: SalesforceStream, plan: SyncPlan) -> None:
        self.stream = stream
        self.active = plan.query.replication_field is not None and stream.replication_key is not None
        self.value = plan.bookmark
        # A stamp at or past the window's end belongs to a record changed after the query began (the
        # extractors leave such rows out); it must never become the bookmark, which would skip the
        # window's records not yet read.
        window_end = plan.query.window_end
        self.limit = format_datetime(window_end) if window_end is not None else None

    def advance(self, stamp: str | None, *, write: bool, read_until: datetime | None = None) -> None:
        """`read_until`: the window's end, once every record of the window has been written."""
        if (
            self.active
            and stamp is not None
            and (self.value is None or stamp > self.value)
            and (self.limit is None or stamp < self.limit)
        ):
            self.value = stamp
        if self.active and self.value is not None:
            state = self.stream.stream_state
            state["replication_key"] = self.stream.replication_key
            state["replication_key_value"] = self.value
        if self.active and read_until is not None:
            self.stream.stream_state[READ_UNTIL_KEY] = format_datetime(read_until)
        if write:
            self.stream._tap.state_writer.write_state(self.stream.tap_state)


_encoder = msgspec.json.Encoder(decimal_format="number")


@functools.cache
def _widen_stdout_pipe() -> None:
    """When stdout is a pipe (`tap | target`), ask Linux for a pipe buffer as large as the writes.

    RECORD lines leave a megabyte at a time; through the default 64 KiB pipe each write waits for
    the reader 16 times and the reader gets 64 KiB per read (a tenth of the tap's output time, and
    more of the reader's, went to that). Best effort, once per run: other systems, a stdout that is
    not a pipe, and a refusal (above /proc/sys/fs/pipe-max-size) keep what they have.
    """
    setter = getattr(fcntl, "F_SETPIPE_SZ", None) if fcntl is not None else None
    if setter is None:
        return
    try:
        descriptor = sys.stdout.fileno()
        if stat.S_ISFIFO(os.fstat(descriptor).st_mode):
            fcntl.fcntl(descriptor, setter, _OUTPUT_BUFFER_BYTES)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass


class RecordWriter:
    """Writes RECORD messages for one stream straight to stdout's byte buffer.

    Each line is `{"type":"RECORD","stream":...,"record":{...},"time_extracted":...}` encoded by
    msgspec into one growing buffer, written out every megabyte and before every STATE message
    (`flush`), so STATE never overtakes the records it covers.
    """

    def __init__(self, stream_name: str, version: int | None = None) -> None:
        _widen_stdout_pipe()
        self._prefix = b'{"type":"RECORD","stream":' + _encoder.encode(stream_name) + b',"record":'
        self._version = b"" if version is None else b',"version":' + _encoder.encode(version)
        self._buffer = bytearray()
        self._refresh_suffix()

    def _refresh_suffix(self) -> None:
        extracted = format_datetime(datetime.now().astimezone())
        self._suffix = self._version + b',"time_extracted":"' + extracted.encode() + b'"}\n'

    def write(self, record: Any) -> None:
        buffer = self._buffer
        buffer += self._prefix
        _encoder.encode_into(record, buffer, -1)
        buffer += self._suffix
        if len(buffer) >= _OUTPUT_BUFFER_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        out = sys.stdout
        binary = getattr(out, "buffer", None)
        try:
            with whole_write():
                out.flush()
                if binary is not None:
                    write_all(binary, self._buffer)  # the tap's writer flushes stdout at each STATE
                else:
                    out.write(self._buffer.decode())
                    out.flush()
                self._buffer.clear()  # written: a stop that waited for the write must not write it again
        except OSError as error:  # the reader is gone (EPIPE), or a file's disk is full (ENOSPC)
            raise OutputClosed(error) from None
        self._refresh_suffix()
