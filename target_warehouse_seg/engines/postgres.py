"""PostgreSQL engine: psycopg 3, ``COPY ... FROM STDIN`` (binary format) into a temporary staging
table, then one ``INSERT ... ON CONFLICT`` per batch, all inside the loader's transaction.

The COPY rows are formatted by the codec (postgres_codec.py). The server casts numbers and JSON from
their text while merging; a value it refuses is located (COPY names the line, otherwise the batch is
bisected) and reported against its input line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
import typing as t
from urllib.parse import quote as url_quote
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg._encodings import pg2pyenc  # psycopg's own map of PostgreSQL encodings to Python codecs
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus

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
    stored_column,
    stored_table,
    temporal_in_text_columns,
)
from target_warehouse_seg.engines.merge import SEQ, Tombstones, statements
from target_warehouse_seg.engines.postgres_codec import _SIGNATURE, _TRAILER, PostgresCodec, staging_type
from target_warehouse_seg.errors import ConfigError, ConnectionLost, DatabaseError
from target_warehouse_seg.identifiers import quote
from target_warehouse_seg.pauses import Pauses
from target_warehouse_seg.typemap import Kind, Source

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
# Types others make (a table created by hand or by another tool) that hold only some of a kind's values,
# as format_type spells them: widened losslessly to the target's own type once a stream writes the
# column (into an integer column, a value past 2**31 was refused as invalid input). Not character(n),
# whose cast to text drops the padding, nor floats or timestamps without a time zone, which hold
# other values, not fewer: those keep their types.
_NARROW_TYPES = (
    (re.compile(r"smallint|integer"), Kind.INTEGER),
    (re.compile(r"numeric\(\d+,\d+\)"), Kind.NUMBER),
    (re.compile(r"character varying(\(\d+\))?"), Kind.TEXT),
    (re.compile(r"timestamp\(\d\) with time zone"), Kind.TIMESTAMP),
    (re.compile(r"time\(\d\) without time zone"), Kind.TIME),
)


def narrow_kind(sql_type: str) -> Kind | None:
    return next((kind for pattern, kind in _NARROW_TYPES if pattern.fullmatch(sql_type)), None)


# Kept types with a length or a scale (format_type's spelling). An explicit cast to them, as the merge
# makes, cuts text and bit strings to the length (`much too long` into varchar(10) was stored as
# `much too l`, two 21-character ids into a varchar(18) key became one row), pads bit(n), and rounds a
# number to the scale, all without a word. So the value is cast to the type without its length or scale,
# checked, and a value the type cannot hold whole is refused as invalid input (``_KEPT_REFUSAL``).
_LENGTH_TYPES = re.compile(r"(character varying|character|bit varying|bit)\((\d+)\)")
_SCALED_NUMERIC = re.compile(r"numeric\((\d+),(\d+)\)")
# The type without its length, as a cast accepts it: `character` and `bit` alone mean a length of one.
_UNLIMITED = {
    "character varying": "character varying",
    "character": "bpchar",
    "bit varying": "varbit",
    "bit": '"bit"',
}
# Raises the value's refusal in the statement, naming the column (the loader then names the property and
# the record's line, and quarantines it or stops as for any value the database refuses). In pg_temp, so
# that a role that may only write rows can make it, and created in each transaction that uses it: behind
# a transaction pooler the next transaction may run on another server session.
_KEPT_REFUSAL = """
CREATE OR REPLACE FUNCTION pg_temp.tws_refuse(value anyelement, problem text, column_name text)
RETURNS anyelement LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $tws$
BEGIN
  RAISE EXCEPTION USING ERRCODE = '22001', MESSAGE = problem, COLUMN = column_name;
  RETURN value;
END
$tws$
"""


def kept_value(expression: str, sql_type: str, column: str) -> str:
    """``expression`` cast to ``sql_type``, refused (not cut or rounded) when the type cannot hold it."""
    check = _fit_check(expression, sql_type)
    if check is None:
        return f"CAST({expression} AS {sql_type})"
    whole, fits, problem = check
    refused = f"pg_temp.tws_refuse({whole}, {problem}, {pg_literal(column)})"
    # The final cast no longer changes the value; it keeps the expression's type the column's.
    return f"CAST(CASE WHEN {fits} IS NOT FALSE THEN {whole} ELSE {refused} END AS {sql_type})"


def _fit_check(expression: str, sql_type: str) -> tuple[str, str, str] | None:
    """For a type with a length or a scale: the value cast to the type without it, the SQL condition that
    the type holds it whole (NULL for NULL), and the SQL text of its refusal."""
    named = pg_literal(sql_type)
    length = _LENGTH_TYPES.fullmatch(sql_type)
    if length is not None:
        base, size = _UNLIMITED[length.group(1)], int(length.group(2))
        whole = f"CAST({expression} AS {base})"
        if length.group(1) == "bit":  # bit(n) pads a shorter string with zeros, too
            problem = f"format('bit string length %s does not match type %s', length({whole}), {named})"
            return whole, f"length({whole}) = {size}", problem
        # length() counts a bpchar's characters without its trailing spaces, which char(n) drops anyway.
        unit = "bits" if base == "varbit" else "characters"
        problem = f"format('value too long for type %s (%s {unit})', {named}, length({whole}))"
        return whole, f"length({whole}) <= {size}", problem
    scale = _SCALED_NUMERIC.fullmatch(sql_type)
    if scale is not None:
        whole = f"CAST({expression} AS numeric)"
        wording = "value %s has more decimal places than %s holds (it would be rounded)"
        problem = f"format({pg_literal(wording)}, {whole}, {named})"
        return whole, f"{whole} = round({whole}, {int(scale.group(2))})", problem
    return None


def needs_refusal(sql_type: str) -> bool:
    """Whether values cast to ``sql_type`` are checked by ``kept_value`` (``_KEPT_REFUSAL`` needed)."""
    return bool(_LENGTH_TYPES.fullmatch(sql_type) or _SCALED_NUMERIC.fullmatch(sql_type))


MAX_COLUMNS = 1600
_encode = convert.json_encoder.encode


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
        _refuse_unencoded_at(plain)
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


# libpq's defaults wait for a connection as long as the operating system does (two minutes for a host
# that drops packets) and send no keepalive before two hours of silence: a connection left idle while
# the tap waits for a Bulk job could be forgotten by a NAT gateway or a cloud load balancer (idle limits
# of 4 to 20 minutes), and the next statement then waited a quarter of an hour for TCP to give up. Used
# where the URL, the settings or PGCONNECT_TIMEOUT say nothing.
NETWORK_DEFAULTS = {
    "connect_timeout": "20",
    "keepalives": "1",
    "keepalives_idle": "60",
    "keepalives_interval": "10",
    "keepalives_count": "6",
}


def network_defaults(conninfo: str) -> dict[str, str]:
    """The NETWORK_DEFAULTS that the connection string and the environment leave unset."""
    given = conninfo_to_dict(conninfo)
    if os.environ.get("PGCONNECT_TIMEOUT"):
        given["connect_timeout"] = os.environ["PGCONNECT_TIMEOUT"]
    return {name: value for name, value in NETWORK_DEFAULTS.items() if name not in given}


def pg_literal(text: str) -> str:
    """A string literal that reads the same whatever the session's standard_conforming_strings: with
    it off (a server or role set so, for old applications), a backslash in `'...'` escapes the next
    character, so a stream named `x\\'; DROP ...` ended the literal early. `E'...'` always escapes."""
    text = text.replace("\x00", "")
    if "\\" in text:
        return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"
    return "'" + text.replace("'", "''") + "'"


def _settings_free_text(sql_type: str) -> t.Callable[[str], str]:
    """How a value of ``sql_type`` is spelled as text the same under every DateStyle and TimeZone (a
    plain cast of a date or timestamp follows DateStyle: `01/02/2024` under 'SQL, DMY', read back as
    January 2 under 'ISO, MDY'); ISO 8601 is read back alike under all of them."""
    if sql_type.startswith("timestamp") and sql_type.endswith("with time zone"):
        return lambda value: f"to_char(({value}) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    if sql_type.startswith("timestamp"):
        return lambda value: f"to_char({value}, 'YYYY-MM-DD\"T\"HH24:MI:SS.US')"
    if sql_type == "date":
        return lambda value: f"to_char({value}, 'YYYY-MM-DD')"
    return lambda value: f"CAST({value} AS TEXT)"


def mask_url(url: str) -> str:
    """The URL with its passwords (the user's, and a `password=` parameter: libpq takes both) replaced
    by ``***``."""
    parts = urlsplit(url)
    if parts.password is not None:
        netloc = parts.netloc.rsplit("@", 1)
        user = url_quote(parts.username or "", safe="")
        parts = parts._replace(netloc=f"{user}:***@{netloc[-1]}")
    if parts.query:
        parts = parts._replace(query=_QUERY_PASSWORD.sub(r"\1***", parts.query))
    return urlunsplit(parts)


# A `password=` parameter of a URL's query (libpq's parameter names are lower case).
_QUERY_PASSWORD = re.compile(r"((?:^|&)password=)[^&]*")


def _refuse_unencoded_at(url: str) -> None:
    """libpq ends a URL's user and password at its first `@`: with `postgresql://loader:p@ss:w/rd@host/db`
    it connected to host `ss` with password `p`, and the error quoted pieces of the real password. The
    message does not show the URL, which holds the password."""
    before_query = url.split("://", 1)[1].split("?", 1)[0]
    if before_query.count("@") > 1:
        raise ConfigError(
            "setting `sqlalchemy_url` holds more than one `@`: the URL's password (and user) must be "
            "percent-encoded: `@` as `%40`, `:` as `%3A`, `/` as `%2F`, `#` as `%23`, `?` as `%3F`"
        )


# A URL's password in a message (`scheme://user:password@`), up to the token's last `@`.
_URL_PASSWORD = re.compile(r"(://[^\s/@:]*:)\S*@")


def mask_secrets(text: str, *secrets: str | None) -> str:
    """The text with any URL's password, and each secret, replaced by ``***``.

    A secret is masked as a token of its own, not inside a longer run of letters and digits: replacing
    every occurrence turned the error of a run whose password was `x` into `byte sequence 0***e6 0***9d`
    (also stored so in `_rejected_records`), and a password `p` made `su***orted`. Such a run is a word
    of the message, not the password; a password standing alone, quoted or in a URL is still masked.
    """
    text = _URL_PASSWORD.sub(r"\1***@", text)
    for secret in secrets:
        if secret:
            for form in {secret, url_quote(secret, safe="")}:
                text = _secret_pattern(form).sub("***", text)
    return text


def _secret_pattern(secret: str) -> re.Pattern[str]:
    """The secret where no letter or digit continues it (on a side where it ends in one)."""
    before = r"(?<![^\W_])" if secret[0].isalnum() else ""
    after = r"(?![^\W_])" if secret[-1].isalnum() else ""
    return re.compile(before + re.escape(secret) + after)


# The engine -------------------------------------------------------------------------------------

_CATALOG_QUERY = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), col_description(c.oid, a.attnum),
       a.attisdropped, array_position(i.indkey::int2[], a.attnum), obj_description(c.oid, 'pg_class'),
       pg_has_role(c.relowner, 'USAGE')
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
WHERE n.nspname = %s AND c.relname = %s
ORDER BY a.attnum
"""
# The views (and materialized views) that use a column: PostgreSQL refuses to change its type under them.
_VIEWS_OF_COLUMN_QUERY = """
SELECT DISTINCT format('%%I.%%I', namespace.nspname, view.relname)
  FROM pg_depend AS dependency
  JOIN pg_rewrite AS rule ON rule.oid = dependency.objid
  JOIN pg_class AS view ON view.oid = rule.ev_class
  JOIN pg_namespace AS namespace ON namespace.oid = view.relnamespace
  JOIN pg_attribute AS used ON used.attrelid = dependency.refobjid AND used.attnum = dependency.refobjsubid
 WHERE dependency.classid = 'pg_rewrite'::regclass AND dependency.refclassid = 'pg_class'::regclass
   AND dependency.refobjid = %s::regclass AND used.attname = %s AND view.oid <> dependency.refobjid
 ORDER BY 1
"""
_TABLES_QUERY = """
SELECT c.relname, obj_description(c.oid, 'pg_class'), c.relkind IN ('v', 'm')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
"""
# SQLSTATE classes that mean "this data", not the connection, the privileges or the statement: data
# exception, integrity violation, program limits (a key too large for its index). Not class 42 (syntax
# error or access rule violation): PostgreSQL raises those for a statement whatever its rows (a missing
# privilege, a table or column another session dropped), and taking them for a row's fault would
# refuse, or with quarantine set aside, every record of the batch while STATE moved past them.
_DATA_ERROR_CLASSES = ("22", "23", "54")
_INSUFFICIENT_PRIVILEGE = "42501"
_NOT_NULL_VIOLATION = "23502"
# The server went away: an administrator's or a crash's shutdown, a server still starting.
_SERVER_GONE = ("57P01", "57P02", "57P03")
# What a server answers a connection it refuses for good (credentials, the role or database gone):
# reconnecting after a broken connection stops at once on these instead of trying for minutes.
_REFUSED_FOR_GOOD = (
    "password authentication failed",
    "no pg_hba.conf entry",
    "does not exist",  # role "x" does not exist, database "x" does not exist
    "not permitted to log in",
    "permission denied for database",
)
# What a server answers a connection it cannot take now, but will soon: all its connection slots (or the
# role's or database's) in use, or it is starting up, shutting down or recovering. libpq gives no SQLSTATE
# for a refused connection, so its (English) message is read.
_BUSY_AT_CONNECT = (
    "too many clients already",
    "too many connections for",
    "remaining connection slots are reserved",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "the database system is not accepting connections",
)
# How long a DDL statement waits for its table's lock, and how long a run retries it (see _lock_busy).
LOCK_TIMEOUT_MS = 2000
LOCK_RETRY_FIRST_SECONDS = 1.0
LOCK_RETRY_MAX_SECONDS = 30.0
LOCK_WAIT_LIMIT_SECONDS = 900.0
# How long a batch's writes wait for a lock another session holds (rows an open transaction updated,
# the table another run holds to change it) before the batch is rolled back, a warning says who holds
# it, and the batch is loaded again after a pause; past LOCK_WAIT_LIMIT_SECONDS the run stops. Without
# it a run behind an analyst's forgotten transaction hung without a word for as long as it stayed open.
WRITE_LOCK_WAIT_MS = 30000
_LOCK_NOT_AVAILABLE = "55P03"
# How long a commit the broken connection was making may stay 'in progress' on the server (its session
# is still ending) before its outcome counts as unknown.
COMMIT_OUTCOME_WAIT_SECONDS = 30.0
# Another session's transaction and this run's locked the same rows in opposite orders (two runs
# upserting overlapping keys: a backfill beside the scheduled sync), or a serializable transaction
# conflicted: PostgreSQL rolled this run's transaction back, which is then simply run again.
_TRY_AGAIN = ("40P01", "40001")  # deadlock_detected, serialization_failure
CONFLICT_RETRY_FIRST_SECONDS = 0.5
CONFLICT_RETRY_MAX_SECONDS = 10.0
CONFLICT_RETRY_LIMIT_SECONDS = 300.0


class PostgresEngine(CatalogEngine):
    name = "postgres"
    max_columns = MAX_COLUMNS
    # Small units keep the pipeline full: the server merges one while the next is decoded.
    unit_bytes = 16 * 1024 * 1024
    sql_types = SQL_TYPES

    def __init__(self, conninfo: str, display: str, schema: str) -> None:
        super().__init__(schema)
        self._conninfo = conninfo
        self.display = display
        self.codec = PostgresCodec()
        self._connection: psycopg.Connection | None = None
        self._staging_counter = 0
        self._password = conninfo_to_dict(conninfo).get("password")
        self._created_shared: set[str] = set()  # see _create_shared
        self._lock_timeout = "0"  # the session's own lock_timeout, restored after each DDL statement
        self._lock_timeout_ms = 0  # the same in milliseconds (0: no limit)
        self._committing_xid: int | None = None  # the transaction whose COMMIT is under way
        self._statement_timeout = "0"  # the session's own, restored after each DDL statement
        self._server_codec: str | None = None  # the database's text encoding in Python, None for UTF8
        self._lock_pauses = Pauses(LOCK_RETRY_FIRST_SECONDS, LOCK_RETRY_MAX_SECONDS, LOCK_WAIT_LIMIT_SECONDS)
        self._write_lock_pauses = Pauses(
            LOCK_RETRY_FIRST_SECONDS, LOCK_RETRY_MAX_SECONDS, LOCK_WAIT_LIMIT_SECONDS
        )
        self._conflict_pauses = Pauses(
            CONFLICT_RETRY_FIRST_SECONDS, CONFLICT_RETRY_MAX_SECONDS, CONFLICT_RETRY_LIMIT_SECONDS
        )

    @classmethod
    def from_config(cls, config: t.Mapping[str, t.Any]) -> PostgresEngine:
        conninfo, display = connection_settings(config)
        return cls(conninfo, display, config["schema"])

    def literal(self, text: str) -> str:
        return pg_literal(text)

    @property
    def connection(self) -> psycopg.Connection:
        if self._connection is None:
            raise DatabaseError("not connected to PostgreSQL")
        return self._connection

    def connect(self) -> None:
        try:
            # No server-side prepared statements (psycopg prepares a query run five times): behind a
            # transaction-mode pooler (PgBouncer before 1.21, or without max_prepared_statements) the
            # next transaction may run on another server connection, where they do not exist.
            self._connection = psycopg.connect(
                self._conninfo,
                autocommit=False,
                application_name="target-warehouse-seg",
                prepare_threshold=None,
                # The values are Python text: sent as UTF-8 whatever the database's encoding (libpq's
                # default, the database's own, made psycopg encode to LATIN1 and fail in Python on other
                # characters, and to SQL_ASCII send every text parameter as bytea), or PGCLIENTENCODING.
                client_encoding="UTF8",
                **network_defaults(self._conninfo),
            )
        except psycopg.Error as error:
            message = mask_secrets(str(error).strip().splitlines()[0], self._password)
            refusal = f"cannot connect to PostgreSQL at {self.display}: {message}"
            if any(busy in message for busy in _BUSY_AT_CONNECT):
                raise ConnectionLost(refusal) from None  # the loader waits and tries again
            raise DatabaseError(refusal) from None
        # Each transaction says READ COMMITTED, whatever the database's default_transaction_isolation:
        # the catalog read after a DDL lock (lock_for_ddl) must see what another run committed while
        # this one waited, which a REPEATABLE READ snapshot taken before the wait hides.
        self._connection.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
        with self._database_errors():
            self._connection.execute("SET TIME ZONE 'UTC'")
            row = self._connection.execute(
                "SELECT current_setting('lock_timeout'), current_setting('statement_timeout'), "
                "(SELECT setting::bigint FROM pg_settings WHERE name = 'lock_timeout')"
            ).fetchone()
            self._lock_timeout, self._statement_timeout = (row[0], row[1]) if row else ("0", "0")
            self._lock_timeout_ms = int(row[2]) if row else 0
            self._connection.commit()
            self.codec.bind(self._connection)
        self._note_server_encoding(self._connection.info.parameter_status("server_encoding") or "UTF8")
        logger.info("connected to PostgreSQL at %s, schema %s", self.display, self.schema)

    def _note_server_encoding(self, encoding: str) -> None:
        """A database created with another encoding than UTF8 (LATIN1, WIN1252: older or migrated
        servers) refuses text with characters outside it; such a record stops the run or is
        quarantined like any value that does not fit its column, and the run says so up front.
        SQL_ASCII stores the bytes as they come, so it holds UTF-8 text whole."""
        known = self._server_codec
        if encoding in ("UTF8", "SQL_ASCII"):
            self._server_codec = None
            return
        try:
            self._server_codec = pg2pyenc(encoding.encode("ascii"))
        except psycopg.NotSupportedError:
            self._server_codec = "ascii"  # every server encoding holds ASCII
        if known is None:
            logger.warning(
                "the database's encoding is %s, not UTF8: a record with text it cannot hold (other "
                "alphabets, emoji) will stop the run, or be quarantined with on_invalid_record: quarantine",
                encoding,
            )

    def _storable(self, text: str | None) -> str | None:
        """Text the database can hold: NULs removed and, in a database that is not UTF8, characters
        outside its encoding written as JSON escapes (valid in JSON strings and readable in plain text)."""
        text = _clean(text)
        if text is None or self._server_codec is None or _storable_as(text, self._server_codec):
            return text
        return "".join(char if _fits(char, self._server_codec) else _json_escape(char) for char in text)

    def reconnect(self) -> None:
        self._drop_connection()
        try:
            self.connect()
        except ConnectionLost:
            raise
        except DatabaseError as error:
            if any(refusal in str(error) for refusal in _REFUSED_FOR_GOOD):
                raise  # a rotated password, a dropped role or database: waiting cannot help
            raise ConnectionLost(str(error)) from None  # not reachable yet: the loader waits, asks again
        self._created_shared.clear()
        self.forget()  # read the catalog again: another session may have changed it meanwhile

    def close(self) -> None:
        self._drop_connection()

    def interrupt(self) -> None:
        connection = self._connection
        if connection is not None and not connection.closed:
            # The server cancels the session's running statement (a request on a connection of its own).
            with contextlib.suppress(psycopg.Error):
                connection.cancel_safe(timeout=5.0)

    def _drop_connection(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(psycopg.Error):
                self._connection.close()
            self._connection = None

    def _lost(self) -> bool:
        connection = self._connection
        return connection is None or connection.closed or connection.broken

    def ensure_schema(self) -> None:
        with self._database_errors():
            exists = self.connection.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)
            ).fetchone()
        if not exists:
            with _translate(self, None, doing=f"creating the schema {quote(self.schema)}"):
                self._create_shared(f"CREATE SCHEMA IF NOT EXISTS {quote(self.schema)}", self.schema)
        with self._database_errors():
            self.connection.commit()

    def _run(self, statement: str) -> None:
        # The statement is DDL (identifiers and types, no values), so the error can show it.
        with _translate(self, None, doing=f"running {_shortened(statement)}"):
            try:
                # One round trip (statements joined, no parameters): with three, and a statement per
                # column, a whole org's first sync sent the server 8,193 requests (645 now), minutes
                # of waiting on a server 20 ms away.
                # statement_timeout off for the DDL alone: a role's below LOCK_TIMEOUT_MS cancelled the
                # wait for a lock first, and the run stopped advising smaller batches.
                self.connection.execute(
                    f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}; SET LOCAL statement_timeout = 0; "
                    f"{statement}; "
                    f"SELECT set_config('lock_timeout', {self.literal(self._lock_timeout)}, true), "
                    f"set_config('statement_timeout', {self.literal(self._statement_timeout)}, true)"
                )
            except psycopg.errors.LockNotAvailable:
                raise self._lock_busy(statement) from None
        self._lock_pauses.reset()

    def add_columns(self, table: str, columns: list[Column]) -> None:
        """One ALTER TABLE for all the new columns: one lock taken, one round trip."""
        if not columns:
            return
        additions = ", ".join(
            f"ADD COLUMN {quote(column.name)} {self.sql_type(column)}" for column in columns
        )
        self._run(f"ALTER TABLE {self.qualified(table)} {additions}")
        self._comment_columns(table, columns)
        self._note_columns(table, columns)

    def _comment_columns(self, table: str, columns: list[Column]) -> None:
        """The columns' comments in one round trip."""
        statements = self._column_comments(table, columns)
        if statements:
            self._run("; ".join(statements))

    def _lock_busy(self, statement: str) -> Exception:
        """Altering a table takes its ACCESS EXCLUSIVE lock. Waiting for it behind another session's
        long query or open transaction would queue every later reader of the table behind this run,
        and the warehouse would seem to hang for as long: so a DDL statement waits at most
        LOCK_TIMEOUT_MS, then its transaction is rolled back (holding nothing) and tried again after a
        growing pause, up to LOCK_WAIT_LIMIT_SECONDS in all."""
        shown = _shortened(statement)
        delay = self._lock_pauses.next(waited_by_try=LOCK_TIMEOUT_MS / 1000)
        if delay is None:
            waited = self._lock_pauses.spent
            self._lock_pauses.reset()
            return DatabaseError(
                f"PostgreSQL at {self.display}: another session held a lock on the table for {waited:.0f} s "
                f"({shown}); nothing of this batch was written: end that session's query or transaction "
                "(pg_stat_activity shows it) and run again"
            )
        logger.warning(
            "another session holds a lock on a table this run alters (a long query or an open "
            "transaction: %s); trying again in %.0f s rather than queueing that table's readers behind "
            "this run",
            shown,
            delay,
        )
        return RetryUnit(shown, delay)

    def _read_tables(self) -> list[tuple[str, str | None, bool]]:
        with self._database_errors():
            return self.connection.execute(_TABLES_QUERY, (self.schema,)).fetchall()

    def _read_table(self, name: str) -> TableInfo | None:
        with self._database_errors():
            rows = self.connection.execute(_CATALOG_QUERY, (self.schema, name)).fetchall()
        if not rows:
            return None
        columns: dict[str, Column] = {}
        key: list[tuple[int, str]] = []
        for column, sql_type, comment, dropped, key_position, _, _ in rows:
            if dropped:
                continue
            columns[column] = stored_column(column, sql_type, comment, KINDS, narrow_kind)
            if key_position is not None:
                key.append((key_position, column))
        # Dropped columns count against PostgreSQL's 1,600 too.
        primary_key = tuple(column for _, column in sorted(key))
        return stored_table(name, columns, primary_key, rows[0][5], len(rows), alterable=rows[0][6])

    def widened(self, expression: str, stored_type: str, sql_type: str) -> str:
        # A plain cast of a date reads the session's DateStyle (as text: 03/02/2024 under 'SQL, DMY')
        # or TimeZone (as an instant: midnight where the server is); behind a transaction pooler the
        # session's own SETs may not hold. So both are spelled out.
        if stored_type == SQL_TYPES[Kind.DATE] and sql_type == SQL_TYPES[Kind.TEXT]:
            return f"to_char({expression}, 'YYYY-MM-DD')"
        if stored_type == SQL_TYPES[Kind.DATE] and sql_type == SQL_TYPES[Kind.TIMESTAMP]:
            return f"(CAST({expression} AS timestamp) AT TIME ZONE 'UTC')"
        if sql_type == SQL_TYPES[Kind.TEXT] and stored_type == SQL_TYPES[Kind.TIMESTAMP]:
            return f"to_char(({expression}) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
        if sql_type == SQL_TYPES[Kind.TEXT] and stored_type == SQL_TYPES[Kind.NUMBER]:
            # Without trailing zeros, as DuckDB writes them and as the tombstones spell key numbers.
            return f"CAST(trim_scale({expression}) AS text)"
        return super().widened(expression, stored_type, sql_type)

    def widening_obstacle(self, table: str, column: str) -> str | None:
        with self._database_errors():
            rows = self.connection.execute(_VIEWS_OF_COLUMN_QUERY, (self.qualified(table), column)).fetchall()
        if not rows:
            return None
        views = ", ".join(view for (view,) in rows)
        return (
            f"PostgreSQL cannot change the type of a column that views use ({views}); drop them for "
            "this run and create them again after it, or send the property with its former type"
        )

    # Transactions and loading ---------------------------------------------------------------------

    def begin(self) -> None:
        self._staging_counter = 0  # the first statement opens the transaction (autocommit is off)

    def commit(self) -> None:
        # The transaction's id, asked for before COMMIT: when the connection breaks during COMMIT, the
        # server may have committed or not, and txid_status() tells which after reconnecting (appending
        # streams and quarantined rows would otherwise be written twice, or the run had to stop).
        with self._database_errors():
            row = self.connection.execute("SELECT txid_current()").fetchone()
        self._committing_xid = int(row[0]) if row else None
        with _translate(self, None, committing=True):
            self.connection.commit()
        self._committing_xid = None
        self._conflict_pauses.reset()
        self._write_lock_pauses.reset()

    def lost_commit_outcome(self) -> bool | None:
        xid, self._committing_xid = self._committing_xid, None
        if xid is None:
            return None
        deadline = time.monotonic() + COMMIT_OUTCOME_WAIT_SECONDS
        while True:
            try:
                with self._database_errors():
                    row = self.connection.execute("SELECT txid_status(%s)", (xid,)).fetchone()
                    self.connection.rollback()
            except (ConnectionLost, DatabaseError) as error:
                logger.warning("could not ask whether the interrupted commit went through: %s", error)
                return None
            status = row[0] if row else None
            # 'in progress': the old session is still finishing its COMMIT on the server.
            if status != "in progress" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        logger.info("the commit the broken connection was making: %s", status or "unknown (too old)")
        return {"committed": True, "aborted": False}.get(status or "")

    def conflict(self, message: str) -> Exception:
        """PostgreSQL rolled the transaction back to resolve a conflict with another session's
        (``_TRY_AGAIN``): run it again after a short, growing pause; give up after
        CONFLICT_RETRY_LIMIT_SECONDS of conflicts without a commit between them."""
        delay = self._conflict_pauses.next()
        if delay is None:
            spent = self._conflict_pauses.spent
            self._conflict_pauses.reset()
            return DatabaseError(
                f"PostgreSQL at {self.display}: {message}, over and over for {spent:.0f} s: another "
                "session keeps writing the rows this run writes; nothing of this batch was written. Run "
                "the two loads one after the other"
            )
        logger.warning(
            "PostgreSQL: %s (another session writes the same rows); the batch was rolled back and is "
            "loaded again in %.1f s",
            message,
            delay,
        )
        return RetryUnit(message, delay)

    def _write_lock_wait_ms(self) -> int:
        """How long one statement of a batch waits for a lock: WRITE_LOCK_WAIT_MS, or the user's or
        database's own lock_timeout when that is shorter (a DBA's choice this run keeps)."""
        own = self._lock_timeout_ms
        return own if 0 < own <= WRITE_LOCK_WAIT_MS else WRITE_LOCK_WAIT_MS

    def _bound_lock_waits(self, cursor: psycopg.Cursor) -> bool:
        """Bound the batch's waits for locks (see WRITE_LOCK_WAIT_MS); False when the session's own
        lock_timeout bounds them already."""
        wait = self._write_lock_wait_ms()
        if wait == self._lock_timeout_ms:
            return False
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", (f"{wait}ms",))
        return True

    def write_lock_busy(self, table: str | None, stream: str | None) -> Exception:
        """A statement of the batch waited for a lock another session holds longer than
        ``_write_lock_wait_ms``: the transaction is rolled back (holding nothing while it waits) and run
        again after a growing pause, up to LOCK_WAIT_LIMIT_SECONDS in all."""
        where = f"table {self.qualified(table)}" if table else "a table this run writes"
        holders = self._lock_holders(table) if table else ""
        subject = f"stream {stream}: " if stream else ""
        waited_by_try = self._write_lock_wait_ms() / 1000
        delay = self._write_lock_pauses.next(waited_by_try=waited_by_try)
        if delay is None:
            spent = self._write_lock_pauses.spent
            self._write_lock_pauses.reset()
            return DatabaseError(
                f"PostgreSQL at {self.display}: {subject}another session held a lock this run needs on "
                f"{where} for {spent:.0f} s{holders}; nothing of this batch was written: end that "
                "session's transaction (pg_stat_activity shows it, often 'idle in transaction') and run "
                "again from the last STATE"
            )
        logger.warning(
            "%sanother session holds a lock this run needs on %s%s (rows its open transaction wrote, or "
            "a long statement); waited %.0f s: the batch was rolled back and is loaded again in %.0f s",
            subject,
            where,
            holders,
            waited_by_try,
            delay,
        )
        return RetryUnit(f"a lock on {where}", delay)

    def _lock_holders(self, table: str) -> str:
        """Who holds a lock on ``table`` that a write waits for, read on a connection of its own (this
        one's transaction has failed): pid, user, application, state and for how long, never their
        queries (another session's SQL may hold values this run must not log). Best effort: ''."""
        own_pid = None if self._lost() else self.connection.info.backend_pid
        try:
            with psycopg.connect(
                self._conninfo, autocommit=True, application_name="target-warehouse-seg", connect_timeout=5
            ) as watcher:
                rows = watcher.execute(_LOCK_HOLDERS_QUERY, (self.qualified(table), own_pid)).fetchall()
        except psycopg.Error:
            return ""
        if not rows:
            return ""
        shown = [
            f"pid {pid} (user {user}, application {application or '-'}, {state or 'state unknown'}"
            + (f" for {seconds} s" if seconds is not None else "")
            + ")"
            for pid, user, application, state, seconds in rows[:_HOLDERS_SHOWN]
        ]
        more = f" and {len(rows) - _HOLDERS_SHOWN} more" if len(rows) > _HOLDERS_SHOWN else ""
        # Sessions with a lock that writes take: the one holding the rows is among them (pg_locks does
        # not say which rows a session holds), beside other writers.
        return f" (sessions writing it: {', '.join(shown)}{more})"

    def end_reads(self) -> None:
        # Reads open a transaction (autocommit is off). Left open while the tap is slow to send the
        # first records (a Bulk API job can take minutes), the session sat "idle in transaction":
        # holding back vacuum's horizon, and ended by servers that set
        # idle_in_transaction_session_timeout.
        if not self._lost() and self.connection.info.transaction_status == TransactionStatus.INTRANS:
            with self._database_errors():
                self.connection.commit()

    def rollback(self) -> None:
        self._created_shared.clear()  # what the rolled-back transaction created is gone
        if self._lost():
            return  # the server rolled the transaction back when the connection broke
        with self._database_errors():
            self.connection.rollback()

    def load(self, batch: LoadBatch) -> None:
        info = self.table(batch.table)
        if info is None:
            raise DatabaseError(f"table {self.qualified(batch.table)} disappeared while loading")
        self._staging_counter += 1
        staging = quote(f"tws_staging_{self._staging_counter}")
        definitions = [f"{quote(column.name)} {staging_type(column)}" for column in batch.columns]
        definitions += [f"{quote(SEQ)} bigint", '"received_at" timestamptz']
        names = ", ".join(quote(name) for name in [*(c.name for c in batch.columns), SEQ, "received_at"])
        types = {
            name: column.sql_type or SQL_TYPES[t.cast(Kind, column.kind)]
            for name, column in info.columns.items()
        }

        raw = {column.name for column in batch.columns if column.source in (Source.NUMBER, Source.JSON)}

        temporal_as_text = temporal_in_text_columns(batch, types, SQL_TYPES[Kind.TEXT])

        def value(column: str) -> str:
            if column in temporal_as_text:
                sql_type = SQL_TYPES[temporal_as_text[column]]
                return self.widened(f"s.{quote(column)}", sql_type, types[column])
            if column in raw:  # exact JSON text; a JSON null is SQL NULL
                return kept_value(f"NULLIF(s.{quote(column)}, 'null')", types[column], column)
            return kept_value(f"s.{quote(column)}", types[column], column)

        connection = self.connection
        with self._data_errors(batch):
            started = time.perf_counter()
            if any(needs_refusal(types[column.name]) for column in batch.columns):
                connection.execute(_KEPT_REFUSAL)
            connection.execute(f"CREATE TEMPORARY TABLE {staging} ({', '.join(definitions)}) ON COMMIT DROP")
            created = time.perf_counter()
            with connection.cursor() as cursor:
                with cursor.copy(f"COPY {staging} ({names}) FROM STDIN (FORMAT binary)") as copy:
                    copy.write(_SIGNATURE)
                    for part in batch.payload:
                        copy.write(part)
                    copy.write(_TRAILER)
                copied = time.perf_counter()
                tombstones = self._tombstones(batch, types) if merge.applies(batch) else None
                table = self.qualified(batch.table)
                if tombstones is not None:
                    # Another run deleting a key at once: its tombstone must be committed, or its
                    # delete not begun, when this batch checks against the tombstones. Else a row of
                    # the key, older than that delete, passed the check and was inserted once the
                    # other run's DELETE committed: a deleted record back. (Taken before the writes'
                    # waits are bounded: runs queue for it in turn, none losing its place.)
                    self._hold_table(batch.table)
                bounded = self._bound_lock_waits(cursor)
                if tombstones is not None:
                    cursor.execute(merge.prune_statement(batch, table, staging, tombstones, value))
                for statement in statements(batch, table, staging, value):
                    cursor.execute(statement)
                if tombstones is not None:
                    for statement in merge.tombstone_statements(batch, staging, tombstones, value):
                        cursor.execute(statement)
                if bounded:
                    cursor.execute("SELECT set_config('lock_timeout', %s, true)", (self._lock_timeout,))
            connection.execute(f"DROP TABLE {staging}")
            logger.debug(
                "stream %s: staging %.3f s, COPY %.3f s, merge %.3f s",
                batch.stream,
                created - started,
                copied - created,
                time.perf_counter() - copied,
            )

    def key_text(self, key: t.Sequence[str], types: t.Mapping[str, str]) -> t.Callable[[list[str]], str]:
        def spell(values: list[str]) -> str:
            # Equal keys, equal text: numeric without trailing zeros, instants in UTC.
            spelled = [
                f"trim_scale({value})"
                if types[name] == SQL_TYPES[Kind.NUMBER]
                else f"({value} AT TIME ZONE 'UTC')"
                if types[name] == SQL_TYPES[Kind.TIMESTAMP]
                else value
                for name, value in zip(key, values, strict=True)
            ]
            return f"json_build_array({', '.join(spelled)})::text"

        return spell

    def _json_element(self, text: str, index: int) -> str:
        return f"({text}::json ->> {index})"

    def _tombstones(self, batch: LoadBatch, types: dict[str, str]) -> Tombstones:
        """The tombstones of the batch's table (their table created when missing, in this transaction)."""
        tombstones = Tombstones(
            self.qualified(DELETED_KEYS_TABLE),
            self.literal(batch.table),
            self.key_text(batch.key, types),
            types[t.cast(str, batch.replication_key)],
            _settings_free_text(types[t.cast(str, batch.replication_key)]),
        )
        self._create_shared(tombstones.ddl("text", "timestamp with time zone"), DELETED_KEYS_TABLE)
        return tombstones

    def quarantine(self, rows: list[Rejected]) -> None:
        if not rows:
            return
        table = self.qualified(REJECTED_TABLE)
        with self._database_errors():
            self._create_shared(
                f"CREATE TABLE IF NOT EXISTS {table} (stream text, line bigint, record_key jsonb, "
                f"field text, error text, record text, rejected_at timestamp with time zone DEFAULT now())",
                REJECTED_TABLE,
            )
            copy_rows = f"COPY {table} (stream, line, record_key, field, error, record) FROM STDIN"
            with self.connection.cursor() as cursor, cursor.copy(copy_rows) as copy:
                for row in rows:
                    copy.write_row(
                        (
                            self._storable(row.stream),
                            row.line,
                            self._storable_key(row.key),
                            self._storable(row.field),
                            self._storable(row.error),
                            self._storable(row.record),
                        )
                    )

    def _storable_key(self, key: dict[str, t.Any] | None) -> str | None:
        """The key as JSON text for the jsonb column; None when it holds a character the database's
        encoding cannot (jsonb reads JSON escapes back into characters): the record column has it."""
        if key is None:
            return None
        text = _clean(_encode(key).decode("utf-8"))
        if self._server_codec is None or _storable_as(t.cast(str, text), self._server_codec):
            return text
        return None

    def lock_for_ddl(self, table: str) -> None:
        """Two runs loading into one schema at once (a scheduler starting a run while the last one goes
        on, a backfill beside the regular job) both found a table or a column missing, and the second
        CREATE TABLE or ADD COLUMN failed ("duplicate key value violates unique constraint
        pg_type_typname_nsp_index", "column ... already exists"). A run now changes a table holding a
        transaction-level advisory lock on it, and plans against the catalog read after it has it."""
        self._hold_table(table)
        self.forget()

    def _hold_table(self, table: str) -> None:
        """Until this transaction ends, the advisory lock that other runs take to create or change the
        table (or the schema, by its name), or to apply hard deletes to it (waiting for any run holding
        it)."""
        key = f"target-warehouse-seg {self.schema}.{table}"
        with _translate(self, None, table=table):
            self.connection.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))

    def _create_shared(self, statement: str, name: str) -> None:
        """Create, when missing, the schema or a table that several runs share (the tombstones, the
        rejected records). Two runs at once (parallel jobs into one schema) could both find it
        missing, and PostgreSQL's `IF NOT EXISTS` then fails one of them on a duplicate key: the
        first creator holds a transaction-level advisory lock, the other waits for its commit and
        finds the object there. Known objects cost no lock (each batch with hard deletes asks)."""
        if name in self._created_shared:
            return
        self._hold_table(name)
        self.connection.execute(statement)
        self._created_shared.add(name)

    # Errors ---------------------------------------------------------------------------------------

    def _database_errors(self) -> t.ContextManager[None]:
        return _translate(self, None)

    def _data_errors(self, batch: LoadBatch) -> t.ContextManager[None]:
        return _translate(self, batch)


# The sessions holding a lock on a table that conflicts with a write (all but ACCESS SHARE, which plain
# reads take): row locks show as the holder's ROW EXCLUSIVE (or, SELECT ... FOR UPDATE, ROW SHARE) lock.
_LOCK_HOLDERS_QUERY = """
SELECT DISTINCT a.pid, a.usename, a.application_name, a.state,
       extract(epoch FROM now() - coalesce(a.xact_start, a.query_start))::bigint
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.granted AND l.relation = to_regclass(%s) AND l.mode <> 'AccessShareLock'
  AND a.pid IS DISTINCT FROM %s
ORDER BY 1
"""
_HOLDERS_SHOWN = 3
# How much of a DDL statement an error shows.
_STATEMENT_SHOWN = 200
# Each privilege a run needs, for the hint that follows "permission denied" or "must be owner".
_PRIVILEGES_HINT = (
    "the user needs USAGE and CREATE on the schema (or CREATE on the database, to create the schema), "
    "and to own the tables it creates or changes"
)
_QUERY_CANCELED = "57014"
_STATEMENT_TIMEOUT_HINT = (
    "a statement_timeout set for the user or the database ended a statement of this batch (nothing of it "
    "was written): lift it for the target's user (ALTER ROLE ... SET statement_timeout = 0) or lower "
    "batch_size_rows"
)
_CANCELLED_BY_ANOTHER_SESSION_HINT = (
    "another session cancelled it (pg_cancel_backend: an administrator, or a tool that ends long "
    "queries); nothing of this batch was written: run again from the last STATE"
)
_READ_ONLY = "25006"
_READ_ONLY_HINT = (
    "the server is a read-only standby, or default_transaction_read_only is on for the user or the "
    "database (nothing of this batch was written): point the target at the primary (with several hosts "
    "in the URL, add target_session_attrs=read-write)"
)
_DISK_FULL = "53100"
_DISK_FULL_HINT = (
    "the database server's disk is full (nothing of this batch was written): free space there, then run "
    "again from the last STATE"
)


def _shortened(statement: str) -> str:
    flat = " ".join(statement.split())
    return flat if len(flat) <= _STATEMENT_SHOWN else flat[: _STATEMENT_SHOWN - 3] + "..."


def _clean(text: str | None) -> str | None:
    return None if text is None else text.replace("\x00", "")


def _storable_as(text: str, codec: str) -> bool:
    try:
        text.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


def _fits(char: str, codec: str) -> bool:
    return char.isascii() or _storable_as(char, codec)


def _json_escape(char: str) -> str:
    """JSON's escape of one character: a UTF-16 surrogate pair beyond the Basic Multilingual Plane."""
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


class _translate:
    """Map psycopg errors: data problems become ``RowRejected``, the rest ``DatabaseError``."""

    _COPY_CONTEXT = re.compile(r"COPY [^,]+, line (\d+)(?:, column ([^:]+))?")

    def __init__(
        self,
        engine: PostgresEngine,
        batch: LoadBatch | None,
        doing: str = "",
        *,
        committing: bool = False,
        table: str | None = None,
    ) -> None:
        self.engine = engine
        self.batch = batch
        self.table = batch.table if batch is not None else table  # the table a lock wait was for
        self.doing = doing  # what the target was doing, for the message
        self.committing = committing

    def __enter__(self) -> None:
        return None

    def _unwritten(self, column: str | None) -> bool:
        """Whether ``column`` is none of those the batch writes."""
        if self.batch is None or not column:
            return False
        written = {batch_column.name for batch_column in self.batch.columns} | set(SYSTEM_COLUMNS)
        return column not in written

    def __exit__(self, kind: type | None, error: BaseException | None, traceback: t.Any) -> bool:
        if error is None or not isinstance(error, psycopg.Error):
            return False
        message = mask_secrets(
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__,
            self.engine._password,
        )
        state = error.sqlstate or ""
        if state[:2] == "08" or state in _SERVER_GONE or self.engine._lost():
            raise ConnectionLost(
                f"PostgreSQL at {self.engine.display}: the connection broke: {message}",
                while_committing=self.committing,
            ) from None
        if state in _TRY_AGAIN:
            raise self.engine.conflict(message) from None
        if state == _LOCK_NOT_AVAILABLE:
            stream = self.batch.stream if self.batch is not None else None
            raise self.engine.write_lock_busy(self.table, stream) from None
        if state == _NOT_NULL_VIOLATION and self.batch and self._unwritten(error.diag.column_name):
            # No record can fill a column its stream does not write: the table's fault, not a row's
            # (each row was set aside alone, in time that grew with the square of the batch).
            raise DatabaseError(
                f"PostgreSQL at {self.engine.display}: column {error.diag.column_name} of table "
                f"{self.engine.schema}.{self.batch.table} is NOT NULL, and stream {self.batch.stream} does "
                "not write it (a column added by hand?): give it a DEFAULT or drop its NOT NULL"
            ) from None
        if self.batch is not None and state[:2] in _DATA_ERROR_CLASSES:
            context = error.diag.context or ""
            match = self._COPY_CONTEXT.search(context)
            index = int(match.group(1)) - 1 if match else None
            column = error.diag.column_name or (match.group(2) if match and match.group(2) else None)
            raise RowRejected(message, column=column, index=index) from None
        if self.doing:
            message = f"{message} ({self.doing})"
        elif self.batch is not None:
            message = (
                f"{message} (stream {self.batch.stream}, table {self.engine.qualified(self.batch.table)})"
            )
        if state == _INSUFFICIENT_PRIVILEGE:
            message = f"{message}; {_PRIVILEGES_HINT}"
        elif state == _QUERY_CANCELED and "statement timeout" in message:
            message = f"{message}; {_STATEMENT_TIMEOUT_HINT}"
        elif state == _QUERY_CANCELED and "user request" in message:
            message = f"{message}; {_CANCELLED_BY_ANOTHER_SESSION_HINT}"
        elif state == _READ_ONLY:
            message = f"{message}; {_READ_ONLY_HINT}"
        elif state == _DISK_FULL:
            message = f"{message}; {_DISK_FULL_HINT}"
        elif error.diag.message_hint:
            # The server's own advice (a DBA's trigger, an extension, a limit), on the same line.
            hint = mask_secrets(_clean(error.diag.message_hint) or "", self.engine._password)
            hint = " ".join(hint.split())
            message = f"{message} (hint: {hint})"
        raise DatabaseError(f"PostgreSQL at {self.engine.display}: {message}") from None
