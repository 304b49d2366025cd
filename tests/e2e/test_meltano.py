"""The Meltano project (meltano.yml) as users run it, with real Meltano against the emulator (issue 5).

- meltano.yml mirrors the plugins: every setting of `--about` with its kind, secrets sensitive, the
  declared capabilities, Segment's default collections in `select`; Meltano itself accepts the file
  (its own JSON schema, jobs, the 3-hourly schedule).
- `meltano install` installs both plugins from this checkout (offline apart from the package index).
- `meltano --environment dev run tap-salesforce-seg target-warehouse-seg`: the DuckDB warehouse holds
  the org (row counts per table, soft deletes); after an update, a soft delete and a new record, the
  second run starts from the state Meltano stored, rewrites only a few rows and shows the changes.
- A second org (the inherited extractor, its own credentials) loads into its own schema, keeps its
  own state; `prod` takes credentials and the PostgreSQL URL from environment variables.

Meltano runs from its own pinned venv (tests/support/peer_venvs.py) on this repository's meltano.yml,
with its system database per test and its `.meltano` folder (the plugin venvs, reused between runs)
under .venvs/, so the checkout stays clean. Nothing here skips: no Meltano is a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import jsonschema
import psycopg
import pytest
import yaml
from peer_venvs import MELTANO, VENVS_DIR, locked, project_script, require_venv
from tap_harness import discover_catalog, sobject_of, tap_settings

from salesforce_emulator import Credentials
from tap_salesforce_seg.naming import SEGMENT_COLLECTIONS

# Meltano's venv and `meltano install` come first on a fresh clone (about a minute; see the report).
pytestmark = pytest.mark.timeout(1800)

REPO_DIR = Path(__file__).resolve().parents[2]
MELTANO_YML = REPO_DIR / "meltano.yml"
TAP, TAP_ORG2, TARGET = "tap-salesforce-seg", "tap-salesforce-seg-org2", "target-warehouse-seg"
STATE_ID = f"dev:{TAP}-to-{TARGET}"
ORG2_STATE_ID = f"dev:{TAP_ORG2}-to-{TARGET}"
# What meltano.yml's dev environment says the second org's emulator accepts.
ORG2_CREDENTIALS = Credentials(
    username="admin@org2.example.com", password="org2-password", security_token="ORG2TOKEN"
)
# Settings that come from outside and must not leak into a run started by a test.
FOREIGN_VARIABLES = ("MELTANO_", "TAP_SALESFORCE_SEG", "TARGET_WAREHOUSE_SEG", "SALESFORCE_", "WAREHOUSE_")
MELTANO_TIMEOUT_SECONDS = 900


def project() -> dict[str, Any]:
    return yaml.safe_load(MELTANO_YML.read_text())


def plugin(kind: str, name: str) -> dict[str, Any]:
    return next(p for p in project()["plugins"][kind] if p["name"] == name)


# --- meltano.yml against the plugins' own description -------------------------------------------------


def about(script: str) -> dict[str, Any]:
    result = subprocess.run(
        [str(project_script(script)), "--about", "--format", "json"], capture_output=True, check=True
    )
    return json.loads(result.stdout)


def meltano_kind(prop: Mapping[str, Any]) -> str:
    """The Meltano setting kind that fits a JSON-schema setting of `--about`."""
    if prop.get("secret"):
        return "password"
    if "enum" in prop:
        return "options"
    types = prop.get("type", "object")
    json_type = next(t for t in ([types] if isinstance(types, str) else types) if t != "null")
    if json_type == "string" and prop.get("format") == "date-time":
        return "date_iso8601"
    return {"number": "decimal"}.get(json_type, json_type)


@pytest.mark.parametrize(("kind", "name"), [("extractors", TAP), ("loaders", TARGET)])
def test_plugin_definition_mirrors_about(kind: str, name: str) -> None:
    definition = plugin(kind, name)
    described = about(definition["executable"])
    properties = described["settings"]["properties"]
    settings = {setting["name"]: setting for setting in definition["settings"]}
    assert list(settings) == list(properties), "meltano.yml lists other settings (or another order)"
    for setting_name, prop in properties.items():
        setting = settings[setting_name]
        assert setting["kind"] == meltano_kind(prop), setting_name
        assert setting.get("sensitive", False) == prop.get("secret", False), setting_name
        assert setting.get("value") == prop.get("default"), f"{setting_name}: default differs from --about"
        if "enum" in prop:
            assert [option["value"] for option in setting["options"]] == prop["enum"], setting_name
    assert sorted(definition["capabilities"]) == sorted(described["capabilities"])
    assert definition["pip_url"] == "-e ."
    assert definition["namespace"] == name.replace("-", "_")


def test_select_is_segments_default_collections() -> None:
    definition = plugin("extractors", TAP)
    # `names` (Salesforce's Name object) is not queryable: Segment lists it, the tap has no stream.
    expected = [f"{stream}.*" for stream in SEGMENT_COLLECTIONS.values() if stream != "names"]
    patterns = definition["select"]
    assert sorted(p for p in patterns if not p.startswith("!")) == sorted(expected)
    assert len(expected) == 47
    # Base64 bodies are discovered but not selected (a query returns a URL): the tap's default too.
    assert [p for p in patterns if p.startswith("!")] == ["!documents.body"]


def test_second_org_inherits_with_its_own_schema() -> None:
    first, second = plugin("extractors", TAP), plugin("extractors", TAP_ORG2)
    assert second["inherit_from"] == TAP
    assert (first["load_schema"], second["load_schema"]) == ("salesforce", "salesforce_org2")
    assert plugin("loaders", TARGET)["config"]["schema"] == "$MELTANO_EXTRACT__LOAD_SCHEMA"


def environment_config(environment: str, kind: str, name: str) -> dict[str, Any]:
    chosen = next(e for e in project()["environments"] if e["name"] == environment)
    return next(p for p in chosen["config"]["plugins"][kind] if p["name"] == name)["config"]


def test_dev_environment_is_the_emulator_and_a_local_warehouse() -> None:
    # `salesforce-emulator --port 8765` (and 8766 with the second org's credentials) then `meltano run`.
    first, second = Credentials(), ORG2_CREDENTIALS
    for name, port, credentials in ((TAP, 8765, first), (TAP_ORG2, 8766, second)):
        config = environment_config("dev", "extractors", name)
        assert config["domain"] == f"http://127.0.0.1:{port}"
        login = (config["username"], config["password"], config["security_token"])
        assert login == (credentials.username, credentials.password, credentials.security_token)
    loader = environment_config("dev", "loaders", TARGET)
    assert loader["engine"] == "duckdb"
    warehouse = Path(loader["path"].replace("$MELTANO_PROJECT_ROOT", str(REPO_DIR)))
    assert warehouse.parent.is_dir(), "the target needs the warehouse's folder to exist in a fresh clone"
    ignored = subprocess.run(["git", "check-ignore", "-q", str(warehouse)], cwd=REPO_DIR, check=False)
    assert ignored.returncode == 0, f"{warehouse} is not gitignored"


def test_prod_environment_reads_everything_secret_from_variables() -> None:
    config = environment_config("prod", "extractors", TAP)
    assert all(str(value).startswith("$") for value in config.values()), config
    assert environment_config("prod", "loaders", TARGET) == {
        "engine": "postgres",
        "sqlalchemy_url": "$WAREHOUSE_POSTGRES_URL",
    }


# --- Meltano itself -----------------------------------------------------------------------------------


@dataclass
class MeltanoRun:
    command: list[str]
    returncode: int
    stdout: str
    stderr: str  # Meltano's log and the plugins' (Meltano relays their stderr into its own)

    @property
    def output(self) -> str:
        return self.stderr + self.stdout

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


@dataclass
class Meltano:
    """The pinned Meltano CLI on this repository's project, with a system database per test."""

    executable: Path
    sys_dir: Path
    database: Path

    def environment(self, variables: Mapping[str, str]) -> dict[str, str]:
        base = {key: value for key, value in os.environ.items() if not key.startswith(FOREIGN_VARIABLES)}
        return {
            **base,
            "MELTANO_PROJECT_ROOT": str(REPO_DIR),
            "MELTANO_SYS_DIR_ROOT": str(self.sys_dir),
            "MELTANO_DATABASE_URI": f"sqlite:///{self.database}",
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "NO_COLOR": "1",
            **variables,
        }

    def __call__(self, *args: str, check: bool = True, **variables: str) -> MeltanoRun:
        command = [str(self.executable), *args]
        result = subprocess.run(
            command,
            cwd=REPO_DIR,
            env=self.environment(variables),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=MELTANO_TIMEOUT_SECONDS,
            check=False,
        )
        run = MeltanoRun(
            command,
            result.returncode,
            result.stdout.decode(errors="replace"),
            result.stderr.decode(errors="replace"),
        )
        if check and run.returncode != 0:
            pytest.fail(
                f"`meltano {' '.join(args)}` exited with {run.returncode}:\n{run.tail()}", pytrace=False
            )
        return run

    def state(self, state_id: str) -> dict[str, Any]:
        return json.loads(self("state", "get", state_id).stdout)

    def bookmarks(self, state_id: str) -> dict[str, str]:
        bookmarks = self.state(state_id)["singer_state"]["bookmarks"]
        return {stream: mark.get("replication_key_value") for stream, mark in bookmarks.items()}


@pytest.fixture(scope="module")
def installed_sys_dir() -> Path:
    """`meltano install` of this project, into a `.meltano` folder cached under .venvs/ between runs."""
    venv = require_venv(MELTANO)
    sys_dir = VENVS_DIR / f"meltano-project-{MELTANO.version}" / ".meltano"
    sys_dir.mkdir(parents=True, exist_ok=True)
    meltano = Meltano(venv.executable("meltano"), sys_dir, sys_dir.parent / "install.db")
    with locked(sys_dir.parent / "install.lock"):
        started = datetime.now(UTC)
        run = meltano("install", check=False)
        if run.returncode != 0:
            pytest.fail(f"`meltano install` failed (exit {run.returncode}):\n{run.tail()}", pytrace=False)
        seconds = (datetime.now(UTC) - started).total_seconds()
    print(f"meltano install: {seconds:.0f} s")
    for executable in (
        sys_dir / "extractors" / TAP / "venv" / "bin" / TAP,
        sys_dir / "loaders" / TARGET / "venv" / "bin" / TARGET,
    ):
        assert executable.exists(), f"meltano install did not create {executable}"
    return sys_dir


@pytest.fixture
def meltano(installed_sys_dir: Path, tmp_path: Path) -> Meltano:
    """Meltano with the installed plugins and everything else of its own (system db, run folder)."""
    sys_dir = tmp_path / ".meltano"
    sys_dir.mkdir()
    for plugin_type in ("extractors", "loaders"):
        (sys_dir / plugin_type).symlink_to(installed_sys_dir / plugin_type, target_is_directory=True)
    return Meltano(require_venv(MELTANO).executable("meltano"), sys_dir, tmp_path / "meltano.db")


def test_meltano_accepts_the_project(tmp_path: Path) -> None:
    venv = require_venv(MELTANO)
    schema_path = next(venv.path.glob("lib/python*/site-packages/meltano/schemas/meltano.schema.json"))
    schema = json.loads(schema_path.read_text())
    errors = sorted(jsonschema.validators.validator_for(schema)(schema).iter_errors(project()), key=str)
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)

    meltano = Meltano(venv.executable("meltano"), tmp_path / ".meltano", tmp_path / "meltano.db")
    jobs = json.loads(meltano("job", "list", "--format=json").stdout)
    schedules = json.loads(meltano("schedule", "list", "--format=json").stdout)
    assert {job["job_name"]: job["tasks"] for job in jobs["jobs"]}["salesforce-to-warehouse"] == [
        f"{TAP} {TARGET}"
    ]
    by_job = {schedule["job"]["name"]: schedule for schedule in schedules["schedules"]["job"]}
    assert by_job["salesforce-to-warehouse"]["cron_interval"] == "0 */3 * * *"  # Segment's 3 hours


# --- runs against the emulator ------------------------------------------------------------------------


def org_counts(emulator: Any, streams: Mapping[str, str]) -> dict[str, tuple[int, int]]:
    """stream -> (records, soft-deleted records) in the org, for the given stream -> object map."""
    counts = {}
    for stream, sobject in streams.items():
        records = emulator.org.records(sobject, include_deleted=True)
        counts[stream] = (len(records), sum(bool(record.get("IsDeleted")) for record in records))
    return counts


def default_streams(emulator: Any) -> dict[str, str]:
    """The streams Meltano's select picks (Segment's collections the org has) -> Salesforce object."""
    catalog = discover_catalog(tap_settings(emulator))
    selectable = {pattern.split(".")[0] for pattern in plugin("extractors", TAP)["select"]}
    return {
        entry["tap_stream_id"]: sobject_of(entry)
        for entry in catalog["streams"]
        if entry["tap_stream_id"] in selectable
    }


def warehouse_counts(connection: Any, schema: str) -> dict[str, tuple[int, int]]:
    counts = {}
    tables = connection.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [schema]
    ).fetchall()
    for (table,) in tables:
        columns = {
            row[0]
            for row in connection.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ?",
                [schema, table],
            ).fetchall()
        }
        deleted = "count(*) FILTER (WHERE is_deleted)" if "is_deleted" in columns else "0"
        rows, soft_deleted = connection.execute(
            f'SELECT count(*), {deleted} FROM "{schema}"."{table}"'
        ).fetchone()
        counts[table] = (rows, soft_deleted)
    return counts


def read_warehouse(path: Path) -> Any:
    connection = duckdb.connect(str(path), read_only=True)
    connection.execute("SET TimeZone = 'UTC'")
    return connection


def utc(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.mark.slow
def test_dev_run_then_incremental_run_from_meltano_state(
    meltano: Meltano, emulator: Any, tmp_path: Path
) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    variables = {"TAP_SALESFORCE_SEG_DOMAIN": emulator.base_url, "TARGET_WAREHOUSE_SEG_PATH": str(warehouse)}
    streams = default_streams(emulator)

    first = meltano("--environment", "dev", "run", TAP, TARGET, **variables)
    assert "No state was found, complete import" in first.output
    with read_warehouse(warehouse) as connection:
        loaded = warehouse_counts(connection, "salesforce")
    expected = org_counts(emulator, streams)
    assert loaded == expected
    assert sum(deleted for _, deleted in loaded.values()) > 0, "the org's soft deletes reach the warehouse"
    assert "invoice_c" not in loaded  # custom objects come only when selected
    first_bookmarks = meltano.bookmarks(STATE_ID)
    assert set(first_bookmarks) == set(streams)

    # Changes in Salesforce between the runs: an update, a soft delete, a new record.
    org = emulator.org
    account = next(r for r in org.records("Account", include_deleted=False))
    org.update("Account", account["Id"], {"Name": "Renamed between Meltano runs"})
    contact = next(r for r in org.records("Contact", include_deleted=False))
    org.delete("Contact", contact["Id"])
    lead_id = org.create(
        "Lead",
        {
            "LastName": "Incremental",
            "Company": "Meltano State Ltd",
            "Email": "new@example.com",
            "Status": "Open",
        },
    )
    # The tap reads up to its start by Salesforce's clock, known in whole seconds: a change in the second
    # the run starts would wait for the next run.
    org.clock.advance(2)
    before_second_run = datetime.now(UTC)

    second = meltano("--environment", "dev", "run", TAP, TARGET, **variables)
    assert "No state was found" not in second.output
    with read_warehouse(warehouse) as connection:
        assert warehouse_counts(connection, "salesforce") == org_counts(emulator, streams)
        name = connection.execute(
            "SELECT name FROM salesforce.accounts WHERE id = ?", [account["Id"]]
        ).fetchone()
        assert name == ("Renamed between Meltano runs",)
        deleted = connection.execute(
            "SELECT is_deleted FROM salesforce.contacts WHERE id = ?", [contact["Id"]]
        ).fetchone()
        assert deleted == (True,)
        lead = connection.execute("SELECT company FROM salesforce.leads WHERE id = ?", [lead_id]).fetchone()
        assert lead == ("Meltano State Ltd",)
        # Incremental: the second run rewrote the changed rows and the lookback window's, not the org.
        rewritten = {
            table: connection.execute(
                f'SELECT count(*) FROM salesforce."{table}" WHERE uuid_ts >= ?', [before_second_run]
            ).fetchone()[0]
            for table in streams
        }
    total = sum(rows for rows, _ in expected.values())
    print(f"second run rewrote {sum(rewritten.values())} of {total} rows: {rewritten}")
    assert rewritten["accounts"] >= 1 and rewritten["contacts"] >= 1 and rewritten["leads"] >= 1
    assert sum(rewritten.values()) < total / 10, f"the second run rewrote {rewritten} of {total} rows"
    second_bookmarks = meltano.bookmarks(STATE_ID)
    for stream in ("accounts", "contacts", "leads"):
        assert utc(second_bookmarks[stream]) > utc(first_bookmarks[stream]), stream
    untouched = [s for s in streams if s not in ("accounts", "contacts", "leads")]
    assert {s: second_bookmarks[s] for s in untouched} == {s: first_bookmarks[s] for s in untouched}


@pytest.mark.slow
def test_second_org_loads_into_its_own_schema_with_its_own_state(
    meltano: Meltano, emulator: Any, emulator_factory: Any, tmp_path: Path
) -> None:
    # The second org has other data and accepts only its own credentials.
    second_org = emulator_factory(seed=2, counts={"Account": 23, "Contact": 31}, credentials=ORG2_CREDENTIALS)
    warehouse = tmp_path / "warehouse.duckdb"
    meltano(
        "--environment", "dev", "run", "salesforce-to-warehouse", "salesforce-org2-to-warehouse",
        TAP_SALESFORCE_SEG_DOMAIN=emulator.base_url,
        TAP_SALESFORCE_SEG_ORG2_DOMAIN=second_org.base_url,
        TARGET_WAREHOUSE_SEG_PATH=str(warehouse),
    )  # fmt: skip
    streams = default_streams(emulator)
    with read_warehouse(warehouse) as connection:
        assert warehouse_counts(connection, "salesforce") == org_counts(emulator, streams)
        assert warehouse_counts(connection, "salesforce_org2") == org_counts(second_org, streams)
        for schema, org in (("salesforce", emulator.org), ("salesforce_org2", second_org.org)):
            ids = {row[0] for row in connection.execute(f"SELECT id FROM {schema}.accounts").fetchall()}
            assert ids == {record["Id"] for record in org.records("Account")}, schema
    assert set(meltano.bookmarks(STATE_ID)) == set(streams)
    assert set(meltano.bookmarks(ORG2_STATE_ID)) == set(streams)


@pytest.mark.slow
@pytest.mark.postgres
def test_prod_takes_credentials_and_postgres_url_from_the_environment(
    meltano: Meltano, emulator: Any, postgres_database: str
) -> None:
    credentials = emulator.credentials
    run = meltano(
        "--environment", "prod", "run", "salesforce-to-warehouse",
        SALESFORCE_DOMAIN=emulator.base_url,
        SALESFORCE_CLIENT_ID=credentials.client_id,
        SALESFORCE_CLIENT_SECRET=credentials.client_secret,
        SALESFORCE_REFRESH_TOKEN=credentials.refresh_token,
        WAREHOUSE_POSTGRES_URL=postgres_database,
        # Meltano's own override of the `select` extra: a smaller selection, as a user would.
        TAP_SALESFORCE_SEG__SELECT=json.dumps(["accounts.*", "contacts.*", "opportunities.*"]),
    )  # fmt: skip
    for secret in (credentials.client_secret, credentials.refresh_token):
        assert secret not in run.output
    streams = {"accounts": "Account", "contacts": "Contact", "opportunities": "Opportunity"}
    with psycopg.connect(postgres_database) as connection:
        tables = {
            row[0]
            for row in connection.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'salesforce'"
            )
        }
        assert tables == set(streams)
        loaded = {
            table: connection.execute(
                f"SELECT count(*), count(*) FILTER (WHERE is_deleted) FROM salesforce.{table}"
            ).fetchone()
            for table in streams
        }
    assert loaded == org_counts(emulator, streams)


# --- failures as Meltano shows them -------------------------------------------------------------------


def plugin_lines(run: MeltanoRun, name: str) -> list[str]:
    """The lines Meltano relayed from a plugin's stderr (console format: `... [level] <plugin> message`)."""
    return [line for line in run.stderr.splitlines() if f"] {name} " in line]


def test_a_failed_discovery_ends_on_the_taps_error(meltano: Meltano, emulator: Any) -> None:
    # With a stored state, Meltano passes --state to the discovery too. An error there (here a refused
    # login) left click's --state file open, and Python's "ResourceWarning: unclosed file" (Meltano sets
    # PYTHONWARNINGS for its plugins) came after the error: the last lines Meltano quoted named no cause.
    meltano(
        "--environment", "dev", "state", "set", "--force", STATE_ID, '{"singer_state": {"bookmarks": {}}}'
    )
    run = meltano(
        "--environment", "dev", "run", TAP, TARGET, check=False,
        TAP_SALESFORCE_SEG_DOMAIN=emulator.base_url, TAP_SALESFORCE_SEG_PASSWORD="not-the-password",
    )  # fmt: skip
    assert run.returncode == 1
    assert "Catalog discovery failed" in run.output and "--state" in run.output
    assert "ResourceWarning" not in run.output, run.tail()
    # Meltano quotes the discovery's stderr in its error: the tap's last line there is the cause.
    quoted = run.output.split("with stderr:", 1)[1]
    last_tap_line = [line for line in quoted.splitlines() if "tap-salesforce-seg" in line][-1]
    assert "ERROR" in last_tap_line.upper() and "login" in last_tap_line.lower(), run.tail()


@pytest.mark.parametrize("command", ["run", "el"])
def test_a_refused_warehouse_is_reported_as_the_loaders_failure(
    meltano: Meltano, emulator: Any, tmp_path: Path, command: str
) -> None:
    # The target stops first. Its exit used to close its stdin while Meltano was still copying the
    # tap's output into it, and Meltano 4 ended most such runs with a BrokenPipeError traceback of its
    # own (meltano/meltano#7047) instead of "Loader failed". A failed target's stdin is now read for a
    # moment after it ends (target_warehouse_seg/__main__.py), so Meltano sees the exit first.
    run = meltano(
        "--environment", "dev", command, TAP, TARGET, check=False,
        TAP_SALESFORCE_SEG_DOMAIN=emulator.base_url,
        TARGET_WAREHOUSE_SEG_ENGINE="postgres",
        TARGET_WAREHOUSE_SEG_SQLALCHEMY_URL="postgresql://loader:secret@127.0.0.1:1/analytics",
        XDG_STATE_HOME=str(tmp_path / "state"),  # `meltano el` writes a log file there
    )  # fmt: skip
    assert run.returncode == 1
    assert "BrokenPipeError" not in run.output, run.tail()
    if command == "run":
        assert "Traceback" not in run.output, run.tail()
    else:  # `meltano el` ends every failure with a traceback of its own, after its one-line summary
        assert "ELT could not be completed: Loader failed." in run.output, run.tail()
    target_lines = plugin_lines(run, TARGET)
    assert target_lines, run.tail()
    last = target_lines[-1]
    assert "[error" in last and "cannot connect to PostgreSQL" in last and "Connection refused" in last, last
    assert "Loader failed" in run.output.split(last, 1)[1], run.tail()
    assert "secret" not in run.output


def test_the_taps_exit_status_is_in_meltanos_structured_log(
    meltano: Meltano, emulator_factory: Any, tmp_path: Path
) -> None:
    # The quota stop is status 2 in a plain pipe; `meltano run` exits 1 whatever the plugins' statuses
    # (README, Meltano: Exit status), and says them only in the fields of its "Block run completed"
    # line, which the default console format does not print.
    emulator = emulator_factory(api_limit=30)
    run = meltano(
        "--log-format", "json", "--environment", "dev", "run", TAP, TARGET, check=False,
        TAP_SALESFORCE_SEG_DOMAIN=emulator.base_url,
        TARGET_WAREHOUSE_SEG_PATH=str(tmp_path / "warehouse.duckdb"),
    )  # fmt: skip
    assert run.returncode == 1
    events = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    quota = [e for e in events if e.get("level") == "error" and "daily API requests" in str(e.get("event"))]
    assert quota, run.tail()
    block = next(e for e in events if e.get("event") == "Block run completed")
    assert block["success"] is False and block["err"] == "Extractor failed", block
    assert "2" in str(block["exit_codes"]) and "extractors" in str(block["exit_codes"]), block
