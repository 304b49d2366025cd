"""DuckDB engine: the statements that load a batch into its table, and the settings of DuckDB's
connection (memory limit, checkpoint threshold, block allocator, vacuuming, threads).

How a batch travels to DuckDB is in duckdb_codec.py: its records' own JSON in spool files, read by
``read_json``, joined by position with a side table. The engine loads from that subquery. The first
batch of a table is a plain ``INSERT`` from it (its primary key refusing keys already there turns the
table to upserts). An upsert deletes the stored rows the batch wins over (matching them on the side table's
keys), then inserts from the subquery: the whole batch when every row of it deleted one (no key of it
is left), else the rows whose key is absent (a newer stored row stays). A batch with duplicate keys, or
one that must keep columns it does not write (an UPDATE), is staged in a temporary table first. All
inside the loader's transaction.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import time
import typing as t
from pathlib import Path

import duckdb
import pyarrow as pa

from target_warehouse_seg import convert
from target_warehouse_seg.engines import (
    DELETED_KEYS_TABLE,
    REJECTED_TABLE,
    SYSTEM_COLUMNS,
    Column,
    LoadBatch,
    Rejected,
    RetryUnit,
    RowRejected,
    TableInfo,
    merge,
)
from target_warehouse_seg.engines.catalog import (
    CatalogEngine,
    literal,
    stored_column,
    stored_table,
    temporal_in_text_columns,
)
from target_warehouse_seg.engines.duckdb_codec import (
    DECIMAL_PRECISION,
    DECIMAL_SCALE,
    NULL_AS_TEXT,
    READER_OBJECT_BYTES,
    SQL_TYPES,
    DuckDBCodec,
    JsonPayload,
    json_read_type,
)
from target_warehouse_seg.engines.duckdb_path import (
    DUCKDB_HEADERS_BYTES,
    checked_path,
    is_file_path,
    not_a_duckdb_file,
)
from target_warehouse_seg.engines.merge import SEQ, Tombstones, statements
from target_warehouse_seg.errors import DatabaseError
from target_warehouse_seg.identifiers import quote, write_comment
from target_warehouse_seg.pauses import Pauses
from target_warehouse_seg.stopping import wait_or_stop
from target_warehouse_seg.typemap import Kind, Source

logger = logging.getLogger("target-warehouse-seg")

# DuckDB's memory limit: a base, plus a block's worth per column of every table a transaction writes
# (DuckDB keeps a block per column it appends to, for each table until the commit). The base is what a
# narrow table needs: DuckDB uses all of it on a long narrow load (the 1M x 10 updates: ~303 MB of
# process at 100 MB, ~294 MB at 90 MB, no slower), and a 64 MB one ran a whole org's sync (dozens of
# tables) out of memory. Should a load still run out, the limit doubles and the unit runs again.
MEMORY_LIMIT_MB, MEMORY_PER_COLUMN_KB = 90, 128
# DuckDB's words for a block it could not write to its temporary folder (beside the database file:
# `<path>.tmp`) when its limit was reached: a full disk there, not only a low limit.
_SPILL_FAILED = "failed to offload"


def memory_ceiling_mb() -> int:
    """The highest memory limit the doubling reaches: half the memory this process may have (the
    machine's, or its container's cgroup limit when lower), at least 1 GB."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 4096
    limited = _cgroup_memory_limit()
    if limited is not None:
        total = min(total, limited)
    return max(1024, total // 2 // (1024 * 1024))


def _cgroup_memory_limit() -> int | None:
    """A container's memory limit (cgroup v2, else v1), or None when there is none."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            return int(text)
    return None


# Committed rows wait in memory until a checkpoint writes them to the file, in a buffer per column of
# each table they went to, and DuckDB checkpoints by the size of its write-ahead log only. Many small
# streams (a whole org's first sync: dozens of tables of a few rows each) log little and hold a buffer
# for every column of every table: 500 streams of 10 columns ran DuckDB out of memory three times over
# (the limit doubled to 728 MB, the process at 600 MB). So a commit is followed by a checkpoint once the
# tables written since the last one, two or more, hold over CHECKPOINT_COLUMNS columns (242 MB). One
# table alone is left to the log's threshold (a checkpoint per commit made the 200,000 x 40 updates 40%
# slower). Units are not cut by their tables' columns: streams that interleave (a log-based tap) would
# then commit a unit at nearly every record.
CHECKPOINT_COLUMNS = 320
# A stream's column DDL (new columns, their comments) commits every this many statements (begin_ddl).
DDL_COLUMNS_PER_COMMIT = 100
# DuckDB checkpoints (writes committed rows to the file) once its WAL exceeds a threshold; until then the
# committed rows wait in memory. A low threshold suits narrow tables: at 64 MB the 1M x 10 load worked
# near the memory limit and took 12% longer, with 15 MB more at the peak, than at 32 MB. A checkpoint
# needs buffers for every column it writes, though: at 32 MB the updates of a 300-column table peaked
# 35 MB higher than at 64 MB. So a base, plus a little per column written (as for the memory limit),
# up to a cap; raised as wider tables come, never lowered.
CHECKPOINT_BASE_MB, CHECKPOINT_PER_COLUMN_KB, CHECKPOINT_MAX_MB = 32, 128, 64
# DuckDB's buffers (256 KB blocks) come from its allocator and go back to the system when freed, so a
# long load touches fresh pages over and over: ~440,000 page faults on the 1M x 10 updates, three
# quarters of them on DuckDB's thread. A block allocator keeps this much of them for reuse (never given
# back, within the memory limit): a third fewer faults, 0.4 s less CPU and 4% less time on those
# updates, for 1 to 10 MB more at the peak (64 MB: no faster than 32, 10 to 20 MB more).
BLOCK_ALLOCATOR_MB = 32
INSTANT_TEXT_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # an instant as text (UTC): see CatalogEngine.widened
# Since DuckDB 2.0 a checkpoint also vacuums tables with an ART index (the primary key): it rewrites
# the row groups that hold deleted rows, remapping the index to the moved rows. Upserts delete the rows
# they replace, so while loading nearly every checkpoint did that, over and over for the same row
# groups: 100,000-row upserts of random keys into 1,000,000 rows spent 10.7 s in commits with it and
# 4.2 s without; the (a) updates took 3.9-4.2 s instead of 4.2-4.7 s; and on the (c) updates a
# checkpoint's cost hung on where the units' bounds fell in the row groups (0.15 s or 0.6-0.9 s). So no
# vacuuming while loading (DuckDB 1.x never vacuumed such tables): a row group whose rows are all
# deleted is still dropped, and the run's last unit (or DuckDB's checkpoint on closing) vacuums with
# DuckDB's default, once per run (``finishing``).
VACUUM_TASKS_WHILE_LOADING = 0
KINDS = {sql_type: kind for kind, sql_type in SQL_TYPES.items()}
# Types others make (a table created by hand or by another tool) that hold only some of a kind's values:
# widened losslessly to the target's own type once a stream writes the column (into an INTEGER column, a
# value past 2**31 was refused as invalid input). A DECIMAL is narrow when DECIMAL(38,18) holds all its
# values; UBIGINT, HUGEINT, floats and timestamps without a time zone hold other values: they keep their
# types. (DuckDB spells VARCHAR(n) as VARCHAR, which holds any length.)
_NARROW_INTEGERS = frozenset({"TINYINT", "SMALLINT", "INTEGER", "UTINYINT", "USMALLINT", "UINTEGER"})
_DECIMAL = re.compile(r"DECIMAL\((\d+),(\d+)\)")


def narrow_kind(sql_type: str) -> Kind | None:
    if sql_type in _NARROW_INTEGERS:
        return Kind.INTEGER
    decimal = _DECIMAL.fullmatch(sql_type)
    if decimal is not None:
        precision, scale = int(decimal[1]), int(decimal[2])
        if scale <= DECIMAL_SCALE and precision - scale <= DECIMAL_PRECISION - DECIMAL_SCALE:
            return Kind.NUMBER
    return None


_STAGED = "tws_batch"
# The name of the warehouse file's database in the connection (see _open and qualified).
WAREHOUSE_ALIAS = "warehouse"
# Another process has the file open: how long a run waits for it (see _open_when_free).
FILE_LOCK_WAIT_SECONDS = 120.0
FILE_LOCK_FIRST_PAUSE_SECONDS = 0.25
FILE_LOCK_MAX_PAUSE_SECONDS = 5.0
_FILE_LOCK_HOLDER = re.compile(
    r"Could not set lock on file .*?: Conflicting lock is held in (.+? \(PID \d+\))"
)
# Errors that are about the data (a value, a key), not about the database or the SQL.
_DATA_ERRORS = (
    duckdb.ConversionException,
    duckdb.ConstraintException,
    duckdb.OutOfRangeException,
    duckdb.InvalidInputException,
    duckdb.DataError,
    duckdb.IntegrityError,
)


# DuckDB's names are case-insensitive (a quoted "Accounts" is the table accounts), so the catalog is
# read so too, each name in lower case: the target's own names are lower case, and a table or column
# made elsewhere as "Accounts" or "Name" is the one its SQL reaches (before, the run tried to create it
# again and stopped on `Table with name "accounts" already exists!`).
_TABLE_QUERY = """
SELECT lower(c.column_name), c.data_type, c.comment, t.comment,
       (SELECT k.constraint_column_names FROM duckdb_constraints() k
         WHERE k.database_name = c.database_name AND k.schema_name = c.schema_name
           AND k.table_name = c.table_name AND k.constraint_type = 'PRIMARY KEY')
FROM duckdb_columns() c
JOIN duckdb_tables() t USING (database_name, schema_name, table_name)
WHERE c.database_name = current_database() AND lower(c.schema_name) = lower(?)
  AND lower(c.table_name) = lower(?)
ORDER BY c.column_index
"""
# What others added to a table that rebuilding it would lose: indexes, constraints beyond the primary
# key (and its columns' NOT NULL), defaults.
_ADDITIONS_QUERY = """
SELECT 'index ' || index_name, NULL FROM duckdb_indexes()
 WHERE database_name = current_database() AND lower(schema_name) = lower($schema)
   AND lower(table_name) = lower($table)
UNION ALL
SELECT lower(constraint_type) || ' constraint', constraint_column_names FROM duckdb_constraints()
 WHERE database_name = current_database() AND lower(schema_name) = lower($schema)
   AND lower(table_name) = lower($table) AND constraint_type <> 'PRIMARY KEY'
UNION ALL
SELECT 'default of column ' || column_name, NULL FROM duckdb_columns()
 WHERE database_name = current_database() AND lower(schema_name) = lower($schema)
   AND lower(table_name) = lower($table) AND column_default IS NOT NULL
"""
_TABLES_QUERY = """
SELECT lower(table_name), comment, false FROM duckdb_tables()
 WHERE database_name = current_database() AND lower(schema_name) = lower(?)
UNION ALL
SELECT lower(view_name), comment, true FROM duckdb_views()
 WHERE database_name = current_database() AND lower(schema_name) = lower(?)
"""


class DuckDBEngine(CatalogEngine):
    name = "duckdb"
    max_columns = None
    # Bigger units than PostgreSQL's: each upsert joins the batch with the whole table (the DELETE) and
    # each commit may checkpoint, so fewer units win; Arrow keeps a unit compact in memory.
    unit_bytes = 32 * 1024 * 1024
    # A small first unit: DuckDB starts loading after ~0.1 s of reading instead of ~0.5 s.
    first_unit_bytes = 8 * 1024 * 1024
    # DuckDB holds buffers for every column of every table a transaction appends to, and a table's
    # primary key index once the transaction touches it (about 1 MB per table of 25 columns): a unit of
    # 433 small streams (an input whose SCHEMA messages all come first, then each stream's records)
    # took the process to 850 MB. So a unit takes streams up to this many columns, then commits.
    unit_columns = 640
    # Values decoded per chunk: a chunk's decoded records are the main thread's working memory.
    chunk_values = 50_000
    sql_types = SQL_TYPES

    def __init__(self, path: str, schema: str) -> None:
        super().__init__(schema)
        self.path = path
        self.codec = DuckDBCodec()
        self._connection: duckdb.DuckDBPyConnection | None = None
        # The main thread's own connection to the database, for lend_core (a connection serves one
        # thread at a time, and the loader's is busy loading).
        self._lender: duckdb.DuckDBPyConnection | None = None
        self._cores = os.cpu_count() or 1
        self._threads = max(1, self._cores - 1)
        self._staged = 0
        self._unregister_later: list[str] = []
        self._upserted: set[str] = set()  # tables that had keys of a batch already
        self._probed: set[str] = set()  # tables whose stored keys were probed in this run
        self._checkpoint_after_commit = False  # set by a widening (see widen_column)
        self._unusable: DatabaseError | None = None  # set when a failed checkpoint invalidated the file
        # The columns of each table written by the open transaction, and by commits since the last
        # checkpoint (see CHECKPOINT_COLUMNS).
        self._writing: dict[str, int] = {}
        self._unsaved: dict[str, int] = {}
        self._column_ddl_steps: int | None = None  # statements of column DDL so far (begin_ddl), or None

    @classmethod
    def from_config(cls, config: t.Mapping[str, t.Any]) -> DuckDBEngine:
        path = str(config.get("path") or "warehouse.duckdb")
        return cls(checked_path(path), config["schema"])

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        if self._connection is None:
            raise DatabaseError("not connected to DuckDB")
        return self._connection

    def connect(self) -> None:
        # The side tables' Arrow buffers from malloc: Arrow's own allocator (mimalloc) kept 5-10 MB
        # more at the peak of a 1M-row load, and only DuckDB's engine uses Arrow in this process.
        pa.set_memory_pool(pa.system_memory_pool())
        created = is_file_path(self.path) and not os.path.lexists(self.path)
        try:
            self._connection = _open_when_free(self.path)
            self._connection.execute("SET TimeZone = 'UTC'")
            _optional_setting(self._connection, f"SET block_allocator_memory = '{BLOCK_ALLOCATOR_MB}MB'")
            _optional_setting(self._connection, f"SET max_vacuum_tasks = {VACUUM_TASKS_WHILE_LOADING}")
            # Leave a core to the main thread, which decodes the next batch while DuckDB loads this one
            # (it gets the core back while the main thread waits: lend_core).
            self._connection.execute(f"SET threads = {self._threads}")
            self._lender = self._connection.cursor()
            # Bounded memory: DuckDB keeps the pages it reads or writes until this limit (and spills
            # beyond it to its temp directory, beside the database file).
            self._memory_limit_mb = self._memory_wanted_mb = self._checkpoint_mb = 0
            self._columns_written = 0
            self._ensure_memory(0)
        except duckdb.Error as error:
            if created:
                self._remove_unfinished_file()
            raise DatabaseError(f"cannot open DuckDB database {self.path}: {_first_line(error)}") from None
        logger.info("opened DuckDB database %s, schema %s", self.path, self.schema)

    def _remove_unfinished_file(self) -> None:
        """The file this run began to create, left unfinished (a full disk): every later run would be
        refused it ("Could not read enough bytes") until someone removed it. It holds nothing yet."""
        if self._connection is not None:
            with contextlib.suppress(duckdb.Error):
                self._connection.close()
            self._connection = None
        try:
            # Only a file cut short: one another process created meanwhile (and holds) is whole.
            if os.path.getsize(self.path) >= DUCKDB_HEADERS_BYTES:
                return
            os.remove(self.path)
        except OSError:
            return
        with contextlib.suppress(OSError):
            os.remove(f"{self.path}.wal")

    def lend_core(self, lend: bool) -> bool:
        """While the main thread waits for a unit (the last ones, or one that takes longer than the
        decoding of the next), DuckDB works on every core: its checkpoints and DELETEs run faster on
        two threads (its INSERTs slower, hence one thread otherwise). The (a) updates took 9% less
        time, the (c) updates 6% (alternating runs). Threads are a setting of the whole database,
        taken by the running statement's next tasks."""
        if self._lender is None or self._threads == self._cores:
            return False
        try:
            self._lender.execute(f"SET threads = {self._threads + 1 if lend else self._threads}")
        except duckdb.Error as error:  # only slower; the loader reports what went wrong with the unit
            logger.debug("DuckDB threads not changed: %s", _first_line(error))
            return False
        return True

    def _reopen(self) -> None:
        """Open the database again (after DuckDB invalidated it), keeping the memory limit wanted."""
        wanted = self._memory_wanted_mb
        for connection in (self._lender, self._connection):
            if connection is not None:
                with contextlib.suppress(duckdb.Error):
                    connection.close()
        self._lender = self._connection = None
        self._unregister_later.clear()  # registrations went with the connection
        self.connect()
        self._memory_wanted_mb = wanted

    def finishing(self) -> None:
        """The run's last unit, and the checkpoint DuckDB makes on closing, vacuum with DuckDB's
        default (see VACUUM_TASKS_WHILE_LOADING)."""
        if self._connection is not None:
            _optional_setting(self._connection, "RESET max_vacuum_tasks")

    def interrupt(self) -> None:
        connection = self._connection
        if connection is not None:
            with contextlib.suppress(duckdb.Error):
                connection.interrupt()

    def close(self) -> None:
        try:
            if self._lender is not None:
                self._lender.close()
                self._lender = None
            if self._connection is not None:
                self.finishing()  # also after an error: the checkpoint on closing vacuums as by default
                self._connection.close()
                self._connection = None
        finally:
            self.codec.close()

    def _execute(
        self, statement: str, parameters: t.Sequence[t.Any] | t.Mapping[str, t.Any] | None = None
    ) -> duckdb.DuckDBPyConnection:
        try:
            return self.connection.execute(statement, parameters)
        except duckdb.Error as error:
            raise DatabaseError(f"DuckDB {self.path}: {_first_line(error)}") from None

    def ensure_schema(self) -> None:
        self._execute(f"CREATE SCHEMA IF NOT EXISTS {quote(self._catalog)}.{quote(self.schema)}")

    def qualified(self, table: str) -> str:
        # With the database's name: DuckDB refuses `schema.table` as ambiguous when the schema is
        # named like a database (`temp`, `system`, or the file's own: `salesforce.duckdb` holding
        # the schema `salesforce`).
        return f"{quote(self._catalog)}.{quote(self.schema)}.{quote(table)}"

    @property
    def _catalog(self) -> str:
        return "memory" if self.path == ":memory:" else WAREHOUSE_ALIAS

    def _run(self, statement: str) -> None:
        self._execute(statement)

    def _read_tables(self) -> list[tuple[str, str | None, bool]]:
        return self._execute(_TABLES_QUERY, [self.schema, self.schema]).fetchall()

    def _read_table(self, name: str) -> TableInfo | None:
        rows = self._execute(_TABLE_QUERY, [self.schema, name]).fetchall()
        if not rows:
            return None
        columns = {
            column: stored_column(column, sql_type, comment, KINDS, narrow_kind)
            for column, sql_type, comment, _, _ in rows
        }
        key = tuple(column.lower() for column in rows[0][4] or ())
        return stored_table(name, columns, key, rows[0][3], len(rows))

    # A primary key column's type ------------------------------------------------------------------

    def widening_obstacle(self, table: str, column: str) -> str | None:
        info = self.table(table)
        key = set(info.primary_key) if info is not None else set()
        if column not in key:
            return None  # ALTER ... SET DATA TYPE: views do not stop it (DuckDB binds them when read)
        rows = self._execute(_ADDITIONS_QUERY, {"schema": self.schema, "table": table}).fetchall()
        # The key columns' NOT NULL comes with the primary key (the rebuilt table has it again).
        additions = [
            what
            for what, columns in rows
            if not (what == "not null constraint" and {column.lower() for column in columns} <= key)
        ]
        if not additions:
            return None
        return (
            "DuckDB changes a primary key column's type by rebuilding the table, which would lose what "
            f"others added to it ({', '.join(additions)}); drop those, or the table to re-sync the stream, "
            "or send the key with its former type"
        )

    def widened(self, expression: str, stored_type: str, sql_type: str) -> str:
        cast = super().widened(expression, stored_type, sql_type)
        if sql_type != SQL_TYPES[Kind.TEXT]:
            return cast
        if stored_type == SQL_TYPES[Kind.TIMESTAMP]:
            return f"strftime(({expression}) AT TIME ZONE 'UTC', '{INSTANT_TEXT_FORMAT}')"
        if stored_type == SQL_TYPES[Kind.NUMBER]:
            # DECIMAL(38,18) spells every value with 18 decimals (7.000000000000000000): as text, a
            # number is written without trailing zeros (7, 2.5), as PostgreSQL's widening does.
            return f"CASE WHEN contains({cast}, '.') THEN rtrim(rtrim({cast}, '0'), '.') ELSE {cast} END"
        return cast

    def widen_column(self, table: str, column: str, kind: Kind, *, replication: bool = False) -> None:
        # Checkpointed right after its commit: the write-ahead log then does not keep the ALTER's
        # expression (see _open), which a DuckDB opening the file directly could not replay offline.
        self._checkpoint_after_commit = True
        info = self.table(table)
        if info is None or column not in info.primary_key:
            super().widen_column(table, column, kind, replication=replication)
            return
        # Whole, in one transaction: a step's commit (begin_ddl) between setting the table aside and
        # filling it again would leave, after a crash, an empty table beside the aside one.
        steps, self._column_ddl_steps = self._column_ddl_steps, None
        try:
            self._rebuild(table, info, column, kind)
        finally:
            self._column_ddl_steps = steps

    def _rebuild(self, table: str, info: TableInfo, column: str, kind: Kind) -> None:
        """Widen a primary key column, which ``ALTER ... SET DATA TYPE`` refuses: in the open transaction,
        the table is set aside, made again (its columns in order, comments and primary key) with the
        wider type, filled with the stored rows in their order, and dropped."""
        logger.info(
            "table %s: rebuilding it to widen key column %s to %s (DuckDB cannot change a primary key "
            "column's type in place)",
            self.qualified(table),
            column,
            kind.value,
        )
        aside = f"{table}__tws_rebuilt"
        self._run(f"ALTER TABLE {self.qualified(table)} RENAME TO {quote(aside)}")
        columns = [
            dataclasses.replace(stored, kind=kind, sql_type=None, narrow=False)
            if stored.name == column
            else stored
            for stored in info.columns.values()
        ]
        # With its primary key from the start: one added after the rows (faster) makes DuckDB 2.0.1
        # refuse, at the commit, a key that the same transaction deletes and inserts again (an upsert).
        self.create_table(table, info.owner or "", columns, info.primary_key)
        if info.owner is None or info.note is not None:  # made elsewhere: someone's note is kept
            comment = write_comment(info.owner, info.note)
            self._run(
                f"COMMENT ON TABLE {self.qualified(table)} IS {literal(comment) if comment else 'NULL'}"
            )
            self.tables()[table] = info.owner
        stored_type = self.sql_type(info.columns[column])
        selected = ", ".join(
            self.widened(quote(stored.name), stored_type, self.sql_type(stored))
            if stored.name == column
            else quote(stored.name)
            for stored in columns
        )
        try:
            self.connection.execute(
                f"INSERT INTO {self.qualified(table)} SELECT {selected} FROM {self.qualified(aside)}"
            )
        except duckdb.OutOfMemoryException as error:
            # The index is built in memory: a large table may need a higher limit, which the next try
            # of the unit (or of the SCHEMA's changes) gets.
            self._grow_memory(_first_line(error))
            raise RetryUnit(table) from None
        except duckdb.Error as error:
            raise DatabaseError(f"DuckDB {self.path}: {_first_line(error)}") from None
        self._run(f"DROP TABLE {self.qualified(aside)}")
        self._table_info[table] = dataclasses.replace(
            t.cast(TableInfo, self._table_info[table]), owner=info.owner, note=info.note
        )
        self._respell_tombstones(table, column, self.sql_type(info.columns[column]))

    # Transactions and loading ---------------------------------------------------------------------

    def begin(self) -> None:
        if self._unusable is not None:
            raise self._unusable
        try:
            self._set_memory_limit(self._memory_wanted_mb)  # raised by a unit that ran out of memory
        except duckdb.Error as error:
            raise DatabaseError(f"DuckDB {self.path}: {_first_line(error)}") from None
        self._execute("BEGIN TRANSACTION")
        self._columns_written = 0
        self._checkpoint_after_commit = False
        self._column_ddl_steps = None
        self._writing = {}

    def begin_ddl(self) -> None:
        """Column DDL commits every DDL_COLUMNS_PER_COMMIT statements. Each ``COMMENT ON COLUMN`` or
        ``ADD COLUMN`` copies the table's catalog entry, and DuckDB keeps every copy until the commit:
        creating Salesforce's Profile (1,049 columns, each with its comment) in one transaction took
        the process to 573 MB for 15 rows (and a whole org's first sync to 680 MB); committed every
        100 statements, the copies go as they are made."""
        self.begin()
        self._column_ddl_steps = 0

    def _column_ddl_done(self) -> None:
        if self._column_ddl_steps is None:  # DDL inside a unit's transaction (a rebuilt table): whole
            return
        self._column_ddl_steps += 1
        if self._column_ddl_steps % DDL_COLUMNS_PER_COMMIT == 0:
            steps = self._column_ddl_steps
            self.commit()
            self.begin()
            self._column_ddl_steps = steps

    def create_table(
        self, name: str, owner: str, columns: list[Column], primary_key: tuple[str, ...]
    ) -> None:
        self._ensure_memory(len(columns))
        super().create_table(name, owner, columns, primary_key)

    def commit(self) -> None:
        self._column_ddl_steps = None
        started = time.perf_counter()
        self.committed = False
        try:
            self.connection.execute("COMMIT")
        except duckdb.Error as error:
            # A commit writes the transaction's rows and indexes, which may take more memory than its
            # statements did (a rebuilt table's primary key: ~36 bytes a key). DuckDB then undoes
            # the transaction and refuses any further work until the database is opened again.
            if isinstance(error, duckdb.OutOfMemoryException) or "could not allocate" in str(error):
                self._grow_memory(_first_line(error))
                self._reopen()
                raise RetryUnit("commit") from None
            raise DatabaseError(f"DuckDB {self.path}: {_first_line(error)}") from None
        self.committed = True  # what follows (a checkpoint) does not change what the commit wrote
        logger.debug("commit %.3f s", time.perf_counter() - started)
        self._unsaved.update(self._writing)
        self._writing = {}
        if self._checkpoint_after_commit:
            self._checkpoint_after_commit = False
            self._checkpoint("after widening a column")
        elif len(self._unsaved) > 1 and sum(self._unsaved.values()) > CHECKPOINT_COLUMNS:
            self._checkpoint(f"after writing {len(self._unsaved)} tables")

    def _checkpoint(self, why: str) -> None:
        try:
            self.connection.execute("CHECKPOINT")
        except duckdb.Error as error:
            if "invalidated" not in str(error) and self._usable():  # the next checkpoint writes it
                logger.warning("DuckDB %s: checkpoint %s: %s", self.path, why, _first_line(error))
                return
            # DuckDB refuses every statement after a checkpoint that failed (a full disk): say so
            # when the next unit begins, once this unit's STATE is written (its commit holds).
            self._unusable = self._checkpoint_failure(why, error)
        else:
            self._unsaved = {}

    def _usable(self) -> bool:
        try:
            self.connection.execute("SELECT 1").fetchone()
        except duckdb.Error:
            return False
        return True

    def _checkpoint_failure(self, why: str, error: duckdb.Error) -> DatabaseError:
        return DatabaseError(
            f"DuckDB {self.path}: writing the committed rows into the database file failed (checkpoint "
            f"{why}: {_first_line(error)}); what was committed is safe in its write-ahead log "
            f"({self.path}.wal), which the next run applies: make room on its disk (or fix what the error "
            "names) and run again from the last STATE"
        )

    def settle(self) -> None:
        """The run's commits written into the database file now, where a failure can still be told:
        the checkpoint DuckDB makes on closing fails without a word, and the run said "done" on a full
        disk (the next run then failed)."""
        if self._unusable is not None:
            raise self._unusable
        try:
            self.connection.execute("CHECKPOINT")
        except duckdb.Error as error:
            raise self._checkpoint_failure("at the end of the run", error) from None
        self._unsaved = {}

    def rollback(self) -> None:
        self._column_ddl_steps = None
        try:
            self.connection.execute("ROLLBACK")
        except duckdb.Error as error:  # no transaction left to roll back (DuckDB aborted it)
            logger.debug("rollback: %s", _first_line(error))
        while self._unregister_later:
            self.connection.unregister(self._unregister_later.pop())

    def load(self, batch: LoadBatch) -> None:
        info = self.table(batch.table)
        if info is None:
            raise DatabaseError(f"table {self.qualified(batch.table)} disappeared while loading")
        types = {
            name: column.sql_type or SQL_TYPES[t.cast(Kind, column.kind)]
            for name, column in info.columns.items()
        }
        texts = {column.name for column in batch.columns if column.source in NULL_AS_TEXT} | {"received_at"}
        texts -= {batch.columns[i].name for i in self.codec.layout(batch.columns).read}
        temporal_as_text = temporal_in_text_columns(batch, types, SQL_TYPES[Kind.TEXT])
        # Date-times into a column of a type this target does not make (a TIMESTAMP without time zone):
        # as their instants in UTC, as PostgreSQL stores them. A text with an offset cast straight to
        # TIMESTAMP kept its wall time (09:00+02:00 stored as 09:00).
        foreign_instants = {
            column.name
            for column in batch.columns
            if column.source is Source.TIMESTAMP and info.columns[column.name].kind is None
        }

        def value(column: str) -> str:
            if column in foreign_instants:
                instant = (
                    f"CAST(NULLIF(CAST(s.{quote(column)} AS VARCHAR), 'null') AS {SQL_TYPES[Kind.TIMESTAMP]})"
                )
                return f"CAST(timezone('UTC', {instant}) AS {types[column]})"
            if column in temporal_as_text:
                sql_type = SQL_TYPES[temporal_as_text[column]]
                staged = f"CAST(NULLIF(s.{quote(column)}, 'null') AS {sql_type})"
                return self.widened(staged, sql_type, types[column])
            if column in texts:  # exact JSON text in the side table; a JSON null is SQL NULL
                return f"CAST(NULLIF(s.{quote(column)}, 'null') AS {types[column]})"
            return f"CAST(s.{quote(column)} AS {types[column]})"

        self._columns_written += len(info.columns)
        self._writing[batch.table] = len(info.columns)
        connection = self.connection
        self._staged += 1
        side = f"{_STAGED}_side_{self._staged}"
        source = self._source_sql(batch, side)
        table = self.qualified(batch.table)
        try:
            self._ensure_memory(self._columns_written)
            connection.register(side, batch.payload.side)
            if batch.has_duplicates is None:
                batch = dataclasses.replace(batch, has_duplicates=self._keys_repeat(batch, side, value))
            if self._appending(batch, info, side, value):
                # A plain INSERT straight from the reader: no staging table, no join with the table.
                # The primary key refuses a key that is already there: then this table is upserted
                # from now on, and the unit runs again.
                try:
                    for statement in statements(batch, table, source, value, upsert="insert"):
                        self._timed(batch, statement)
                except duckdb.ConstraintException:
                    logger.info("stream %s: some keys exist already; upserting from now on", batch.stream)
                    self._upserted.add(batch.table)
                    raise RetryUnit(batch.table) from None
                return
            upsert = self._upsert(batch, info)
            tombstones = self._tombstones(batch, types) if merge.applies(batch) else None
            if upsert == "delete_insert" and batch.key and not batch.has_duplicates and tombstones is None:
                self._delete_then_insert(batch, table, side, source, value)
                return
            # Duplicate keys (collapsed by DISTINCT ON), or columns to keep (an UPDATE): staged once.
            staging = quote(f"{_STAGED}_{self._staged}")
            # The staging table holds the table's own types: the DELETE's join and the INSERT then
            # read typed values (each text value is parsed once, here, not in both statements).
            staged = [*(column.name for column in batch.columns), "received_at"]
            typed = ", ".join([f"{value(name)} AS {quote(name)}" for name in staged] + [f"s.{quote(SEQ)}"])
            self._timed(batch, f"CREATE TEMP TABLE {staging} AS SELECT {typed} FROM {source} AS s")
            if tombstones is not None:
                self._timed(batch, merge.prune_statement(batch, table, staging, tombstones))
            for statement in statements(batch, table, staging, upsert=upsert):
                self._timed(batch, statement)
            if tombstones is not None:
                for statement in merge.tombstone_statements(batch, staging, tombstones):
                    self._timed(batch, statement)
            self._timed(batch, f"DROP TABLE {staging}")
        except _DATA_ERRORS as error:
            raise RowRejected(_refusal(error)) from None
        except duckdb.OutOfMemoryException as error:
            self._grow_memory(_first_line(error))
            raise RetryUnit(batch.table) from None
        except duckdb.Error as error:
            raise DatabaseError(f"DuckDB {self.path}: {_first_line(error)}") from None
        finally:
            try:
                connection.unregister(side)
            except duckdb.Error:  # the failed statement aborted the transaction; the loader rolls back
                self._unregister_later.append(side)

    def key_text(self, key: t.Sequence[str], types: t.Mapping[str, str]) -> t.Callable[[list[str]], str]:
        return lambda values: f"CAST(json_array({', '.join(values)}) AS VARCHAR)"

    def _json_element(self, text: str, index: int) -> str:
        return f"json_extract_string({text}, '$[{index}]')"

    def _tombstones(self, batch: LoadBatch, types: dict[str, str]) -> Tombstones:
        """The tombstones of the batch's table (their table created when missing, in this transaction).
        Keys are spelled as DuckDB's JSON of the typed values (DECIMAL keeps a fixed scale, the session
        is in UTC)."""
        tombstones = Tombstones(
            self.qualified(DELETED_KEYS_TABLE),
            literal(batch.table),
            self.key_text(batch.key, types),
            types[t.cast(str, batch.replication_key)],
        )
        self.connection.execute(tombstones.ddl("VARCHAR", "TIMESTAMP WITH TIME ZONE"))
        return tombstones

    def _keys_repeat(self, batch: LoadBatch, side: str, value: t.Callable[[str], str]) -> bool:
        """Whether two rows of the batch share a key, as the table's types compare them."""
        keys = ", ".join(value(name) for name in batch.key)
        distinct = f"SELECT count(*) FROM (SELECT DISTINCT {keys} FROM {quote(side)} AS s)"
        return bool(batch.key) and self.connection.execute(distinct).fetchone()[0] < batch.row_count

    def _delete_then_insert(
        self, batch: LoadBatch, table: str, side: str, source: str, value: t.Callable[[str], str]
    ) -> None:
        """Upsert without a staging table: the DELETE of the stored rows the batch wins over reads the
        keys from the side table, then the INSERT reads the records straight into the table: all of
        them when every one deleted a stored row (no key of the batch is left), else those whose key
        is absent (a newer stored row stays). Each record's JSON is parsed once, and no copy of the
        batch waits in DuckDB's memory between the two statements."""
        delete, _ = statements(batch, table, quote(side), value, upsert="delete_insert")
        if self._timed(batch, delete) == batch.row_count:
            insert = statements(batch, table, source, value, upsert="insert")[0]
        else:
            insert = statements(batch, table, source, value, upsert="delete_insert")[1]
        self._timed(batch, insert)

    def _ensure_memory(self, columns: int) -> None:
        """Raise DuckDB's memory limit and checkpoint threshold to what writing this many columns
        needs (never lower them)."""
        self._set_memory_limit(MEMORY_LIMIT_MB + columns * MEMORY_PER_COLUMN_KB // 1024)
        checkpoint_mb = CHECKPOINT_BASE_MB + columns * CHECKPOINT_PER_COLUMN_KB // 1024
        checkpoint_mb = min(CHECKPOINT_MAX_MB, checkpoint_mb)
        if checkpoint_mb > self._checkpoint_mb:
            self.connection.execute(f"SET checkpoint_threshold = '{checkpoint_mb}MB'")
            self._checkpoint_mb = checkpoint_mb

    def _grow_memory(self, reason: str) -> None:
        """After DuckDB ran out of its limit: double it for the unit's next run (set once the aborted
        transaction is rolled back: DuckDB takes no SET inside it), up to memory_ceiling_mb; past that
        the run stops rather than grow into the kernel's OOM killer."""
        ceiling = memory_ceiling_mb()
        if self._memory_limit_mb >= ceiling:
            raise DatabaseError(
                f"DuckDB {self.path}: a unit needs more than {self._memory_limit_mb:,} MB, the most the "
                f"target lets DuckDB take here ({reason}); nothing of it was written: lower "
                "batch_size_rows and run again from the last STATE"
            )
        self._memory_wanted_mb = min(2 * self._memory_limit_mb, ceiling)
        if _SPILL_FAILED in reason:
            logger.warning(
                "DuckDB could not spill to its temporary folder %s.tmp (%s: its disk is full, or DuckDB's "
                "max_temp_directory_size is reached); raising its memory limit to %d MB instead and loading "
                "again",
                self.path,
                reason,
                self._memory_wanted_mb,
            )
            return
        logger.warning(
            "DuckDB ran out of its %d MB memory limit (%s); raising it to %d MB and loading again",
            self._memory_limit_mb,
            reason,
            self._memory_wanted_mb,
        )

    def _set_memory_limit(self, megabytes: int) -> None:
        if megabytes > self._memory_limit_mb:
            self.connection.execute(f"SET memory_limit = '{megabytes}MB'")
            self._memory_limit_mb = megabytes

    def _appending(self, batch: LoadBatch, info: TableInfo, side: str, value: t.Callable[[str], str]) -> bool:
        """Whether to load the batch with a plain INSERT (its table's primary key guarding it).

        Not when the batch's first key is stored already (a run of updates, say): that INSERT could
        only fail, after doing all its work. Probed once per table and run (a few milliseconds); a
        later batch that meets stored keys turns the table to upserts when its INSERT is refused.
        """
        if not (
            bool(batch.key)
            and not batch.delete_flag
            and info.primary_key == batch.key
            and batch.table not in self._upserted
        ):
            return False
        if batch.table not in self._probed:
            self._probed.add(batch.table)
            if self._first_key_stored(batch, side, value):
                logger.info("stream %s: its first record's key is stored already; upserting", batch.stream)
                self._upserted.add(batch.table)
                return False
        return True

    def _first_key_stored(self, batch: LoadBatch, side: str, value: t.Callable[[str], str]) -> bool:
        """Whether the table holds a row with the key of the batch's first row (cast as an upsert's
        DELETE casts it)."""
        first = ", ".join(f"{value(name)} AS {quote(name)}" for name in batch.key)
        match = " AND ".join(f"t.{quote(name)} = f.{quote(name)}" for name in batch.key)
        query = (
            f"SELECT EXISTS (SELECT 1 FROM {self.qualified(batch.table)} AS t "
            f"JOIN (SELECT {first} FROM (SELECT * FROM {quote(side)} LIMIT 1) AS s) AS f ON {match})"
        )
        return bool(self.connection.execute(query).fetchone()[0])

    def column_sql(self, column: Column, in_key: bool) -> str:
        definition = super().column_sql(column, in_key)
        if in_key and self.sql_type(column) == SQL_TYPES[Kind.TEXT]:
            # Upserts delete the rows they replace, and a commit then reads each deleted row's key:
            # from compressed strings (FSST) that costs DuckDB a dictionary per row (~1 s per 20,000
            # rows), uncompressed it is a lookup. Keys are short, so the file grows little.
            definition += " USING COMPRESSION uncompressed"
        return definition

    @staticmethod
    def _upsert(batch: LoadBatch, info: TableInfo) -> str:
        """``delete_insert`` (a DELETE costs DuckDB no memory, an UPDATE keeps every new value in
        memory until a checkpoint), unless the table has columns the batch does not write (added by
        someone else: an upsert keeps their values)."""
        written = {column.name for column in batch.columns} | set(batch.nulled) | set(SYSTEM_COLUMNS)
        return "delete_insert" if set(info.columns) <= written else "update_insert"

    def _source_sql(self, batch: LoadBatch, side: str) -> str:
        """The batch as a subquery: DuckDB reads its columns from the spooled lines' ``record``, joined by
        position with the side table (both hold the batch's rows in the same order)."""
        payload: JsonPayload = batch.payload
        read = self.codec.layout(batch.columns).read
        aside = [quote(name) for name in payload.side.column_names]
        selected = [
            f"struct_extract(j.record, {literal(batch.columns[i].prop)}) AS {quote(batch.columns[i].name)}"
            for i in read
        ]
        selected += [f"a.{name}" for name in aside]
        source = f"{quote(side)} AS a"
        if read:
            fields = ", ".join(
                f"{quote(batch.columns[i].prop)} {json_read_type(batch.columns[i])}" for i in read
            )
            files = ", ".join(literal(str(path)) for path in payload.paths)
            object_bytes = max(payload.longest + 1, READER_OBJECT_BYTES)
            # read_json with the format and records spelled out: read_ndjson reads a STRUCT column
            # 3 to 10 times slower (DuckDB 2.0: 22,192 records of 33 fields, 0.8 s against 0.08 s).
            reader = (
                f"read_json([{files}], format = 'newline_delimited', records = true, "
                f"columns = {{'record': {literal(f'STRUCT({fields})')}}}, auto_detect = false, "
                f"compression = 'none', maximum_object_size = {object_bytes})"
            )
            source = f"{reader} AS j POSITIONAL JOIN {source}"
        return f"(SELECT {', '.join(selected)} FROM {source})"

    def _timed(self, batch: LoadBatch, statement: str) -> int | None:
        """Run a statement; return the rows it changed (None when it reports none)."""
        started = time.perf_counter()
        result = self.connection.execute(statement).fetchone()
        elapsed = time.perf_counter() - started
        logger.debug("stream %s: %s in %.3f s", batch.stream, statement.split(" ", 2)[:2], elapsed)
        return result[0] if result and isinstance(result[0], int) else None

    def quarantine(self, rows: list[Rejected]) -> None:
        if not rows:
            return
        table = self.qualified(REJECTED_TABLE)
        self._execute(
            f"CREATE TABLE IF NOT EXISTS {table} (stream VARCHAR, line BIGINT, record_key JSON, "
            "field VARCHAR, error VARCHAR, record VARCHAR, rejected_at TIMESTAMP WITH TIME ZONE)"
        )
        staged = pa.table(
            {
                "stream": [row.stream for row in rows],
                "line": pa.array([row.line for row in rows], pa.int64()),
                "record_key": [
                    None if row.key is None else convert.json_encoder.encode(row.key).decode() for row in rows
                ],
                "field": [row.field for row in rows],
                "error": [row.error for row in rows],
                "record": [row.record.replace("\x00", "") for row in rows],
            }
        )
        self.connection.register("tws_rejected", staged)
        try:
            self._execute(
                f"INSERT INTO {table} SELECT stream, line, CAST(record_key AS JSON), field, error, record, "
                "now() FROM tws_rejected"
            )
        finally:
            self.connection.unregister("tws_rejected")


def _open(path: str) -> duckdb.DuckDBPyConnection:
    """A connection whose default database is the warehouse file, attached to an in-memory database.

    Opening the file directly replays its write-ahead log before DuckDB loads its built-in
    extensions: after a crash (a killed run) between a commit and the next checkpoint, a logged
    ``ALTER ... SET DATA TYPE ... USING`` that calls one of their functions (``rtrim``, ``strftime``,
    ``AT TIME ZONE``: the target's widenings to text) makes DuckDB 2.0 try to download the
    ``core_functions`` extension, and the database cannot be opened offline. Attached from a running
    database, the log replays with those functions loaded.
    """
    if path == ":memory:":
        return duckdb.connect(path)
    # DuckDB spills to a folder beside the database file: beside the attached file, not in the
    # working directory (an in-memory database's default).
    connection = duckdb.connect(":memory:", config={"temp_directory": f"{path}.tmp"})
    try:
        connection.execute(f"ATTACH {literal(path)} AS {quote(WAREHOUSE_ALIAS)}")
        if is_file_path(path):
            _refuse_unless_file_backed(connection, path)
        connection.execute(f"USE {quote(WAREHOUSE_ALIAS)}")
    except BaseException:
        connection.close()
        raise
    return connection


def _open_when_free(path: str) -> duckdb.DuckDBPyConnection:
    """``_open``, waiting while another process has the file open: DuckDB lets one process at a time
    open a file for writing, and a run that meets a notebook's or a dashboard's connection, or a run
    scheduled a bit early, should wait for it a while rather than fail the sync at once. The wait ends
    after FILE_LOCK_WAIT_SECONDS; DuckDB's error then names the process holding the file."""
    pauses = Pauses(FILE_LOCK_FIRST_PAUSE_SECONDS, FILE_LOCK_MAX_PAUSE_SECONDS, FILE_LOCK_WAIT_SECONDS)
    while True:
        try:
            return _open(path)
        except duckdb.IOException as error:
            holder = _FILE_LOCK_HOLDER.search(str(error))
            if holder is None:
                raise
            if not pauses.tries:
                logger.warning(
                    "DuckDB database %s is open in another process (%s); waiting up to %.0f s for it to "
                    "close it",
                    path,
                    holder.group(1),
                    FILE_LOCK_WAIT_SECONDS,
                )
            pause = pauses.next()
            if pause is None:
                raise duckdb.IOException(f"{_first_line(error)} (waited {pauses.spent:.0f} s)") from None
            wait_or_stop(pause)


def _refuse_unless_file_backed(connection: duckdb.DuckDBPyConnection, path: str) -> None:
    """``ConfigError`` unless the attached database is the file at ``path``. DuckDB 2.0 attaches an
    existing JSON, CSV or Parquet file as a database in memory (views over the file, path NULL in
    ``duckdb_databases()``), and loads into it vanish at exit. ``checked_path`` refuses those files by
    their header before the run reads anything; this catches whatever else DuckDB opens without a
    file (one replacing the path after that check, a format a later DuckDB opens so)."""
    row = connection.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = ?", [WAREHOUSE_ALIAS]
    ).fetchone()
    if row is None or row[0] is None:
        raise not_a_duckdb_file(path)


def _optional_setting(connection: duckdb.DuckDBPyConnection, statement: str) -> None:
    """Run the ``SET`` or ``RESET`` of a setting that only makes loading faster (a DuckDB without it
    loads slower, nothing else)."""
    try:
        connection.execute(statement)
    except duckdb.Error as error:
        logger.debug("DuckDB refused %s: %s", statement, _first_line(error))


def _refusal(error: BaseException) -> str:
    """DuckDB's reason for refusing data, without the spool file's name (a line number there counts
    the batch's rows, not the input's: the loader finds the input line)."""
    return re.sub(r' in file "[^"]*"(, at byte \d+)?(,? in line \d+)?', "", _first_line(error))


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
