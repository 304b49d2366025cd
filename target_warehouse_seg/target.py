"""target-warehouse-seg: upsert Singer streams into warehouse tables (DuckDB or PostgreSQL).

singer-sdk's ``Target`` provides the command line, ``--about``, configuration and the test suite; the
message path is the project's own (see reader.py, sink.py, loader.py): records are decoded by msgspec
into typed per-stream records, converted column-wise into COPY text or Arrow, and loaded by a second
thread, one transaction per flush. STATE goes to stdout only after everything read before it is
committed.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import os
import stat
import sys
import threading
import time
import typing as t
from dataclasses import dataclass

import click
import jsonschema
from singer_sdk import typing as th
from singer_sdk.helpers.capabilities import PluginCapabilities
from singer_sdk.plugin_base import SingerCommand
from singer_sdk.target_base import Target

from target_warehouse_seg import identifiers
from target_warehouse_seg.config_file import check_config_file
from target_warehouse_seg.convert import json_encoder
from target_warehouse_seg.engines import (
    DELETED_KEYS_TABLE,
    REJECTED_TABLE,
    Column,
    Engine,
    Rejected,
    RetryUnit,
    TableInfo,
    create_engine,
)
from target_warehouse_seg.engines.duckdb_path import checked_path
from target_warehouse_seg.errors import (
    ConfigError,
    ConnectionLost,
    InvalidRecord,
    RecordBeforeSchema,
    SchemaConflict,
    StdoutClosed,
    TargetError,
)
from target_warehouse_seg.loader import Loader, Unit
from target_warehouse_seg.plan import StreamPlan, plan_stream, schema_properties
from target_warehouse_seg.reader import (
    ActivateVersionMessage,
    BatchMessage,
    InvalidLine,
    MessageReader,
    RecordMessage,
    SchemaMessage,
    StateMessage,
    TypedBlocks,
)
from target_warehouse_seg.sink import StreamSink
from target_warehouse_seg.stopping import request_stop, reset_stop, wait_or_stop
from target_warehouse_seg.typemap import Kind

_NO_STATE = object()
# A write that failed for want of room or a device (stdout redirected to a file on a full disk).
_OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EPIPE})

SETTINGS = th.PropertiesList(
    th.Property(
        "engine",
        th.StringType,
        default="duckdb",
        allowed_values=["duckdb", "postgres"],
        description="Warehouse engine: `duckdb` (embedded, default) or `postgres`.",
    ),
    th.Property(
        "path",
        th.StringType,
        default="warehouse.duckdb",
        description="DuckDB database file (engine `duckdb`).",
    ),
    th.Property(
        "sqlalchemy_url",
        th.StringType,
        secret=True,
        description="PostgreSQL URL, e.g. postgresql://user:password@host:5432/db "
        "(postgresql+psycopg:// works too). Alternative to host/port/user/password/database.",
    ),
    th.Property("host", th.StringType, description="PostgreSQL host (when no sqlalchemy_url)."),
    th.Property("port", th.IntegerType, description="PostgreSQL port (default 5432)."),
    th.Property("user", th.StringType, description="PostgreSQL user."),
    th.Property("password", th.StringType, secret=True, description="PostgreSQL password."),
    th.Property("database", th.StringType, description="PostgreSQL database."),
    th.Property(
        "sslmode",
        th.StringType,
        allowed_values=["disable", "allow", "prefer", "require", "verify-ca", "verify-full"],
        description="PostgreSQL SSL mode.",
    ),
    th.Property(
        "schema",
        th.StringType,
        default="salesforce",
        description="Warehouse schema for this source instance (created when missing), e.g. `sfdc_prod`.",
    ),
    th.Property(
        "batch_size_rows",
        th.IntegerType,
        default=100_000,
        description="A batch commits when a stream has this many rows pending.",
    ),
    th.Property(
        "batch_max_seconds",
        th.NumberType,
        default=300,
        description="A batch commits when its first record is this many seconds old "
        "(checked as messages arrive).",
    ),
    th.Property(
        "hard_delete",
        th.BooleanType,
        default=False,
        description="Delete rows that arrive with `is_deleted = true` instead of upserting them.",
    ),
    th.Property(
        "on_invalid_record",
        th.StringType,
        default="fail",
        allowed_values=["fail", "quarantine"],
        description="`fail`: stop at the first invalid record, nothing of its batch written. "
        "`quarantine`: store it with its error in `_rejected_records` and go on.",
    ),
).to_dict()


# What users of other targets name a setting of this one (difflib finds no match for these).
_OTHER_TARGETS_NAMES = {"default_target_schema": "schema"}


_POSTGRES_FIELDS = ("host", "port", "user", "password", "database", "sslmode")


def ignored_connection_settings(config: t.Mapping[str, t.Any]) -> list[str]:
    """A warning for PostgreSQL settings that do not take part: those of a DuckDB run, and the fields
    beside a `sqlalchemy_url` (which alone names the connection)."""
    given = [name for name in ("sqlalchemy_url", *_POSTGRES_FIELDS) if config.get(name) not in (None, "")]
    if not given:
        return []
    if config.get("engine") == "duckdb":
        names = ", ".join(f"`{name}`" for name in given)
        return [f"Setting(s) {names} are ignored: `engine` is duckdb, which loads into `path`."]
    fields = [name for name in given if name != "sqlalchemy_url"]
    if config.get("sqlalchemy_url") and fields:
        names = ", ".join(f"`{name}`" for name in fields)
        return [f"Setting(s) {names} are ignored: `sqlalchemy_url` names the connection alone."]
    return []


def unknown_settings(config: t.Mapping[str, t.Any]) -> list[str]:
    """A warning for each setting this target does not have (a misspelled one would otherwise be ignored
    in silence: `shcema` loaded into the default schema), with the setting meant when one is close. No
    key is exempt: no tool adds keys of its own (Meltano passes the settings of the plugin's definition,
    singer-sdk's `--config ENV` reads only the settings `--about` lists), and singer-sdk's built-in
    settings (`stream_maps`, `load_method`, `add_record_metadata`...) do nothing in this target."""
    known = sorted(SETTINGS["properties"])
    warnings = []
    for key in sorted(set(config) - set(known)):
        close = difflib.get_close_matches(key, known, n=1)
        meant = close[0] if close else _OTHER_TARGETS_NAMES.get(key)
        hint = f" (did you mean '{meant}'?)" if meant else ""
        warnings.append(f"Unknown setting '{key}' is ignored{hint}.")
    return warnings


@dataclass(frozen=True)
class Settings:
    engine: str
    schema: str
    batch_size_rows: int
    batch_max_seconds: float
    hard_delete: bool
    quarantine: bool

    @classmethod
    def from_config(cls, config: t.Mapping[str, t.Any]) -> Settings:
        """Check the settings; raise ``ConfigError`` naming the first bad one, in one line."""
        validator = jsonschema.Draft7Validator(SETTINGS)
        for error in sorted(validator.iter_errors(dict(config)), key=lambda item: list(item.path)):
            name = ".".join(str(part) for part in error.path) or "config"
            if SETTINGS["properties"].get(name, {}).get("secret"):  # never echo a secret's value
                expected = error.validator_value
                if isinstance(expected, list):
                    expected = " or ".join(str(item) for item in expected if item != "null")
                raise ConfigError(f"setting `{name}` is invalid (expected {error.validator} {expected})")
            raise ConfigError(f"setting `{name}`: {error.message}")
        defaults = {name: spec.get("default") for name, spec in SETTINGS["properties"].items()}
        merged = {**defaults, **{name: value for name, value in config.items() if value is not None}}
        schema = merged["schema"]
        if not isinstance(schema, str) or not schema.strip():
            raise ConfigError("setting `schema` must be a non-empty name such as `salesforce`")
        if merged["batch_size_rows"] < 1:
            raise ConfigError(
                f"setting `batch_size_rows` must be at least 1, got {merged['batch_size_rows']}"
            )
        if merged["batch_max_seconds"] <= 0:
            raise ConfigError(
                f"setting `batch_max_seconds` must be positive, got {merged['batch_max_seconds']}"
            )
        if config.get("engine") is None and (merged.get("sqlalchemy_url") or merged.get("host")):
            # PostgreSQL settings without `engine` loaded into a DuckDB file in the working folder,
            # silently, where the user looked for rows in PostgreSQL.
            raise ConfigError(
                "setting `engine` is not set, so it is duckdb, but PostgreSQL settings are given "
                "(`sqlalchemy_url` or `host`): set engine to postgres (or remove them)"
            )
        if merged["engine"] == "postgres" and not (merged.get("sqlalchemy_url") or merged.get("host")):
            raise ConfigError(
                "engine `postgres` needs setting `sqlalchemy_url` or setting `host` "
                "(with `user`, `password`, `database`)"
            )
        if merged["engine"] == "duckdb" and not str(merged["path"]).strip():
            raise ConfigError("setting `path` must name a DuckDB file, e.g. warehouse.duckdb")
        if merged["engine"] == "duckdb":
            checked_path(str(merged["path"]))  # here, before any input is read (also when connecting)
        return cls(
            engine=merged["engine"],
            schema=identifiers.conform(schema),
            batch_size_rows=int(merged["batch_size_rows"]),
            batch_max_seconds=float(merged["batch_max_seconds"]),
            hard_delete=bool(merged["hard_delete"]),
            quarantine=merged["on_invalid_record"] == "quarantine",
        )


class TargetWarehouseSeg(Target):
    """Upserts Singer streams into warehouse tables (DuckDB or PostgreSQL), the way Segment does."""

    name = "target-warehouse-seg"
    package_name = "tap-salesforce-seg"
    capabilities: t.ClassVar[list] = [PluginCapabilities.ABOUT, PluginCapabilities.STRUCTURED_LOGGING]
    config_jsonschema: t.ClassVar[dict] = SETTINGS
    message_reader_class = MessageReader

    def __init__(
        self,
        *,
        config: t.Any = None,
        parse_env_config: bool = False,
        validate_config: bool = True,
        setup_mapper: bool = True,
        message_reader: MessageReader | None = None,
    ) -> None:
        super().__init__(
            config=config,
            parse_env_config=parse_env_config,
            validate_config=validate_config,
            setup_mapper=False,
            message_reader=message_reader,
        )
        self.settings = Settings.from_config(self.config)
        reset_stop()  # a stop requested of an earlier run in this process (tests) is not this one's
        self._sinks: dict[str, StreamSink] = {}
        self._signatures: dict[str, t.Any] = {}
        self._loader: Loader | None = None
        self._rows_committed: t.Callable[[], int] = lambda: 0  # the loader's count, also while it closes
        self._rejected: list[Rejected] = []
        self._state_received: t.Any = _NO_STATE
        self._state_submitted: t.Any = _NO_STATE
        self._unit_rows = 0
        self._unit_bytes = 0
        self._unit_started: float | None = None
        self._unit_limit = 16 * 1024 * 1024
        self._unit_streams: set[str] = set()  # the streams with records in the pending unit
        self._unit_columns = 0  # their tables' columns
        self._record_streams: set[str] = set()  # the streams with records in this run
        self._last_record_stream: str | None = None
        self._interleaved = False  # whether a stream's records resumed after another stream's
        self._stdout_lock = threading.Lock()
        reader = t.cast(MessageReader, self.message_reader)
        reader.on_invalid_line = self._quarantine_line if self.settings.quarantine else None
        reader.on_error = self._abort
        reader.on_records = self._process_record_messages
        reader.typed_blocks = self._typed_blocks
        reader.on_typed_records = self._process_record_messages
        reader.idle_timeout = self._time_left
        reader.on_idle = self._on_idle

    # Settings -----------------------------------------------------------------------------------

    @classmethod
    def append_builtin_config(cls, config_jsonschema: dict) -> None:
        """Only this target's own settings: no stream maps, flattening or per-record validation."""

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        # singer-sdk calls this once, as the target is made: once per run.
        for warning in [*unknown_settings(self.config), *ignored_connection_settings(self.config)]:
            self.logger.warning("%s", warning)
        if raise_errors:
            Settings.from_config(self.config)
        return []

    @classmethod
    def invoke(cls, *args: t.Any, **kwargs: t.Any) -> None:  # type: ignore[override]
        """Run the target; a known error ends the run with its one-line message and exit status 1."""
        try:
            super().invoke(*args, **kwargs)
        except TargetError as error:
            cls.logger.error("%s", error)
            sys.exit(1)
        except OSError as error:
            # `--about` printed to a file on a full disk (the run's own writes say so above, and its
            # spool files' errors are TargetErrors).
            if error.errno not in _OUTPUT_ERRNOS:
                raise
            cls.logger.error("stdout could not be written: %s", error.strerror or error)
            sys.exit(1)

    @classmethod
    def get_singer_command(cls) -> click.Command:
        """singer-sdk's command, whose ``--config`` files are checked first (one line for a bad one), and
        whose ``--input`` file is read as bytes, as stdin is (singer-sdk opens it as UTF-8 text: bytes
        that are not UTF-8 then ended the run in a traceback instead of a line naming the input line,
        and every line went through Python's text decoding)."""
        command = super().get_singer_command()
        for param in command.params:
            if param.name == "config" and param.callback is not None:
                param.callback = _config_files_checked_first(param.callback)
            if param.name == "file_input":
                param.type = click.File("rb")
        command.__class__ = _UsageErrorsExitOne  # a subclass adding no state: only what the errors exit with
        return command

    def _handle_termination(self, signum: int, frame: t.Any) -> None:
        """SIGTERM/SIGINT: stop reading. Units already handed over may still commit within the loader's
        grace period (and their STATE is written; see ``stopping``); records read since the last
        hand-over are not written, and no later STATE is. (The SDK's own handler would drain and write
        the latest STATE, which could run ahead of the data.)"""
        self.logger.warning("received signal %d: stopping; records not yet committed are not written", signum)
        request_stop(128 + signum)  # the loader, should it be pausing between tries, stops too
        raise SystemExit(128 + signum)

    # Engine and loader --------------------------------------------------------------------------

    @property
    def loader(self) -> Loader:
        if self._loader is None:
            engine = create_engine({**self.config, "schema": self.settings.schema})
            loader = Loader(engine, emit_state=self._write_state, quarantine=self.settings.quarantine)
            self._rows_committed = lambda: loader.rows_committed
            try:
                try:
                    loader.call(engine.connect)
                except ConnectionLost as busy:  # a server out of connection slots, or starting up
                    loader.call(loader.connect_when_ready, busy)
                while True:
                    try:
                        loader.call(engine.ensure_schema)
                        break
                    except ConnectionLost as lost:  # as anywhere else in the run: connect again
                        loader.call(loader.reconnect_after, lost)
                    except RetryUnit as retry:  # another run holds the schema's lock past a lock_timeout
                        loader.call(engine.rollback)
                        wait_or_stop(retry.delay)
                self._unit_limit = engine.first_unit_bytes or engine.unit_bytes
            except BaseException:
                loader.close()
                raise
            self._loader = loader
        return self._loader

    def _abort(self) -> None:
        """After an error: let a committed-or-committing unit finish, then close the connection."""
        if self._loader is not None:
            loader, self._loader = self._loader, None
            try:
                loader.close()
            except Exception as error:  # the first error is the one reported
                self.logger.error("while stopping after an error: %s", error)

    # Messages -----------------------------------------------------------------------------------

    def _process_schema_message(self, message: SchemaMessage) -> None:  # type: ignore[override]
        stream = message.stream
        signature = json_encoder.encode([message.schema, message.key_properties, message.bookmark_properties])
        if self._signatures.get(stream) == signature:
            return
        schema_properties(stream, message.schema)
        if any(sink.pending for sink in self._sinks.values()) or self._rejected:
            self._flush()  # records read under the previous schema load under it
        plan = self.loader.call(self._prepare_stream, message)
        self._sinks[stream] = StreamSink(
            plan,
            self.loader.engine.codec,
            reject=self._reject if self.settings.quarantine else None,
            chunk_values=self.loader.engine.chunk_values,
        )
        self._signatures[stream] = signature

    def _prepare_stream(self, message: SchemaMessage) -> StreamPlan:
        """On the loader thread: name the table, plan the columns, apply the DDL (its own commit); all
        again once connected again should the connection break."""
        loader = t.cast(Loader, self._loader)
        while True:
            try:
                return self._plan_stream(message)
            except ConnectionLost as lost:
                loader.reconnect_after(lost)

    def _plan_stream(self, message: SchemaMessage) -> StreamPlan:
        engine: Engine = t.cast(Loader, self._loader).engine
        while True:
            # Planned again after a retry: the DDL may have committed in steps (see begin_ddl).
            plan, existing = self._plan_table(engine, message)
            if not plan.ddl_needed:
                break
            engine.begin_ddl()
            try:
                plan, existing = self._plan_locked(engine, message, plan.table)
                if plan.ddl_needed:
                    self._apply_ddl(engine, message.stream, plan, existing)
                engine.commit()
                break
            except RetryUnit as retry:  # out of memory (raised since) or a lock another session held
                engine.rollback()
                engine.forget()
                wait_or_stop(retry.delay)
            except BaseException:
                engine.rollback()
                engine.forget()
                raise
        engine.end_reads()
        if message.bookmark_properties and plan.replication_column is None:
            self.logger.warning(
                "stream %s: its bookmark properties (%s) are not among its schema's properties, so no "
                "replication key guards its rows: an older version of a record read later overwrites "
                "a newer one",
                message.stream,
                ", ".join(message.bookmark_properties),
            )
        if plan.foreign:
            self.logger.warning(
                "stream %s: table %s.%s has columns of types this target does not make (%s); their values "
                "are cast to those types, and a value one cannot hold is invalid input",
                message.stream,
                self.settings.schema,
                plan.table,
                ", ".join(f"{name} {sql_type}" for name, sql_type in plan.foreign),
            )
        return plan

    def _plan_locked(
        self, engine: Engine, message: SchemaMessage, table: str
    ) -> tuple[StreamPlan, TableInfo | None]:
        """Plan again holding the table's DDL lock, against the catalog as it is once this run has it:
        another run loading into the schema at once may have made the table or its columns meanwhile.
        (Should the stream's table name change with that catalog, that table is locked too.)"""
        locked: set[str] = set()
        while table not in locked:
            engine.lock_for_ddl(table)
            locked.add(table)
            plan, existing = self._plan_table(engine, message)
            table = plan.table
        return plan, existing

    def _plan_table(self, engine: Engine, message: SchemaMessage) -> tuple[StreamPlan, TableInfo | None]:
        """Name the stream's table and plan its columns against what the catalog holds now."""
        stream = message.stream
        tables = engine.tables()
        table = identifiers.assign([stream], tables, reserved=[REJECTED_TABLE, DELETED_KEYS_TABLE])[stream]
        if table in tables and engine.is_view(table):
            raise SchemaConflict(
                f"stream {stream}: {self.settings.schema}.{table} is a view, and the stream loads into a "
                "table of that name; nothing was written. Rename or drop the view, or load this source "
                "into another schema"
            )
        existing = engine.table(table) if table in tables else None
        plan = plan_stream(
            stream=stream,
            table=table,
            schema=message.schema,
            key_properties=message.key_properties,
            bookmark_properties=message.bookmark_properties,
            existing=existing,
            hard_delete=self.settings.hard_delete,
            max_columns=engine.max_columns,
            qualified_table=f"{self.settings.schema}.{table}",
            widening_obstacle=lambda column: engine.widening_obstacle(table, column),
        )
        return plan, existing

    def _apply_ddl(self, engine: Engine, stream: str, plan: StreamPlan, existing: TableInfo | None) -> None:
        table = plan.table
        if plan.create is not None:
            engine.create_table(table, stream, plan.create, plan.key_columns)
        else:
            engine.add_columns(table, plan.add)
            if plan.claims or plan.claim_table:
                engine.claim(table, stream if plan.claim_table else None, plan.claims)
            for name, kind in plan.widen:
                self._log_widening(stream, name, kind, t.cast(TableInfo, existing).columns[name])
                replication = name == plan.replication_column
                engine.widen_column(table, name, kind, replication=replication)

    def _log_widening(self, stream: str, name: str, kind: Kind, stored: Column) -> None:
        if stored.narrow:
            self.logger.warning(
                "stream %s: column %s is %s, a type made outside this target that cannot hold every %s "
                "value; widening it to the target's own",
                stream,
                name,
                stored.sql_type,
                kind.value,
            )
        else:
            self.logger.info("stream %s: widening column %s to %s", stream, name, kind.value)

    def _process_record_message(self, message: RecordMessage) -> None:  # type: ignore[override]
        reader = t.cast(MessageReader, self.message_reader)
        self._process_record_messages(message.stream, [message], reader.line_number)

    def _typed_blocks(self, stream: str) -> TypedBlocks | None:
        sink = self._sinks.get(stream)
        return sink.typed if sink is not None else None

    def _process_record_messages(
        self, stream: str, messages: list[t.Any], first_line: int, text: bytes | None = None
    ) -> None:
        """Consecutive records of one stream (lines ``first_line`` on), as the reader hands them: raw
        (``RecordMessage``), or decoded by the stream's ``TypedBlocks`` and with ``text``, their lines
        joined by newlines."""
        sink = self._sinks.get(stream)
        if sink is None:
            self._records_before_schema(stream, messages, first_line)
            return
        if stream != self._last_record_stream:
            self._entering_stream(stream, sink)
        if self._unit_started is None:
            self._unit_started = time.monotonic()
        limit = self.settings.batch_size_rows
        offset = 0
        lines: list[bytes] | None = None
        while offset < len(messages):
            part = messages[offset : offset + max(1, limit - sink.rows)]
            if text is None:
                self._unit_bytes += sink.add_many(part, first_line + offset)
            elif len(part) == len(messages):
                self._unit_bytes += sink.add_decoded(part, first_line, text)
            else:  # a batch ends inside the run: its lines are cut where its records are
                lines = lines if lines is not None else text.split(b"\n")
                piece = b"\n".join(lines[offset : offset + len(part)])
                self._unit_bytes += sink.add_decoded(part, first_line + offset, piece)
            self._unit_rows += len(part)
            offset += len(part)
            # A flush also happens when the JSON read since the last one exceeds the engine's unit
            # size: it bounds memory whatever batch_size_rows says.
            if sink.rows >= limit or self._unit_bytes >= self._unit_limit or self._too_old():
                self._flush()

    def _entering_stream(self, stream: str, sink: StreamSink) -> None:
        """Records of another stream come. An engine's unit is bounded by its tables' columns
        (``Engine.unit_columns``) too, when the streams come one after another (a Singer tap syncing
        stream by stream, its SCHEMA messages all first): a commit between two streams then costs
        nothing. Streams whose records interleave (a log-based tap) would then commit at nearly every
        stream change, so once a stream resumes after another's records, units are left whole."""
        if stream in self._record_streams:
            self._interleaved = True
        self._record_streams.add(stream)
        self._last_record_stream = stream
        if stream in self._unit_streams:
            return
        budget = t.cast(Loader, self._loader).engine.unit_columns
        columns = len(sink.plan.columns)
        over = budget is not None and self._unit_columns + columns > budget
        if over and self._unit_streams and not self._interleaved:
            self._flush()
        self._unit_streams.add(stream)
        self._unit_columns += columns

    def _records_before_schema(self, stream: str, messages: list[RecordMessage], first_line: int) -> None:
        for offset, message in enumerate(messages):
            line = first_line + offset
            error = RecordBeforeSchema("RECORD arrived before the stream's SCHEMA", line=line, stream=stream)
            if not self.settings.quarantine:
                raise error
            record = bytes(message.record).decode("utf-8", "replace")
            self._reject(Rejected(stream, line, None, None, error.problem, record))

    def _time_left(self) -> float | None:
        """Seconds until the pending batch is too old (None when nothing is pending)."""
        if self._unit_started is None:
            return None
        return self.settings.batch_max_seconds - (time.monotonic() - self._unit_started)

    def _on_idle(self) -> None:
        if self._too_old():
            self.logger.info("committing after %s s without a full batch", self.settings.batch_max_seconds)
            self._flush()

    def _too_old(self) -> bool:
        started = self._unit_started
        return started is not None and time.monotonic() - started >= self.settings.batch_max_seconds

    def _process_state_message(self, message: StateMessage) -> None:  # type: ignore[override]
        self._state_received = message.value
        if not any(sink.pending for sink in self._sinks.values()) and not self._rejected:
            # Everything read so far is committed or on its way: this state follows that commit.
            if message.value != self._state_submitted:
                self._submit(Unit(state=message.value))
        elif self._too_old():
            self._flush()

    def _process_activate_version_message(self, message: ActivateVersionMessage) -> None:  # type: ignore[override]
        self.logger.debug("ignoring ACTIVATE_VERSION for stream %s: tables are upserted", message.stream)

    def _process_batch_message(self, message: BatchMessage) -> None:  # type: ignore[override]
        raise InvalidRecord(
            "BATCH messages are not supported; run the tap without batch mode",
            line=t.cast(MessageReader, self.message_reader).line_number,
            stream=message.stream,
        )

    # Quarantine ---------------------------------------------------------------------------------

    def _reject(self, rejected: Rejected) -> None:
        self.logger.warning(
            "quarantined: %s",
            InvalidRecord(
                rejected.error,
                line=rejected.line,
                stream=rejected.stream,
                key=rejected.key,
                field=rejected.field,
            ),
        )
        self._rejected.append(rejected)

    def _quarantine_line(self, invalid: InvalidLine) -> None:
        self._reject(
            Rejected(invalid.stream, invalid.line, None, None, invalid.problem, invalid.text.rstrip("\n"))
        )

    # Flushing and state -------------------------------------------------------------------------

    def _flush(self) -> None:
        """Hand every pending batch, the rejected records and the latest state to the loader."""
        batches = [batch for sink in self._sinks.values() for batch in sink.take_batches()]
        unit = Unit(batches=batches, rejected=self._rejected)
        if self._state_received is not _NO_STATE and self._state_received != self._state_submitted:
            unit.state = self._state_received
        self._rejected = []
        self._unit_rows = self._unit_bytes = 0
        self._unit_started = None
        self._unit_streams = set()
        self._unit_columns = 0
        if self._loader is not None:
            self._unit_limit = self._loader.engine.unit_bytes
        if unit.batches or unit.rejected or unit.has_state:
            self._submit(unit)

    def _submit(self, unit: Unit) -> None:
        if unit.has_state:
            self._state_submitted = unit.state
        self.loader.submit(unit)

    def _write_state(self, state: t.Any) -> None:
        # Bytes, UTF-8 and "\n" whatever the locale: a text stdout encodes with the locale's charset (a
        # Latin-1 or ASCII locale, a Windows code page) and failed on a state holding other characters.
        line = json_encoder.encode(state) + b"\n"
        with self._stdout_lock:
            try:
                _write_whole_line(line)
            except OSError as error:
                # Click would end the run with status 1 and no word (or a traceback); the data is
                # committed, and a scheduler's state file lacks this STATE, so say so (a rerun loads
                # it again).
                committed = self._rows_committed()
                if isinstance(error, BrokenPipeError):
                    raise StdoutClosed(
                        "stdout was closed: the program reading this target's STATE messages has gone, so "
                        f"the run stops ({committed:,} row(s) committed; a rerun from the last STATE it "
                        "received loads the rest again)"
                    ) from None
                raise StdoutClosed(
                    f"stdout could not be written ({error.strerror or error}: a file on a full disk?), so "
                    f"the run stops ({committed:,} row(s) committed; a rerun from the last STATE written "
                    "there loads the rest again)"
                ) from None

    def process_endofpipe(self) -> None:
        try:
            if self._loader is not None:
                self._loader.finishing()
            self._flush()
            if self._loader is not None:
                self._loader.settle()
        except BaseException:
            self._abort()
            raise
        if self._loader is not None:
            loader, self._loader = self._loader, None
            loader.close()
            self.logger.info(
                "done: %s row(s) committed, %s rejected",
                f"{loader.rows_committed:,}",
                f"{loader.rows_rejected:,}",
            )


__all__ = ["SchemaConflict", "TargetWarehouseSeg"]


class _UsageErrorsExitOne(SingerCommand):
    """singer-sdk's command, whose usage errors (an unknown option, a missing `--input` file) exit with
    status 1, "fix and rerun", not click's 2: in a `tap | target` pipeline 2 is the tap's "API quota,
    wait and rerun", which a scheduler would then wait for. Click still prints its message."""

    def make_context(self, *args: t.Any, **kwargs: t.Any) -> click.Context:
        with _usage_errors_exit_one():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> t.Any:
        with _usage_errors_exit_one():
            return super().invoke(ctx)


@contextlib.contextmanager
def _usage_errors_exit_one() -> t.Iterator[None]:
    try:
        yield
    except click.UsageError as error:
        error.exit_code = 1  # type: ignore[misc]  # click's class-level 2, for this error only
        raise


def _config_files_checked_first(callback: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
    """``--config``'s callback, run once every file it names is known to hold a JSON object."""

    def check_then_call(context: click.Context, param: click.Parameter, value: t.Any) -> t.Any:
        try:
            for path in value or ():
                if path != "ENV":  # singer-sdk's word for "settings from the environment"
                    check_config_file(path)
        except ConfigError as error:
            TargetWarehouseSeg.logger.error("%s", error)
            sys.exit(1)
        return callback(context, param, value)

    return check_then_call


def _write_whole_line(line: bytes) -> None:
    """Write one line to stdout; when that fails and stdout is a file, cut the file back to where the
    line began. A full disk otherwise left half a STATE line at the end of `state-out.jsonl`, which a
    scheduler keeping the last line took as its state (every later run then stopped on it)."""
    sys.stdout.flush()  # anything written through the text layer goes first
    out = sys.stdout.buffer
    out.flush()
    try:
        descriptor = out.fileno()
    except (AttributeError, OSError, ValueError):  # not a file descriptor (a test's capture)
        out.write(line)
        out.flush()
        return
    begun = _file_offset(descriptor)
    try:
        view = memoryview(line)
        while view:  # unbuffered, so nothing of a failed line is left to be written at exit
            view = view[os.write(descriptor, view) :]
    except OSError:
        if begun is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(descriptor, begun)
                os.lseek(descriptor, begun, os.SEEK_SET)  # else a later line would follow a hole
        raise


def _file_offset(descriptor: int) -> int | None:
    """Where the next write to a regular file lands (None for a pipe, a terminal, a device)."""
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            return None
        return os.lseek(descriptor, 0, os.SEEK_CUR)
    except OSError:
        return None
