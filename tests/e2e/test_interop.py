"""Interoperability with Singer plugins written elsewhere (issue 5), each in its own pinned venv.

- The tap's output, as its CLI writes it, loads into meltanolabs-target-postgres without error, with the
  same row counts (and soft-deleted counts) per stream as target-warehouse-seg stores from the same
  file, and as the org holds.
- target-warehouse-seg loads the output of meltanolabs-tap-postgres reading a PostgreSQL table with
  every common column type (nulls, empty strings, unicode, extremes, a mixed-case column name), into
  DuckDB and into PostgreSQL, and every stored value equals the source, row by row.

Peers run only through their CLIs, as users run them: `tap | target` with files in between.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import duckdb
import psycopg
import pytest
from peer_venvs import TAP_POSTGRES, TARGET_POSTGRES, PeerVenv, project_script, require_venv
from tap_harness import discover_catalog, select, sobject_of, tap_settings

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(1800)]

CLI_TIMEOUT_SECONDS = 900


# --- running CLIs -----------------------------------------------------------------------------------


def run_cli(
    command: Sequence[str | Path], *, stdin: Path | None = None, stdout: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run a plugin CLI with files for stdin/stdout; a non-zero exit fails the test with stderr's tail."""
    name = Path(command[0]).name
    with (
        stdin.open("rb") if stdin else open("/dev/null", "rb") as source,
        stdout.open("wb") if stdout else open("/dev/null", "wb") as sink,
    ):
        result = subprocess.run(
            [str(part) for part in command],
            stdin=source,
            stdout=sink,
            stderr=subprocess.PIPE,
            timeout=CLI_TIMEOUT_SECONDS,
            check=False,
        )
    if result.returncode != 0:
        tail = "\n".join(result.stderr.decode(errors="replace").splitlines()[-25:])
        pytest.fail(f"{name} exited with status {result.returncode}:\n{tail}", pytrace=False)
    return result


def write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value))
    return path


def singer_messages(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line, parse_float=Decimal)


def load_with_target_warehouse_seg(singer_file: Path, config: Mapping[str, Any], folder: Path) -> None:
    config_path = write_json(folder / f"target-{uuid.uuid4().hex[:8]}.json", dict(config))
    run_cli([project_script("target-warehouse-seg"), "--config", config_path], stdin=singer_file)


def with_driver(url: str, driver: str) -> str:
    """postgresql://... -> postgresql+<driver>://... (SQLAlchemy-based peers pick their DB-API by it).

    tap-postgres insists on a password in the URL; the test server trusts local connections, so a
    placeholder is added when the URL has none.
    """
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.username and parts.password is None:
        netloc = netloc.replace(f"{parts.username}@", f"{parts.username}:unused@", 1)
    return urlunsplit((f"{parts.scheme.split('+')[0]}+{driver}", netloc, parts.path, parts.query, ""))


@pytest.fixture(scope="module")
def target_postgres() -> PeerVenv:
    return require_venv(TARGET_POSTGRES)


@pytest.fixture(scope="module")
def tap_postgres() -> PeerVenv:
    return require_venv(TAP_POSTGRES)


# --- tap-salesforce-seg -> meltanolabs-target-postgres ------------------------------------------------


def postgres_counts(url: str, schema: str, tables: Sequence[str]) -> dict[str, tuple[int, int]]:
    """table -> (rows, rows with is_deleted true) for each table of `schema`."""
    counts = {}
    with psycopg.connect(url) as connection:
        existing = {
            row[0]
            for row in connection.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
            )
        }
        missing = sorted(set(tables) - existing)
        assert not missing, f"schema {schema} lacks tables {missing}; it has {sorted(existing)}"
        for table in tables:
            has_flag = connection.execute(
                "SELECT 1 FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s AND column_name = 'is_deleted'",
                (schema, table),
            ).fetchone()
            deleted = "count(*) FILTER (WHERE is_deleted)" if has_flag else "0"
            rows, soft_deleted = connection.execute(
                f'SELECT count(*), {deleted} FROM "{schema}"."{table}"'
            ).fetchone()
            counts[table] = (rows, soft_deleted)
    return counts


def short_names_for_postgres(schemas: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """Stream maps that rename properties longer than PostgreSQL's 63-byte identifiers.

    meltanolabs-target-postgres does not shorten them: PostgreSQL truncates the column, the target then
    fails to find it and adds it again (DuplicateColumn; MeltanoLabs/target-postgres#314, whose advice
    is a stream map). Salesforce has such fields (User.UserPreferencesHideOnlineSalesAppTab...).
    target-warehouse-seg shortens them itself (truncation plus a stable hash).
    """
    maps: dict[str, dict[str, str]] = {}
    for stream, schema in schemas.items():
        long_names = [name for name in schema["properties"] if len(name.encode()) > 63]
        for number, name in enumerate(long_names):
            renames = maps.setdefault(stream, {})
            renames[f"{name[:50]}_{number}"] = name
            renames[name] = "__NULL__"
    return maps


def test_tap_output_loads_into_meltanolabs_target_postgres(
    emulator: Any, postgres_database: str, tmp_path: Path, target_postgres: PeerVenv
) -> None:
    # The org gets a soft delete, so that is_deleted rows travel through both targets.
    account = emulator.org.records("Account", include_deleted=False)[0]
    emulator.org.delete("Account", account["Id"])
    # The tap reads up to its start by Salesforce's clock, known in whole seconds (the HTTP Date header):
    # a change in the second the run starts waits for the next run (this test failed so, 1 run in 5).
    emulator.org.clock.advance(2)
    settings = tap_settings(emulator)
    catalog = discover_catalog(settings)
    default_streams = [
        entry["tap_stream_id"]
        for entry in catalog["streams"]
        if next(m for m in entry["metadata"] if not m["breadcrumb"])["metadata"].get("selected")
    ]
    # Segment's default selection plus the custom object (custom field types travel too).
    chosen = [*default_streams, "invoice_c"]
    config_path = write_json(tmp_path / "tap.json", settings)
    catalog_path = write_json(tmp_path / "catalog.json", select(catalog, chosen))
    singer_file = tmp_path / "tap-output.jsonl"
    run_cli(
        [project_script("tap-salesforce-seg"), "--config", config_path, "--catalog", catalog_path],
        stdout=singer_file,
    )

    emitted: Counter[str] = Counter()
    schemas: dict[str, dict[str, Any]] = {}
    for message in singer_messages(singer_file):
        if message["type"] == "RECORD":
            emitted[message["stream"]] += 1
        elif message["type"] == "SCHEMA":
            schemas[message["stream"]] = message["schema"]
    sobjects = {entry["tap_stream_id"]: sobject_of(entry) for entry in catalog["streams"]}
    org = {stream: emulator.org.records(sobjects[stream], include_deleted=True) for stream in chosen}
    expected = {
        stream: (len(records), sum(bool(r.get("IsDeleted")) for r in records))
        for stream, records in org.items()
    }
    assert dict(emitted) == {stream: rows for stream, (rows, _) in expected.items() if rows}
    assert expected["accounts"][1] >= 1

    peer_config = {
        "sqlalchemy_url": with_driver(postgres_database, "psycopg"),
        "default_target_schema": "peer",
        "stream_maps": short_names_for_postgres(schemas),
    }
    run_cli(
        [
            target_postgres.executable("target-postgres"),
            "--config",
            write_json(tmp_path / "peer.json", peer_config),
        ],
        stdin=singer_file,
    )
    load_with_target_warehouse_seg(
        singer_file, {"engine": "postgres", "sqlalchemy_url": postgres_database, "schema": "ours"}, tmp_path
    )

    # meltanolabs-target-postgres creates a table for every SCHEMA message, ours too: compare them all.
    peer = postgres_counts(postgres_database, "peer", chosen)
    ours = postgres_counts(postgres_database, "ours", chosen)
    assert peer == ours
    assert ours == expected


# --- meltanolabs-tap-postgres -> target-warehouse-seg -------------------------------------------------

SOURCE_SCHEMA = "interop_src"
SOURCE_TABLE = "all_types"

SOURCE_DDL = f"""
CREATE SCHEMA {SOURCE_SCHEMA};
CREATE TABLE {SOURCE_SCHEMA}.{SOURCE_TABLE} (
    id integer PRIMARY KEY,
    c_smallint smallint,
    c_integer integer,
    c_bigint bigint,
    c_numeric numeric(18, 4),
    c_numeric_free numeric,
    c_real real,
    c_double double precision,
    c_boolean boolean,
    c_text text,
    c_varchar varchar(40),
    c_char char(5),
    c_date date,
    c_time time,
    c_timestamp timestamp,
    c_timestamptz timestamptz,
    c_json json,
    c_jsonb jsonb,
    c_uuid uuid,
    c_int_array integer[],
    c_text_array text[],
    "MixedCase" text
)
"""

SOURCE_COLUMNS = [
    *("id", "c_smallint", "c_integer", "c_bigint", "c_numeric", "c_numeric_free", "c_real", "c_double"),
    *("c_boolean", "c_text", "c_varchar", "c_char", "c_date", "c_time", "c_timestamp", "c_timestamptz"),
    *("c_json", "c_jsonb", "c_uuid", "c_int_array", "c_text_array", "MixedCase"),
]

# One row per case; a column left out is NULL.
SOURCE_ROWS: list[dict[str, Any]] = [
    {  # ordinary values
        "id": 1, "c_smallint": 12, "c_integer": 123456, "c_bigint": 9876543210,
        "c_numeric": Decimal("1234.5678"), "c_numeric_free": Decimal("0.1"), "c_real": 3.25,
        "c_double": 2.718281828459045, "c_boolean": True, "c_text": "plain text", "c_varchar": "short",
        "c_char": "abc", "c_date": date(2024, 2, 29), "c_time": time(13, 45, 30),
        "c_timestamp": datetime(2024, 1, 2, 3, 4, 5),
        "c_timestamptz": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        "c_json": '{"a": 1, "b": [1, 2, 3]}', "c_jsonb": '{"nested": {"x": true, "y": null}}',
        "c_uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"), "c_int_array": [1, 2, 3],
        "c_text_array": ["x", "y"], "MixedCase": "Mixed",
    },
    {  # extremes, exact numbers beyond a double's precision, empty strings and documents
        "id": 2, "c_smallint": -32768, "c_integer": 2147483647, "c_bigint": 9223372036854775807,
        "c_numeric": Decimal("-99999999999999.9999"), "c_numeric_free": Decimal("1234567890123456.123456789"),
        "c_real": -0.5, "c_double": -1.2345678, "c_boolean": False, "c_text": "", "c_varchar": " ",
        "c_char": "a", "c_date": date(1900, 1, 1), "c_time": time(0, 0, 0),
        "c_timestamp": datetime(1970, 1, 1, 0, 0, 0),
        "c_timestamptz": datetime(2099, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        "c_json": "[]", "c_jsonb": "{}", "c_uuid": uuid.UUID("00000000-0000-0000-0000-000000000000"),
        "c_int_array": [], "c_text_array": [], "MixedCase": "",
    },
    {  # unicode, quotes, separators, a time zone offset, NULLs inside arrays
        "id": 3, "c_smallint": 0, "c_integer": -1, "c_bigint": -9223372036854775808,
        "c_numeric": Decimal("0.0001"), "c_numeric_free": Decimal("-0.000000000000000001"), "c_real": 1.0e-3,
        "c_double": 1.0e-7, "c_boolean": True,
        "c_text": "Zoë ☃ 日本語 🎉 \"quoted\" 'single' back\\slash\ttab\nnewline",
        "c_varchar": "Ünïcödé \u2013 ✓", "c_char": "é", "c_date": date(2099, 12, 31),
        "c_time": time(23, 59, 59, 999999), "c_timestamp": datetime(2000, 2, 29, 12, 0, 0, 500000),
        "c_timestamptz": datetime(2024, 6, 30, 23, 30, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        "c_json": '{"ключ": "значение", "emoji": "🎉", "n": 1.5}',
        "c_jsonb": '{"list": ["a", "ü", null], "deep": {"k": [{"v": 2}]}}',
        "c_uuid": uuid.UUID("ffffffff-ffff-ffff-ffff-ffffffffffff"), "c_int_array": [None, -5, 7],
        "c_text_array": ["日本", "", None, "a,b", '"q"'], "MixedCase": "ÅÄÖ",
    },
    {"id": 4},  # nothing but the key
]  # fmt: skip


@dataclass(frozen=True)
class LoadedSource:
    database_url: str
    singer_file: Path
    stream: str


@pytest.fixture(scope="module")
def source_database(postgres_url: str) -> Iterator[str]:
    """A database (module-scoped: one tap-postgres run serves every engine) with the all-types table."""
    name = f"test_interop_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{postgres_url.rpartition('/')[0]}/{name}"
    assert all(set(row) <= set(SOURCE_COLUMNS) for row in SOURCE_ROWS), "a row names an unknown column"
    try:
        with psycopg.connect(url) as connection:
            connection.execute(SOURCE_DDL)
            placeholders = ", ".join(["%s"] * len(SOURCE_COLUMNS))
            columns = ", ".join(f'"{column}"' for column in SOURCE_COLUMNS)
            insert = f"INSERT INTO {SOURCE_SCHEMA}.{SOURCE_TABLE} ({columns}) VALUES ({placeholders})"
            with connection.cursor() as cursor:
                cursor.executemany(insert, [[row.get(c) for c in SOURCE_COLUMNS] for row in SOURCE_ROWS])
        yield url
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def tap_postgres_output(
    source_database: str, tap_postgres: PeerVenv, tmp_path_factory: pytest.TempPathFactory
) -> LoadedSource:
    folder = tmp_path_factory.mktemp("tap-postgres")
    config = {
        "sqlalchemy_url": with_driver(source_database, "psycopg2"),
        "filter_schemas": [SOURCE_SCHEMA],
        "json_as_object": True,
    }
    tap = tap_postgres.executable("tap-postgres")
    config_path = write_json(folder / "tap.json", config)
    # As users do: discover, select the table (tap-postgres selects nothing by default), sync.
    discovered = folder / "discovered.json"
    run_cli([tap, "--config", config_path, "--discover"], stdout=discovered)
    catalog = json.loads(discovered.read_text())
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            item["metadata"]["selected"] = True
    singer_file = folder / "tap-postgres-output.jsonl"
    run_cli(
        [tap, "--config", config_path, "--catalog", write_json(folder / "catalog.json", catalog)],
        stdout=singer_file,
    )
    streams = {m["stream"] for m in singer_messages(singer_file) if m["type"] == "SCHEMA"}
    assert len(streams) == 1, f"tap-postgres emitted streams {sorted(streams)}"
    return LoadedSource(source_database, singer_file, streams.pop())


def source_rows(url: str) -> dict[int, dict[str, Any]]:
    columns = ", ".join(f'"{column}"' for column in SOURCE_COLUMNS)
    with psycopg.connect(url) as connection:
        cursor = connection.execute(f"SELECT {columns} FROM {SOURCE_SCHEMA}.{SOURCE_TABLE}")
        return {row[0]: dict(zip(SOURCE_COLUMNS, row, strict=True)) for row in cursor}


def comparable(column: str, value: Any) -> Any:
    """One spelling for a source value and a warehouse value of the same column (engine-independent).

    Exact numbers compare as Decimal (never through a float), float columns as floats, JSON documents
    parsed, timestamps as UTC instants (a `timestamp` without time zone is UTC by the Singer convention).
    """
    if value is None:
        return None
    if column in ("c_json", "c_jsonb", "c_int_array", "c_text_array"):
        return json.loads(value) if isinstance(value, str) else value
    if column in ("c_real", "c_double"):
        return float(value)
    if column in ("c_numeric", "c_numeric_free"):
        return Decimal(value).normalize() if Decimal(value) else Decimal(0)
    if column == "c_uuid":
        return str(value).lower()
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    return value


def assert_rows_equal(
    source: Mapping[int, Mapping[str, Any]], loaded: Mapping[int, Mapping[str, Any]]
) -> None:
    assert sorted(loaded) == sorted(source)
    differences = []
    for key, row in source.items():
        for column, value in row.items():
            stored = loaded[key][column.lower()]
            if comparable(column, value) != comparable(column, stored):
                differences.append(f"id {key}, {column}: source {value!r}, warehouse {stored!r}")
    assert not differences, "values differ:\n" + "\n".join(differences)


def warehouse_table(columns_by_table: Mapping[str, Sequence[str]]) -> str:
    tables = [table for table in columns_by_table if not table.startswith("_")]
    assert len(tables) == 1, f"expected one table, found {sorted(columns_by_table)}"
    return tables[0]


def duckdb_rows(path: Path, schema: str) -> dict[int, dict[str, Any]]:
    with duckdb.connect(str(path), read_only=True) as connection:
        connection.execute("SET TimeZone = 'UTC'")
        tables = {
            table: None
            for (table,) in connection.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [schema]
            ).fetchall()
        }
        table = warehouse_table(tables)
        cursor = connection.execute(f'SELECT * FROM "{schema}"."{table}"')
        names = [description[0] for description in cursor.description]
        return {row[names.index("id")]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


def postgres_rows(url: str, schema: str) -> dict[int, dict[str, Any]]:
    with psycopg.connect(url) as connection:
        tables = {
            table: None
            for (table,) in connection.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
            )
        }
        table = warehouse_table(tables)
        cursor = connection.execute(f'SELECT * FROM "{schema}"."{table}"')
        names = [description.name for description in cursor.description]
        return {row[names.index("id")]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


def test_meltanolabs_tap_postgres_output_loads_into_duckdb(
    tap_postgres_output: LoadedSource, tmp_path: Path
) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    load_with_target_warehouse_seg(
        tap_postgres_output.singer_file,
        {"engine": "duckdb", "path": str(warehouse), "schema": "from_tap_postgres"},
        tmp_path,
    )
    assert_rows_equal(
        source_rows(tap_postgres_output.database_url), duckdb_rows(warehouse, "from_tap_postgres")
    )


def test_meltanolabs_tap_postgres_output_loads_into_postgres(
    tap_postgres_output: LoadedSource, tmp_path: Path
) -> None:
    url = tap_postgres_output.database_url
    load_with_target_warehouse_seg(
        tap_postgres_output.singer_file,
        {"engine": "postgres", "sqlalchemy_url": url, "schema": "from_tap_postgres"},
        tmp_path,
    )
    assert_rows_equal(source_rows(url), postgres_rows(url, "from_tap_postgres"))
