"""Settings: `--about`, one clear line for a bad setting (before connecting), secrets never shown."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TARGET_EXECUTABLE, record, schema, state, to_lines

SETTINGS = {
    "engine",
    "path",
    "sqlalchemy_url",
    "host",
    "port",
    "user",
    "password",
    "database",
    "sslmode",
    "schema",
    "batch_size_rows",
    "batch_max_seconds",
    "hard_delete",
    "on_invalid_record",
}
INPUT = to_lines([schema("s", {"id": {"type": "integer"}}), record("s", {"id": 1})])


def run(config: dict, tmp_path: Path, stdin: str = INPUT) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return subprocess.run(
        [TARGET_EXECUTABLE, "--config", str(path)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def error_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if "| ERROR" in line]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_about_lists_exactly_the_settings() -> None:
    done = subprocess.run(
        [TARGET_EXECUTABLE, "--about", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    about = json.loads(done.stdout)
    properties = about["settings"]["properties"]
    assert set(properties) == SETTINGS
    assert properties["password"]["secret"] is True and properties["sqlalchemy_url"]["secret"] is True
    assert (
        properties["engine"]["enum"] == ["duckdb", "postgres"] and properties["engine"]["default"] == "duckdb"
    )
    assert properties["schema"]["default"] == "salesforce"
    assert properties["on_invalid_record"]["enum"] == ["fail", "quarantine"]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"engine": "oracle"}, "setting `engine`: 'oracle' is not one of ['duckdb', 'postgres']"),
        ({"engine": "postgres"}, "engine `postgres` needs setting `sqlalchemy_url` or setting `host`"),
        ({"batch_size_rows": "ten"}, "setting `batch_size_rows`: 'ten' is not of type 'integer'"),
        ({"batch_size_rows": 0}, "setting `batch_size_rows` must be at least 1, got 0"),
        ({"batch_max_seconds": -1}, "setting `batch_max_seconds` must be positive, got -1"),
        (
            {"on_invalid_record": "skip"},
            "setting `on_invalid_record`: 'skip' is not one of ['fail', 'quarantine']",
        ),
        ({"hard_delete": "yes"}, "setting `hard_delete`: 'yes' is not of type 'boolean'"),
        (
            {"path": "/no/such/folder/w.duckdb"},
            "setting `path`: the folder of '/no/such/folder/w.duckdb' does not",
        ),
        (
            {"engine": "postgres", "sqlalchemy_url": "mysql://u:hunter2@h/db"},
            "setting `sqlalchemy_url` must be a",
        ),
        (
            {"engine": "postgres", "sqlalchemy_url": 5},
            "setting `sqlalchemy_url` is invalid (expected type string)",
        ),
        # PostgreSQL settings without `engine` loaded into ./warehouse.duckdb, silently.
        (
            {"sqlalchemy_url": "postgresql://u:hunter2@127.0.0.1:{port}/db", "schema": "sfdc_prod"},
            "setting `engine` is not set, so it is duckdb, but PostgreSQL settings are given "
            "(`sqlalchemy_url` or `host`): set engine to postgres (or remove them)",
        ),
        (
            {"host": "127.0.0.1", "user": "u", "password": "hunter2", "database": "db"},
            "setting `engine` is not set, so it is duckdb, but PostgreSQL settings are given",
        ),
        # A bad setting is reported before any connection is tried (this port refuses connections).
        (
            {
                "engine": "postgres",
                "sqlalchemy_url": "postgresql://u@127.0.0.1:{port}/db",
                "batch_size_rows": 0,
            },
            "setting `batch_size_rows` must be at least 1",
        ),
    ],
)
def test_a_bad_setting_is_one_clear_line(config: dict, expected: str, tmp_path: Path) -> None:
    if isinstance(config.get("sqlalchemy_url"), str):
        config = {**config, "sqlalchemy_url": config["sqlalchemy_url"].format(port=closed_port())}
    done = run(config, tmp_path)
    assert done.returncode == 1
    errors = error_lines(done)
    assert len(errors) == 1 and expected in errors[0], done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert "hunter2" not in done.stderr


@pytest.mark.parametrize("form", ["url", "url+driver", "fields"])
def test_secrets_never_reach_logs_or_errors(form: str, tmp_path: Path) -> None:
    port = closed_port()
    secret = "s3cr3t-Pa55"
    config = {
        "url": {"engine": "postgres", "sqlalchemy_url": f"postgresql://loader:{secret}@127.0.0.1:{port}/wh"},
        "url+driver": {
            "engine": "postgres",
            "sqlalchemy_url": f"postgresql+psycopg://loader:{secret}@127.0.0.1:{port}/wh",
        },
        "fields": {
            "engine": "postgres",
            "host": "127.0.0.1",
            "port": port,
            "user": "loader",
            "password": secret,
            "database": "wh",
        },
    }[form]
    done = run(config, tmp_path)
    assert done.returncode == 1
    errors = error_lines(done)
    assert (
        len(errors) == 1 and "cannot connect to PostgreSQL at postgresql://loader:***@127.0.0.1" in errors[0]
    )
    assert secret not in done.stderr and secret not in done.stdout


@pytest.mark.postgres
def test_every_usual_url_form_connects(postgres_database: str, tmp_path: Path) -> None:
    scheme, rest = postgres_database.split("://", 1)
    for url in (
        postgres_database,
        f"postgresql+psycopg://{rest}",
        f"postgres://{rest}",
        f"postgresql+psycopg2://{rest}",
    ):
        done = run({"engine": "postgres", "sqlalchemy_url": url}, tmp_path)
        assert done.returncode == 0, done.stderr
    assert scheme.startswith("postgres")


def test_stdout_carries_only_state(tmp_path: Path) -> None:
    stdin = to_lines(
        [schema("s", {"id": {"type": "integer"}}), record("s", {"id": 1}), {"type": "STATE", "value": 7}]
    )
    done = run({"path": str(tmp_path / "w.duckdb")}, tmp_path, stdin)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "7\n"
    assert "committed 1 row(s)" in done.stderr


def test_importing_the_target_starts_no_blas_threads_unless_the_user_asks() -> None:
    """numpy arrives with singer-sdk; its OpenBLAS pool would spin a thread at every start."""
    count_threads = "import os, target_warehouse_seg.target, numpy; print(len(os.listdir('/proc/self/task')))"
    env = {key: value for key, value in os.environ.items() if key != "OPENBLAS_NUM_THREADS"}
    alone = subprocess.run([sys.executable, "-c", count_threads], env=env, capture_output=True, text=True)
    assert alone.returncode == 0, alone.stderr
    assert alone.stdout.strip() == "1"
    env["OPENBLAS_NUM_THREADS"] = "2"
    asked = subprocess.run([sys.executable, "-c", count_threads], env=env, capture_output=True, text=True)
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout.strip() == "2"


CONFIG_FILE_PROBLEMS = {
    "missing": (None, "cannot be read: No such file or directory"),
    "not JSON": (
        '{"engine": "postgres", "password": "pw-SECRET"',
        "is not valid JSON: Expecting ',' delimiter",
    ),
    "an array": ('["engine"]', "holds an array, not an object"),
    "empty": ("  \n", "is empty"),
    "a folder": ("folder", "cannot be read: Is a directory"),
    "not UTF-8": ("latin-1", "cannot be read: invalid continuation byte"),
}


@pytest.mark.parametrize(("text", "problem"), CONFIG_FILE_PROBLEMS.values(), ids=CONFIG_FILE_PROBLEMS.keys())
def test_a_bad_config_file_is_one_line(text: str | None, problem: str, tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    if text == "folder":
        path.mkdir()
    elif text == "latin-1":
        path.write_bytes('{"schema": "café"}'.encode("latin-1"))
    elif text is not None:
        path.write_text(text)
    done = subprocess.run(
        [TARGET_EXECUTABLE, "--config", str(path)], input=INPUT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and done.stdout == ""
    assert "Traceback" not in done.stderr and "SECRET" not in done.stderr
    errors = error_lines(done)
    assert len(errors) == 1, done.stderr
    assert f"| config file '{path}' {problem}" in errors[0]


def test_a_sqlite_file_as_path_is_one_line_at_once(tmp_path: Path) -> None:
    """DuckDB opens a SQLite file through its sqlite extension, which it first tries to download: the
    run stopped, after the download's timeout, on `Failed to download extension "sqlite_scanner"`."""
    import sqlite3

    path = tmp_path / "warehouse.db"
    with contextlib.closing(sqlite3.connect(path)) as lite:
        lite.execute("CREATE TABLE t (a)")
        lite.commit()
    done = run({"path": str(path)}, tmp_path)
    assert done.returncode == 1
    errors = error_lines(done)
    assert len(errors) == 1, done.stderr
    assert errors[0].endswith(f"setting `path`: {str(path)!r} is a SQLite database, not a DuckDB file")


def _data_file(kind: str, folder: Path) -> Path:
    """A file DuckDB 2.0 would open as a database in memory: a JSON (a copy of a config), a CSV, or a
    Parquet file (written by DuckDB itself)."""
    import duckdb

    path = folder / f"tapcopy.{kind}"
    if kind == "json":
        path.write_text(json.dumps({"engine": "duckdb", "path": "warehouse.duckdb"}))
    elif kind == "csv":
        path.write_text("id,name\n1,Acme\n")
    else:
        with contextlib.closing(duckdb.connect()) as connection:
            connection.execute(f"COPY (SELECT 1 AS id) TO '{path}' (FORMAT parquet)")
    return path


@pytest.mark.parametrize("kind", ["json", "csv", "parquet"])
def test_a_data_file_as_path_is_one_line_and_nothing_is_loaded(kind: str, tmp_path: Path) -> None:
    """DuckDB 2.0 opened such a file as a database in memory: the run loaded, wrote its STATE, exited
    0, and the file was unchanged (the rows lost, the state advanced past them)."""
    path = _data_file(kind, tmp_path)
    before = path.read_bytes()
    stdin = to_lines([schema("s", {"id": {"type": "integer"}}), record("s", {"id": 1}), state({"at": 1})])
    done = run({"engine": "duckdb", "path": str(path)}, tmp_path, stdin)
    assert done.returncode == 1
    errors = error_lines(done)
    assert len(errors) == 1, done.stderr
    assert errors[0].endswith(
        f"setting `path`: {str(path)!r} exists, but it is not a DuckDB database file; name a DuckDB "
        "file, or a new file for the target to create"
    )
    assert "Traceback" not in done.stderr and "opened DuckDB database" not in done.stderr
    assert done.stdout == ""
    assert path.read_bytes() == before
    assert sorted(item.name for item in tmp_path.iterdir()) == ["config.json", path.name]


def test_a_data_file_as_path_is_refused_before_any_input_is_read(tmp_path: Path) -> None:
    from target_warehouse_seg.errors import ConfigError
    from target_warehouse_seg.target import TargetWarehouseSeg

    path = _data_file("json", tmp_path)
    with pytest.raises(ConfigError, match="exists, but it is not a DuckDB database file"):
        TargetWarehouseSeg(config={"engine": "duckdb", "path": str(path)})


@pytest.mark.parametrize("kind", ["json", "parquet"])
def test_the_engine_refuses_a_database_duckdb_opens_in_memory(kind: str, tmp_path: Path) -> None:
    """Past the check of the file's header (a file replaced after it, a format a later DuckDB opens so),
    connecting checks that the attached database is the file."""
    from target_warehouse_seg.engines.duckdb import DuckDBEngine
    from target_warehouse_seg.errors import ConfigError

    path = _data_file(kind, tmp_path)
    before = path.read_bytes()
    engine = DuckDBEngine(str(path), "salesforce")
    try:
        with pytest.raises(ConfigError, match="exists, but it is not a DuckDB database file"):
            engine.connect()
    finally:
        engine.close()
    assert path.read_bytes() == before
    assert [item.name for item in tmp_path.iterdir()] == [path.name]


def test_unknown_settings_are_warned_about_once_and_the_run_goes_on(tmp_path: Path) -> None:
    """A misspelled setting was ignored in silence (`shcema`: the rows went to the default schema). Every
    setting of the target's own raises no warning."""
    import duckdb

    warehouse = tmp_path / "w2.duckdb"
    own = {
        "engine": "duckdb",
        "path": str(warehouse),
        # PostgreSQL's, which engine `duckdb` does not use
        "sqlalchemy_url": "postgresql://loader@db.internal/analytics",
        "host": "db.internal",
        "port": 5432,
        "user": "loader",
        "password": "unused",
        "database": "analytics",
        "sslmode": "prefer",
        "schema": "salesforce",
        "batch_size_rows": 1000,
        "batch_max_seconds": 60,
        "hard_delete": False,
        "on_invalid_record": "fail",
    }
    assert set(own) == SETTINGS
    stdin = to_lines([schema("s", {"id": {"type": "integer"}}), record("s", {"id": 1}), state({"at": 1})])
    config = {**own, "shcema": "sfdc_prod", "hard_delet": True, "default_target_schema": "sfdc_prod"}
    done = run(config, tmp_path, stdin)
    assert done.returncode == 0, done.stderr
    warnings = target_warnings(done.stderr)
    assert warnings == [
        "Unknown setting 'default_target_schema' is ignored (did you mean 'schema'?).",
        "Unknown setting 'hard_delet' is ignored (did you mean 'hard_delete'?).",
        "Unknown setting 'shcema' is ignored (did you mean 'schema'?).",
        "Setting(s) `sqlalchemy_url`, `host`, `port`, `user`, `password`, `database`, `sslmode` are "
        "ignored: `engine` is duckdb, which loads into `path`.",
    ], done.stderr
    assert done.stdout == '{"at":1}\n'
    with contextlib.closing(duckdb.connect(str(warehouse))) as connection:
        assert connection.execute("SELECT id FROM salesforce.s").fetchall() == [(1,)]


@pytest.mark.postgres
def test_connection_fields_beside_a_url_are_named_as_ignored(postgres_database: str, tmp_path: Path) -> None:
    """`host` beside `sqlalchemy_url` was ignored in silence (the URL alone names the connection)."""
    config = {"engine": "postgres", "sqlalchemy_url": postgres_database, "host": "elsewhere", "port": 1}
    done = run(config, tmp_path, to_lines([schema("s", {"id": {"type": "integer"}}), record("s", {"id": 1})]))
    assert done.returncode == 0, done.stderr
    warnings = target_warnings(done.stderr)
    assert warnings == [
        "Setting(s) `host`, `port` are ignored: `sqlalchemy_url` names the connection alone."
    ], done.stderr


def target_warnings(stderr: str) -> list[str]:
    """The target's own WARNING lines (not Python's warnings, such as singer-sdk 0.54.2's notice of Python
    3.11's end of life, which the lowest versions print)."""
    return [
        line.split(" | ")[-1]
        for line in stderr.splitlines()
        if "| WARNING" in line and "| target-warehouse-seg" in line
    ]
