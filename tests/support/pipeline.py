"""The shell pipeline as users run it (`tap | target > state-out.jsonl`, then the state file), and the
warehouse it leaves compared with the org.

- `Pipeline(folder, tap_settings, target_settings)`: a folder with tap.json and target.json where the
  commands documented in README.md (the blocks marked `<!-- tested: NAME -->`) run through bash,
  with the project's console scripts first on PATH: `.discover()`, `.sync()`, `.start_sync()` (a running
  process group, for the kill tests), `.state()`.
- `Warehouse(settings)`: reads a DuckDB file or a PostgreSQL database the target wrote.
- `assert_warehouse_equals_org(warehouse, emu, catalog)`: one table per selected stream and nothing else,
  the selected columns plus the target's system columns, unique ids, and every row equal to the org's
  record (soft-deleted ones included), value by value, in the tap's output spelling.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tap_harness import expected_records, expected_value, selected_properties

from target_warehouse_seg.identifiers import conform

REPO_DIR = Path(__file__).resolve().parents[2]
COMMANDS_DOC = REPO_DIR / "README.md"
BIN_DIR = Path(sys.executable).parent  # the venv whose console scripts the pipeline runs
SYSTEM_COLUMNS = ("received_at", "uuid_ts")
# Settings from the environment would change what the plugins do: a test's run sees only its files.
FOREIGN_VARIABLES = ("TAP_SALESFORCE_SEG", "TARGET_WAREHOUSE_SEG", "MELTANO_")


def documented_command(name: str) -> str:
    """The shell block that follows `<!-- tested: NAME -->` in README.md."""
    text = COMMANDS_DOC.read_text()
    match = re.search(rf"<!-- tested: {re.escape(name)} -->\n```sh\n(.*?)```", text, re.S)
    if not match:
        raise AssertionError(f"{COMMANDS_DOC} has no shell block marked `tested: {name}`")
    return match.group(1)


def shell_environment() -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith(FOREIGN_VARIABLES)}
    environment["PATH"] = f"{BIN_DIR}{os.pathsep}{environment.get('PATH', '')}"
    return environment


class Pipeline:
    """A working folder for one source instance: tap.json, target.json, catalog.json, state.json."""

    def __init__(self, folder: Path, tap_settings: Mapping[str, Any], target_settings: Mapping[str, Any]):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tap.json").write_text(json.dumps(dict(tap_settings)))
        (folder / "target.json").write_text(json.dumps(dict(target_settings)))
        self.last_stderr = ""

    @property
    def catalog_path(self) -> Path:
        return self.folder / "catalog.json"

    def bash(self, script: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", script],
            cwd=self.folder,
            env=shell_environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def discover(self) -> dict[str, Any]:
        done = self.bash(documented_command("discover"))
        assert done.returncode == 0, f"discovery failed ({done.returncode}):\n{tail(done.stderr)}"
        return json.loads(self.catalog_path.read_text())

    def write_catalog(self, catalog: Mapping[str, Any]) -> None:
        self.catalog_path.write_text(json.dumps(catalog, indent=2))

    def sync(self, *, timeout: float = 600, expect_success: bool = True) -> subprocess.CompletedProcess[str]:
        """The documented scheduled run (tap | target, then the state file), to its end."""
        done = self.bash(documented_command("sync"), timeout)
        self.last_stderr = done.stderr
        if expect_success:
            assert done.returncode == 0, f"the pipeline failed ({done.returncode}):\n{tail(done.stderr)}"
        return done

    def start_sync(self) -> subprocess.Popen[bytes]:
        """The documented run as a process group of its own (bash, tap, target), so it can be killed."""
        return subprocess.Popen(
            ["bash", "-c", documented_command("sync")],
            cwd=self.folder,
            env=shell_environment(),
            stdout=subprocess.DEVNULL,
            stderr=(self.folder / "killed-run.log").open("wb"),
            start_new_session=True,
        )

    @staticmethod
    def kill(process: subprocess.Popen[bytes]) -> None:
        """SIGKILL to every process of the run at once, as a crashed machine or an OOM killer would."""
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
        # bash is gone; the tap and the target (reparented) may take a moment more to release the
        # warehouse's lock, so wait until no live process of the group is left.
        deadline = time.monotonic() + 60
        while _live_members(process.pid):
            if time.monotonic() > deadline:
                raise AssertionError(f"processes of the killed run survive: {_live_members(process.pid)}")
            time.sleep(0.05)

    def state_lines(self) -> list[str]:
        path = self.folder / "state-out.jsonl"
        return path.read_text().splitlines() if path.exists() else []

    def wait_for_states(self, process: subprocess.Popen[bytes], count: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while len(self.state_lines()) < count:
            if process.poll() is not None:
                raise AssertionError(f"the run ended ({process.returncode}) before {count} STATE lines")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {count} STATE lines within {timeout} s")
            time.sleep(0.02)

    def state(self) -> dict[str, Any] | None:
        path = self.folder / "state.json"
        return json.loads(path.read_text()) if path.exists() else None


def _live_members(process_group: int) -> list[int]:
    """Processes of a process group that still run. A killed process holds its files (the warehouse's
    lock) until its last thread has exited, while its main thread may already show as a zombie: so a
    process counts until every one of its threads is a zombie or gone."""
    members = []
    for process_dir in Path("/proc").glob("[0-9]*"):
        states = []
        try:
            task_stats = list(process_dir.glob("task/*/stat"))
        except OSError:
            continue  # ended meanwhile (Python 3.11's glob does not ignore a directory gone under it)
        for stat_path in [process_dir / "stat", *task_stats]:
            try:
                # After the parenthesised command name: state, ppid, pgrp, ...
                states.append(stat_path.read_text().rsplit(")", 1)[1].split()[:3])
            except (OSError, IndexError):
                continue  # ended meanwhile
        if not states or int(states[0][2]) != process_group:
            continue
        if any(state not in ("Z", "X") for state, _, _ in states):
            members.append(int(process_dir.name))
    return members


def tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


class Warehouse:
    """The target's output, read back: DuckDB (settings `path`) or PostgreSQL (`sqlalchemy_url`)."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = dict(settings)
        self.engine = self.settings.get("engine", "duckdb")
        self.schema = self.settings.get("schema", "salesforce")
        self._connection: Any = None

    def query(self, sql: str) -> list[tuple]:
        if self._connection is not None:
            return self._connection.execute(sql).fetchall()
        with self.session():
            return self.query(sql)

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """One connection for every query inside (opening a DuckDB file costs more than a query)."""
        if self._connection is not None:
            yield
            return
        if self.engine == "postgres":
            import psycopg

            connection: Any = psycopg.connect(self.settings["sqlalchemy_url"], autocommit=True)
            connection.execute("SET TIME ZONE 'UTC'")
        else:
            import duckdb

            connection = duckdb.connect(self.settings["path"], read_only=True)
            connection.execute("SET TimeZone = 'UTC'")
        self._connection = connection
        try:
            yield
        finally:
            self._connection = None
            connection.close()

    def tables(self) -> set[str]:
        rows = self.query(
            f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{self.schema}'"
        )
        return {name for (name,) in rows}

    def columns(self, table: str) -> set[str]:
        rows = self.query(
            "SELECT column_name FROM information_schema.columns "
            f"WHERE table_schema = '{self.schema}' AND table_name = '{table}'"
        )
        return {name for (name,) in rows}

    def table(self, table: str) -> str:
        return f'"{self.schema}"."{table}"'

    def count(self, table: str, where: str = "TRUE") -> int:
        return self.query(f"SELECT count(*) FROM {self.table(table)} WHERE {where}")[0][0]

    def ids(self, table: str) -> list[str]:
        return [row[0] for row in self.query(f"SELECT id FROM {self.table(table)}")]

    def loaded(self, entry: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """The stream's table as `expected_records` spells the org: property -> value, keyed by id."""
        properties = selected_properties(entry)
        names = list(properties)
        columns = ", ".join(f'"{conform(name)}"' for name in names)
        rows = self.query(f"SELECT {columns} FROM {self.table(entry['stream'])}")
        loaded = {}
        for row in rows:
            record = {
                name: expected_value(value, properties[name][1])
                for name, value in zip(names, row, strict=True)
            }
            loaded[record["id"]] = record
        return loaded


def selected_streams(catalog: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        entry
        for entry in catalog["streams"]
        if next(item for item in entry["metadata"] if not item["breadcrumb"])["metadata"].get("selected")
    ]


def expected_columns(entry: Mapping[str, Any]) -> set[str]:
    return {conform(name) for name in selected_properties(entry)} | set(SYSTEM_COLUMNS)


def assert_warehouse_equals_org(warehouse: Warehouse, emu: Any, catalog: Mapping[str, Any]) -> None:
    entries = selected_streams(catalog)
    with warehouse.session():
        assert warehouse.tables() == {entry["stream"] for entry in entries}
        problems = [problem for entry in entries for problem in _table_differences(warehouse, emu, entry)]
    assert not problems, "the warehouse differs from the org:\n" + "\n".join(problems)


def _table_differences(warehouse: Warehouse, emu: Any, entry: Mapping[str, Any]) -> list[str]:
    stream = entry["stream"]
    columns = warehouse.columns(stream)
    if columns != expected_columns(entry):
        return [f"{stream}: columns differ: {sorted(columns ^ expected_columns(entry))}"]
    problems = []
    ids = warehouse.ids(stream)
    if len(ids) != len(set(ids)):
        problems.append(f"{stream}: {len(ids) - len(set(ids))} duplicated id(s)")
    return problems + differences(stream, warehouse.loaded(entry), expected_records(emu, entry))


def differences(
    stream: str, loaded: Mapping[str, dict[str, Any]], expected: Mapping[str, dict[str, Any]], limit: int = 5
) -> list[str]:
    """Readable differences between the stored rows and the org's records of one stream."""
    found = []
    missing = sorted(set(expected) - set(loaded))
    extra = sorted(set(loaded) - set(expected))
    if missing:
        found.append(f"{stream}: {len(missing)} record(s) missing, e.g. {missing[:limit]}")
    if extra:
        found.append(f"{stream}: {len(extra)} row(s) not in the org, e.g. {extra[:limit]}")
    changed = [key for key in sorted(set(loaded) & set(expected)) if loaded[key] != expected[key]]
    for key in changed[:limit]:
        fields = {
            name: (loaded[key].get(name), value)
            for name, value in expected[key].items()
            if loaded[key].get(name) != value
        }
        found.append(f"{stream} {key}: (stored, org) {fields}")
    if len(changed) > limit:
        found.append(f"{stream}: {len(changed) - limit} more differing row(s)")
    return found
