"""A seeded, randomized hunt for lost or stale rows across incremental syncs, end to end.

Per seed: a small org (accounts, contacts, opportunities and the custom Invoice__c, 120-260 records
each, a few properties deselected) on a frozen clock the test moves by hand, then 3-4 runs of the
documented pipeline (`tap | target`, then the state file: real processes, real HTTP, a DuckDB file or a
PostgreSQL schema of its own), each from the state the run before left. Between runs and DURING them the
org changes: inserts, updates, soft deletes, undeletes, bursts of 30-120 records sharing one
SystemModstamp, late commits inside the lookback window and exactly on the previous bookmark, and
changes stamped exactly on the whole second a run starts at (its window's exclusive end). Changes during
a run are made inside the emulator right after one of its query snapshots (a REST query, a Bulk job, a
COUNT()), so they land between streams and while pages are read. Each run draws REST, Bulk or auto (and
its threshold), small pages (the emulator serves a few dozen rows per REST page and Bulk result page, as
Salesforce may), small STATE intervals and target batches. Every run but the last meets a fault it must
survive (5xx, a connection dropped mid-body, expired sessions, QUERY_TIMEOUT, failed Bulk jobs, closed
query cursors, queries too complicated), and one run per seed stops early: the API quota (exit 2) or a
SIGKILL of the whole pipeline at the first STATE that moves a bookmark (often inside a burst); the next
run resumes from the last committed STATE.

After every run:
- a finished run: every selected table equals the org row for row (every selected column, is_deleted,
  no duplicate ids), except the records the org changed during that run: each holds its row from
  before the run (a change stamped at or after the run's window end takes the record out of this run)
  or one of the org's versions of it during the run;
- any run (finished, stopped, killed): the state the next run starts from never passed data missing
  from the warehouse: every record stamped before a stream's bookmark is stored as the org has it now
  (late commits are left out until a finished run, since only the lookback margin brings them);
- bookmarks never go backwards and never pass the org's clock.
The last run of a seed is clean, and after it the warehouse equals the org exactly.

One run per seed is also a full re-sync of one stream (its system_modstamp deselected for that run,
as Segment documents), and the checks hold through it and the incremental runs after it.

Every choice comes from random.Random(seed) (only a kill's exact moment depends on timing); a failure
names the seed and lists the steps taken (`-s` prints them for passing seeds too). The seeds of
FUZZ_SEEDS (default 1-5) load into DuckDB, those of FUZZ_POSTGRES_SEEDS (default 6-8: two kills, a quota
stop, lookbacks 60, 600 and 0 s) into PostgreSQL (the server of `make test`, a fresh database and the
schema `fuzz_seed_<seed>`); FUZZ_SEEDS=6-40 FUZZ_POSTGRES_SEEDS=9-30 runs other seeds, an empty value
none. Bugs found on the way are kept as strict xfails at the end of the file.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from emulator_fixtures import start_emulator
from pipeline import Pipeline, Warehouse, assert_warehouse_equals_org, differences, expected_columns, tail
from tap_harness import (
    discover_catalog,
    expected_records,
    expected_value,
    select,
    selected_properties,
    tap_settings,
)

from salesforce_emulator import app as emulator_app
from salesforce_emulator import bulk as emulator_bulk
from tap_salesforce_seg.values import parse_datetime

pytestmark = pytest.mark.slow


def _seeds(text: str) -> tuple[int, ...]:
    """`1,2,5` or `6-40`: more seeds for a longer hunt (FUZZ_SEEDS=6-40 pytest ...); `` for none."""
    seeds: list[int] = []
    for part in filter(None, text.replace(" ", "").split(",")):
        first, _, last = part.partition("-")
        seeds += range(int(first), int(last or first) + 1)
    return tuple(seeds)


SEEDS = _seeds(os.environ.get("FUZZ_SEEDS", "1-5"))  # loaded into DuckDB
POSTGRES_SEEDS = _seeds(os.environ.get("FUZZ_POSTGRES_SEEDS", "6-8"))  # loaded into PostgreSQL
LOOKBACKS = (0, 0, 60, 600)  # seconds; seed % 4 picks one (0: only the bookmark itself is read again)
TRANSIENT_FAULTS = ("http", "drop", "expire", "timeout", "bulk_fail", "cursor", "complicated")
STREAMS = {
    "accounts": "Account",
    "contacts": "Contact",
    "opportunities": "Opportunity",
    "invoice_c": "Invoice__c",
}
KEPT = {"id", "system_modstamp", "is_deleted"}  # never deselected by the fuzzer
# A run's queries move the clock by half this much at most (then the clock goes on from exactly there);
# late commits made during a run stay at least this far inside the lookback window of the bookmark the
# run may leave.
RUN_CLOCK_BUDGET = 20.0
RUN_TIMEOUT = 120.0
# Records one instant can gain during a run with QUERY_TIMEOUT armed (no bursts then): up to 2 changes
# on the run's first second and 3 after a query (which may not move the clock), 5 records each, and a
# late commit may land on an instant that is there already.
MAX_CHANGES_AT_ONCE = 6 * 5

TEXTS = (
    "plain",
    "comma, inside",
    'a "quoted" word',
    "two\nlines",
    "unicode é ü 東京 🚀",
    "  padded  ",
    "back\\slash and tab\there",
    "",
)


def _text(rng: random.Random) -> str:
    return f"{rng.choice(TEXTS)} {rng.randint(0, 10**6)}"


def _maybe(generate: Callable[[random.Random], Any]) -> Callable[[random.Random], Any]:
    return lambda rng: None if rng.random() < 0.15 else generate(rng)


def _choice(*values: str) -> Callable[[random.Random], str]:
    return lambda rng: rng.choice(values)


def _decimal(digits: int, scale: int) -> Callable[[random.Random], Decimal]:
    return lambda rng: Decimal(rng.randint(-(10**digits), 10**digits)).scaleb(-scale)


def _day(rng: random.Random) -> date:
    return date(2020, 1, 1) + timedelta(days=rng.randint(0, 3000))


def _instant(rng: random.Random) -> datetime:
    return datetime(2020, 1, 1, tzinfo=UTC) + timedelta(milliseconds=rng.randint(0, 10**11))


def _email(rng: random.Random) -> str:
    return f"fuzz{rng.randint(0, 10**6)}@example.com"


UPDATES: dict[str, dict[str, Callable[[random.Random], Any]]] = {
    "Account": {
        "Name": _text,
        "NumberOfEmployees": _maybe(lambda rng: rng.randint(0, 10**6)),
        "AnnualRevenue": _maybe(_decimal(12, 0)),
        "Description": _maybe(_text),
        "Industry": _maybe(_choice("Agriculture", "Apparel", "Banking")),
        "Rating": _maybe(_choice("Hot", "Warm", "Cold")),
        "Tier__c": _maybe(_choice("Bronze", "Silver", "Gold")),
        "Renewal_Date__c": _maybe(_day),
        "Seats__c": _maybe(_decimal(6, 0)),
    },
    "Contact": {
        "LastName": _text,
        "FirstName": _maybe(_text),
        "Email": _email,
        "Birthdate": _maybe(_day),
        "Description": _maybe(_text),
        "DoNotCall": lambda rng: rng.random() < 0.5,
        "Department": _maybe(_text),
    },
    "Opportunity": {
        "Name": _text,
        "Amount": _maybe(_decimal(10, 2)),
        "CloseDate": _day,
        "StageName": _choice("Prospecting", "Qualification", "Needs Analysis"),
        "Probability": _maybe(lambda rng: Decimal(rng.randint(0, 100))),
        "IsPrivate": lambda rng: rng.random() < 0.5,
        "NextStep": _maybe(_text),
        "TotalOpportunityQuantity": _maybe(_decimal(8, 2)),
    },
    "Invoice__c": {
        "Amount__c": _maybe(_decimal(10, 2)),
        "Tax_Rate__c": _maybe(_decimal(3, 2)),
        "Quantity__c": _maybe(_decimal(7, 3)),
        "Due_Date__c": _maybe(_day),
        "Paid_At__c": _maybe(_instant),
        "Is_Paid__c": lambda rng: rng.random() < 0.5,
        "Status__c": _choice("Draft", "Sent", "Paid", "Overdue"),
        "Channels__c": _maybe(_choice("Email", "Portal;Post", "EDI;Email;Portal")),
        "Memo__c": _maybe(_text),
    },
}
REQUIRED: dict[str, Callable[[random.Random], dict[str, Any]]] = {
    "Account": lambda rng: {"Name": _text(rng)},
    "Contact": lambda rng: {"LastName": _text(rng), "Email": _email(rng)},
    "Opportunity": lambda rng: {"Name": _text(rng), "StageName": "Prospecting", "CloseDate": _day(rng)},
    "Invoice__c": lambda rng: {"Invoice_Date__c": _day(rng), "Status__c": "Draft"},
}


def some_values(rng: random.Random, sobject: str) -> dict[str, Any]:
    generators = UPDATES[sobject]
    names = rng.sample(sorted(generators), rng.randint(1, 3))
    return {name: generators[name](rng) for name in names}


@dataclass
class RunPlan:
    number: int
    api_type: str
    bulk_min_records: int
    state_every: int
    batch_rows: int
    transient: str = "none"  # a fault the run must survive: one of TRANSIENT_FAULTS
    stop: str = "none"  # "quota" (the tap stops, exit 2) or "kill" (SIGKILL to the pipeline)
    details: list[str] = field(default_factory=list)
    during: tuple[int, ...] = ()  # the org.query calls after which the org changes
    last: bool = False  # the clean run the seed ends with
    full_resync: str | None = None  # a stream whose system_modstamp is deselected: Segment's switch

    def describe(self) -> str:
        api = self.api_type if self.api_type != "auto" else f"auto(bulk>={self.bulk_min_records})"
        resync = f", full re-sync of {self.full_resync}" if self.full_resync else ""
        return (
            f"run {self.number}: {api}{resync}, STATE every {self.state_every}, target batches of "
            f"{self.batch_rows}, faults {self.details or 'none'}, changes after queries {list(self.during)}"
        )


Tables = dict[str, dict[str, dict[str, Any]]]  # stream -> id -> property -> value


@dataclass
class RunVersions:
    """Each version a record had during one run (None: it did not exist yet), by stream and id."""

    by_stream: dict[str, dict[str, list[dict[str, Any] | None]]] = field(default_factory=dict)

    def ids(self, stream: str) -> dict[str, list[dict[str, Any] | None]]:
        return self.by_stream.setdefault(stream, {})


class Fuzz:
    """One seed's org, pipeline and warehouse, and the random walk through runs and changes."""

    def __init__(self, seed: int, emu: Any, folder: Path, target_settings: dict[str, Any]) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.emu = emu
        self.org = emu.org
        self.steps: list[str] = []
        self.lookback = LOOKBACKS[seed % len(LOOKBACKS)]
        self.target_settings = target_settings
        self.engine = target_settings.get("engine", "duckdb")
        self.pipeline = Pipeline(folder / "sfdc", tap_settings(emu), self.target_settings)
        self.warehouse = Warehouse(self.target_settings)
        self.catalog = self._catalog()
        self.entries = {stream: self._entry(stream) for stream in STREAMS}
        self.pending_late: set[str] = set()  # late commits no finished run has read yet
        self.during_versions: RunVersions | None = None  # while a run is under way
        # As the run began: the org's records and the warehouse's rows, by stream and id.
        self._before: Tables = {}
        self._stored: Tables = {}
        self._stored_after_last_run: Tables = {}
        self.bookmarks: dict[str, datetime] = {}
        self.timeouts_armed = False  # a run's QUERY_TIMEOUT fault is sized for the instants it meets

    # --- reporting -------------------------------------------------------------------------------

    def step(self, text: str) -> None:
        self.steps.append(text)

    def context(self) -> str:
        where = f"postgres schema {self.warehouse.schema}" if self.engine == "postgres" else self.engine
        return f"seed {self.seed} on {where} (lookback {self.lookback} s); steps:\n  " + "\n  ".join(
            self.steps
        )

    # --- setup ------------------------------------------------------------------------------------

    def _catalog(self) -> dict[str, Any]:
        chosen = select(discover_catalog(tap_settings(self.emu)), STREAMS)
        deselect = {}
        for stream in sorted(STREAMS):
            entry = next(e for e in chosen["streams"] if e["tap_stream_id"] == stream)
            optional = [name for name in sorted(selected_properties(entry)) if name not in KEPT]
            deselect[stream] = self.rng.sample(optional, self.rng.randint(0, 3))
        catalog = select(chosen, STREAMS, deselect=deselect)
        self.step(f"catalog: {sorted(STREAMS)}, deselected {deselect}")
        self.pipeline.write_catalog(catalog)
        return catalog

    def _entry(self, stream: str) -> dict[str, Any]:
        return next(e for e in self.catalog["streams"] if e["tap_stream_id"] == stream)

    # --- changes in the org ------------------------------------------------------------------------

    def expected_one(self, stream: str, record_id: str) -> dict[str, Any] | None:
        record = self.org.get(STREAMS[stream], record_id)
        if record is None:
            return None
        return {
            prop: expected_value(record.get(name), sf_type)
            for prop, (name, sf_type) in selected_properties(self.entries[stream]).items()
        }

    def _touch(self, stream: str, change: Callable[[], str]) -> str:
        """Run one change; during a run, keep the record's versions (before and after)."""
        versions = self.during_versions
        if versions is None:
            return change()
        record_id = change()
        seen = versions.ids(stream)
        if record_id not in seen:  # what the warehouse held, and what the org held, as the run began
            seen[record_id] = [
                self._stored.get(stream, {}).get(record_id),
                self._before[stream].get(record_id),
            ]
        seen[record_id].append(self.expected_one(stream, record_id))
        return record_id

    def _live(self, sobject: str, rng: random.Random, count: int, deleted: bool = False) -> list[dict]:
        records = [r for r in self.org.records(sobject) if bool(r["IsDeleted"]) == deleted]
        return rng.sample(records, min(count, len(records)))

    def change(self, rng: random.Random, *, during: bool, kind: str | None = None) -> None:
        """One random change (or a group of them) in the org, stamped by the org's clock."""
        kinds = ["update", "update", "create", "delete", "undelete"]
        if not (during and self.timeouts_armed):
            kinds.append("burst")
        if not during:
            kinds += ["late", "on_bookmark"]
        elif self.lookback >= 2 * RUN_CLOCK_BUDGET:
            kinds.append("late")
        kind = kind or rng.choice(kinds)
        stream = rng.choice(sorted(STREAMS))
        sobject = STREAMS[stream]
        ids: list[str] = []
        if kind in ("update", "burst"):
            count = rng.randint(1, 4) if kind == "update" else rng.randint(30, 120)
            for record in self._live(sobject, rng, count):
                values = some_values(rng, sobject)
                ids.append(self._touch(stream, lambda r=record, v=values: self._update(sobject, r["Id"], v)))
        elif kind == "create":
            for _ in range(rng.randint(1, 5)):
                values = {**REQUIRED[sobject](rng), **some_values(rng, sobject)}
                ids.append(self._touch(stream, lambda v=values: self.org.create(sobject, v)))
        elif kind == "delete":
            for record in self._live(sobject, rng, rng.randint(1, 3)):
                ids.append(self._touch(stream, lambda r=record: self._delete(sobject, r["Id"])))
        elif kind == "undelete":
            for record in self._live(sobject, rng, rng.randint(1, 3), deleted=True):
                ids.append(self._touch(stream, lambda r=record: self._undelete(sobject, r["Id"])))
        else:
            ids = self._late(rng, stream, on_bookmark=kind == "on_bookmark", during=during)
        when = "during the run" if during else "between runs"
        self.step(f"  {when} at {self.org.clock.now().isoformat()}: {kind} {stream} x{len(ids)} {ids[:3]}")

    def _update(self, sobject: str, record_id: str, values: dict[str, Any]) -> str:
        self.org.update(sobject, record_id, values)
        return record_id

    def _delete(self, sobject: str, record_id: str) -> str:
        self.org.delete(sobject, record_id)
        return record_id

    def _undelete(self, sobject: str, record_id: str) -> str:
        self.org.undelete(sobject, record_id)
        return record_id

    def _late(self, rng: random.Random, stream: str, *, on_bookmark: bool, during: bool) -> list[str]:
        """Late commits: changes visible now but stamped earlier, never earlier than the next run's
        window reaches back (bookmark - lookback), the range the tap promises to catch."""
        sobject = STREAMS[stream]
        now = self.org.clock.now()
        bookmark = self.bookmarks.get(stream)
        if during:  # the run may still move the bookmark up to the clock's end of run
            stamp = now - timedelta(
                milliseconds=rng.randint(0, int((self.lookback - RUN_CLOCK_BUDGET) * 1000))
            )
        elif bookmark is None:
            return []  # the next run reads the stream's whole history anyway
        elif on_bookmark:
            stamp = bookmark
        else:
            stamp = bookmark - timedelta(milliseconds=rng.randint(0, self.lookback * 1000))
        stamp = min(stamp, now)
        ids = []
        for _ in range(rng.randint(1, 4)):
            # Salesforce locks the rows a transaction changes, so no later change of them can have
            # committed first: a late commit picks a record last stamped before it.
            candidates = [
                r["Id"]
                for r in self.org.records(sobject, include_deleted=False)
                if r["SystemModstamp"] <= stamp and r["Id"] not in ids
            ]
            record_id = rng.choice(candidates) if candidates and rng.random() < 0.8 else None
            values = some_values(rng, sobject) if record_id else {**REQUIRED[sobject](rng)}
            seconds_ago = (now - stamp).total_seconds()
            ids.append(
                self._touch(
                    stream,
                    lambda i=record_id, v=values, s=seconds_ago: self.org.late_commit(sobject, v, i, s),
                )
            )
            stored = self.org.get(sobject, ids[-1])["SystemModstamp"]
            assert stored == stamp, f"test setup: late commit stamped {stored}, not {stamp}"
        self.pending_late.update(ids)
        return ids

    # --- runs ----------------------------------------------------------------------------------------

    def plan_runs(self) -> list[RunPlan]:
        """3-4 runs; every run but the last meets a transient fault (each seed starts the rotation at
        another one, so a few seeds meet them all), and one of them also stops early."""
        runs = self.rng.randint(3, 4)
        first = self.seed % len(TRANSIENT_FAULTS)
        transients = [*TRANSIENT_FAULTS[first:], *TRANSIENT_FAULTS[:first]]
        stop_at = self.rng.randrange(runs - 1)
        # (after the first run, which reads everything anyway, and before the last)
        resync_at, resync_stream = self.rng.randrange(1, runs - 1), self.rng.choice(sorted(STREAMS))
        plans = []
        for number in range(runs):
            plan = RunPlan(
                number=number,
                api_type=self.rng.choice(["rest", "bulk", "auto"]),
                bulk_min_records=self.rng.choice([1, 40, 200, 50_000]),
                state_every=self.rng.choice([7, 30, 120, 10_000]),
                batch_rows=self.rng.choice([13, 50, 400, 100_000]),
            )
            plan.last = number == runs - 1
            plan.full_resync = resync_stream if number == resync_at else None
            if not plan.last:
                plan.transient = transients[number % len(transients)]
                plan.stop = ("kill", "quota")[self.seed % 2] if number == stop_at else "none"
                queries = len(STREAMS) * (2 if plan.api_type == "auto" else 1)  # COUNT() first with auto
                if plan.stop != "kill" and self.rng.random() < 0.8:  # a kill's moment is not the seed's
                    plan.during = tuple(sorted(self.rng.sample(range(queries), self.rng.randint(1, 3))))
            plans.append(plan)
        return plans

    def configure(self, plan: RunPlan) -> None:
        settings = tap_settings(
            self.emu,
            api_type=plan.api_type,
            bulk_min_records=plan.bulk_min_records,
            state_every_records=plan.state_every,
            lookback_seconds=self.lookback,
        )
        (self.pipeline.folder / "tap.json").write_text(json.dumps(settings))
        target = {**self.target_settings, "batch_size_rows": plan.batch_rows}
        (self.pipeline.folder / "target.json").write_text(json.dumps(target))
        # Segment's full re-sync switch: system_modstamp deselected for one run, selected again after.
        catalog = self.catalog
        if plan.full_resync:
            catalog = select(catalog, STREAMS, deselect={plan.full_resync: ["system_modstamp"]})
        self.pipeline.write_catalog(catalog)

    def arm_faults(self, plan: RunPlan) -> None:
        faults = self.emu.faults
        if plan.transient in ("timeout", "cursor", "complicated") and plan.api_type == "bulk":  # REST
            plan.api_type = "rest"
        elif plan.transient == "bulk_fail":
            plan.api_type = "bulk"
        rest_paths = ["/queryAll", "/query/", "/sobjects/"]
        bulk_paths = ["/jobs/query", "/results", "/sobjects/"]
        paths = {"rest": rest_paths, "bulk": bulk_paths, "auto": rest_paths + bulk_paths}[plan.api_type]
        if plan.transient == "http":
            status, path, count = self.rng.choice([500, 503]), self.rng.choice(paths), self.rng.randint(1, 2)
            faults.http_error(status=status, count=count, path=path)
            plan.details.append(f"{count} x {status} on {path}")
        elif plan.transient == "drop":
            path = self.rng.choice([p for p in paths if p != "/sobjects/"])
            faults.drop_connection(count=1, path=path)
            plan.details.append(f"connection dropped mid-body on {path}")
        elif plan.transient == "expire":
            calls = self.rng.randint(1, 12)
            faults.expire_sessions_after(calls=calls)
            plan.details.append(f"sessions expire after {calls} calls")
        elif plan.transient == "timeout":
            self.timeouts_armed = True
            # The emulator times out on row counts, not query cost: more rows than any one instant holds
            # (records sharing one SystemModstamp cannot be split by time, on Salesforce either), also
            # once this run's changes (no bursts in it, see `change`) add theirs.
            rows = max(self.largest_instant() + 1 + MAX_CHANGES_AT_ONCE, self.rng.randint(60, 160))
            faults.query_timeout(rows=rows, count=None, path="/queryAll")
            plan.details.append(f"QUERY_TIMEOUT above {rows} rows")
        elif plan.transient == "cursor":  # Salesforce closed a query's cursor (idle, or pushed out)
            count = self.rng.randint(1, 3)
            faults.close_cursors(count=count, path="/query/")
            plan.details.append(f"{count} query cursor(s) closed")
        elif plan.transient == "complicated":  # wide queries refused: field chunks joined by Id
            fields = self.rng.randint(20, 60)  # (an Account's ~120 fields then fit 8 joined queries)
            faults.query_too_complicated(fields=fields, count=None, path="/queryAll")
            plan.details.append(f"QUERY_TOO_COMPLICATED above {fields} fields")
        elif plan.transient == "bulk_fail":
            jobs = self.rng.randint(1, 2)
            faults.fail_bulk_jobs(count=jobs)
            plan.details.append(f"{jobs} Bulk job(s) fail")
        if plan.stop == "quota":
            calls = self.rng.randint(3, 14)
            self.emu.api_usage = int(self.emu.api_limit * 0.8) - calls  # quota_percent 80 (default)
            plan.details.append(f"quota: {calls} calls before 80%")
        elif plan.stop == "kill":
            plan.state_every = min(plan.state_every, 30)
            plan.batch_rows = min(plan.batch_rows, 50)
            plan.details.append("SIGKILL at the first STATE that moves a bookmark")

    def largest_instant(self) -> int:
        """The most records of one object sharing one SystemModstamp."""
        largest = 0
        for sobject in STREAMS.values():
            stamps = Counter(r["SystemModstamp"] for r in self.org.records(sobject))
            largest = max(largest, *stamps.values())
        return largest

    def play(self) -> None:
        start = datetime(2026, 1, 1, 6, tzinfo=UTC) + timedelta(milliseconds=self.rng.randint(0, 10**7))
        self.org.clock.set(start, frozen=True)
        for plan in self.plan_runs():
            if plan.number:
                self.org.clock.advance(self.rng.choice([2, 45, 700, 4000]) + self.rng.randint(0, 999) / 1000)
                if plan.stop == "kill":  # enough to read for the kill to land mid-run
                    self.change(self.rng, during=False, kind="burst")
                for _ in range(self.rng.randint(1, 4)):
                    self.change(self.rng, during=False)
                    self.org.clock.advance(self.rng.choice([0, 0, 0.001, 0.4, 2]))
            # A run reads up to its start by Salesforce's clock, known in whole seconds (the Date
            # header): what changed more than a second before is due in this run...
            self.org.clock.advance(1.5)
            # ...and, sometimes, changes land exactly on the whole second the run starts at: the window's
            # (exclusive) end. They count as changes during the run.
            on_window_end = not plan.last and plan.stop != "kill" and self.rng.random() < 0.4
            if on_window_end:
                now = self.org.clock.now()
                self.org.clock.advance(1 - now.microsecond / 1e6)
            self.arm_faults(plan)
            self.configure(plan)
            self.run(plan, on_window_end)

    def run(self, plan: RunPlan, on_window_end: bool = False) -> None:
        self.step(plan.describe())
        self._before = self.expected()
        self._stored = self._stored_after_last_run  # nothing writes to the warehouse between runs
        self.during_versions = RunVersions()
        if on_window_end:
            self.step(f"  on the run's first whole second, {self.org.clock.now().isoformat()}:")
            for _ in range(self.rng.randint(1, 2)):
                self.change(self.rng, during=True)
        hook = DuringRun(self, plan)
        self.org.query = hook  # the emulator's routes call org.query: changes follow its snapshots
        clock_at_start = self.org.clock.now()
        started, requests_before = time.monotonic(), len(self.emu.requests())
        try:
            finished, status, stderr = self._execute(plan)
        finally:
            del self.org.query
            self.emu.faults.reset()
            self.emu.api_usage = 0
            self.timeouts_armed = False
        if hook.error is not None:
            raise AssertionError(f"{self.context()}\nchanging the org during the run failed") from hook.error
        # However many queries the run made (a kill's moment is not the seed's), the clock goes on from
        # the same instant.
        self.org.clock.set(clock_at_start + timedelta(seconds=RUN_CLOCK_BUDGET / 2), frozen=True)
        versions, self.during_versions = self.during_versions or RunVersions(), None
        state = self.next_state()
        outcome = "finished" if finished else "stopped"
        seconds = time.monotonic() - started
        served = self.emu.requests()[requests_before:]
        pages = sum(1 for r in served if "/query/" in r["target"] or "/results" in r["target"])
        self.step(
            f"  -> exit {status}, {outcome} in {seconds:.1f} s, {len(served)} requests ({pages} next "
            f"pages), bookmarks {_marks(state)}"
        )
        if plan.stop == "quota" and not finished:
            assert status == 2 and "quota" in stderr, f"{self.context()}\nexit {status}:\n{tail(stderr)}"
        elif plan.stop != "kill" or finished:  # a transient fault is survived
            assert finished and status == 0, f"{self.context()}\nthe run failed ({status}):\n{tail(stderr)}"
        late_during = {i for seen in versions.by_stream.values() for i in seen if i in self.pending_late}
        expected, stored = self.expected(), self.stored()
        if finished:
            self.check_finished(versions, expected, stored)
            self.pending_late = late_during
        self.check_state(state, expected, stored)
        self._stored_after_last_run = stored

    def _execute(self, plan: RunPlan) -> tuple[bool, int, str]:
        if plan.stop != "kill":
            done = self.pipeline.sync(timeout=RUN_TIMEOUT, expect_success=False)
            return done.returncode == 0, done.returncode, done.stderr
        # After a finished run state.json holds the last STATE line already: start with none, so the
        # watch below sees only this run's.
        assert self.next_state() == self.pipeline.state(), f"{self.context()}\nstate.json is behind"
        (self.pipeline.folder / "state-out.jsonl").unlink(missing_ok=True)
        process = self.pipeline.start_sync()
        deadline = time.monotonic() + RUN_TIMEOUT
        try:
            while not self._bookmark_moved() and process.poll() is None:
                assert time.monotonic() < deadline, f"{self.context()}\nno bookmark moved in time"
                time.sleep(0.002)
            ended_by_itself = process.poll() is not None
        finally:
            self.pipeline.kill(process)
        log = (self.pipeline.folder / "killed-run.log").read_text()
        if ended_by_itself:
            self.step("  (the run ended before the kill)")
            return process.returncode == 0, process.returncode, log
        self.step(f"  killed after {len(self.pipeline.state_lines())} STATE line(s)")
        return False, -9, log

    def _bookmark_moved(self) -> bool:
        """Whether this run's last committed STATE line moves a bookmark past where the run began."""
        lines = self.pipeline.state_lines()
        try:
            marks = _marks(json.loads(lines[-1])) if lines else {}
        except ValueError:  # a line being written
            return False
        return any(
            value and (stream not in self.bookmarks or parse_datetime(value) > self.bookmarks[stream])
            for stream, value in marks.items()
        )

    def expected(self) -> Tables:
        """The org's records as the warehouse must hold them, by stream and id."""
        return {stream: expected_records(self.emu, entry) for stream, entry in self.entries.items()}

    def stored(self) -> Tables:
        """The warehouse's rows by stream and id (none before the first run)."""
        if self.engine == "duckdb" and not Path(self.target_settings["path"]).exists():
            return {}
        with self.warehouse.session():
            tables = self.warehouse.tables()
            return {s: self.warehouse.loaded(e) for s, e in self.entries.items() if s in tables}

    def next_state(self) -> dict[str, Any] | None:
        """The state the next run starts from: the last committed STATE line (the sync script's rule)."""
        lines = self.pipeline.state_lines()
        return json.loads(lines[-1]) if lines else self.pipeline.state()

    # --- checks -----------------------------------------------------------------------------------------

    def check_finished(self, versions: RunVersions, expected: Tables, stored: Tables) -> None:
        """Every table equals the org, but a record changed during the run may hold its row from before
        the run or any of its versions during the run (the tap reads up to its start; the next run
        reads the rest)."""
        problems = []
        with self.warehouse.session():
            tables = self.warehouse.tables()
            assert tables == set(STREAMS), f"{self.context()}\ntables {sorted(tables)}"
            for stream, entry in self.entries.items():
                columns = self.warehouse.columns(stream)
                if columns != expected_columns(entry):
                    problems.append(f"{stream}: columns differ: {sorted(columns ^ expected_columns(entry))}")
                    continue
                ids = self.warehouse.ids(stream)
                if len(ids) != len(set(ids)):
                    problems.append(f"{stream}: {len(ids) - len(set(ids))} duplicated id(s)")
                rows, records = dict(stored[stream]), dict(expected[stream])
                for record_id, seen in versions.ids(stream).items():
                    row = rows.pop(record_id, None)
                    records.pop(record_id, None)
                    if row not in seen:
                        problems.append(f"{stream} {record_id}: stored {row}, none of its versions {seen}")
                problems += differences(stream, rows, records)
        assert not problems, f"{self.context()}\nthe warehouse differs from the org:\n" + "\n".join(problems)

    def check_state(self, state: dict[str, Any] | None, expected: Tables, stored: Tables) -> None:
        """The state never passed data missing from the warehouse; bookmarks only move forward."""
        marks = {stream: parse_datetime(value) for stream, value in _marks(state).items() if value}
        now = self.org.clock.now()
        problems = []
        for stream, mark in marks.items():
            previous = self.bookmarks.get(stream)
            if previous is not None and mark < previous:
                problems.append(f"{stream}: bookmark went back from {previous} to {mark}")
            if mark > now:
                problems.append(f"{stream}: bookmark {mark} is past the org's clock {now}")
        for stream, mark in marks.items():
            records = self.org.records(STREAMS[stream])
            covered = {
                r["Id"] for r in records if r["SystemModstamp"] < mark and r["Id"] not in self.pending_late
            }
            rows = stored.get(stream, {})
            due = {i: expected[stream][i] for i in covered}
            held = {i: rows[i] for i in covered if i in rows}
            problems += [f"(state {mark.isoformat()}) {line}" for line in differences(stream, held, due)]
            if mark != self.bookmarks.get(stream):  # where the bookmark stopped: inside a group?
                instant = [r["Id"] for r in records if r["SystemModstamp"] == mark]
                current = sum(1 for i in instant if rows.get(i) == expected[stream][i])
                self.step(f"    {stream}: {current} of the {len(instant)} record(s) stamped {mark} stored")
        assert not problems, f"{self.context()}\nthe state ran ahead of the warehouse:\n" + "\n".join(
            problems
        )
        self.bookmarks.update(marks)

    def check_equal(self) -> None:
        try:
            assert_warehouse_equals_org(self.warehouse, self.emu, self.catalog)
        except AssertionError as error:
            raise AssertionError(f"{self.context()}\n{error}") from None


class DuringRun:
    """Stands in for `org.query` while a run is under way: each call moves the clock a little (the
    run's requests take time), takes the query's snapshot, and then, at the planned calls, changes the
    org (after the snapshot, so what this query reads is fixed and what later queries read is not)."""

    def __init__(self, fuzz: Fuzz, plan: RunPlan) -> None:
        self.fuzz = fuzz
        self.query = fuzz.org.query
        self.plan = plan
        self.rng = random.Random(f"{fuzz.seed}/run{plan.number}")
        self.calls = 0
        self.advanced = 0.0
        self.lock = threading.Lock()
        self.error: BaseException | None = None  # raised by the test once the run is over

    def __call__(self, soql: str, include_deleted: bool = False) -> Any:
        with self.lock:
            number = self.calls
            self.calls += 1
            step = min(self.rng.randint(0, 1500) / 1000, RUN_CLOCK_BUDGET / 2 - self.advanced)
            if step > 0:
                self.fuzz.org.clock.advance(step)
                self.advanced += step
            result = self.query(soql, include_deleted)
            if number in self.plan.during and self.error is None:
                try:
                    for _ in range(self.rng.randint(1, 3)):
                        self.fuzz.change(self.rng, during=True)
                except BaseException as error:  # the test's own mistake: not the tap's to retry
                    self.error = error
            return result


def _marks(state: Mapping[str, Any] | None) -> dict[str, str | None]:
    bookmarks = (state or {}).get("bookmarks", {})
    return {stream: mark.get("replication_key_value") for stream, mark in bookmarks.items()}


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> Callable[[random.Random], None]:
    """The emulator serves REST pages and Bulk result pages of a few dozen rows (Salesforce, too, may
    return fewer rows than asked for), so bookmarks and STATE lines fall inside pages."""
    full_page = emulator_bulk._page_size

    def choose(rng: random.Random) -> None:
        rest_rows, bulk_rows = rng.choice([17, 40, 97]), rng.choice([23, 60, 150])
        monkeypatch.setattr(emulator_app, "DEFAULT_BATCH_SIZE", rest_rows)
        monkeypatch.setattr(emulator_bulk, "_page_size", lambda asked: min(bulk_rows, full_page(asked)))

    return choose


def warehouse_settings(
    engine: str, seed: int, folder: Path, request: pytest.FixtureRequest
) -> dict[str, Any]:
    """The target's settings for one seed: a DuckDB file, or a fresh PostgreSQL database (from the
    `postgres_database` fixture, which fails, never skips, without the server of `make test`) and a
    schema named after the seed."""
    if engine == "postgres":
        url = request.getfixturevalue("postgres_database")
        return {"engine": "postgres", "sqlalchemy_url": url, "schema": f"fuzz_seed_{seed}"}
    return {"engine": "duckdb", "path": str(folder / "warehouse.duckdb")}


@pytest.mark.parametrize(
    ("engine", "seed"),
    [("duckdb", seed) for seed in SEEDS] + [("postgres", seed) for seed in POSTGRES_SEEDS],
)
def test_incremental_runs_lose_no_row_and_keep_no_stale_row(
    engine: str,
    seed: int,
    tmp_path: Path,
    small_pages: Callable[[random.Random], None],
    request: pytest.FixtureRequest,
) -> None:
    settings = warehouse_settings(engine, seed, tmp_path, request)
    rng = random.Random(f"{seed}/org")
    counts = {sobject: rng.randint(120, 260) for sobject in STREAMS.values()}
    small_pages(rng)
    emu = start_emulator(seed=seed, scale=0.001, counts=counts, tags=False, schedules=False)
    try:
        fuzz = Fuzz(seed, emu, tmp_path, settings)
        fuzz.step(f"org: {counts}")
        fuzz.play()
        fuzz.check_equal()
        print(fuzz.context())  # shown with -s: what this seed did
    finally:
        emu.stop()
