"""README.md's examples, run as they stand (issue 5: the README cannot go stale).

Every fenced code block in README.md follows a `<!-- tested: NAME -->` line, and every NAME is run or
checked here (`block("NAME")`, `table("NAME")`), by tests/e2e/test_pipeline.py (`discover`, `sync`,
through tests/support/pipeline.py) or by tests/test_settings_reference.py (the settings tables).
How each kind is exercised:

- Commands run through bash in a temporary folder, with the project's console scripts first on PATH,
  against a real emulator, warehouse and (where shown) Meltano or a peer target. Substitutions, the
  only differences from the text: `domain` in a tap config and `SALESFORCE_DOMAIN` become the emulator's
  URL (the emulator accepts the README's example credentials), port 8765 becomes a free port,
  `/srv/salesforce` a temporary folder, and the example PostgreSQL URL the test's database.
- Configs (JSON, YAML) are loaded and used by those runs; the Meltano excerpts must equal meltano.yml
  (`meltano-orgs`) or are applied through Meltano's `TAP_SALESFORCE_SEG__SELECT` (`meltano-select`).
- Example output (```text blocks) must match what the code prints now, with digits standing for any
  digits and `...` for any text (`example_pattern`).
- Tables: the domains and names are computed by the tap's own functions; the layout's paths exist.
- `make` lines: each target exists and `make -n TARGET` succeeds (the targets themselves run in CI:
  `make test`, `make lint`, and tests/e2e/test_demo.py and test_catalogs.py for the demo and catalogs).
- `bench` lines: each script exists and accepts the options shown (its own smoke tests run it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
import psycopg
import pytest
import yaml
from emulator_fixtures import login_redirect_session
from pipeline import Pipeline, Warehouse, assert_warehouse_equals_org, selected_streams, shell_environment
from tap_harness import select

from salesforce_emulator import BulkTiming, ControlClient, Credentials, Emulator
from tap_salesforce_seg.config import TapConfig
from tap_salesforce_seg.errors import AuthenticationError, TapError
from tap_salesforce_seg.naming import property_names, stream_name, stream_names
from tap_salesforce_seg.progress import StreamProgress
from target_warehouse_seg.identifiers import conform

REPO_DIR = Path(__file__).resolve().parents[2]
README = REPO_DIR / "README.md"
BIN_DIR = Path(sys.executable).parent
MARKER = re.compile(r"^<!-- tested: ([a-z0-9-]+) -->$")
FENCE = re.compile(r"^```")
# The README's placeholders for what differs on each machine (see the module docstring).
EXAMPLE_ROOT = "/srv/salesforce"
EXAMPLE_POSTGRES_URL = "postgresql://loader:secret@db.internal:5432/analytics"
EXAMPLE_PORT = "8765"
# Blocks run elsewhere: by tests/e2e/test_pipeline.py (through tests/support/pipeline.py's
# COMMANDS_DOC) and by tests/test_settings_reference.py.
RUN_ELSEWHERE = {"discover", "sync", "tap-settings", "target-settings"}
SMALL_STREAMS = ["accounts", "contacts", "leads"]


# --- reading the README ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    name: str
    language: str
    text: str


def marked_blocks(text: str | None = None) -> tuple[dict[str, Block], dict[str, list[str]], list[str]]:
    """(code blocks by marker, tables by marker, problems: unmarked or doubly marked blocks)."""
    lines = (README.read_text() if text is None else text).splitlines()
    blocks: dict[str, Block] = {}
    tables: dict[str, list[str]] = {}
    problems: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        marker = MARKER.match(line)
        if marker:
            name = marker.group(1)
            if name in blocks or name in tables:
                problems.append(f"marker {name} is used twice")
            following = lines[index + 1] if index + 1 < len(lines) else ""
            if following.startswith("|"):
                end = index + 1
                while end < len(lines) and lines[end].startswith("|"):
                    end += 1
                tables[name] = lines[index + 1 : end]
                index = end
                continue
            if not FENCE.match(following):
                problems.append(
                    f"marker {name} (line {index + 1}) is not followed by a code block or a table"
                )
        if FENCE.match(line.strip()):
            marker = MARKER.match(lines[index - 1]) if index else None
            end = next(i for i in range(index + 1, len(lines)) if FENCE.match(lines[i].strip()))
            if not marker:
                problems.append(f"line {index + 1}: a code block without a `<!-- tested: NAME -->` line")
            else:
                language = line.strip().removeprefix("```")
                blocks[marker.group(1)] = Block(marker.group(1), language, "\n".join(lines[index + 1 : end]))
            index = end + 1
            continue
        index += 1
    return blocks, tables, problems


def block(name: str) -> str:
    blocks, _, _ = marked_blocks()
    assert name in blocks, f"README.md has no code block marked `tested: {name}`"
    return blocks[name].text + "\n"


def table(name: str) -> list[list[str]]:
    """The body rows of the table marked NAME, as cells."""
    _, tables, _ = marked_blocks()
    assert name in tables, f"README.md has no table marked `tested: {name}`"
    return [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in tables[name][2:]]


def literals(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def example_pattern(example: str) -> re.Pattern[str]:
    """The README's example output as a pattern: digits stand for any digits, `...` for any text."""
    escaped = re.escape(" ".join(example.split())).replace(re.escape("..."), ".*")
    return re.compile(re.sub(r"\d+", r"\\d+", escaped))


def json_block(name: str) -> dict[str, Any]:
    return json.loads(block(name))


def test_every_example_is_marked_and_run() -> None:
    blocks, tables, problems = marked_blocks()
    assert not problems, "\n".join(problems)
    covered = set(re.findall(r'(?:block|json_block|table)\("([a-z0-9-]+)"\)', Path(__file__).read_text()))
    names = set(blocks) | set(tables)
    assert names - covered - RUN_ELSEWHERE == set(), "marked examples nobody runs"
    assert (covered | RUN_ELSEWHERE) - names == set(), "tests for examples the README no longer has"


def test_marker_parser() -> None:
    text = (
        "<!-- tested: a -->\n```sh\necho a\n```\n\n```json\n{}\n```\n"
        "<!-- tested: t -->\n| x |\n|---|\n| 1 |\n"
    )
    blocks, tables, problems = marked_blocks(text)
    assert blocks == {"a": Block("a", "sh", "echo a")}
    assert tables == {"t": ["| x |", "|---|", "| 1 |"]}
    assert problems == ["line 6: a code block without a `<!-- tested: NAME -->` line"]


def test_example_pattern() -> None:
    pattern = example_pattern("used 800 of 1,000 (80.0%) at ... UTC.")
    assert pattern.fullmatch("used 12 of 5,000 (0.2%) at 2024-01-02 03:04 UTC.")
    assert not pattern.fullmatch("used 12 of 5,000 (0.2%) by 2024-01-02 03:04 UTC.")


# --- helpers for runs -----------------------------------------------------------------------------

# The README's example logins; the emulators below accept them.
README_CREDENTIALS_BLOCKS = ("tap-password", "tap-refresh-token", "tap-client-credentials")


def readme_credentials() -> Credentials:
    password, refresh = json_block("tap-password"), json_block("tap-refresh-token")
    client = json_block("tap-client-credentials")
    assert (client["client_id"], client["client_secret"]) == (refresh["client_id"], refresh["client_secret"])
    return Credentials(
        username=password["username"],
        password=password["password"],
        security_token=password["security_token"],
        client_id=refresh["client_id"],
        client_secret=refresh["client_secret"],
        refresh_token=refresh["refresh_token"],
    )


def readme_emulator(emulator_factory: Any, **kwargs: Any) -> Emulator:
    return emulator_factory(credentials=readme_credentials(), **kwargs)


def tap_config(name: str, emu: Emulator) -> dict[str, Any]:
    """A README login block with the emulator's URL as `domain`."""
    return {**json_block(name), "domain": emu.base_url}


def localised(text: str, **values: str) -> str:
    """The README's placeholders replaced: root (`/srv/salesforce`), postgres_url, port."""
    placeholders = {"root": EXAMPLE_ROOT, "postgres_url": EXAMPLE_POSTGRES_URL, "port": EXAMPLE_PORT}
    for key, value in values.items():
        text = text.replace(placeholders[key], value)
    return text


def bash(
    script: str, folder: Path, *, env: Mapping[str, str] | None = None, path: list[Path] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = shell_environment()
    environment["PATH"] = os.pathsep.join([*(str(p) for p in path or []), environment["PATH"]])
    environment.update(env or {})
    return subprocess.run(
        ["bash", "-c", script], cwd=folder, env=environment, capture_output=True, text=True, timeout=900
    )


def succeeded(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, f"exit {done.returncode}:\n{done.stderr[-4000:]}"
    return done


def free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def sync_modes(log: str) -> dict[str, tuple[str, str]]:
    """stream -> (mode, window start) from the tap's plan lines."""
    pattern = re.compile(r"\| (\w+): ([\w -]+?)(?: sync)? of \w+, \d+ field\(s\), window (.+?) \.\. ", re.M)
    return {match[1]: (match[2], match[3]) for match in pattern.finditer(log)}


def settle(emu: Emulator) -> None:
    """Move the org's clock 2 s on after a change, as time passes between a change and the next
    scheduled run: the tap ends its window at the stream's start by Salesforce's clock, which it reads
    from whole-second Date headers, so a change made within that second may wait for the run after."""
    emu.org.clock.advance(2)


def narrowed(pipeline: Pipeline, streams: list[str]) -> dict[str, Any]:
    """Discovery as the README runs it, then (for speed) only `streams` selected."""
    catalog = select(pipeline.discover(), streams)
    pipeline.write_catalog(catalog)
    return catalog


# --- Try it ---------------------------------------------------------------------------------------


def test_make_targets_exist() -> None:
    commands = [line.split("#")[0].split() for line in block("make").splitlines() if line.strip()]
    assert [command[0] for command in commands] == ["make"] * len(commands)
    for _, target in commands:
        done = subprocess.run(
            ["make", "-n", target], cwd=REPO_DIR, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"make -n {target}: {done.stderr}"


# --- Connect a real org ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", README_CREDENTIALS_BLOCKS)
def test_login_examples_log_in(name: str, emulator_factory: Any, tmp_path: Path) -> None:
    written = json_block(name)
    expected_mode = {"tap-password": "password", "tap-refresh-token": "refresh_token"}.get(
        name, "client_credentials"
    )
    config = TapConfig.from_mapping(written)  # valid as written
    assert config.auth_mode == expected_mode
    assert config.login_base_url == (
        "https://acme.my.salesforce.com" if "domain" in written else "https://login.salesforce.com"
    )
    emu = readme_emulator(emulator_factory)
    pipeline = Pipeline(tmp_path / "org", tap_config(name, emu), {})
    catalog = pipeline.discover()  # the README's discovery command
    assert {"accounts", "contacts", "invoice_c"} <= {entry["stream"] for entry in catalog["streams"]}


def test_domains_table_is_what_the_tap_does() -> None:
    login = {"client_id": "id", "client_secret": "secret", "refresh_token": "token"}
    rows = table("domains")
    assert len(rows) >= 5
    for left, right in rows:
        url = literals(right)[0]
        for written in literals(left):
            settings = json.loads(f"{{{written}}}") if written.startswith('"') else {"domain": written}
            assert TapConfig.from_mapping({**login, **settings}).login_base_url == url, written


# --- Load it into a warehouse, schedule it, choose, re-sync ----------------------------------------------


@pytest.mark.slow
def test_pipe_select_resync_refresh_and_cron_as_documented(emulator_factory: Any, tmp_path: Path) -> None:
    emu = readme_emulator(emulator_factory)
    folder = tmp_path / "acme-prod"
    target = json_block("target-duckdb")
    pipeline = Pipeline(folder, tap_config("tap-refresh-token", emu), target)
    narrowed(pipeline, SMALL_STREAMS)
    warehouse = Warehouse({**target, "path": str(folder / target["path"])})

    # Choose objects and fields: two columns off, a custom object on.
    succeeded(pipeline.bash(block("select-jq")))
    catalog = json.loads(pipeline.catalog_path.read_text())
    pipeline.sync()
    assert warehouse.tables() == {*SMALL_STREAMS, "invoice_c"}
    assert not warehouse.columns("accounts") & {"description", "phone"}
    assert_warehouse_equals_org(warehouse, emu, catalog)
    first = pipeline.state()
    assert first is not None and set(first["bookmarks"]) == {*SMALL_STREAMS, "invoice_c"}

    # Segment's switch: one full run of accounts, then incremental again.
    succeeded(pipeline.bash(block("resync-off")))
    before = datetime.now(UTC)
    pipeline.sync()
    modes = sync_modes(pipeline.last_stderr)
    assert modes["accounts"] == ("full re-sync", "the beginning"), modes
    assert modes["contacts"][0] == "incremental" and modes["contacts"][1] != "the beginning"
    rewritten = warehouse.count("accounts", f"uuid_ts >= CAST('{before.isoformat()}' AS TIMESTAMPTZ)")
    assert rewritten == warehouse.count("accounts")
    succeeded(pipeline.bash(block("resync-on")))
    pipeline.sync()
    modes = sync_modes(pipeline.last_stderr)
    assert modes["accounts"][0] == "incremental" and modes["accounts"][1] != "the beginning", modes

    # A plain full refresh of one stream.
    succeeded(pipeline.bash(block("refresh-stream")))
    state = pipeline.state()
    assert state is not None and "accounts" not in state["bookmarks"] and "contacts" in state["bookmarks"]
    pipeline.sync()
    modes = sync_modes(pipeline.last_stderr)
    assert modes["accounts"] == ("incremental", "the beginning"), modes
    assert modes["contacts"][1] != "the beginning"
    assert_warehouse_equals_org(warehouse, emu, json.loads(pipeline.catalog_path.read_text()))

    # cron: sync.sh as the README says, run by the crontab line's command with its PATH.
    (folder / "sync.sh").write_text(block("sync"))
    variables, schedule, command = crontab(localised(block("crontab"), root=str(tmp_path)))
    assert schedule == ["0", "*/3", "*", "*", "*"]  # every 3 hours, like Segment
    assert variables["PATH"].split(":")[0] == f"{tmp_path}/venv/bin"
    (tmp_path / "venv").symlink_to(BIN_DIR.parent)
    emu.org.update("Account", warehouse.ids("accounts")[0], {"Name": "Changed before the cron run"})
    settle(emu)
    done = subprocess.run(
        ["/bin/sh", "-c", command],
        env={"PATH": variables["PATH"], "HOME": str(tmp_path)},  # cron's sparse environment
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, (folder / "sync.log").read_text()[-3000:]
    assert "accounts: synced" in (folder / "sync.log").read_text()
    assert_warehouse_equals_org(warehouse, emu, json.loads(pipeline.catalog_path.read_text()))


@pytest.mark.slow
def test_sync_sh_runs_one_at_a_time_and_keeps_whole_state_lines_only(
    emulator_factory: Any, tmp_path: Path
) -> None:
    """Two overlapping runs in one folder wrote one state-out.jsonl at once (the second's `>` emptied it
    under the first), and keep_state copied its NUL bytes or a line cut by a full disk into state.json:
    every later run then stopped on a state that was not JSON, the good one gone."""
    emu = readme_emulator(emulator_factory)
    pipeline = Pipeline(
        tmp_path / "acme-prod", tap_config("tap-refresh-token", emu), json_block("target-duckdb")
    )
    narrowed(pipeline, ["accounts"])
    folder = pipeline.folder
    whole = '{"bookmarks":{"accounts":{"replication_key":"system_modstamp",' + (
        '"replication_key_value":"2020-01-01T00:00:00.000000Z"}}}'
    )
    cut = '{"bookmarks":{"accounts":{"replication_key":"system_modstamp","replication_key_value":"2024-0'
    (folder / "state-out.jsonl").write_bytes(b"\0" * 64 + b'{"bookmarks":{}}\n' + f"{whole}\n{cut}".encode())
    emu.faults.slow(seconds=4, count=1, path="/query")  # the first run lasts a while
    first = pipeline.start_sync()
    deadline = time.monotonic() + 60
    while not (folder / "state.json").exists():  # kept before the tap starts, with the lock held
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.05)
    assert json.loads((folder / "state.json").read_text()) == json.loads(whole)
    second = pipeline.sync(expect_success=False)
    assert second.returncode == 75, second.stderr
    assert "the last run in" in second.stderr and "is still going; this one does nothing" in second.stderr
    assert first.wait(timeout=300) == 0, (folder / "killed-run.log").read_text()[-3000:]
    log = (folder / "killed-run.log").read_text()
    assert "window 2019-12-31T23:50:00+00:00" in log, log[-3000:]  # resumed from the whole line
    state = pipeline.state()
    assert state is not None and state["bookmarks"]["accounts"]["replication_key_value"] > "2024"


@pytest.mark.slow
def test_discovery_again_keeps_the_choices_made(emulator_factory: Any, tmp_path: Path) -> None:
    """The README said to run discovery again for new fields, which reset the selection to discovery's
    default: custom objects stopped syncing, columns left out came back."""
    emu = readme_emulator(emulator_factory)
    pipeline = Pipeline(
        tmp_path / "acme-prod", tap_config("tap-refresh-token", emu), json_block("target-duckdb")
    )
    narrowed(pipeline, SMALL_STREAMS)
    succeeded(pipeline.bash(block("select-jq")))
    chosen = json.loads(pipeline.catalog_path.read_text())
    emu.org.add_field("Account", "Renewal_Seats__c", "double(8,0)")
    succeeded(pipeline.bash(block("rediscover")))
    catalog = json.loads(pipeline.catalog_path.read_text())
    assert not (pipeline.catalog_path.parent / "catalog.new.json").exists()
    assert [e["stream"] for e in selected_streams(catalog)] == [e["stream"] for e in selected_streams(chosen)]
    accounts = next(e for e in catalog["streams"] if e["stream"] == "accounts")
    fields = {tuple(m["breadcrumb"]): m["metadata"] for m in accounts["metadata"]}
    assert fields[("properties", "description")]["selected"] is False
    assert fields[("properties", "phone")]["selected"] is False
    assert fields[("properties", "renewal_seats_c")].get("selected", True) is not False
    assert "renewal_seats_c" in accounts["schema"]["properties"]


def crontab(text: str) -> tuple[dict[str, str], list[str], str]:
    """(variables, the five schedule fields, the command) of a crontab with one job line."""
    variables, jobs = {}, []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if re.match(r"^[A-Z_]+=", line):
            key, _, value = line.partition("=")
            variables[key] = value
        else:
            jobs.append(line.split(None, 5))
    assert len(jobs) == 1, jobs
    fields = jobs[0][:5]
    for field, (low, high) in zip(fields, [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)], strict=True):
        if re.fullmatch(r"\*(/[1-9]\d*)?", field):
            continue
        assert field.isdigit() and low <= int(field) <= high, f"crontab field {field!r}"
    return variables, fields, jobs[0][5]


def test_hard_delete_setting_deletes_soft_deleted_rows(emulator_factory: Any, tmp_path: Path) -> None:
    emu = readme_emulator(emulator_factory)
    target = json_block("target-hard-delete")
    assert target["hard_delete"] is True
    folder = tmp_path / "acme-prod"
    pipeline = Pipeline(folder, tap_config("tap-password", emu), target)
    narrowed(pipeline, ["contacts"])
    pipeline.sync()
    warehouse = Warehouse({**target, "path": str(folder / target["path"])})
    assert warehouse.count("contacts", "is_deleted") == 0  # the org's soft-deleted contacts are not kept
    kept = warehouse.count("contacts")
    live = [record["Id"] for record in emu.org.records("Contact", include_deleted=False)]
    assert kept == len(live) > 0
    emu.org.delete("Contact", live[0])
    settle(emu)
    pipeline.sync()
    assert warehouse.count("contacts") == kept - 1
    assert live[0] not in warehouse.ids("contacts")
    # Restored from the Recycle Bin (a newer SystemModstamp): back, past its tombstone.
    emu.org.undelete("Contact", live[0])
    settle(emu)
    pipeline.sync()
    assert warehouse.count("contacts") == kept and live[0] in warehouse.ids("contacts")


@pytest.mark.postgres
@pytest.mark.slow
def test_postgres_target_and_the_rebuild_for_hard_deletes(
    emulator_factory: Any, postgres_database: str, tmp_path: Path
) -> None:
    emu = readme_emulator(emulator_factory)
    folder = tmp_path / "acme-prod"
    target = json.loads(localised(block("target-postgres"), postgres_url=postgres_database))
    pipeline = Pipeline(folder, tap_config("tap-refresh-token", emu), target)
    catalog = narrowed(pipeline, SMALL_STREAMS)
    pipeline.sync()
    warehouse = Warehouse(target)
    assert warehouse.schema == "sfdc_prod"
    assert_warehouse_equals_org(warehouse, emu, catalog)

    # A hard delete in Salesforce: invisible to the next sync, gone after the rebuild.
    purged = warehouse.ids("accounts")[0]
    emu.org.hard_delete("Account", purged)
    pipeline.sync()
    assert purged in warehouse.ids("accounts")
    rebuild = localised(block("rebuild"), postgres_url=postgres_database)
    # A rebuild the API quota stops part-way: the schema and the state stay as they were (before, the
    # partial schema was swapped in, and sync.sh then took the old state back: history lost for good).
    state_before, counts_before = pipeline.state(), {s: warehouse.count(s) for s in SMALL_STREAMS}
    emu.api_usage = int(emu.api_limit * 0.8) - 3
    stopped = pipeline.bash(rebuild)
    assert stopped.returncode == 2, stopped.stderr[-3000:]
    emu.api_usage = 0
    assert purged in warehouse.ids("accounts") and pipeline.state() == state_before
    assert {s: warehouse.count(s) for s in SMALL_STREAMS} == counts_before
    done = pipeline.bash(rebuild)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (folder / "state-out.jsonl").exists()
    assert purged not in warehouse.ids("accounts")
    assert_warehouse_equals_org(warehouse, emu, catalog)
    schemas = {row[0] for row in warehouse.query("SELECT schema_name FROM information_schema.schemata")}
    assert "sfdc_prod_rebuild" not in schemas and "sfdc_prod_old" not in schemas
    state = pipeline.state()
    assert state is not None and set(state["bookmarks"]) == set(SMALL_STREAMS)  # the rebuild's state

    emu.org.update("Contact", warehouse.ids("contacts")[0], {"LastName": "After the rebuild"})
    settle(emu)
    pipeline.sync()  # incremental from the rebuild's state
    assert sync_modes(pipeline.last_stderr)["contacts"][1] != "the beginning"
    assert_warehouse_equals_org(warehouse, emu, catalog)


# --- Several orgs ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_several_orgs_one_folder_each(emulator_factory: Any, tmp_path: Path) -> None:
    orgs = {
        "acme-prod": readme_emulator(emulator_factory),
        "acme-eu": readme_emulator(emulator_factory, seed=7),
    }
    warehouse_path = tmp_path / "warehouse.duckdb"
    catalogs = {}
    for name, emu in orgs.items():
        target = {
            **json_block("target-duckdb"),
            "path": str(warehouse_path),
            "schema": name.replace("-", "_"),
        }
        pipeline = Pipeline(tmp_path / name, tap_config("tap-refresh-token", emu), target)
        catalogs[name] = narrowed(pipeline, ["accounts"])
        (tmp_path / name / "sync.sh").write_text(block("sync"))
    succeeded(bash(localised(block("orgs"), root=str(tmp_path)), tmp_path, path=[BIN_DIR]))
    for name, emu in orgs.items():
        warehouse = Warehouse({"path": str(warehouse_path), "schema": name.replace("-", "_")})
        assert_warehouse_equals_org(warehouse, emu, catalogs[name])
    names = [
        {
            row[0]
            for row in Warehouse({"path": str(warehouse_path), "schema": schema}).query(
                f"SELECT name FROM {schema}.accounts"
            )
        }
        for schema in ("acme_prod", "acme_eu")
    ]
    assert names[0] != names[1]  # two different orgs, each in its own schema


def test_meltano_second_org_excerpt_is_meltano_yml() -> None:
    excerpt = yaml.safe_load(block("meltano-orgs"))
    project = yaml.safe_load((REPO_DIR / "meltano.yml").read_text())
    extractors = {plugin["name"]: plugin for plugin in project["plugins"]["extractors"]}
    for item in excerpt:
        assert extractors[item["name"]] == item


# --- Another Singer target ------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_another_singer_target_reads_the_tap(
    emulator_factory: Any, postgres_database: str, tmp_path: Path
) -> None:
    from peer_venvs import TARGET_POSTGRES, require_venv

    peer = require_venv(TARGET_POSTGRES)
    emu = readme_emulator(emulator_factory)
    pipeline = Pipeline(tmp_path / "acme-prod", tap_config("tap-refresh-token", emu), {})
    catalog = narrowed(pipeline, SMALL_STREAMS)
    config = json.loads(localised(block("other-target-config"), postgres_url=postgres_database))
    (pipeline.folder / "target-postgres.json").write_text(json.dumps(config))
    succeeded(bash(block("other-target"), pipeline.folder, path=[BIN_DIR, peer.bin_dir]))
    with psycopg.connect(postgres_database) as connection:
        for entry in selected_streams(catalog):
            stream = entry["stream"]
            (rows,) = connection.execute(f'SELECT count(*) FROM salesforce_pg."{stream}"').fetchone()
            sobject = next(m for m in entry["metadata"] if not m["breadcrumb"])["metadata"][
                "salesforce-object"
            ]
            assert rows == len(emu.org.records(sobject, include_deleted=True)), stream


# --- Meltano --------------------------------------------------------------------------------------


@dataclass
class MeltanoProject:
    """The pinned Meltano on this repository's meltano.yml: its plugins installed once (cached under
    .venvs/, shared with tests/e2e/test_meltano.py under its lock), a system database per test."""

    sys_dir: Path
    database: Path
    bin_dir: Path
    folder: Path  # the working directory of the README's commands (files they write stay there)

    def environment(self, **variables: str) -> dict[str, str]:
        return {
            "MELTANO_PROJECT_ROOT": str(REPO_DIR),
            "MELTANO_SYS_DIR_ROOT": str(self.sys_dir),
            "MELTANO_DATABASE_URI": f"sqlite:///{self.database}",
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "NO_COLOR": "1",
            **variables,
        }

    def run(self, script: str, **variables: str) -> subprocess.CompletedProcess[str]:
        """A README block in the project root, with Meltano and the project's scripts on PATH."""
        return bash(script, self.folder, env=self.environment(**variables), path=[BIN_DIR, self.bin_dir])


@contextlib.contextmanager
def meltano_project(tmp_path: Path) -> Iterator[MeltanoProject]:
    from peer_venvs import MELTANO, VENVS_DIR, locked, require_venv

    venv = require_venv(MELTANO)
    sys_dir = VENVS_DIR / f"meltano-project-{MELTANO.version}" / ".meltano"
    sys_dir.mkdir(parents=True, exist_ok=True)
    # The whole test holds the lock: `meltano install` (in the README's block) and the runs share the
    # installed plugins and Meltano's run folder with tests/e2e/test_meltano.py.
    with locked(sys_dir.parent / "install.lock"):
        project = MeltanoProject(sys_dir, tmp_path / "meltano.db", venv.bin_dir, tmp_path)
        # The plugins install from this checkout (`pip_url: -e .`, relative to where Meltano runs): as
        # a user does, from the project's root, so that the README's blocks (run in tmp_path) find them
        # installed. Before, these tests passed only after tests/e2e/test_meltano.py had installed them.
        succeeded(bash("meltano install", REPO_DIR, env=project.environment(), path=[venv.bin_dir]))
        yield project


@contextlib.contextmanager
def background_group() -> Iterator[list[int]]:
    """Process groups a test starts; each is stopped (SIGTERM, then SIGKILL) at the end."""
    groups: list[int] = []
    try:
        yield groups
    finally:
        for group in groups:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, sig)


def start_block(script: str, folder: Path, groups: list[int], **kwargs: Any) -> subprocess.Popen[bytes]:
    """A README block run in a new process group, so its `&` children can be stopped; its output goes
    to folder/block.out and folder/block.err (a child that outlives the block keeps them open)."""
    environment = shell_environment()
    environment["PATH"] = os.pathsep.join([*(str(p) for p in kwargs.pop("path", [])), environment["PATH"]])
    environment.update(kwargs.pop("env", {}))
    with (folder / "block.out").open("wb") as out, (folder / "block.err").open("wb") as err:
        process = subprocess.Popen(
            ["bash", "-c", script],
            cwd=folder,
            env=environment,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    groups.append(process.pid)
    return process


def finished(process: subprocess.Popen[bytes], folder: Path, timeout: float) -> str:
    """Wait for a started block; fail with its stderr unless it succeeded; return its stdout."""
    process.wait(timeout=timeout)
    assert process.returncode == 0, (folder / "block.err").read_text()[-4000:]
    return (folder / "block.out").read_text()


def duckdb_tables(path: Path, schema: str) -> dict[str, int]:
    with duckdb.connect(str(path), read_only=True) as connection:
        names = connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [schema]
        ).fetchall()
        return {
            name: connection.execute(f'SELECT count(*) FROM "{schema}"."{name}"').fetchone()[0]
            for (name,) in names
        }


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_meltano_dev_select_and_full_refresh_as_documented(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    warehouse = tmp_path / "warehouse.duckdb"
    # meltano.yml's dev environment points at port 8765; another port is set as meltano.yml says.
    variables = {"TAP_SALESFORCE_SEG_DOMAIN": url, "TARGET_WAREHOUSE_SEG_PATH": str(warehouse)}
    with meltano_project(tmp_path) as meltano, background_group() as groups:
        process = start_block(
            localised(block("meltano-dev"), port=port),
            tmp_path,
            groups,
            path=[BIN_DIR, meltano.bin_dir],
            env=meltano.environment(**variables),
        )
        finished(process, tmp_path, timeout=1500)
        control = ControlClient(url)
        loaded = duckdb_tables(warehouse, "salesforce")
        assert loaded["accounts"] == len(control.records("Account")) > 0
        assert "invoice_c" not in loaded  # custom objects only when selected

        # Full refresh, then one stream's bookmark dropped from Meltano's state.
        refreshed = succeeded(meltano.run(block("meltano-full-refresh"), **variables))
        assert "full refresh" in refreshed.stderr.lower(), refreshed.stderr[-3000:]
        state = succeeded(
            meltano.run("meltano state get dev:tap-salesforce-seg-to-target-warehouse-seg", **variables)
        )
        bookmarks = json.loads(state.stdout)["singer_state"]["bookmarks"]
        assert "accounts" not in bookmarks and "contacts" in bookmarks

        # Select through the extractor's `select` extra (the README's excerpt, as Meltano's variable).
        patterns = yaml.safe_load(block("meltano-select"))["select"]
        selected_warehouse = tmp_path / "selected.duckdb"
        succeeded(
            meltano.run(
                "meltano --environment dev run --full-refresh tap-salesforce-seg target-warehouse-seg",
                **{**variables, "TARGET_WAREHOUSE_SEG_PATH": str(selected_warehouse)},
                TAP_SALESFORCE_SEG__SELECT=json.dumps(patterns),
            )
        )
        assert set(duckdb_tables(selected_warehouse, "salesforce")) == {"accounts", "contacts", "invoice_c"}
        with duckdb.connect(str(selected_warehouse), read_only=True) as connection:
            columns = {row[0] for row in connection.execute("DESCRIBE salesforce.accounts").fetchall()}
        assert "description" not in columns and "name" in columns


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_meltano_prod_job_as_documented(
    emulator_factory: Any, postgres_database: str, tmp_path: Path
) -> None:
    emu = readme_emulator(emulator_factory)
    script = localised(block("meltano-prod"), postgres_url=postgres_database).replace(
        "SALESFORCE_DOMAIN=acme.my", f"SALESFORCE_DOMAIN={emu.base_url}"
    )
    with meltano_project(tmp_path) as meltano:
        succeeded(meltano.run(script))
    with psycopg.connect(postgres_database) as connection:
        (accounts,) = connection.execute("SELECT count(*) FROM salesforce.accounts").fetchone()
    assert accounts == len(emu.org.records("Account", include_deleted=True))


# --- Troubleshooting: what the tap and the target print -------------------------------------------


def test_invalid_login_message(emulator_factory: Any) -> None:
    emu = readme_emulator(emulator_factory)
    settings = {**json_block("tap-password"), "password": "not-the-password"}  # domain: login
    from tap_salesforce_seg.client import SalesforceClient

    client = SalesforceClient(
        TapConfig.from_mapping(settings), _quiet_logger(), http=login_redirect_session(emu)
    )
    with pytest.raises(AuthenticationError) as refused:
        client.login()
    assert example_pattern(block("invalid-login")).fullmatch(str(refused.value)), str(refused.value)


def test_login_token_missing_message(emulator_factory: Any) -> None:
    emu = readme_emulator(emulator_factory)
    emu.auth.login_fault = (
        "LOGIN_MUST_USE_SECURITY_TOKEN",
        "Invalid username, password, security token; or user locked out. Are you at a new location? When "
        "accessing Salesforce--either via a desktop client or the API--from outside of your company's "
        "trusted networks, you must add a security token to your password to log in.",
    )
    from tap_salesforce_seg.client import SalesforceClient

    client = SalesforceClient(
        TapConfig.from_mapping(json_block("tap-password")), _quiet_logger(), http=login_redirect_session(emu)
    )
    with pytest.raises(AuthenticationError) as refused:
        client.login()
    assert example_pattern(block("login-token-missing")).fullmatch(str(refused.value)), str(refused.value)


def test_api_version_unserved_message(emulator_factory: Any) -> None:
    emu = readme_emulator(emulator_factory)  # serves 40.0 to 64.0
    settings = {**json_block("tap-password"), "api_version": "65.0"}
    from tap_salesforce_seg.client import SalesforceClient

    client = SalesforceClient(
        TapConfig.from_mapping(settings), _quiet_logger(), http=login_redirect_session(emu)
    )
    with pytest.raises(TapError) as refused:
        client.login()
    assert example_pattern(block("api-version-unserved")).fullmatch(str(refused.value)), str(refused.value)


def test_untrusted_certificate_message(
    emulator_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    emu = emulator_factory(scale=0.001, tls=True, tls_dir=tmp_path / "tls")  # a CA nobody trusts here
    from tap_salesforce_seg.client import SalesforceClient

    client = SalesforceClient(
        TapConfig.from_mapping(json_block("tap-password")), _quiet_logger(), http=login_redirect_session(emu)
    )
    with pytest.raises(TapError) as refused:
        client.login()
    assert example_pattern(block("tls-untrusted")).fullmatch(str(refused.value)), str(refused.value)


def _quiet_logger() -> logging.Logger:
    return logging.getLogger("test-readme")


def run_tap(pipeline: Pipeline) -> subprocess.CompletedProcess[str]:
    return pipeline.bash("tap-salesforce-seg --config tap.json --catalog catalog.json > out.jsonl")


def assert_logged(example: str, log: str) -> None:
    pattern = example_pattern(example)
    lines = [line.split(" | ", 3)[-1] for line in log.splitlines()]
    assert any(pattern.fullmatch(line) for line in lines), f"no line like\n{example}\nin\n{log[-3000:]}"


def test_formula_fields_listed_and_their_notice(emulator_factory: Any, tmp_path: Path) -> None:
    emu = readme_emulator(emulator_factory)
    for field in ("Days_Open__c", "Health_Score__c"):
        emu.org.add_field("Account", field, "double", precision=18, scale=0, calculated=True)
    folder = tmp_path / "org"
    pipeline = Pipeline(folder, tap_config("tap-password", emu), json_block("target-duckdb"))
    narrowed(pipeline, ["accounts", "contacts"])
    listed = succeeded(pipeline.bash(block("formula-list"))).stdout.split()
    assert listed == ["accounts.days_open_c", "accounts.health_score_c"]
    pipeline.sync()
    emu.org.clock.advance(2)
    pipeline.sync()
    assert_logged(block("formula-notice"), pipeline.last_stderr)
    assert pipeline.last_stderr.count("formula field(s)") == 1  # contacts has none


def test_purged_deletes_warning_after_a_long_pause(emulator_factory: Any, tmp_path: Path) -> None:
    emu = readme_emulator(emulator_factory)
    pipeline = Pipeline(tmp_path / "org", tap_config("tap-password", emu), json_block("target-duckdb"))
    narrowed(pipeline, ["accounts", "_group"])  # Group has no IsDeleted: its deletes are never seen
    pipeline.sync()
    state = pipeline.state()
    assert state is not None
    read_until = state["bookmarks"]["accounts"]["read_until"]
    assert read_until >= state["bookmarks"]["accounts"]["replication_key_value"]
    emu.org.clock.advance(15 * 86400 - 60)  # within the Recycle Bin's 15 days: nothing lost yet
    pipeline.sync()
    assert "Recycle Bin" not in pipeline.last_stderr
    emu.org.clock.advance(16 * 86400)
    pipeline.sync()
    assert_logged(block("purged-deletes"), pipeline.last_stderr)
    assert pipeline.last_stderr.count("Recycle Bin") == 1
    pipeline.sync()  # the pause is over
    assert "Recycle Bin" not in pipeline.last_stderr


def test_quota_stop_message(emulator_factory: Any, tmp_path: Path) -> None:
    emu = readme_emulator(emulator_factory, api_limit=1000)
    pipeline = Pipeline(tmp_path / "org", tap_config("tap-password", emu), {})
    narrowed(pipeline, ["accounts"])
    emu.api_usage = 800
    done = run_tap(pipeline)
    assert done.returncode == 2
    assert_logged(block("quota"), done.stderr)


def test_bulk_job_timeout_message(emulator_factory: Any, tmp_path: Path) -> None:
    emu = readme_emulator(emulator_factory, bulk_timing=BulkTiming(queued_seconds=0, processing_seconds=3600))
    settings = {**tap_config("tap-password", emu), "api_type": "bulk", "bulk_job_timeout_seconds": 2}
    pipeline = Pipeline(tmp_path / "org", settings, {})
    narrowed(pipeline, ["accounts"])
    done = run_tap(pipeline)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_logged(block("bulk-job-timeout"), done.stderr)


def test_field_vanished_message(emulator_factory: Any, tmp_path: Path) -> None:
    emu = readme_emulator(emulator_factory)
    pipeline = Pipeline(tmp_path / "org", tap_config("tap-password", emu), {})
    narrowed(pipeline, ["accounts"])
    emu.org.remove_field("Account", "Tier__c")
    done = run_tap(pipeline)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_logged(block("field-vanished"), done.stderr)


def test_stream_missing_message(emulator_factory: Any, tmp_path: Path) -> None:
    with_tags = readme_emulator(emulator_factory)
    pipeline = Pipeline(tmp_path / "org", tap_config("tap-password", with_tags), {})
    narrowed(pipeline, ["accounts", "account_tags"])
    without_tags = readme_emulator(emulator_factory, tags=False)
    (pipeline.folder / "tap.json").write_text(json.dumps(tap_config("tap-password", without_tags)))
    done = run_tap(pipeline)
    assert done.returncode == 1
    assert_logged(block("stream-missing"), done.stderr)


def test_state_empty_message(tmp_path: Path) -> None:
    (tmp_path / "tap.json").write_text(json.dumps({"username": "u", "password": "p", "security_token": ""}))
    (tmp_path / "state.json").write_text("")
    done = bash("tap-salesforce-seg --config tap.json --state state.json", tmp_path, path=[BIN_DIR])
    assert done.returncode == 1 and done.stdout == ""
    assert_logged(block("state-empty"), done.stderr)


def test_duckdb_locked_message(tmp_path: Path) -> None:
    folder = tmp_path / "acme-prod"
    folder.mkdir()
    (folder / "target.json").write_text(
        json.dumps({**json_block("target-duckdb"), "path": str(folder / "warehouse.duckdb")})
    )
    (folder / "in.jsonl").write_text(
        '{"type":"SCHEMA","stream":"s","schema":{"properties":{"id":{"type":"string"}}},"key_properties":["id"]}\n'
        '{"type":"RECORD","stream":"s","record":{"id":"1"}}\n'
    )
    with duckdb.connect(str(folder / "warehouse.duckdb")):  # another process holds the file
        done = bash("target-warehouse-seg --config target.json < in.jsonl", folder, path=[BIN_DIR])
    assert done.returncode != 0
    assert_logged(localised(block("duckdb-locked"), root=str(tmp_path)), done.stderr)


def test_progress_line_examples() -> None:
    clock = SimpleNamespace(now=100.0)
    extraction = SimpleNamespace(expected_records=250_000, extractor=SimpleNamespace(name="bulk"))
    logger = logging.getLogger("test-readme-progress")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logged: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = logged.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        progress = StreamProgress("accounts", logger, extraction, live=False, clock=lambda: clock.now)
        line = progress.line_text(120_832, 128.0)
        assert example_pattern(block("progress")).fullmatch(line), line
        clock.now = 158.1
        progress.finish(250_000)
    finally:
        logger.removeHandler(handler)
    # The end line the README quotes in its text.
    quoted = re.search(r"`(accounts: synced [^`]+)`", README.read_text())
    assert quoted, "the README no longer quotes an end line"
    assert example_pattern(quoted.group(1)).fullmatch(logged[-1].getMessage()), logged[-1].getMessage()


# --- Names ----------------------------------------------------------------------------------------


def test_naming_table_is_what_the_tap_does() -> None:
    rows = table("naming")
    assert len(rows) >= 5
    for left, right in rows:
        salesforce, warehouse = literals(left), literals(right)
        assert len(salesforce) == len(warehouse), left
        if left.startswith("objects"):
            assert right.startswith("tables")
            assert [stream_names(salesforce)[name] for name in salesforce] == warehouse
        else:
            assert left.startswith("fields") and right.startswith("columns"), left
            names = property_names(salesforce)  # one object's fields together: collisions resolved
            assert [names[name] for name in salesforce] == warehouse
        assert all(conform(name) == name for name in warehouse)  # the target keeps them as they are
    # `naming: salesforce` keeps API names; the target lower-cases them.
    assert stream_name("Account", "salesforce") == "Account"
    assert conform("Account") == "account" and conform("SystemModstamp") == "systemmodstamp"


# --- The emulator, the benchmarks, the layout -----------------------------------------------------


def test_emulator_commands(tmp_path: Path) -> None:
    port = free_port()
    with background_group() as groups:
        process = start_block(localised(block("emulator"), port=port), tmp_path, groups, path=[BIN_DIR])
        stdout = finished(process, tmp_path, timeout=300)
        answers = json_values(stdout[stdout.index("{") :])
        assert [sorted(answer) for answer in answers] == [["result"], ["result"]], stdout
        control = ControlClient(f"http://127.0.0.1:{port}")
        created = control.get("Account", answers[0]["result"])
        assert created["Name"] == "Analytical Engines Ltd"
        assert [fault["kind"] for fault in control.faults.active()] == ["http_error"]


def json_values(text: str) -> list[Any]:
    """The JSON values written one after another (curl adds no newline)."""
    decoder, values, index = json.JSONDecoder(), [], 0
    while index < len(text.rstrip()):
        value, index = decoder.raw_decode(text, index)
        values.append(value)
        while index < len(text) and text[index].isspace():
            index += 1
    return values


def test_bench_commands_name_real_options() -> None:
    for line in block("bench").splitlines():
        words = shlex.split(line.split("#")[0])
        assert words[0] == ".venv/bin/python", line
        script = REPO_DIR / words[1]
        assert script.is_file(), line
        help_text = subprocess.run(
            [sys.executable, str(script), "--help"], cwd=REPO_DIR, capture_output=True, text=True, timeout=120
        ).stdout
        for option in (word for word in words[2:] if word.startswith("--")):
            assert option in help_text, f"{script.name} has no option {option}"


def test_layout_paths_exist() -> None:
    for row in table("layout"):
        path = literals(row[0])[0]
        assert (REPO_DIR / path).exists(), path
        for module in literals(row[1]):
            if module.endswith((".py", "/")) and row[0].startswith("`tap_salesforce_seg/"):
                assert (REPO_DIR / path / module).exists(), module
    assert shutil.which("jq"), "the README's catalog and state edits use jq"
