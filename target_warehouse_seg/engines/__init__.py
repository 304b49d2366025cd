"""The small interface every warehouse engine implements, and the vocabulary it shares.

An engine owns one connection. The target's loader thread is its only user: it connects, makes sure
the schema exists, reads each table's catalog once (one query per table, cached), creates and evolves
tables (create with primary key, add columns, widen a column; never drop or rename), and loads batches.
A batch is loaded inside a transaction the loader opens and commits: the engine stages it with its
fastest bulk path and applies it with one set-based statement (plus one for hard deletes).

Payloads are engine-specific (COPY text for PostgreSQL, Arrow for DuckDB); each engine's ``Codec``
builds them in the main thread, chunk by chunk, while the loader thread is busy with the previous batch.
"""

from __future__ import annotations

import abc
import typing as t
from dataclasses import dataclass, field

from target_warehouse_seg.typemap import Kind, Source

SYSTEM_COLUMNS = ("received_at", "uuid_ts")
REJECTED_TABLE = "_rejected_records"
# With hard_delete: each deleted key and the replication key it was deleted at (see merge.py).
DELETED_KEYS_TABLE = "_deleted_keys"


@dataclass(frozen=True)
class Column:
    """A table column: its name, kind (None for a SQL type this target does not create) and owner."""

    name: str
    kind: Kind | None
    owner: str | None = None  # the source property it holds (kept in the column's comment)
    sql_type: str | None = None  # as the catalog spells it (None: the engine's type for `kind`)
    # A type made by others that holds only some of ``kind``'s values (PostgreSQL's integer or
    # varchar(18) beside bigint and text): widened to the engine's own type when a stream writes it.
    narrow: bool = False
    note: str | None = None  # what someone else wrote in its comment (see identifiers.read_comment)

    @property
    def stored_type(self) -> str:
        """What the column holds, for messages: a narrow column's own SQL type (a varchar(18) is no
        `text`, and "widen from text to text" said nothing), else its kind."""
        if self.narrow and self.sql_type:
            return self.sql_type
        return t.cast(Kind, self.kind).value


@dataclass
class TableInfo:
    """What the catalog says about one table (read once, then kept up to date by the engine)."""

    name: str
    columns: dict[str, Column]
    primary_key: tuple[str, ...]
    owner: str | None = None  # the stream it holds (kept in the table's comment)
    column_slots: int = 0  # columns counted against the engine's limit (PostgreSQL counts dropped ones)
    note: str | None = None  # what someone else wrote in its comment (see identifiers.read_comment)
    # Whether this run may change it (PostgreSQL: the run's user owns it); a table made elsewhere and
    # owned by another role keeps its types and comments.
    alterable: bool = True


@dataclass(frozen=True)
class BatchColumn:
    """A property column of a batch: warehouse name, kind, source property, how values travel.

    ``wide`` marks an INTEGER-source column whose values exceed bigint (they travel as numbers).
    ``matched`` marks a key or replication-key column: an upsert matches stored rows on it.
    ``quoted`` marks a NUMBER-source column whose numbers may arrive as strings (x-singer.decimal):
    the sink has put the numbers in their place, the record's JSON still holds the strings.
    """

    name: str
    kind: Kind
    prop: str
    source: Source
    wide: bool = False
    matched: bool = False
    quoted: bool = False


@dataclass
class LoadBatch:
    """One stream's rows, ready to stage and merge.

    ``lines`` follows the payload's row order: it names a row's input line in error messages (the row's
    key, when needed, is read back from the payload).
    """

    stream: str
    table: str
    columns: list[BatchColumn]
    key: tuple[str, ...]
    replication_key: str | None
    delete_flag: str | None  # the is_deleted column when hard deletes are on
    nulled: tuple[str, ...]  # columns of properties gone from the schema: NULL on update
    payload: t.Any
    lines: list[int]
    key_properties: tuple[str, ...]
    has_duplicates: bool | None = False  # None: not counted (the codec's engine ``counts_keys``)

    @property
    def row_count(self) -> int:
        return len(self.lines)

    def property_of(self, column: str | None) -> str | None:
        for batch_column in self.columns:
            if batch_column.name == column:
                return batch_column.prop
        return column


@dataclass
class Rejected:
    """A record set aside (``on_invalid_record: quarantine``) with the reason."""

    stream: str | None
    line: int | None
    key: dict[str, t.Any] | None
    field: str | None
    error: str
    record: str


@dataclass
class RowRejected(Exception):
    """The database refused a batch; ``index`` is the refused row once known, ``column`` if named."""

    message: str
    column: str | None = None
    index: int | None = None
    details: dict[str, t.Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


class RetryUnit(Exception):
    """The transaction must run again, once the loader has rolled it back and waited ``delay`` seconds:
    the engine changed how it loads a table (it found rows it assumed absent, or raised its memory), or
    another session held a lock the transaction needed."""

    def __init__(self, what: str, delay: float = 0.0) -> None:
        super().__init__(what)
        self.delay = delay


class Codec(abc.ABC):
    """Builds an engine's payload from decoded records, one chunk at a time (in the main thread).

    ``rows`` are the stream's decoded records (msgspec structs whose fields follow ``columns``);
    every column's values are already checked for their ``source`` (see convert.py).

    A codec with ``reads_json`` also gets the records' own JSON text (``raws``: pieces of one or more
    lines joined by newlines, one line per row in order; each line a JSON object whose ``record`` is the
    record: the input's own Singer line, or a canonical ``{"record": ...}`` re-encoding when the record
    was read leniently), so that the database can convert the values itself from text the decoder has
    already checked.
    """

    reads_json: t.ClassVar[bool] = False
    # Whether the engine finds out itself, when it loads a batch, if two of its rows share a key (the
    # sink then leaves ``LoadBatch.has_duplicates`` None instead of counting keys as it reads).
    counts_keys: t.ClassVar[bool] = False

    @abc.abstractmethod
    def encode(
        self,
        columns: list[BatchColumn],
        rows: list[t.Any],
        lines: list[int],
        received_at: list[t.Any],
        raws: list[t.Any] | None = None,
        previous: t.Any | None = None,
        lenient: bool = True,
        number_scans: t.Mapping[int, bytes] | None = None,
    ) -> t.Any:
        """One chunk's payload part. May raise ``ValueProblem`` or ``NeedsWidening``.

        ``previous`` is the batch's part before this one (None for its first): a codec may add this
        chunk to what that part holds (DuckDB's spool file). ``lenient`` is false when every row came
        through the typed decoder, whose bounds (bigint integers) then hold for every value.
        ``number_scans`` holds the sink's ``convert.scan_numbers`` of number columns, by position."""

    @abc.abstractmethod
    def finish(self, columns: list[BatchColumn], parts: list[t.Any]) -> t.Any:
        """The batch payload from its parts (all built with the same columns)."""

    @abc.abstractmethod
    def subset(self, payload: t.Any, indices: t.Sequence[int]) -> t.Any:
        """The payload of the given rows only (used to find a row the database refuses)."""

    @abc.abstractmethod
    def row(self, columns: list[BatchColumn], payload: t.Any, index: int) -> dict[str, t.Any]:
        """One row as ``{property: value}`` (for quarantining a row the database refused)."""

    def repair(self, payload: t.Any) -> t.Any | None:
        """A payload the database may accept where it refused this one, or None (see DuckDB's)."""
        return None

    def release(self, payload: t.Any) -> None:
        """Free what a payload holds outside the Python heap (spool files); it is not used again."""
        return None


class Engine(abc.ABC):
    """A warehouse connection that knows its catalog and loads batches."""

    name: str
    schema: str  # the warehouse schema the engine writes
    max_columns: int | None = None
    codec: Codec
    unit_bytes: int = 16 * 1024 * 1024  # flush when the records read since the last flush exceed this
    # The first unit's size (None: ``unit_bytes``). Smaller, the database starts loading sooner (while
    # the first unit is read, the loader has nothing to do).
    first_unit_bytes: int | None = None
    # A unit that already writes tables of this many columns in all is committed before records of yet
    # another stream join it (None: never), while the streams' records come one stream after another
    # (see TargetWarehouseSeg._entering_stream).
    unit_columns: int | None = None
    chunk_values: int = 400_000  # values decoded before the sink converts them (rows = this / columns)

    @abc.abstractmethod
    def connect(self) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def interrupt(self) -> None:  # noqa: B027 (optional hook: engines that can cancel a statement)
        """Called from another thread when the run must stop: cancel the statement running now, if
        any (its transaction then fails and rolls back). Harmless when nothing runs."""

    def reconnect(self) -> None:
        """Drop a broken connection and connect again (raises ``ConnectionLost`` while the database
        cannot be reached). Only engines that raise ``ConnectionLost`` are asked to."""
        raise NotImplementedError(f"{type(self).__name__} does not reconnect")

    def lost_commit_outcome(self) -> bool | None:
        """After ``reconnect``, following a connection that broke while committing: whether that commit
        went through (True), did not (False), or cannot be known (None)."""
        return None

    @abc.abstractmethod
    def ensure_schema(self) -> None: ...

    @abc.abstractmethod
    def tables(self) -> dict[str, str | None]:
        """Every table of the schema and its owner stream (one query, cached)."""

    @abc.abstractmethod
    def table(self, name: str) -> TableInfo | None:
        """One table's columns and primary key (one catalog query, cached), None when missing."""

    @abc.abstractmethod
    def create_table(
        self, name: str, owner: str, columns: list[Column], primary_key: tuple[str, ...]
    ) -> None: ...

    @abc.abstractmethod
    def claim(self, table: str, stream: str | None, columns: list[Column]) -> None:
        """Record in the comments of a table made elsewhere that it holds ``stream`` (unless None) and
        that its columns hold their ``owner`` properties, beside any note already there: a column
        nobody claimed was not set to NULL when its property left the SCHEMA."""

    @abc.abstractmethod
    def add_columns(self, table: str, columns: list[Column]) -> None: ...

    @abc.abstractmethod
    def widen_column(self, table: str, column: str, kind: Kind, *, replication: bool = False) -> None:
        """Change the column's type to the kind's, keeping every value; ``replication``: the column is
        its stream's replication key (whose values the hard deletes' tombstones keep as text)."""

    def widening_obstacle(self, table: str, column: str) -> str | None:
        """Why this column of the table cannot widen now, and what to do, in words (None: it can)."""
        return None

    def is_view(self, name: str) -> bool:
        """Whether ``name`` in the schema (one of ``tables()``) is a view rather than a table."""
        return False

    @abc.abstractmethod
    def begin(self) -> None: ...

    def begin_ddl(self) -> None:
        """Open the transaction of a stream's DDL (its table, columns, their comments). An engine whose
        DDL grows dearer with each statement of one transaction may commit it in steps; a partial
        result is one the next planning takes up (columns without the target's comment are claimed
        again), so the caller plans again after a retry."""
        self.begin()

    def lock_for_ddl(self, table: str) -> None:  # noqa: B027 (optional hook: one writer per file)
        """Inside the open transaction, before changing the table (creating it, adding, claiming or
        widening columns): wait for any other run changing it to commit, hold that off until this
        transaction ends, and read the catalog again (the other run may have made the change already).
        An engine that has one writer at a time (DuckDB's file lock) has nothing to do."""

    def lend_core(self, lend: bool) -> bool:
        """Called from the main thread when it starts waiting for the loader (``lend``) and when it
        stops: an engine that works in this process may use the main thread's core meanwhile.
        Returns whether the engine took it (then it is called again with False)."""
        return False

    def finishing(self) -> None:  # noqa: B027 (optional hook, nothing to do by default)
        """Called on the loader thread before the run's last unit (the input has ended)."""

    # Whether the current transaction's COMMIT has gone through, while ``commit`` may still work after
    # it (DuckDB's checkpoint): a stop that cannot wait for it then writes the unit's STATE first.
    committed = False

    def settle(self) -> None:  # noqa: B027 (optional hook, nothing to do by default)
        """Called on the loader thread once every unit of a run that went well has committed: an engine
        that writes its commits into place later (DuckDB's checkpoint) does it now, and raises
        ``DatabaseError`` when it cannot (the run then ends with a failing status, not "done")."""

    @abc.abstractmethod
    def commit(self) -> None: ...

    @abc.abstractmethod
    def rollback(self) -> None: ...

    @abc.abstractmethod
    def load(self, batch: LoadBatch) -> None:
        """Stage the batch and merge it into its table, inside the open transaction.

        Raises ``RowRejected`` when the database refuses the data (not the connection).
        """

    @abc.abstractmethod
    def quarantine(self, rows: list[Rejected]) -> None:
        """Insert rejected records into ``_rejected_records`` inside the open transaction."""

    @abc.abstractmethod
    def forget(self) -> None:
        """Drop cached catalog knowledge (after a rollback undid DDL)."""

    def end_reads(self) -> None:  # noqa: B027 (optional hook: only engines whose reads open a transaction)
        """End the transaction that catalog reads opened, when nothing follows them at once (the next
        records may be minutes away)."""


def create_engine(config: t.Mapping[str, t.Any]) -> Engine:
    """The engine the settings ask for; each engine's module is imported only when used."""
    if config.get("engine", "duckdb") == "postgres":
        from target_warehouse_seg.engines.postgres import PostgresEngine

        return PostgresEngine.from_config(config)
    from target_warehouse_seg.engines.duckdb import DuckDBEngine

    return DuckDBEngine.from_config(config)
