"""Target throughput (issue 4, acceptance point 2): target-warehouse-seg against baselines and peers.

    python bench/target_throughput.py                     # everything, as the issue asks (takes long)
    python bench/target_throughput.py --datasets a --skip-peer --rows-scale 0.1

For each dataset (a: 200k x 40 mixed, b: 20k x 300 wide, c: 1M x 10 strings; see bench/datasets.py) and
each phase (inserts into an empty table, then updates of the same keys into the table the inserts made),
every loader runs as a subprocess, timed by wall clock, with the peak memory of its process tree:

  postgres  baseline     psql: \\copy of the CSV into a TEMP staging table + one INSERT ... ON CONFLICT
            seg          target-warehouse-seg (engine postgres)
            peer-default meltanolabs-target-postgres (own venv) with its defaults
            peer-copy    the same with use_copy: true, validate_records: false
  duckdb    baseline     duckdb module: COPY of the CSV into a TEMP staging table + one MERGE
            bounded      the same with DuckDB's memory_limit at 200 MB, which keeps its process under the
                         300 MB bar (informational: no bar uses it; it shows what the baseline needs)
            seg          target-warehouse-seg (engine duckdb)

The baselines and target-warehouse-seg run --repeat times (default 3, taking turns, each time from an empty
table); the report gives their median wall time, every run's time, and the highest peak memory. The peers
and the bounded baseline run once.

After every run the table is checked: the row count and a spot check of whole rows against the generator
(so a fast-but-wrong loader cannot win). Bars (PASS/FAIL, exit status 1 on any FAIL): target-warehouse-seg
within 2x of the PostgreSQL baseline's time on (a) and (c) and 3x on (b), within 2x of the DuckDB baseline
on every dataset, peak memory under 300 MB in every run, and every run stored exactly what it was given.

PostgreSQL: --postgres-url or TEST_POSTGRES_URL, else a throwaway cluster (tests/support/pgcluster.py).
Progress goes to stderr, the report to stdout, the results as JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import typing as t
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import psycopg
from psycopg import sql

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

import datasets  # noqa: E402  (bench/ is not a package; it sits beside this file)
from datasets import DatasetFiles, DatasetSpec  # noqa: E402

PEER_PACKAGE = "meltanolabs-target-postgres"
PEER_VERSION = "0.8.1"
PEER_VENV = BENCH_DIR / ".venvs" / PEER_PACKAGE
# One database per run, so that two runs (or a run and the test suite) on one server never collide.
BENCH_DATABASE = f"bench_target_throughput_{os.getpid()}"
MEMORY_BAR_MB = 300.0
POSTGRES_TIME_BARS = {"a": 2.0, "b": 3.0, "c": 2.0}
DUCKDB_TIME_BAR = 2.0
# DuckDB's memory_limit for the informational bounded baseline: its process (Python, DuckDB, buffers) then
# peaks near the memory bar.
BOUNDED_DUCKDB_MEMORY = "200MB"
SPOT_CHECKS = 8

# The column types target-warehouse-seg creates for each generated kind (issue 4's type map).
POSTGRES_TYPES = {
    "id": "text",
    "string": "text",
    "text": "text",
    "integer": "bigint",
    "number": "numeric",
    "boolean": "boolean",
    "datetime": "timestamptz",
}
DUCKDB_TYPES = {
    "id": "VARCHAR",
    "string": "VARCHAR",
    "text": "VARCHAR",
    "integer": "BIGINT",
    "number": "DECIMAL(38, 18)",
    "boolean": "BOOLEAN",
    "datetime": "TIMESTAMPTZ",
}


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------
# Measuring a subprocess: wall time and the peak resident memory of its whole process tree


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found.extend(int(child) for child in handle.read().split())
        except OSError:
            continue
    return found


def _memory_kib(pid: int) -> tuple[int, int, int]:
    """(VmRSS, VmHWM, RssAnon + RssShmem) of one process in KiB; VmHWM is its peak since its last exec.

    The last is the memory the process allocated itself: VmRSS minus the pages of files it maps (its
    shared libraries' code, mostly), which depend on the page cache as much as on the process.
    """
    rss = hwm = own = 0
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
                elif line.startswith(("RssAnon:", "RssShmem:")):
                    own += int(line.split()[1])
    except OSError:
        pass
    return rss, hwm, own


class TreeMemorySampler:
    """Peak memory of a process tree: the largest summed VmRSS seen, or the largest single VmHWM.

    VmHWM catches a process's peak between two samples. ru_maxrss of the waited child is not used: Linux
    carries the forking parent's (this harness's) high-water mark across exec into it. Also the largest
    summed anonymous memory seen (``peak_own_kib``: VmRSS without mapped files' pages; sampled only).
    """

    def __init__(self, root: int) -> None:
        self.root = root
        self.peak_kib = 0
        self.peak_own_kib = 0

    def sample(self) -> None:
        total = own_total = 0
        pending, seen = [self.root], set()
        while pending:
            pid = pending.pop()
            if pid in seen:
                continue
            seen.add(pid)
            rss, hwm, own = _memory_kib(pid)
            total += rss
            own_total += own
            self.peak_kib = max(self.peak_kib, hwm)
            pending.extend(_children(pid))
        self.peak_kib = max(self.peak_kib, total)
        self.peak_own_kib = max(self.peak_own_kib, own_total)


@dataclass
class Measurement:
    wall_seconds: float
    peak_rss_bytes: int
    peak_own_bytes: int  # anonymous memory: the peak without mapped files' pages
    returncode: int
    stderr_tail: str


def run_measured(
    argv: list[str],
    stdin: Path | None,
    stdout: Path,
    stderr: Path,
    env: dict[str, str] | None = None,
    interval: float = 0.01,
    timeout: float | None = None,
) -> Measurement:
    """Run `argv` to completion: wall time from spawn to exit, and the peak memory of its process tree.

    A run past `timeout` seconds is killed with its whole process group and reported as failed.
    """
    done = threading.Event()
    with contextlib.ExitStack() as files:
        stdin_handle = files.enter_context(stdin.open("rb")) if stdin else subprocess.DEVNULL
        stdout_handle = files.enter_context(stdout.open("wb"))
        stderr_handle = files.enter_context(stderr.open("wb"))
        started = time.perf_counter()
        process = subprocess.Popen(
            argv,
            stdin=stdin_handle,
            stdout=stdout_handle,
            stderr=stderr_handle,
            env=env,
            start_new_session=True,
        )
        sampler = TreeMemorySampler(process.pid)

        def keep_sampling() -> None:
            while not done.is_set():
                sampler.sample()
                done.wait(interval)

        thread = threading.Thread(target=keep_sampling, daemon=True)
        thread.start()
        try:
            returncode = process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            returncode = -signal.SIGKILL
        except BaseException:  # Ctrl-C: leave no loader running behind
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
        wall = time.perf_counter() - started
        done.set()
        thread.join()
    tail = stderr.read_text(errors="replace")[-3000:]
    if timeout is not None and wall >= timeout:
        tail = f"killed after the {timeout:g} s timeout"
    return Measurement(wall, sampler.peak_kib * 1024, sampler.peak_own_kib * 1024, returncode, tail)


# ---------------------------------------------------------------------------------------------------------
# PostgreSQL: the given server or a throwaway cluster, and a fresh database for the run


@contextlib.contextmanager
def postgres_server(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    sys.path.insert(0, str(REPO_DIR / "tests" / "support"))
    import pgcluster

    bindir = pgcluster.find_bindir()
    if bindir is None:
        raise SystemExit("no PostgreSQL server binaries found: pass --postgres-url or set TEST_POSTGRES_URL")
    workdir = Path(tempfile.mkdtemp(prefix="bench-pgcluster-"))
    data_dir = workdir / "data"
    try:
        url, data_dir = pgcluster.start_cluster(bindir, workdir)
        progress(f"started a throwaway PostgreSQL ({bindir.parent.name}) at {url}")
        yield url
    finally:
        pgcluster.stop_cluster(data_dir)
        shutil.rmtree(workdir, ignore_errors=True)


def with_database(url: str, database: str) -> str:
    base, _, _ = url.rpartition("/")
    query = url.partition("?")[2]
    return f"{base}/{database}" + (f"?{query}" if query else "")


def fresh_database(admin_url: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(BENCH_DATABASE))
        )
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(BENCH_DATABASE)))
    return with_database(admin_url, BENCH_DATABASE)


def drop_database(admin_url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(BENCH_DATABASE))
        )


def sqlalchemy_url(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"postgresql+psycopg://{rest}" if scheme in ("postgres", "postgresql") else url


# ---------------------------------------------------------------------------------------------------------
# Reading a loaded table back, and comparing it with the generator


def _expected_datetime(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def values_match(kind: str, expected: object, actual: object) -> bool:
    if expected is None or actual is None:
        return expected is None and actual is None
    if kind in ("id", "string", "text"):
        return actual == expected
    if kind == "integer":
        return isinstance(actual, (int, Decimal)) and int(actual) == expected
    if kind == "number":
        return Decimal(str(actual)) == Decimal(repr(expected))
    if kind == "boolean":
        return actual is expected
    if kind == "datetime":
        if not isinstance(actual, dt.datetime):
            return False
        stored = actual if actual.tzinfo else actual.replace(tzinfo=dt.UTC)
        return stored == _expected_datetime(str(expected))
    raise ValueError(kind)


def spot_indices(rows: int) -> list[int]:
    picks = {0, rows - 1}
    for step in range(1, SPOT_CHECKS - 1):
        picks.add((step * 7_919_993 + 104_729) % rows)
    return sorted(picks)


TableFetcher = Callable[[list[str], list[str]], tuple[int, dict[str, tuple]]]


def check_table(files: DatasetFiles, fetch: TableFetcher, check_received_at: bool) -> list[str]:
    """Problems found in the loaded table (empty when the count and the spot-checked rows are right)."""
    spec = files.spec
    indices = spot_indices(spec.rows)
    columns = spec.column_names + (["received_at"] if check_received_at else [])
    ids = [datasets.make_id(index) for index in indices]
    try:
        count, rows = fetch(columns, ids)
    except Exception as error:  # a missing table or column is a finding, not a crash of the bench
        return [f"could not read the table back: {type(error).__name__}: {str(error).splitlines()[0]}"]
    problems = []
    if count != spec.rows:
        problems.append(f"row count {count}, expected {spec.rows}")
    for index, row_id in zip(indices, ids, strict=True):
        stored = rows.get(row_id)
        if stored is None:
            problems.append(f"id {row_id} missing")
            continue
        expected = datasets.row_values(spec, index, files.phase)
        kinds = [column.kind for column in spec.columns]
        if check_received_at:
            expected = [*expected, datasets.time_extracted(index, files.phase)]
            kinds = [*kinds, "datetime"]
        for name, kind, want, got in zip(columns, kinds, expected, stored, strict=True):
            if not values_match(kind, want, got):
                problems.append(f"id {row_id} column {name}: stored {got!r}, expected {want!r}")
    return problems[:10]


def postgres_fetcher(url: str, schema: str, table: str) -> TableFetcher:
    def fetch(columns: list[str], ids: list[str]) -> tuple[int, dict[str, tuple]]:
        target = sql.Identifier(schema, table)
        with psycopg.connect(url) as connection:
            count = connection.execute(sql.SQL("SELECT count(*) FROM {}").format(target)).fetchone()[0]
            query = sql.SQL("SELECT {} FROM {} WHERE id = ANY(%s)").format(
                sql.SQL(", ").join(sql.Identifier(name) for name in columns), target
            )
            rows = {row[0]: row for row in connection.execute(query, (ids,)).fetchall()}
        return count, rows

    return fetch


def duckdb_fetcher(path: Path, schema: str, table: str) -> TableFetcher:
    def fetch(columns: list[str], ids: list[str]) -> tuple[int, dict[str, tuple]]:
        import duckdb

        target = f'"{schema}"."{table}"'
        select = ", ".join(f'"{name}"' for name in columns)
        with duckdb.connect(str(path), read_only=True) as connection:
            connection.execute("SET TimeZone = 'UTC'")
            count = connection.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
            found = connection.execute(
                f"SELECT {select} FROM {target} WHERE id IN (SELECT unnest(?))", [ids]
            ).fetchall()
        return count, {row[0]: row for row in found}

    return fetch


def last_state_problem(state_file: Path, files: DatasetFiles) -> list[str]:
    """A Singer target writes each committed STATE's value as a line; the last must be the input's last."""
    lines = [line for line in state_file.read_text().splitlines() if line.strip()]
    if not lines:
        return ["emitted no STATE"]
    try:
        last = json.loads(lines[-1])
    except json.JSONDecodeError:
        return [f"last stdout line is not JSON: {lines[-1][:80]!r}"]
    if last != files.final_state["value"]:
        return [f"last STATE {last!r} is not the input's last {files.final_state['value']!r}"]
    return []


# ---------------------------------------------------------------------------------------------------------
# Loaders


@dataclass
class Context:
    postgres_url: str
    workdir: Path
    target_command: list[str]
    target_env: dict[str, str] | None
    target_extra_config: dict
    peer_max_rows: int | None
    timeout: float | None = None
    target_description: str = ""


@dataclass
class Invocation:
    argv: list[str]
    stdin: Path | None
    env: dict[str, str] | None = None


class Loader:
    """One way of loading a dataset; subclasses say how to invoke it and how to read its table back."""

    key = ""
    label = ""
    engine = ""
    is_baseline = False
    is_ours = False
    reads_singer = True

    def __init__(self, context: Context) -> None:
        self.context = context

    def rows_for(self, spec: DatasetSpec) -> int:
        return spec.rows

    def reset(self, spec: DatasetSpec) -> None:
        raise NotImplementedError

    def invocation(self, files: DatasetFiles, run_dir: Path) -> Invocation:
        raise NotImplementedError

    def fetcher(self, spec: DatasetSpec) -> TableFetcher:
        raise NotImplementedError

    def verify(self, files: DatasetFiles, stdout: Path) -> list[str]:
        problems = check_table(
            files, self.fetcher(files.spec), check_received_at=self.is_ours or self.is_baseline
        )
        if self.reads_singer:
            problems += last_state_problem(stdout, files)
        return problems

    def schema(self) -> str:
        return f"bench_{self.key.replace('-', '_')}"


class PostgresLoader(Loader):
    engine = "postgres"

    def reset(self, spec: DatasetSpec) -> None:
        with psycopg.connect(self.context.postgres_url, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema()))
            )

    def fetcher(self, spec: DatasetSpec) -> TableFetcher:
        return postgres_fetcher(self.context.postgres_url, self.schema(), spec.stream)


class DuckdbLoader(Loader):
    engine = "duckdb"

    def database_path(self) -> Path:
        return self.context.workdir / f"{self.key}.duckdb"

    def reset(self, spec: DatasetSpec) -> None:
        for suffix in ("", ".wal"):
            Path(f"{self.database_path()}{suffix}").unlink(missing_ok=True)

    def fetcher(self, spec: DatasetSpec) -> TableFetcher:
        return duckdb_fetcher(self.database_path(), "bench", spec.stream)


def _column_list(spec: DatasetSpec) -> list[str]:
    return [*spec.column_names, "received_at"]


def _quoted(names: list[str]) -> str:
    return ", ".join(f'"{name}"' for name in names)


def _table_ddl(spec: DatasetSpec, qualified: str, types: dict[str, str], timestamp_type: str) -> str:
    columns = [f'"{column.name}" {types[column.kind]}' for column in spec.columns]
    columns += [f'"received_at" {timestamp_type}', f'"uuid_ts" {timestamp_type}']
    return f'CREATE TABLE IF NOT EXISTS {qualified} ({", ".join(columns)}, PRIMARY KEY ("id"))'


def _staging_ddl(spec: DatasetSpec, types: dict[str, str], timestamp_type: str) -> str:
    columns = [f'"{column.name}" {types[column.kind]}' for column in spec.columns]
    columns.append(f'"received_at" {timestamp_type}')
    return f"CREATE TEMP TABLE staging ({', '.join(columns)})"


def _newer_guard(table: str, incoming: str) -> str:
    """Never regress a stored row: the same rule the target applies on its replication key."""
    return (
        f'{table}."system_modstamp" IS NULL OR {incoming}."system_modstamp" IS NULL '
        f'OR {table}."system_modstamp" <= {incoming}."system_modstamp"'
    )


class BaselinePostgres(PostgresLoader):
    key = "baseline"
    label = "psql \\copy + upsert"
    is_baseline = True
    reads_singer = False

    def invocation(self, files: DatasetFiles, run_dir: Path) -> Invocation:
        spec = files.spec
        schema, names = self.schema(), _column_list(spec)
        qualified = f'"{schema}"."{spec.stream}"'
        updates = ", ".join(f'"{name}" = EXCLUDED."{name}"' for name in names if name != "id")
        csv_path = str(files.csv).replace("'", "''")
        script = "\n".join(
            [
                "\\set ON_ERROR_STOP 1",
                "BEGIN;",
                f'CREATE SCHEMA IF NOT EXISTS "{schema}";',
                _table_ddl(spec, qualified, POSTGRES_TYPES, "timestamptz") + ";",
                _staging_ddl(spec, POSTGRES_TYPES, "timestamptz") + " ON COMMIT DROP;",
                f"\\copy staging ({_quoted(names)}) FROM '{csv_path}' WITH (FORMAT csv)",
                f'INSERT INTO {qualified} AS t ({_quoted(names)}, "uuid_ts") '
                f"SELECT {_quoted(names)}, now() FROM staging "
                f'ON CONFLICT ("id") DO UPDATE SET {updates}, "uuid_ts" = EXCLUDED."uuid_ts" '
                f"WHERE {_newer_guard('t', 'EXCLUDED')};",
                "COMMIT;",
            ]
        )
        script_path = run_dir / "baseline.sql"
        script_path.write_text(script + "\n", encoding="utf-8")
        psql = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
        return Invocation([psql, "-X", "-q", "-d", self.context.postgres_url, "-f", str(script_path)], None)


class SegPostgres(PostgresLoader):
    key = "seg"
    label = "target-warehouse-seg"
    is_ours = True

    def invocation(self, files: DatasetFiles, run_dir: Path) -> Invocation:
        config = {
            "engine": "postgres",
            "sqlalchemy_url": self.context.postgres_url,
            "schema": self.schema(),
            **self.context.target_extra_config,
        }
        config_path = run_dir / "target.json"
        config_path.write_text(json.dumps(config))
        return Invocation(
            [*self.context.target_command, "--config", str(config_path)],
            files.singer,
            self.context.target_env,
        )


class PeerPostgres(PostgresLoader):
    settings: dict = {}

    def rows_for(self, spec: DatasetSpec) -> int:
        limit = self.context.peer_max_rows
        return spec.rows if limit is None else min(spec.rows, limit)

    def invocation(self, files: DatasetFiles, run_dir: Path) -> Invocation:
        config = {
            "sqlalchemy_url": sqlalchemy_url(self.context.postgres_url),
            "default_target_schema": self.schema(),
            **self.settings,
        }
        config_path = run_dir / "peer.json"
        config_path.write_text(json.dumps(config))
        return Invocation(
            [str(PEER_VENV / "bin" / "target-postgres"), "--config", str(config_path)], files.singer
        )


class PeerDefaults(PeerPostgres):
    key = "peer-default"
    label = f"{PEER_PACKAGE} defaults"


class PeerCopy(PeerPostgres):
    key = "peer-copy"
    label = f"{PEER_PACKAGE} copy, no validation"
    settings = {"use_copy": True, "validate_records": False}


DUCKDB_BASELINE_SCRIPT = """
import json, sys
import duckdb
job = json.loads(sys.argv[1])
try:
    connection = duckdb.connect(job["path"])
    for setting in job.get("settings", []):
        connection.execute(setting)
    connection.execute("BEGIN")
    for statement in job["statements"]:
        connection.execute(statement)
    connection.execute("COMMIT")
    connection.close()
except duckdb.Error as error:  # its first line says what (the rest is advice)
    sys.exit(str(error).strip().splitlines()[0])
"""


class BaselineDuckdb(DuckdbLoader):
    key = "duckdb-baseline"
    label = "duckdb COPY + MERGE"
    is_baseline = True
    reads_singer = False
    settings: tuple[str, ...] = ()  # SET statements before the transaction

    def invocation(self, files: DatasetFiles, run_dir: Path) -> Invocation:
        spec = files.spec
        names = _column_list(spec)
        qualified = f'"bench"."{spec.stream}"'
        csv_path = str(files.csv).replace("'", "''")
        assignments = ", ".join(f'"{name}" = s."{name}"' for name in names if name != "id")
        statements = [
            'CREATE SCHEMA IF NOT EXISTS "bench"',
            _table_ddl(spec, qualified, DUCKDB_TYPES, "TIMESTAMPTZ"),
            _staging_ddl(spec, DUCKDB_TYPES, "TIMESTAMPTZ"),
            # Explicit: no header (DuckDB guesses one otherwise), quoted "" is an empty string, not NULL.
            f"COPY staging FROM '{csv_path}' (FORMAT csv, HEADER false, ALLOW_QUOTED_NULLS false, "
            "NEW_LINE '\\n', QUOTE '\"', ESCAPE '\"', DELIMITER ',')",
            f'MERGE INTO {qualified} AS t USING staging AS s ON t."id" = s."id" '
            f'WHEN MATCHED AND ({_newer_guard("t", "s")}) THEN UPDATE SET {assignments}, "uuid_ts" = now() '
            f'WHEN NOT MATCHED THEN INSERT ({_quoted(names)}, "uuid_ts") '
            f"VALUES ({', '.join(f's.{chr(34)}{name}{chr(34)}' for name in names)}, now())",
            "DROP TABLE staging",
        ]
        job = {"path": str(self.database_path()), "settings": list(self.settings), "statements": statements}
        return Invocation([sys.executable, "-c", DUCKDB_BASELINE_SCRIPT, json.dumps(job)], None)


class BoundedBaselineDuckdb(BaselineDuckdb):
    """The DuckDB baseline held to a memory limit that keeps its process under the memory bar.

    Informational: no bar uses it. It answers "how fast is DuckDB's own path within the memory that
    target-warehouse-seg is allowed?" (the baseline unbounded peaks at 0.5-1.4 GB).
    """

    key = "duckdb-bounded"
    label = f"duckdb COPY + MERGE, memory_limit {BOUNDED_DUCKDB_MEMORY}"
    is_baseline = False
    settings = (f"SET memory_limit = '{BOUNDED_DUCKDB_MEMORY}'",)


class SegDuckdb(DuckdbLoader):
    key = "duckdb-seg"
    label = "target-warehouse-seg (duckdb)"
    is_ours = True

    def invocation(self, files: DatasetFiles, run_dir: Path) -> Invocation:
        config = {
            "engine": "duckdb",
            "path": str(self.database_path()),
            "schema": "bench",
            **self.context.target_extra_config,
        }
        config_path = run_dir / "target.json"
        config_path.write_text(json.dumps(config))
        return Invocation(
            [*self.context.target_command, "--config", str(config_path)],
            files.singer,
            self.context.target_env,
        )


LOADERS: tuple[type[Loader], ...] = (
    BaselinePostgres,
    SegPostgres,
    PeerDefaults,
    PeerCopy,
    BaselineDuckdb,
    BoundedBaselineDuckdb,
    SegDuckdb,
)
PEERS = ("peer-default", "peer-copy")
INFORMATIONAL = (*PEERS, "duckdb-bounded")  # runs that no bar requires to succeed
# The runs a bar compares, repeated (--repeat) because one run of each drifts on a shared machine: the
# DuckDB baseline's (c) updates took 2.6 to 5.3 s in runs of the same build an hour apart.
REPEATED = ("baseline", "seg", "duckdb-baseline", "duckdb-seg")


# ---------------------------------------------------------------------------------------------------------
# Runs and the report


@dataclass
class RunResult:
    dataset: str
    phase: str
    engine: str
    loader: str
    label: str
    rows: int
    wall_seconds: float | None = None
    peak_mb: float | None = None
    own_mb: float | None = None  # the peak of anonymous memory (see TreeMemorySampler)
    ok: bool = False
    problems: list[str] = field(default_factory=list)
    load_average: float | None = None  # the machine's 1-minute load when the run started (noise)
    wall_samples: list[float] = field(default_factory=list)  # every run's wall time, when repeated

    @property
    def seconds_per_row(self) -> float | None:
        return None if self.wall_seconds is None else self.wall_seconds / self.rows

    @property
    def rows_per_second(self) -> float | None:
        return None if not self.wall_seconds else self.rows / self.wall_seconds


def warm(path: Path) -> None:
    """Read the input once so that every loader starts with it in the page cache."""
    with path.open("rb") as handle:
        while handle.read(1 << 22):
            pass


SETTLE_TIMEOUT_SECONDS = 120.0


def settle(url: str) -> None:
    """Let what earlier runs set going end before the next loader starts, whatever engine it writes to:
    PostgreSQL's autovacuum of the tables they changed (seconds of CPU after a 1,000,000-row load, which
    would otherwise fall into the run after it, a DuckDB one included), the server's dirty buffers (a
    CHECKPOINT) and the kernel's dirty pages (a sync; a DuckDB baseline's writeback would otherwise fall
    into the target's run)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
    with psycopg.connect(url, autocommit=True) as connection:
        while time.monotonic() < deadline:
            row = connection.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
                " AND state IS DISTINCT FROM 'idle'"
            ).fetchone()
            if not row or not row[0]:
                break
            time.sleep(0.5)
        connection.execute("CHECKPOINT")
    os.sync()


def run_loader(loader: Loader, files: DatasetFiles, run_dir: Path) -> RunResult:
    spec = files.spec
    result = RunResult(spec.key, files.phase, loader.engine, loader.key, loader.label, spec.rows)
    run_dir.mkdir(parents=True, exist_ok=True)
    invocation = loader.invocation(files, run_dir)
    warm(files.singer if loader.reads_singer else files.csv)
    settle(loader.context.postgres_url)
    stdout, stderr = run_dir / "stdout", run_dir / "stderr"
    result.load_average = os.getloadavg()[0]
    try:
        measured = run_measured(
            invocation.argv, invocation.stdin, stdout, stderr, invocation.env, timeout=loader.context.timeout
        )
    except OSError as error:
        result.problems = [f"could not start {invocation.argv[0]}: {error.strerror}"]
        return result
    result.wall_seconds = measured.wall_seconds
    result.peak_mb = measured.peak_rss_bytes / 1e6
    result.own_mb = measured.peak_own_bytes / 1e6
    if measured.returncode != 0:
        lines = [line for line in measured.stderr_tail.splitlines() if line.strip()]
        result.problems = [f"exit status {measured.returncode}: " + " | ".join(lines[-3:])[-600:]]
        return result
    result.problems = loader.verify(files, stdout)
    result.ok = not result.problems
    return result


def combine(runs: list[RunResult]) -> RunResult:
    """One result for repeated runs of a loader: the median wall time and the highest peak memory; a
    failure in any run is the result (its problems, not ok)."""
    failed = next((run for run in runs if not run.ok), None)
    if failed is not None or len(runs) == 1:
        return failed or runs[0]
    walls = [t.cast(float, run.wall_seconds) for run in runs]
    return dataclasses.replace(
        runs[0],
        wall_seconds=statistics.median(walls),
        peak_mb=max(t.cast(float, run.peak_mb) for run in runs),
        own_mb=max(t.cast(float, run.own_mb) for run in runs),
        load_average=max(t.cast(float, run.load_average) for run in runs),
        wall_samples=walls,
    )


def ratio(result: RunResult, baseline: RunResult | None) -> float | None:
    if baseline is None or not baseline.ok or result.seconds_per_row is None or not baseline.seconds_per_row:
        return None
    return result.seconds_per_row / baseline.seconds_per_row


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def render_table(results: list[RunResult], spec: DatasetSpec, phase: str) -> str:
    header = (
        f"{'engine':8} {'loader':56} {'rows':>9} {'wall s':>8} {'runs (s)':>18} {'rows/s':>9} "
        f"{'peak MB':>8} {'anon MB':>8} {'x base':>7} {'load':>5}  check"
    )
    scaled = ""
    if spec.rows != datasets.SPECS[spec.key].rows:
        scaled = f", scaled to {spec.rows:,} rows (the bars are set for the full size)"
    title = (
        f"== ({spec.key}) {spec.description}{scaled} -- {phase}  (wall s: the median of the runs listed; "
        "peak MB: the highest; anon MB: the highest without mapped files' pages; load: the machine's "
        "highest 1-min load at a start)"
    )
    lines = [title, header, "-" * len(header)]
    for result in results:
        baseline = next(
            (r for r in results if r.engine == result.engine and r.loader.endswith("baseline")), None
        )
        label = result.label + (" [prefix]" if result.rows < spec.rows else "")
        check = "ok" if result.ok else "FAILED: " + "; ".join(result.problems)[:300]
        samples = " ".join(f"{wall:.2f}" for wall in result.wall_samples) or "-"
        lines.append(
            f"{result.engine:8} {label:56} {result.rows:>9,} {_fmt(result.wall_seconds, '.2f'):>8} "
            f"{samples:>18} {_fmt(result.rows_per_second, ',.0f'):>9} {_fmt(result.peak_mb, '.0f'):>8} "
            f"{_fmt(result.own_mb, '.0f'):>8} {_fmt(ratio(result, baseline), '.2f'):>7} "
            f"{_fmt(result.load_average, '.1f'):>5}  {check}"
        )
    return "\n".join(lines)


@dataclass
class Bar:
    name: str
    passed: bool
    detail: str


def evaluate_bars(results: list[RunResult]) -> list[Bar]:
    bars: list[Bar] = []
    by_key = {(r.dataset, r.phase, r.loader): r for r in results}
    for result in results:
        if result.loader not in ("seg", "duckdb-seg"):
            continue
        where = f"({result.dataset}) {result.phase}"
        baseline_key = "baseline" if result.engine == "postgres" else "duckdb-baseline"
        baseline = by_key.get((result.dataset, result.phase, baseline_key))
        limit = POSTGRES_TIME_BARS[result.dataset] if result.engine == "postgres" else DUCKDB_TIME_BAR
        measured = ratio(result, baseline) if result.ok else None
        bars.append(
            Bar(
                f"{result.engine} {where}: time within {limit:g}x of the baseline",
                measured is not None and measured <= limit,
                "not measured (a run failed)" if measured is None else f"{measured:.2f}x",
            )
        )
        bars.append(
            Bar(
                f"{result.engine} {where}: peak memory under {MEMORY_BAR_MB:g} MB",
                result.peak_mb is not None and result.peak_mb < MEMORY_BAR_MB,
                f"{_fmt(result.peak_mb, '.0f')} MB",
            )
        )
    wrong = [r for r in results if not r.ok and r.loader not in INFORMATIONAL]
    bars.append(
        Bar(
            "target and baselines stored exactly what they were given",
            not wrong,
            "; ".join(f"{r.engine}/{r.loader} ({r.dataset}) {r.phase}" for r in wrong) or "all checked",
        )
    )
    return bars


def render_bars(bars: list[Bar]) -> str:
    return "\n".join(f"{'PASS' if bar.passed else 'FAIL'}  {bar.name}: {bar.detail}" for bar in bars)


# ---------------------------------------------------------------------------------------------------------
# Environment facts for the report


def _version_of(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unavailable"


def environment(context: Context, loaders: list[Loader]) -> dict:
    import duckdb

    with psycopg.connect(context.postgres_url) as connection:
        server = connection.execute("SHOW server_version").fetchone()[0]
    facts = {
        "python": platform.python_version(),
        "postgresql_server": server,
        "psql": _version_of([shutil.which("psql") or "psql", "--version"]),
        "duckdb": duckdb.__version__,
        "target": context.target_description,
        "cpus": os.cpu_count(),
        "load_average_at_start": round(os.getloadavg()[0], 2),
    }
    if any(loader.key in PEERS for loader in loaders):
        facts["peer"] = _version_of(
            [
                str(PEER_VENV / "bin" / "python"),
                "-c",
                f"import importlib.metadata as m; print(m.version('{PEER_PACKAGE}'))",
            ]
        )
    return facts


def ensure_peer_venv() -> None:
    """Create the peer's own venv on first use, pinned to PEER_VERSION."""
    executable = PEER_VENV / "bin" / "target-postgres"
    marker = PEER_VENV / f".installed-{PEER_VERSION}"
    if executable.exists() and marker.exists():
        return
    progress(f"installing {PEER_PACKAGE}=={PEER_VERSION} into {PEER_VENV} (first run)")
    PEER_VENV.parent.mkdir(parents=True, exist_ok=True)
    (PEER_VENV.parent / ".gitignore").write_text("*\n")
    subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    subprocess.run(
        [
            str(PEER_VENV / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            f"{PEER_PACKAGE}=={PEER_VERSION}",
        ],
        check=True,
    )
    marker.touch()


# ---------------------------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", default="a,b,c", help="comma-separated subset of a,b,c (default all)")
    parser.add_argument("--engines", default="postgres,duckdb", help="comma-separated subset")
    parser.add_argument("--skip-peer", action="store_true", help=f"do not run {PEER_PACKAGE}")
    parser.add_argument(
        "--peer-max-rows",
        type=int,
        help="run the peer on this many leading rows only (reported as [prefix], compared per row)",
    )
    parser.add_argument("--rows-scale", type=float, default=1.0, help="scale every dataset's row count")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TEST_POSTGRES_URL"),
        help="a PostgreSQL server to use (default TEST_POSTGRES_URL, else a throwaway cluster)",
    )
    parser.add_argument(
        "--target",
        type=Path,
        default=Path(sys.executable).parent / "target-warehouse-seg",
        help="the target-warehouse-seg executable (default: the one beside this Python; it runs the "
        "sources it was installed from)",
    )
    parser.add_argument(
        "--target-ref",
        help="run target_warehouse_seg as committed at this git ref (e.g. HEAD), from a snapshot, "
        "so that uncommitted edits in the work tree do not change what is measured",
    )
    parser.add_argument(
        "--target-batch-size-rows", type=int, help="batch_size_rows for the target (default: its own)"
    )
    parser.add_argument(
        "--work-dir", type=Path, help="folder for data files and databases (default: a temp folder)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work folder (data files are reused by a rerun)"
    )
    parser.add_argument(
        "--results", type=Path, default=BENCH_DIR / "results", help="folder for the JSON results"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="run the baselines and target-warehouse-seg this many times on each dataset and report the "
        "median time and the highest memory (default 3; the peers and the bounded baseline run once)",
    )
    parser.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds after which one run is killed (default 3600)"
    )
    args = parser.parse_args(argv)
    args.datasets = [key.strip() for key in args.datasets.split(",") if key.strip()]
    args.engines = [engine.strip() for engine in args.engines.split(",") if engine.strip()]
    unknown = [key for key in args.datasets if key not in datasets.SPECS]
    if unknown or not set(args.engines) <= {"postgres", "duckdb"}:
        parser.error(f"unknown dataset or engine: {unknown or args.engines}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


# The console script's entry (``__main__.main``); a snapshot from before it existed runs the class's CLI.
TARGET_LAUNCHER = (
    "import importlib.util as u\n"
    "if u.find_spec('target_warehouse_seg.__main__'):\n"
    "    from target_warehouse_seg.__main__ import main; main()\n"
    "else:\n"
    "    from target_warehouse_seg.target import TargetWarehouseSeg; TargetWarehouseSeg.cli()\n"
)


def _git(*arguments: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO_DIR), *arguments], capture_output=True, text=True, check=True
    ).stdout.strip()


def target_command(args: argparse.Namespace, workdir: Path) -> tuple[list[str], dict[str, str] | None, str]:
    """How to start the target: the installed executable, or a snapshot of the package at a git ref."""
    if not args.target_ref:
        try:
            head = _git("log", "-1", "--format=%h %s")
            edited = bool(_git("status", "--porcelain", "target_warehouse_seg"))
        except (OSError, subprocess.CalledProcessError):
            return [str(args.target)], None, f"{args.target} (no git information)"
        return [str(args.target)], None, f"work tree at {head}" + (" + uncommitted edits" if edited else "")
    commit = _git("rev-parse", "--verify", f"{args.target_ref}^{{commit}}")
    snapshot = workdir / f"target-{commit[:12]}"
    if not (snapshot / "target_warehouse_seg").exists():
        snapshot.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(REPO_DIR), "archive", commit, "target_warehouse_seg"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(snapshot)], input=archive, check=True)
    # -P keeps the current folder off sys.path, so the snapshot, first on PYTHONPATH, wins over the
    # editable install of the work tree.
    python = args.target.parent / "python"
    env = dict(os.environ, PYTHONPATH=str(snapshot))
    subject = _git("log", "-1", "--format=%h %s", commit)
    return [str(python), "-P", "-c", TARGET_LAUNCHER], env, f"snapshot of {args.target_ref} = {subject}"


def choose_loaders(args: argparse.Namespace, context: Context) -> list[Loader]:
    chosen = []
    for loader_class in LOADERS:
        loader = loader_class(context)
        if loader.engine not in args.engines or (args.skip_peer and loader.key in PEERS):
            continue
        chosen.append(loader)
    return chosen


def bench_dataset(
    spec: DatasetSpec, loaders: list[Loader], context: Context, repeat: int = 1
) -> list[RunResult]:
    """Every loader's inserts then updates; the loaders a bar compares run ``repeat`` times (each time
    from an empty table, the loaders taking turns), the others once. Results are combined per loader."""
    data_dir = context.workdir / "data"
    runs: dict[tuple[str, str], list[RunResult]] = {}
    failed: set[str] = set()
    written: dict[tuple[str, int], DatasetFiles] = {}
    for round_number in range(1, repeat + 1):
        active = [
            loader
            for loader in loaders
            if (round_number == 1 or loader.key in REPEATED) and loader.key not in failed
        ]
        if not active:
            break
        for loader in active:
            loader.reset(spec)
        for phase in datasets.PHASES:
            for loader in active:
                if loader.key in failed:  # its inserts failed: its updates would measure nothing
                    rows = loader.rows_for(spec)
                    skipped = RunResult(spec.key, phase, loader.engine, loader.key, loader.label, rows)
                    skipped.problems = ["skipped: its inserts run failed"]
                    runs.setdefault((phase, loader.key), []).append(skipped)
                    continue
                files = _files(spec, phase, loader.rows_for(spec), data_dir, written)
                rows = files.spec.rows
                round_text = (
                    f" (run {round_number} of {repeat})" if repeat > 1 and loader.key in REPEATED else ""
                )
                progress(
                    f"({spec.key}) {phase}: {loader.engine} {loader.label} on {rows:,} rows{round_text} ..."
                )
                run_dir = context.workdir / "runs" / spec.key / phase / loader.key / str(round_number)
                result = run_loader(loader, files, run_dir)
                outcome = "ok" if result.ok else "FAILED " + "; ".join(result.problems)
                progress(
                    f"({spec.key}) {phase}: {loader.engine} {loader.label}: "
                    f"{_fmt(result.wall_seconds, '.2f')} s, {_fmt(result.peak_mb, '.0f')} MB, {outcome}"
                )
                if not result.ok:
                    failed.add(loader.key)
                runs.setdefault((phase, loader.key), []).append(result)
    results: list[RunResult] = []
    for phase in datasets.PHASES:
        phase_results = [
            combine(runs[(phase, loader.key)]) for loader in loaders if (phase, loader.key) in runs
        ]
        print(render_table(phase_results, spec, phase) + "\n", flush=True)
        results.extend(phase_results)
    return results


def _files(
    spec: DatasetSpec, phase: str, rows: int, data_dir: Path, written: dict[tuple[str, int], DatasetFiles]
) -> DatasetFiles:
    """A phase's files (of the first ``rows`` rows, for a loader that runs on fewer), written once."""
    if (phase, rows) not in written:
        progress(f"({spec.key}) {phase}: writing {rows:,} rows as Singer and CSV")
        written[(phase, rows)] = datasets.write_files(
            spec if rows == spec.rows else spec.with_rows(rows), phase, data_dir
        )
    return written[(phase, rows)]


def write_json(args: argparse.Namespace, facts: dict, results: list[RunResult], bars: list[Bar]) -> Path:
    args.results.mkdir(parents=True, exist_ok=True)
    path = args.results / f"target_throughput-{time.strftime('%Y%m%d-%H%M%S')}.json"
    runs = []
    for result in results:
        baseline_key = "baseline" if result.engine == "postgres" else "duckdb-baseline"
        baseline = next(
            (
                r
                for r in results
                if (r.dataset, r.phase, r.loader) == (result.dataset, result.phase, baseline_key)
            ),
            None,
        )
        runs.append(
            {
                **dataclasses.asdict(result),
                "rows_per_second": result.rows_per_second,
                "ratio_to_baseline": ratio(result, baseline),
            }
        )
    payload = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "environment": facts,
        "settings": {
            "datasets": args.datasets,
            "engines": args.engines,
            "rows_scale": args.rows_scale,
            "skip_peer": args.skip_peer,
            "peer_max_rows": args.peer_max_rows,
            "target_batch_size_rows": args.target_batch_size_rows,
            "repeat": args.repeat,
        },
        "runs": runs,
        "bars": [dataclasses.asdict(bar) for bar in bars],
        "passed": all(bar.passed for bar in bars),
    }
    path.write_text(json.dumps(payload, indent=2))
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    specs = [datasets.SPECS[key].scaled(args.rows_scale) for key in args.datasets]
    if not args.skip_peer and "postgres" in args.engines:
        ensure_peer_venv()
    workdir = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-target-throughput-"))
    workdir.mkdir(parents=True, exist_ok=True)
    extra = {} if args.target_batch_size_rows is None else {"batch_size_rows": args.target_batch_size_rows}
    results: list[RunResult] = []
    try:
        with postgres_server(args.postgres_url) as admin_url:
            database_url = fresh_database(admin_url)
            try:
                command, env, description = target_command(args, workdir)
                context = Context(
                    database_url, workdir, command, env, extra, args.peer_max_rows, args.timeout, description
                )
                loaders = choose_loaders(args, context)
                facts = environment(context, loaders)
                progress(f"environment: {json.dumps(facts)}")
                print("\n".join(f"{name}: {value}" for name, value in facts.items()) + "\n", flush=True)
                for spec in specs:
                    results.extend(bench_dataset(spec, loaders, context, args.repeat))
            finally:
                drop_database(admin_url)
    finally:
        if args.keep:
            progress(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    bars = evaluate_bars(results)
    print(render_bars(bars))
    path = write_json(args, facts, results, bars)
    passed = all(bar.passed for bar in bars)
    print(f"\n{'PASS' if passed else 'FAIL'}: results written to {path}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
