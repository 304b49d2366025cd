"""Fixtures for the target's tests: a warehouse on each engine, and ways to run the target on it.

``warehouse`` is parametrized over DuckDB (a fresh file) and PostgreSQL (a fresh database from
``postgres_database``), so every test using it runs on both engines.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import typing as t
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGET_EXECUTABLE = str(Path(sys.executable).with_name("target-warehouse-seg"))


def start_target(config: Path, *, text: bool = True, **streams: t.Any) -> subprocess.Popen:
    """The console script running on a config file; stdin, stdout and stderr are pipes unless given
    (`stdout=subprocess.DEVNULL`, `stdin=<a file>`, `env=...`)."""
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    return subprocess.Popen([TARGET_EXECUTABLE, "--config", str(config)], text=text, **{**pipes, **streams})


def wait_until_the_target_waits_for_a_lock(url: str, sessions: int = 1) -> None:
    """Until `sessions` target sessions wait for a lock another session holds (30 s at most)."""
    import psycopg

    deadline = time.monotonic() + 30
    with psycopg.connect(url, autocommit=True) as watcher:
        while (
            watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'target-warehouse-seg' "
                "AND wait_event_type = 'Lock'"
            ).fetchone()[0]
            < sessions
        ):
            assert time.monotonic() < deadline, "the run never waited for the other session's lock"
            time.sleep(0.05)


def schema(
    stream: str, properties: dict[str, t.Any], key: list[str] | None = None, bookmark: list[str] | None = None
) -> dict[str, t.Any]:
    message: dict[str, t.Any] = {
        "type": "SCHEMA",
        "stream": stream,
        "schema": {"type": "object", "properties": properties},
        "key_properties": ["id"] if key is None else key,
    }
    if bookmark:
        message["bookmark_properties"] = bookmark
    return message


def record(stream: str, values: dict[str, t.Any], time_extracted: str | None = None) -> dict[str, t.Any]:
    message: dict[str, t.Any] = {"type": "RECORD", "stream": stream, "record": values}
    if time_extracted:
        message["time_extracted"] = time_extracted
    return message


def state(value: t.Any) -> dict[str, t.Any]:
    return {"type": "STATE", "value": value}


def _default(value: t.Any) -> t.Any:
    if isinstance(value, Decimal):
        return float(value)  # only for test messages that do not care about exactness
    raise TypeError(value)


def to_lines(messages: t.Iterable[t.Any]) -> str:
    """Singer lines: dicts are JSON-encoded, strings are taken as they are (exact numbers, bad lines)."""
    return "".join((m if isinstance(m, str) else json.dumps(m, default=_default)) + "\n" for m in messages)


def json_lines(text: str) -> list[t.Any]:
    """The JSON messages of a Singer stdout, split on "\n" only: `str.splitlines()` also splits on
    U+2028, U+2029 and U+0085, which JSON allows raw inside a string (a STATE value's), and more."""
    return [json.loads(line) for line in text.split("\n") if line.strip()]


@dataclass
class Run:
    states: list[t.Any]
    error: BaseException | None = None


@dataclass
class CliRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def states(self) -> list[t.Any]:
        return json_lines(self.stdout)

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if "| ERROR" in line]


@dataclass
class Warehouse:
    engine: str
    base_config: dict[str, t.Any]
    schema_name: str = "salesforce"
    tmp_path: Path = field(default_factory=Path)

    def config(self, **settings: t.Any) -> dict[str, t.Any]:
        return {**self.base_config, **settings}

    # Running the target ---------------------------------------------------------------------------

    def run(self, messages: t.Iterable[t.Any], **settings: t.Any) -> Run:
        """Run the target in this process; an error is returned, not raised."""
        # Imported here: the fuzz tests' input writers (run as scripts) import this file without
        # tests/support on their path.
        from stdout_capture import captured_stdout

        from target_warehouse_seg.target import TargetWarehouseSeg

        error: BaseException | None = None
        with captured_stdout() as captured:  # the target writes STATE lines as bytes, as to a process's
            try:
                target = TargetWarehouseSeg(config=self.config(**settings))
                target.process_lines(io.StringIO(to_lines(messages)))
                target.process_endofpipe()
            except Exception as caught:
                error = caught
        return Run(json_lines(captured.getvalue().decode("utf-8")), error)

    def cli(
        self,
        input_text: str,
        *,
        timeout: float = 120,
        env: dict[str, str] | None = None,
        **settings: t.Any,
    ) -> CliRun:
        """Run the installed console script, as users and the benchmark do (``env``: variables added to
        this process's environment)."""
        config_path = self.tmp_path / f"config-{os.getpid()}-{len(input_text)}.json"
        config_path.write_text(json.dumps(self.config(**settings)))
        done = subprocess.run(
            [TARGET_EXECUTABLE, "--config", str(config_path)],
            input=input_text,
            capture_output=True,
            encoding="utf-8",  # whatever the locale: Singer lines are UTF-8
            timeout=timeout,
            check=False,
            env={**os.environ, **env} if env else None,
        )
        return CliRun(done.returncode, done.stdout, done.stderr)

    # Looking at the warehouse -----------------------------------------------------------------------

    def query(self, sql: str) -> list[tuple]:
        if self.engine == "postgres":
            import psycopg

            with psycopg.connect(self.base_config["sqlalchemy_url"]) as connection:
                connection.execute("SET TIME ZONE 'UTC'")
                return connection.execute(sql).fetchall()
        import duckdb

        connection = duckdb.connect(self.base_config["path"])
        try:
            return connection.execute(sql).fetchall()
        finally:
            connection.close()

    def execute(self, *statements: str) -> None:
        """Run statements (DDL, say) in one committed transaction, as another user of the database."""
        if self.engine == "postgres":
            import psycopg

            with psycopg.connect(self.base_config["sqlalchemy_url"]) as connection:
                for statement in statements:
                    connection.execute(statement)
            return
        import duckdb

        connection = duckdb.connect(self.base_config["path"])
        try:
            for statement in statements:
                connection.execute(statement)
        finally:
            connection.close()

    def rows(self, table: str, order_by: str = "id", columns: str = "*") -> list[dict[str, t.Any]]:
        names = (
            [name for name, _ in self.columns(table).items()]
            if columns == "*"
            else [name.strip().strip('"') for name in columns.split(",")]
        )
        selected = ", ".join(f'"{name}"' for name in names)
        result = self.query(f'SELECT {selected} FROM "{self.schema_name}"."{table}" ORDER BY {order_by}')
        return [dict(zip(names, row, strict=True)) for row in result]

    def columns(self, table: str) -> dict[str, str]:
        """Column name -> lower-case SQL type, in table order."""
        rows = self.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            f"WHERE table_schema = '{self.schema_name}' AND table_name = '{table}' ORDER BY ordinal_position"
        )
        return {name: sql_type.lower() for name, sql_type in rows}

    def key_columns(self, table: str) -> list[str]:
        """The table's primary key columns, in order."""
        rows = self.query(
            "SELECT k.column_name FROM information_schema.table_constraints c "
            "JOIN information_schema.key_column_usage k ON k.constraint_name = c.constraint_name "
            "AND k.table_schema = c.table_schema AND k.table_name = c.table_name "
            f"WHERE c.table_schema = '{self.schema_name}' AND c.table_name = '{table}' "
            "AND c.constraint_type = 'PRIMARY KEY' ORDER BY k.ordinal_position"
        )
        return [name for (name,) in rows]

    def tables(self) -> set[str]:
        rows = self.query(
            f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{self.schema_name}'"
        )
        return {name for (name,) in rows}

    def json(self, value: t.Any) -> t.Any:
        """A JSON column's value as Python data (DuckDB hands JSON back as text, PostgreSQL parsed)."""
        return json.loads(value) if self.engine == "duckdb" and value is not None else value

    def count(self, table: str) -> int:
        if table not in self.tables():
            return 0
        return self.query(f'SELECT count(*) FROM "{self.schema_name}"."{table}"')[0][0]


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_database")
        return Warehouse("postgres", {"engine": "postgres", "sqlalchemy_url": url}, tmp_path=tmp_path)
    return Warehouse(
        "duckdb", {"engine": "duckdb", "path": str(tmp_path / "warehouse.duckdb")}, tmp_path=tmp_path
    )


@pytest.fixture
def pg(postgres_database: str, tmp_path: Path) -> Warehouse:
    """A PostgreSQL warehouse alone (tests of PostgreSQL's own behaviour: locks, sessions, signals)."""
    return Warehouse(
        "postgres", {"engine": "postgres", "sqlalchemy_url": postgres_database}, tmp_path=tmp_path
    )


@pytest.fixture
def duckdb_warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse("duckdb", {"engine": "duckdb", "path": str(tmp_path / "w.duckdb")}, tmp_path=tmp_path)
