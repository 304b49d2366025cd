"""`make demo`: Salesforce (a local emulator) -> tap-salesforce-seg -> target-warehouse-seg -> DuckDB.

1. Starts `salesforce-emulator` on a free port with a seeded org (a separate process, as a real org is).
2. `tap-salesforce-seg --discover > catalog.json`: Segment's default collections are selected.
3. A full sync, `tap | target`, into a fresh DuckDB warehouse (`demo/warehouse.duckdb`); the target's
   last STATE line becomes `state.json`.
4. Changes a few records in the org through the emulator's control API: an update, a soft delete, a new
   record.
5. An incremental sync from `state.json`.
Then prints a summary: per table the rows loaded and soft-deleted, what the incremental run changed
(checked against the org), the time taken, and a query to run next. Tap and target logs go to
`demo/logs/`. The emulator is stopped however the script ends (errors, Ctrl-C, SIGTERM).

Usage: `python demo/run.py [--dir DIR] [--scale F] [--seed N]` (the project's venv Python).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from salesforce_emulator.control import ControlClient

DEMO_DIR = Path(__file__).resolve().parent
BIN_DIR = Path(sys.executable).parent  # the venv that holds the three console scripts
SCHEMA = "salesforce"
EMULATOR_START_TIMEOUT_SECONDS = 120
SYNC_TIMEOUT_SECONDS = 600
STOP_TIMEOUT_SECONDS = 10
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
RENAMED_SUFFIX = " (renamed by the demo)"
NEW_LEAD = {
    "FirstName": "Dana",
    "LastName": "Demo",
    "Company": "Incremental Sync Ltd",
    "Email": "dana.demo@example.com",
    "Status": "Open - Not Contacted",
}
SAMPLE_QUERY = """\
SELECT coalesce(a.industry, '(not set)') AS industry,
       count(DISTINCT a.id) AS accounts,
       count(*) AS open_deals,
       CAST(sum(o.amount) AS DECIMAL(18, 2)) AS open_pipeline
FROM salesforce.opportunities AS o
JOIN salesforce.accounts AS a ON a.id = o.account_id
WHERE NOT o.is_deleted AND NOT o.is_closed AND NOT a.is_deleted
GROUP BY 1
ORDER BY open_pipeline DESC NULLS LAST
LIMIT 5;
"""


class DemoError(RuntimeError):
    """A step failed; the message says which and where its log is."""


def raise_for(signal_number: int) -> None:
    """Unwind through every `finally` (which stops the children), as Ctrl-C does."""
    if signal_number == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signal_number)


@dataclass
class Processes:
    """Every child the demo starts, so that all of them stop however the demo ends."""

    running: list[subprocess.Popen[Any]] = field(default_factory=list)
    starting: bool = False
    stopping: bool = False
    deferred_signal: int | None = None

    def start(self, command: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        # A stop signal that arrives meanwhile waits until the child is on the list (`on_signal`), so no
        # child can start untracked. (Blocking the signals instead would leave them blocked in the child.)
        self.starting = True
        try:
            process = subprocess.Popen(command, **kwargs)
            self.running.append(process)
        finally:
            self.starting = False
        if self.deferred_signal is not None:
            raise_for(self.deferred_signal)
        return process

    def on_signal(self, signal_number: int, _frame: Any) -> None:
        if self.stopping:
            return  # a second Ctrl-C must not cut the clean-up short
        if self.starting:
            self.deferred_signal = signal_number
        else:
            raise_for(signal_number)

    def stop_all(self) -> None:
        self.stopping = True
        for process in reversed(self.running):
            if process.poll() is None:
                process.terminate()  # the emulator stops cleanly on SIGTERM
        for process in reversed(self.running):
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.running.clear()


@dataclass
class Files:
    folder: Path

    def __post_init__(self) -> None:
        self.logs = self.folder / "logs"
        self.tap_config = self.folder / "tap.json"
        self.target_config = self.folder / "target.json"
        self.catalog = self.folder / "catalog.json"
        self.state = self.folder / "state.json"
        self.state_out = self.folder / "state-out.jsonl"
        self.warehouse = self.folder / "warehouse.duckdb"
        self.sample_query = self.folder / "sample-query.sql"

    def fresh(self) -> None:
        """Remove what an earlier demo left (the warehouse starts empty every time)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.logs, ignore_errors=True)
        self.logs.mkdir()
        for path in (self.catalog, self.state, self.state_out, self.warehouse, self.sample_query):
            path.unlink(missing_ok=True)
        Path(f"{self.warehouse}.wal").unlink(missing_ok=True)


def shown(path: Path) -> str:
    """A path as the user would type it from where they are."""
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


# --- the emulator -------------------------------------------------------------------------------------


def start_emulator(processes: Processes, files: Files, seed: int, scale: float) -> tuple[str, dict[str, str]]:
    """Start `salesforce-emulator` on a free port; returns its base URL and credentials."""
    log = (files.logs / "emulator.log").open("wb")
    command = [
        str(BIN_DIR / "salesforce-emulator"),
        "--port",
        "0",
        "--seed",
        str(seed),
        "--scale",
        str(scale),
    ]
    process = processes.start(command, stdout=subprocess.PIPE, stderr=log)
    line = read_line(process, EMULATOR_START_TIMEOUT_SECONDS)
    if not line:
        raise DemoError(f"the emulator did not start; see {shown(files.logs / 'emulator.log')}")
    base_url, *pairs = shlex.split(line)
    return base_url, dict(pair.split("=", 1) for pair in pairs)


def read_line(process: subprocess.Popen[bytes], timeout: float) -> str:
    """The process's first stdout line, or "" when it ends or stays silent for `timeout` seconds."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return process.stdout.readline().decode().strip()


# --- tap and target -----------------------------------------------------------------------------------


def discover(files: Files) -> dict[str, Any]:
    with files.catalog.open("wb") as out, (files.logs / "discover.log").open("wb") as log:
        done = subprocess.run(
            [str(BIN_DIR / "tap-salesforce-seg"), "--config", str(files.tap_config), "--discover"],
            stdout=out,
            stderr=log,
            timeout=SYNC_TIMEOUT_SECONDS,
            check=False,
        )
    if done.returncode != 0:
        raise DemoError(f"discovery failed; see {shown(files.logs / 'discover.log')}")
    return json.loads(files.catalog.read_text())


def sync(processes: Processes, files: Files, name: str) -> None:
    """`tap --catalog catalog.json [--state state.json] | target > state-out.jsonl`, then state.json."""
    tap_command = [str(BIN_DIR / "tap-salesforce-seg"), "--config", str(files.tap_config)]
    tap_command += ["--catalog", str(files.catalog)]
    if files.state.exists():
        tap_command += ["--state", str(files.state)]
    target_command = [str(BIN_DIR / "target-warehouse-seg"), "--config", str(files.target_config)]
    tap_log, target_log = files.logs / f"{name}-tap.log", files.logs / f"{name}-target.log"
    with (
        tap_log.open("wb") as tap_err,
        target_log.open("wb") as target_err,
        files.state_out.open("wb") as out,
    ):
        tap = processes.start(tap_command, stdout=subprocess.PIPE, stderr=tap_err)
        target = processes.start(target_command, stdin=tap.stdout, stdout=out, stderr=target_err)
        assert tap.stdout is not None
        tap.stdout.close()  # the target holds the pipe now; the tap sees a closed pipe if the target dies
        target_status = target.wait(timeout=SYNC_TIMEOUT_SECONDS)
        tap_status = tap.wait(timeout=SYNC_TIMEOUT_SECONDS)
    if tap_status != 0:
        raise DemoError(f"{name} sync: the tap exited with {tap_status}; see {shown(tap_log)}")
    if target_status != 0:
        raise DemoError(f"{name} sync: the target exited with {target_status}; see {shown(target_log)}")
    lines = files.state_out.read_text().splitlines()
    if not lines:
        raise DemoError(f"{name} sync: the target wrote no STATE; see {shown(target_log)}")
    files.state.write_text(lines[-1] + "\n")  # `tail -1 state-out.jsonl > state.json`


# --- the warehouse --------------------------------------------------------------------------------------


@contextlib.contextmanager
def warehouse(files: Files) -> Iterator[Any]:
    connection = duckdb.connect(str(files.warehouse), read_only=True)
    try:
        connection.execute("SET TimeZone = 'UTC'")
        yield connection
    finally:
        connection.close()


def table_counts(connection: Any, tables: list[str]) -> dict[str, tuple[int, int | None]]:
    """table -> (rows, rows with is_deleted; None for objects without IsDeleted, such as Group)."""
    with_is_deleted = {
        row[0]
        for row in connection.execute(
            "SELECT table_name FROM information_schema.columns "
            "WHERE table_schema = ? AND column_name = 'is_deleted'",
            [SCHEMA],
        ).fetchall()
    }
    counts = {}
    for table in tables:
        deleted = "count(*) FILTER (WHERE is_deleted)" if table in with_is_deleted else "NULL"
        row = first_row(connection, f'SELECT count(*), {deleted} FROM {SCHEMA}."{table}"')
        counts[table] = (row[0], row[1])
    return counts


def written_since(connection: Any, tables: list[str], moment: datetime) -> dict[str, int]:
    """Rows each table got from a run that started at `moment` (the target stamps `uuid_ts`)."""
    return {
        table: first_row(connection, f'SELECT count(*) FROM {SCHEMA}."{table}" WHERE uuid_ts >= ?', moment)[0]
        for table in tables
    }


def first_row(connection: Any, sql: str, *parameters: Any) -> tuple | None:
    """The first row of a query (DuckDB wants every result fetched to its end before the next query)."""
    rows = connection.execute(sql, list(parameters)).fetchall()
    return rows[0] if rows else None


def org_counts(control: ControlClient, streams: dict[str, str]) -> dict[str, tuple[int, int | None]]:
    counts = {}
    for table, sobject in streams.items():
        records = control.records(sobject, include_deleted=True)
        has_is_deleted = bool(records) and "IsDeleted" in records[0]
        deleted = sum(bool(record["IsDeleted"]) for record in records) if has_is_deleted else None
        counts[table] = (len(records), deleted)
    return counts


# --- the demo -------------------------------------------------------------------------------------------


@dataclass
class Changes:
    account_id: str
    old_name: str
    new_name: str
    contact_id: str
    contact_name: str
    lead_id: str


def change_the_org(control: ControlClient) -> Changes:
    account = next(r for r in control.records("Account", include_deleted=False) if r.get("Name"))
    new_name = account["Name"] + RENAMED_SUFFIX
    control.update("Account", account["Id"], {"Name": new_name})
    contact = next(r for r in control.records("Contact", include_deleted=False))
    control.delete("Contact", contact["Id"])
    lead_id = control.create("Lead", NEW_LEAD)
    return Changes(
        account["Id"], account["Name"], new_name, contact["Id"], contact.get("Name") or "", lead_id
    )


def check_changes(connection: Any, changes: Changes) -> list[str]:
    """The three changes as the warehouse shows them; raises when one is missing."""
    name = first_row(connection, f"SELECT name FROM {SCHEMA}.accounts WHERE id = ?", changes.account_id)
    deleted = first_row(
        connection, f"SELECT is_deleted FROM {SCHEMA}.contacts WHERE id = ?", changes.contact_id
    )
    lead = first_row(
        connection, f"SELECT name, company, is_deleted FROM {SCHEMA}.leads WHERE id = ?", changes.lead_id
    )
    if name != (changes.new_name,) or deleted != (True,) or lead is None or lead[2]:
        raise DemoError(
            f"the incremental sync missed a change: account {name}, contact {deleted}, lead {lead}"
        )
    return [
        f"accounts  {changes.account_id}  updated: name {changes.old_name!r} -> {name[0]!r}",
        f"contacts  {changes.contact_id}  soft-deleted: {changes.contact_name!r} now has is_deleted = true",
        f"leads     {changes.lead_id}  new: {lead[0]!r} at {lead[1]!r}",
    ]


def selected_streams(catalog: dict[str, Any]) -> dict[str, str]:
    """Selected stream -> its Salesforce object, in catalog order."""
    streams = {}
    for entry in catalog["streams"]:
        root = next(item["metadata"] for item in entry["metadata"] if not item["breadcrumb"])
        if root.get("selected"):
            streams[entry["stream"]] = root["salesforce-object"]
    return streams


def step(number: int, text: str) -> None:
    print(f"[{number}/5] {text}", flush=True)


def seconds(since: float) -> float:
    return time.monotonic() - since


def run(args: argparse.Namespace, processes: Processes) -> None:
    files = Files(args.dir.resolve())
    files.fresh()
    started = time.monotonic()
    timings: dict[str, float] = {}
    print("make demo: Salesforce (a local emulator) -> tap-salesforce-seg -> target-warehouse-seg -> DuckDB")

    moment = time.monotonic()
    base_url, credentials = start_emulator(processes, files, args.seed, args.scale)
    timings["emulator"] = seconds(moment)
    step(
        1,
        f"emulator ready at {base_url} (seed {args.seed}, scale {args.scale}) in {timings['emulator']:.1f} s",
    )
    tap_settings = {key: credentials[key] for key in ("client_id", "client_secret", "refresh_token")}
    files.tap_config.write_text(json.dumps({**tap_settings, "domain": base_url}, indent=2) + "\n")
    target_settings = {"engine": "duckdb", "path": str(files.warehouse), "schema": SCHEMA}
    files.target_config.write_text(json.dumps(target_settings, indent=2) + "\n")
    control = ControlClient(base_url)

    moment = time.monotonic()
    catalog = discover(files)
    streams = selected_streams(catalog)
    timings["discovery"] = seconds(moment)
    step(
        2,
        f"discovered {len(catalog['streams'])} streams, {len(streams)} selected (Segment's default "
        f"collections) in {timings['discovery']:.1f} s",
    )

    moment = time.monotonic()
    sync(processes, files, "full")
    timings["full sync"] = seconds(moment)
    with warehouse(files) as connection:
        loaded = table_counts(connection, list(streams))
    total = sum(rows for rows, _ in loaded.values())
    step(
        3,
        f"full sync: {total:,} rows into {len(loaded)} tables in {timings['full sync']:.1f} s "
        f"({total / timings['full sync']:,.0f} rows/s)",
    )

    changes = change_the_org(control)
    step(4, "changed Salesforce: renamed an account, soft-deleted a contact, created a lead")
    # A sync reads up to the moment it starts by Salesforce's clock, which HTTP's Date header gives in
    # whole seconds: a change from the same second would wait for the next run. Let that second pass.
    time.sleep(1.1)

    incremental_started = datetime.now(UTC)
    moment = time.monotonic()
    sync(processes, files, "incremental")
    timings["incremental sync"] = seconds(moment)
    with warehouse(files) as connection:
        final = table_counts(connection, list(streams))
        written = written_since(connection, list(streams), incremental_started)
        changed_lines = check_changes(connection, changes)
        sample = connection.sql(SAMPLE_QUERY)
        sample_text = str(sample)
    step(
        5,
        f"incremental sync from {shown(files.state)}: {sum(written.values()):,} rows written in "
        f"{timings['incremental sync']:.1f} s",
    )
    expected = org_counts(control, streams)
    mismatches = {
        table: (final[table], expected[table]) for table in streams if final[table] != expected[table]
    }
    if mismatches:
        raise DemoError(f"the warehouse differs from the org ((rows, deleted) stored vs org): {mismatches}")

    print_summary(files, final, written, changed_lines, timings, seconds(started), sample_text)


def print_summary(
    files: Files,
    counts: dict[str, tuple[int, int | None]],
    written: dict[str, int],
    changed_lines: list[str],
    timings: dict[str, float],
    total_seconds: float,
    sample_text: str,
) -> None:
    width = max(len(table) for table in counts)
    print(f"\nWarehouse {shown(files.warehouse)}, schema {SCHEMA}: rows loaded and soft-deleted (is_deleted)")
    print(f"  {'table':<{width}}  {'rows':>8}  {'deleted':>8}")
    for table, (rows, deleted) in counts.items():
        print(f"  {table:<{width}}  {rows:>8,}  {'-' if deleted is None else f'{deleted:,}':>8}")
    total_rows = sum(rows for rows, _ in counts.values())
    total_deleted = sum(deleted or 0 for _, deleted in counts.values())
    print(f"  {'total':<{width}}  {total_rows:>8,}  {total_deleted:>8,}")
    if any(deleted is None for _, deleted in counts.values()):
        print("  (- : the Salesforce object has no IsDeleted field)")
    print("  Checked: every table's rows and soft deletes equal the org's.")

    print("\nIncremental run (only what changed since state.json, plus the 10-minute lookback window):")
    for line in changed_lines:
        print(f"  {line}")
    print(f"  rows written: {written_line(written)}")

    steps = ", ".join(f"{name} {value:.1f} s" for name, value in timings.items())
    print(f"\nTime: {total_seconds:.1f} s in all ({steps})")
    print(f"Files: {shown(files.folder)}/ (tap.json, target.json, catalog.json, state.json, logs/)")

    files.sample_query.write_text(SAMPLE_QUERY)
    database, query_file = shown(files.warehouse), shown(files.sample_query)
    print(f"\nNext, query the warehouse: {query_file} (open deals by industry) holds")
    print("".join(f"  {line}\n" for line in SAMPLE_QUERY.splitlines()), end="")
    print("Run it with:")
    print(
        f"  {shown(BIN_DIR / 'python')} -c \"import duckdb, pathlib; duckdb.connect('{database}', "
        f"read_only=True).sql(pathlib.Path('{query_file}').read_text()).show()\""
    )
    if shutil.which("duckdb"):
        print(f"  duckdb -readonly {database} < {query_file}")
    print(sample_text, end="")


def written_line(written: dict[str, int]) -> str:
    """`accounts 2, contacts 2, leads 2; 1 in each of the other 44 tables` (the record at each bookmark
    is read again, as `>=` and the lookback window re-read the boundary, and upserted unchanged)."""
    more = {table: rows for table, rows in written.items() if rows > 1}
    ones = sum(1 for rows in written.values() if rows == 1)
    parts = [", ".join(f"{table} {rows}" for table, rows in more.items())] if more else []
    if ones:
        parts.append(f"1 in each of the other {ones} tables (the record at the bookmark, read again)")
    return "; ".join(parts) or "none"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Emulator -> tap -> target -> DuckDB, full then incremental."
    )
    parser.add_argument("--dir", type=Path, default=DEMO_DIR, help="where the warehouse, state and logs go")
    parser.add_argument("--scale", type=float, default=0.1, help="org size (1.0: about 145,000 records)")
    parser.add_argument("--seed", type=int, default=1, help="the org generator's seed")
    args = parser.parse_args(argv)

    processes = Processes()
    for signal_number in STOP_SIGNALS:
        signal.signal(signal_number, processes.on_signal)
    try:
        run(args, processes)
    except DemoError as error:
        print(f"demo failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("demo interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except SystemExit:
        print("demo stopped", file=sys.stderr)
        raise
    finally:
        processes.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
