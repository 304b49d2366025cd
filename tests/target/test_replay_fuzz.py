"""Seeded randomized tests of reruns: whatever was loaded before, a rerun from a STATE the target wrote
(or from any earlier one, or from the start) leaves every table equal to a clean load of the input, on
both engines, through the console script.

Each seed generates what a tap emits for two or three keyed streams in `system_modstamp` order (updates
of random keys, soft deletes, `hard_delete` on or off, SCHEMA messages that add a property or widen one:
integer -> number -> string, date -> date-time, an integer key -> string) with a STATE every ~50
messages that records its own position in the input. A rerun sends the SCHEMA messages in force at
that position, then everything after it, as a tap resuming from that STATE would.

Half the seeds set `on_invalid_record: quarantine` and spoil 1% of the records (a value its column cannot
take, or no key), which every run sets aside again.

- replay: a random prefix of the input loads whole, then the input is rerun from a random STATE at or
  before the prefix's end (or from the start): replays of committed records must change nothing.
- kill: the target is killed (SIGKILL) at a random instant while it loads, twice, each time rerun from
  the last STATE it wrote, then left to finish: a crash loses nothing and duplicates nothing.

The tables are compared row for row and value for value, but `uuid_ts` (when a row was written).
Reproduce a seed's input with ``python tests/target/test_replay_fuzz.py SEED OUT.jsonl``.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import typing as t
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import Warehouse, record, schema, start_target, state, to_lines

REPLAY_SEEDS = range(12)
KILL_SEEDS = range(2)
_NUMBER = re.compile(r'"__number__(-?\d+\.\d+)"')


def stamp(tick: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(1_700_000_000 + tick)) + f".{tick * 7 % 1000:03d}Z"


def _widened(rng: random.Random, stream: str, properties: dict[str, t.Any], index: int) -> dict[str, t.Any]:
    changed = dict(properties)
    roll = rng.random()
    if roll < 0.3:
        changed["amount"] = {"type": ["null", "number"]}
    elif roll < 0.5:
        changed["amount"] = {"type": ["null", "string"]}
    elif roll < 0.7:
        changed["closed_on"] = {"type": ["null", "string"], "format": "date-time"}
    elif roll < 0.85 or stream != "events":
        changed[f"extra_{index}"] = {"type": ["null", "string"]}
    else:
        changed["id"] = {"type": "string"}  # the key widens: DuckDB rebuilds the table
    return changed


def _values(rng: random.Random, properties: dict[str, t.Any], key: int, tick: int, index: int) -> dict:
    values: dict[str, t.Any] = {
        "id": key if properties["id"]["type"] == "integer" else f"k{key}",
        "system_modstamp": stamp(tick),
        "name": rng.choice([None, f"name {index}", "ünï ' \" \\n", "x" * rng.randint(0, 50)]),
        "is_deleted": rng.random() < 0.05,
    }
    amount = properties["amount"]["type"][1]
    if amount == "integer":
        values["amount"] = rng.randint(-(10**12), 10**12)
    elif amount == "number":  # written exactly, trailing zeros and all (see lines)
        values["amount"] = f"__number__{rng.randint(-(10**8), 10**8)}.{rng.randint(0, 99):02d}"
    else:
        values["amount"] = f"a{rng.randint(0, 10**6)}"
    day = f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    values["closed_on"] = day if properties["closed_on"].get("format") == "date" else f"{day}T01:02:03+02:00"
    values.update({name: f"e{index}" for name in properties if name.startswith("extra_")})
    return values


def _spoiled(rng: random.Random, values: dict[str, t.Any], properties: dict[str, t.Any]) -> dict:
    """The record with one value its column cannot take (or without its key): quarantined."""
    spoiled = dict(values)
    roll = rng.random()
    if roll < 0.2:
        del spoiled["id"]
    elif roll < 0.4:
        spoiled["is_deleted"] = "maybe"
    elif roll < 0.7:
        date = properties["closed_on"].get("format") == "date"
        spoiled["closed_on"] = "2024-02-30" if date else "2024-13-01T00:00:00Z"
    elif properties["amount"]["type"][1] != "string":
        spoiled["amount"] = "12 apples"
    else:
        spoiled["system_modstamp"] = "yesterday"
    return spoiled


def generate(rng: random.Random, records: int, spoiled: float = 0.0) -> list[dict[str, t.Any]]:
    """A tap's output; a `spoiled` share of the records is invalid (for `on_invalid_record: quarantine`)."""
    streams = ["accounts", "events", "things"][: rng.randint(2, 3)]
    properties = {
        stream: {
            "id": {"type": "integer" if stream == "events" else "string"},
            "system_modstamp": {"type": "string", "format": "date-time"},
            "name": {"type": ["null", "string"]},
            "amount": {"type": ["null", "integer"]},
            "closed_on": {"type": ["null", "string"], "format": "date"},
            "is_deleted": {"type": ["null", "boolean"]},
        }
        for stream in streams
    }

    def schema_of(stream: str) -> dict[str, t.Any]:
        return schema(stream, dict(properties[stream]), key=["id"], bookmark=["system_modstamp"])

    messages = [schema_of(stream) for stream in streams]
    keys = rng.choice([200, 2000, 50_000])
    bookmarks: dict[str, str] = {}
    tick = 0
    for index in range(records):
        stream = rng.choice(streams)
        tick += rng.choice([0, 1, 1, 2])  # equal stamps too: the later of equals wins
        if rng.random() < 0.003:
            properties[stream] = _widened(rng, stream, properties[stream], index)
            messages.append(schema_of(stream))
        values = _values(rng, properties[stream], rng.randrange(keys), tick, index)
        if spoiled and rng.random() < spoiled:
            values = _spoiled(rng, values, properties[stream])
        messages.append(record(stream, values, time_extracted=stamp(tick + 5)))
        bookmarks[stream] = stamp(tick)
        if rng.random() < 0.02:
            messages.append(state({"bookmarks": dict(bookmarks), "position": len(messages)}))
    messages.append(state({"bookmarks": dict(bookmarks), "position": len(messages)}))
    return messages


def lines(messages: list[dict[str, t.Any]]) -> str:
    return _NUMBER.sub(r"\1", to_lines(messages))


def rerun_from(messages: list[dict[str, t.Any]], position: int | None) -> list[dict[str, t.Any]]:
    """What a tap sends when resumed from the STATE at `position` (None: from the start)."""
    if position is None:
        return messages
    schemas = {m["stream"]: m for m in messages[:position] if m["type"] == "SCHEMA"}
    return [*schemas.values(), *messages[position + 1 :]]


def tables(warehouse: Warehouse, schema_name: str) -> dict[str, t.Any]:
    found = warehouse.query(
        f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{schema_name}' ORDER BY 1"
    )
    dumped = {}
    for (table,) in found:
        if table.startswith("_"):
            continue
        columns = warehouse.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            f"WHERE table_schema = '{schema_name}' AND table_name = '{table}' ORDER BY column_name"
        )
        names = ", ".join(f'"{name}"' for name, _ in columns if name != "uuid_ts")
        rows = warehouse.query(f'SELECT {names} FROM "{schema_name}"."{table}" ORDER BY "id"')
        dumped[table] = (columns, rows)
    return dumped


def rejected(warehouse: Warehouse, schema_name: str) -> set[tuple[t.Any, ...]]:
    """The records set aside, once each (a rerun sets aside again what it reads again)."""
    found = warehouse.query(
        "SELECT count(*) FROM information_schema.tables "
        f"WHERE table_schema = '{schema_name}' AND table_name = '_rejected_records'"
    )
    if not found[0][0]:
        return set()
    rows = warehouse.query(f'SELECT stream, field, error, record FROM "{schema_name}"."_rejected_records"')
    return set(rows)


def assert_equal_loads(warehouse: Warehouse, history: t.Any) -> None:
    rerun, clean = tables(warehouse, "rerun"), tables(warehouse, "clean")
    problems = []
    set_aside, clean_set_aside = rejected(warehouse, "rerun"), rejected(warehouse, "clean")
    if set_aside != clean_set_aside:
        problems.append(("_rejected_records", sorted(set_aside ^ clean_set_aside, key=repr)[:3]))
    for table in sorted(set(rerun) | set(clean)):
        ours, theirs = rerun.get(table), clean.get(table)
        if ours == theirs:
            continue
        if ours is None or theirs is None or ours[0] != theirs[0]:
            problems.append((table, "columns", ours and ours[0], theirs and theirs[0]))
            continue
        extra = sorted(set(map(repr, ours[1])) - set(map(repr, theirs[1])))
        missing = sorted(set(map(repr, theirs[1])) - set(map(repr, ours[1])))
        problems.append((table, len(ours[1]), len(theirs[1]), extra[:3], missing[:3]))
    assert not problems, (history, problems)


def _settings(rng: random.Random) -> dict[str, t.Any]:
    return {
        "batch_size_rows": rng.choice([100, 700, 5000]),
        "hard_delete": rng.random() < 0.4,
        "on_invalid_record": "quarantine" if rng.random() < 0.5 else "fail",
    }


def _spoiled_share(settings: dict[str, t.Any]) -> float:
    return 0.01 if settings["on_invalid_record"] == "quarantine" else 0.0


@pytest.mark.parametrize("seed", REPLAY_SEEDS)
def test_a_rerun_from_any_earlier_state_equals_a_clean_load(warehouse: Warehouse, seed: int) -> None:
    rng = random.Random(seed)
    settings = _settings(rng)
    messages = generate(rng, rng.choice([2000, 6000]), _spoiled_share(settings))
    clean = warehouse.cli(lines(messages), schema="clean", **settings)
    assert clean.returncode == 0, clean.stderr[-2000:]
    cut = rng.randrange(len(messages))
    states = [i for i, m in enumerate(messages) if m["type"] == "STATE" and i <= cut]
    resume = rng.choice(states) if states and rng.random() < 0.9 else None
    for part in (messages[: cut + 1], rerun_from(messages, resume)):
        run = warehouse.cli(lines(part), schema="rerun", **settings)
        assert run.returncode == 0, run.stderr[-2000:]
    assert_equal_loads(warehouse, {"cut": cut, "resume": resume, **settings})


def _run_until(config: Path, text: str, seconds: float, feed: Path) -> tuple[list[t.Any], int]:
    """Run the console script on `text`, killed after `seconds` unless done; its STATEs and exit status."""
    feed.write_text(text, encoding="utf-8")
    with feed.open("rb") as source:
        process = start_target(config, text=False, stdin=source)
        try:
            out, err = process.communicate(timeout=seconds)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            out, err = process.communicate()
    assert process.returncode in (0, -signal.SIGKILL), err.decode()[-3000:]
    return [json.loads(line) for line in out.decode().split("\n") if line.strip()], process.returncode


@pytest.mark.parametrize("seed", KILL_SEEDS)
def test_killed_runs_rerun_from_their_last_state_equal_a_clean_load(warehouse: Warehouse, seed: int) -> None:
    rng = random.Random(seed)
    settings = _settings(rng)
    messages = generate(rng, 8000, _spoiled_share(settings))
    configs = {}
    for name in ("clean", "rerun"):
        configs[name] = warehouse.tmp_path / f"{name}.json"
        configs[name].write_text(json.dumps(warehouse.config(schema=name, **settings)))
    started = time.monotonic()
    _, status = _run_until(configs["clean"], lines(messages), 600, warehouse.tmp_path / "clean.jsonl")
    assert status == 0
    clean_seconds = time.monotonic() - started
    position, history = None, []
    for attempt in range(3):
        seconds = rng.uniform(0.3, clean_seconds) if attempt < 2 else 600
        states, status = _run_until(
            configs["rerun"],
            lines(rerun_from(messages, position)),
            seconds,
            warehouse.tmp_path / "rerun.jsonl",
        )
        history.append((round(seconds, 2), status, len(states)))
        position = states[-1]["position"] if states else position
        if status == 0:
            break
    assert_equal_loads(warehouse, {"runs": history, **settings})


if __name__ == "__main__":  # the replay test's input for a seed
    seeded = random.Random(int(sys.argv[1]))
    share = _spoiled_share(_settings(seeded))
    Path(sys.argv[2]).write_text(
        lines(generate(seeded, seeded.choice([2000, 6000]), share)), encoding="utf-8"
    )
