"""PostgreSQL engine: psycopg 3, ``COPY ... FROM STDIN`` (text format) into a temporary staging table,
then one ``INSERT ... ON CONFLICT`` per batch, all inside the loader's transaction.

The COPY text is built column by column (``PostgresCodec``): numbers, booleans and dates are written by
one msgspec encode of the whole column (exact decimals, RFC 3339 datetimes), text columns are joined,
escaped and split with a handful of C-level string operations. The server parses datetimes and
numbers while copying; a value it refuses is located (COPY names the line, otherwise the batch is
bisected) and reported against its input line.
"""

from __future__ import annotations

import logging
import re
import typing as t
from urllib.parse import quote as url_quote
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from target_warehouse_seg import convert
from target_warehouse_seg.engines import (
    REJECTED_TABLE,
    BatchColumn,
    Codec,
    Column,
    Engine,
    LoadBatch,
    Rejected,
    RowRejected,
    TableInfo,
)
from target_warehouse_seg.engines.merge import SEQ, statements
from target_warehouse_seg.errors import ConfigError, DatabaseError
from target_warehouse_seg.identifiers import quote
from target_warehouse_seg.typemap import Kind

logger = logging.getLogger("target-warehouse-seg")

SQL_TYPES = {
    Kind.BOOLEAN: "boolean",
    Kind.INTEGER: "bigint",
    Kind.NUMBER: "numeric",
    Kind.DATE: "date",
    Kind.TIME: "time without time zone",
    Kind.TIMESTAMP: "timestamp with time zone",
    Kind.TEXT: "text",
    Kind.JSON: "jsonb",
}
KINDS = {sql_type: kind for kind, sql_type in SQL_TYPES.items()}
MAX_COLUMNS = 1600
_NULL = b"\\N"
_encode = convert.json_encoder.encode


# The payload ------------------------------------------------------------------------------------


def _text_column(values: t.Sequence[str | None]) -> list[bytes]:
    """COPY-text fields of a text column: values hold no NUL (convert.py removed them)."""
    present = [value for value in values if value is not None] if None in values else values
    joined = "\x00".join(present).encode("utf-8")
    if b"\\" in joined or b"\t" in joined or b"\n" in joined or b"\r" in joined:
        joined = (
            joined.replace(b"\\", b"\\\\")
            .replace(b"\t", b"\\t")
            .replace(b"\n", b"\\n")
            .replace(b"\r", b"\\r")
        )
    fields = joined.split(b"\x00") if present else []
    if len(present) == len(values):
        return fields
    escaped = iter(fields)
    return [_NULL if value is None else next(escaped) for value in values]


def _scalar_column(values: t.Sequence[t.Any]) -> list[bytes]:
    """Numbers and booleans: one JSON encode of the column (exact digits), split on commas."""
    return _encode(values)[1:-1].replace(b"null", _NULL).split(b",")


def _number_column(values: t.Sequence[t.Any]) -> list[bytes]:
    """Exact decimals; JSON has no NaN or Infinity, but a lenient decode of a string might."""
    encoded = _encode(values)
    if b"N" in encoded or b"I" in encoded:
        convert.check_finite(values)
    return encoded[1:-1].replace(b"null", _NULL).split(b",")


def _temporal_column(values: t.Sequence[t.Any]) -> list[bytes]:
    """Dates, times and datetimes: RFC 3339 from one JSON encode, quotes dropped."""
    return _encode(values)[1:-1].replace(b'"', b"").replace(b"null", _NULL).split(b",")


_FIELDS: dict[Kind, t.Callable[[t.Sequence[t.Any]], list[bytes]]] = {
    Kind.TEXT: _text_column,
    Kind.JSON: _text_column,
    Kind.INTEGER: _scalar_column,
    Kind.NUMBER: _number_column,
    Kind.BOOLEAN: _scalar_column,
    Kind.TIMESTAMP: _temporal_column,
    Kind.DATE: _temporal_column,
    Kind.TIME: _temporal_column,
}
_UNESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{1,2}|[0-7]{1,3}|.)")
_ESCAPES = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v"}


def _unescape(field: bytes) -> str | None:
    if field == _NULL:
        return None

    def replace(match: re.Match[bytes]) -> bytes:
        code = match.group(1)
        if code[:1] == b"x":
            return bytes([int(code[1:], 16)])
        if code[:1].isdigit():
            return bytes([int(code, 8) & 0xFF])
        return _ESCAPES.get(code, code)

    return _UNESCAPE.sub(replace, field).decode("utf-8", "replace")


class PostgresCodec(Codec):
    """COPY text rows: ``@seq``, ``received_at``, then the property columns."""

    def encode(
        self,
        columns: list[BatchColumn],
        values: list[list[t.Any]],
        lines: list[int],
        received_at: list[t.Any],
    ) -> bytes:
        fields = [_scalar_column(lines), _temporal_column(received_at)]
        for position, (column, column_values) in enumerate(zip(columns, values, strict=False)):
            try:
                fields.append(_FIELDS[column.kind](column_values))
            except convert.ValueProblem as problem:
                problem.column = position
                raise
        return b"\n".join(map(b"\t".join, zip(*fields, strict=False))) + b"\n"

    def finish(self, columns: list[BatchColumn], parts: list[t.Any]) -> list[bytes]:
        return parts

    def subset(self, payload: list[bytes], indices: t.Sequence[int]) -> list[bytes]:
        rows = b"".join(payload).split(b"\n")
        return [b"".join(rows[index] + b"\n" for index in indices)]

    def row(self, columns: list[BatchColumn], payload: list[bytes], index: int) -> dict[str, t.Any]:
        fields = b"".join(payload).split(b"\n")[index].split(b"\t")
        return {column.prop: _unescape(field) for column, field in zip(columns, fields[2:], strict=False)}


# Settings -------------------------------------------------------------------------------------------

_DRIVER_SCHEMES = re.compile(r"^(postgres|postgresql)(\+[a-z0-9_]+)?://", re.IGNORECASE)


def connection_settings(config: t.Mapping[str, t.Any]) -> tuple[str, str]:
    """The libpq connection string and a display form with the password masked."""
    url = config.get("sqlalchemy_url")
    if url:
        if not isinstance(url, str) or not _DRIVER_SCHEMES.match(url):
            raise ConfigError(
                "setting `sqlalchemy_url` must be a PostgreSQL URL such as "
                "postgresql://user:password@host:5432/database (postgresql+psycopg:// also works)"
            )
        plain = _DRIVER_SCHEMES.sub("postgresql://", url, count=1)
        try:
            conninfo_to_dict(plain)
        except psycopg.ProgrammingError as error:
            raise ConfigError(
                f"setting `sqlalchemy_url` is not a valid PostgreSQL URL: {mask_secrets(str(error), url)}"
            ) from None
        return plain, mask_url(plain)
    if not config.get("host"):
        raise ConfigError(
            "engine `postgres` needs setting `sqlalchemy_url` or setting `host` (with `user`, "
            "`password`, `database`)"
        )
    params = {
        "host": config.get("host"),
        "port": config.get("port"),
        "user": config.get("user"),
        "password": config.get("password"),
        "dbname": config.get("database"),
        "sslmode": config.get("sslmode"),
    }
    params = {name: value for name, value in params.items() if value not in (None, "")}
    display = (
        f"postgresql://{params.get('user', '')}{':***' if 'password' in params else ''}@"
        f"{params['host']}:{params.get('port', 5432)}/{params.get('dbname', '')}"
    )
    return make_conninfo(**params), display


def mask_url(url: str) -> str:
    """The URL with its password (if any) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = url_quote(parts.username or "", safe="")
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[-1]}"))


def mask_secrets(text: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


# The engine -------------------------------------------------------------------------------------

_CATALOG_QUERY = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), col_description(c.oid, a.attnum),
       a.attisdropped, array_position(i.indkey::int2[], a.attnum), obj_description(c.oid, 'pg_class')
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
WHERE n.nspname = %s AND c.relname = %s
ORDER BY a.attnum
"""
_TABLES_QUERY = """
SELECT c.relname, obj_description(c.oid, 'pg_class')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
"""
# SQLSTATE classes that mean "this data", not "this connection": data exception, integrity violation,
# syntax error or access rule violation (e.g. a cast that does not exist), program limits.
_DATA_ERROR_CLASSES = ("22", "23", "42", "54")


class PostgresEngine(Engine):
    name = "postgres"
    max_columns = MAX_COLUMNS

    def __init__(self, conninfo: str, display: str, schema: str) -> None:
        self._conninfo = conninfo
        self.display = display
        self.schema = schema
        self.codec = PostgresCodec()
        self._connection: psycopg.Connection | None = None
        self._tables: dict[str, str | None] | None = None
        self._table_info: dict[str, TableInfo | None] = {}
        self._staging_counter = 0
        self._password = conninfo_to_dict(conninfo).get("password")

    @classmethod
    def from_config(cls, config: t.Mapping[str, t.Any]) -> PostgresEngine:
        conninfo, display = connection_settings(config)
        return cls(conninfo, display, config["schema"])

    @property
    def connection(self) -> psycopg.Connection:
        if self._connection is None:
            raise DatabaseError("not connected to PostgreSQL")
        return self._connection

    def connect(self) -> None:
        try:
            self._connection = psycopg.connect(
                self._conninfo, autocommit=False, application_name="target-warehouse-seg"
            )
        except psycopg.Error as error:
            message = mask_secrets(str(error).strip().splitlines()[0], self._password)
            raise DatabaseError(f"cannot connect to PostgreSQL at {self.display}: {message}") from None
        self._connection.execute("SET TIME ZONE 'UTC'")
        self._connection.commit()
        logger.info("connected to PostgreSQL at %s, schema %s", self.display, self.schema)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    @property
    def qualified_schema(self) -> str:
        return quote(self.schema)

    def qualified(self, table: str) -> str:
        return f"{quote(self.schema)}.{quote(table)}"

    def ensure_schema(self) -> None:
        with self._database_errors():
            exists = self.connection.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)
            ).fetchone()
            if not exists:
                self.connection.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(self.schema)}")
            self.connection.commit()

    def tables(self) -> dict[str, str | None]:
        if self._tables is None:
            with self._database_errors():
                rows = self.connection.execute(_TABLES_QUERY, (self.schema,)).fetchall()
            self._tables = dict(rows)
        return self._tables

    def table(self, name: str) -> TableInfo | None:
        if name not in self._table_info:
            with self._database_errors():
                rows = self.connection.execute(_CATALOG_QUERY, (self.schema, name)).fetchall()
            self._table_info[name] = self._table_from_catalog(name, rows) if rows else None
        return self._table_info[name]

    @staticmethod
    def _table_from_catalog(name: str, rows: list[tuple]) -> TableInfo:
        columns: dict[str, Column] = {}
        key: list[tuple[int, str]] = []
        for column, sql_type, comment, dropped, key_position, _ in rows:
            if dropped:
                continue
            columns[column] = Column(column, KINDS.get(sql_type), comment, sql_type)
            if key_position is not None:
                key.append((key_position, column))
        return TableInfo(name, columns, tuple(column for _, column in sorted(key)), rows[0][5], len(rows))

    def forget(self) -> None:
        self._tables = None
        self._table_info.clear()

    # DDL ----------------------------------------------------------------------------------------

    def _definition(self, column: Column) -> str:
        return f"{quote(column.name)} {column.sql_type or SQL_TYPES[t.cast(Kind, column.kind)]}"

    def create_table(
        self, name: str, owner: str, columns: list[Column], primary_key: tuple[str, ...]
    ) -> None:
        definitions = [self._definition(column) for column in columns]
        if primary_key:
            definitions.append(f"PRIMARY KEY ({', '.join(quote(column) for column in primary_key)})")
        with self._database_errors():
            self.connection.execute(f"CREATE TABLE {self.qualified(name)} ({', '.join(definitions)})")
            self.connection.execute(f"COMMENT ON TABLE {self.qualified(name)} IS {_literal(owner)}")
            self._comment_columns(name, columns)
        self.tables()[name] = owner
        self._table_info[name] = TableInfo(
            name,
            {
                column.name: Column(
                    column.name,
                    column.kind,
                    column.owner,
                    column.sql_type or SQL_TYPES[t.cast(Kind, column.kind)],
                )
                for column in columns
            },
            primary_key,
            owner,
            len(columns),
        )

    def _comment_columns(self, table: str, columns: list[Column]) -> None:
        for column in columns:
            if column.owner is not None:
                target = f"{self.qualified(table)}.{quote(column.name)}"
                self.connection.execute(f"COMMENT ON COLUMN {target} IS {_literal(column.owner)}")

    def add_columns(self, table: str, columns: list[Column]) -> None:
        if not columns:
            return
        additions = ", ".join(f"ADD COLUMN {self._definition(column)}" for column in columns)
        with self._database_errors():
            self.connection.execute(f"ALTER TABLE {self.qualified(table)} {additions}")
            self._comment_columns(table, columns)
        info = self._table_info.get(table)
        if info is not None:
            for column in columns:
                info.columns[column.name] = Column(
                    column.name, column.kind, column.owner, SQL_TYPES[t.cast(Kind, column.kind)]
                )
            info.column_slots += len(columns)

    def widen_column(self, table: str, column: str, kind: Kind) -> None:
        sql_type = SQL_TYPES[kind]
        with self._database_errors():
            self.connection.execute(
                f"ALTER TABLE {self.qualified(table)} ALTER COLUMN {quote(column)} TYPE {sql_type} "
                f"USING {quote(column)}::{sql_type}"
            )
        info = self._table_info.get(table)
        if info is not None:
            old = info.columns[column]
            info.columns[column] = Column(column, kind, old.owner, sql_type)

    # Transactions and loading ---------------------------------------------------------------------

    def begin(self) -> None:
        self._staging_counter = 0  # the first statement opens the transaction (autocommit is off)

    def commit(self) -> None:
        with self._database_errors():
            self.connection.commit()

    def rollback(self) -> None:
        with self._database_errors():
            self.connection.rollback()

    def load(self, batch: LoadBatch) -> None:
        info = self.table(batch.table)
        if info is None:
            raise DatabaseError(f"table {self.qualified(batch.table)} disappeared while loading")
        self._staging_counter += 1
        staging = quote(f"tws_staging_{self._staging_counter}")
        definitions = [f"{quote(SEQ)} bigint", '"received_at" timestamp with time zone']
        definitions += [
            f"{quote(column.name)} {info.columns[column.name].sql_type}" for column in batch.columns
        ]
        target = self.qualified(batch.table)
        connection = self.connection
        with self._data_errors(batch):
            connection.execute(f"CREATE TEMPORARY TABLE {staging} ({', '.join(definitions)}) ON COMMIT DROP")
            names = ", ".join(quote(name) for name in [SEQ, "received_at", *(c.name for c in batch.columns)])
            with connection.cursor() as cursor:
                with cursor.copy(f"COPY {staging} ({names}) FROM STDIN") as copy:
                    for part in batch.payload:
                        copy.write(part)
                for statement in statements(batch, target, staging):
                    cursor.execute(statement)
            connection.execute(f"DROP TABLE {staging}")

    def quarantine(self, rows: list[Rejected]) -> None:
        if not rows:
            return
        table = self.qualified(REJECTED_TABLE)
        with self._database_errors():
            self.connection.execute(
                f"CREATE TABLE IF NOT EXISTS {table} (stream text, line bigint, record_key jsonb, "
                f"field text, error text, record text, rejected_at timestamp with time zone DEFAULT now())"
            )
            copy_rows = f"COPY {table} (stream, line, record_key, field, error, record) FROM STDIN"
            with self.connection.cursor() as cursor, cursor.copy(copy_rows) as copy:
                for row in rows:
                    copy.write_row(
                        (
                            _clean(row.stream),
                            row.line,
                            None if row.key is None else _clean(_encode(row.key).decode("utf-8")),
                            _clean(row.field),
                            _clean(row.error),
                            _clean(row.record),
                        )
                    )

    # Errors ---------------------------------------------------------------------------------------

    def _database_errors(self) -> t.ContextManager[None]:
        return _translate(self, None)

    def _data_errors(self, batch: LoadBatch) -> t.ContextManager[None]:
        return _translate(self, batch)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''").replace("\x00", "") + "'"


def _clean(text: str | None) -> str | None:
    return None if text is None else text.replace("\x00", "")


class _translate:
    """Map psycopg errors: data problems become ``RowRejected``, the rest ``DatabaseError``."""

    _COPY_CONTEXT = re.compile(r"COPY [^,]+, line (\d+)(?:, column ([^:]+))?")

    def __init__(self, engine: PostgresEngine, batch: LoadBatch | None) -> None:
        self.engine = engine
        self.batch = batch

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, error: BaseException | None, traceback: t.Any) -> bool:
        if error is None or not isinstance(error, psycopg.Error):
            return False
        message = mask_secrets(
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__,
            self.engine._password,
        )
        state = error.sqlstate or ""
        if self.batch is not None and state[:2] in _DATA_ERROR_CLASSES:
            context = error.diag.context or ""
            match = self._COPY_CONTEXT.search(context)
            index = int(match.group(1)) - 1 if match else None
            column = error.diag.column_name or (match.group(2) if match and match.group(2) else None)
            raise RowRejected(message, column=column, index=index) from None
        raise DatabaseError(f"PostgreSQL at {self.engine.display}: {message}") from None
