"""PostgreSQL databases whose encoding is not UTF8: older or migrated servers made with LATIN1, WIN1252
or SQL_ASCII. Text the database can hold loads exactly; a record with text it cannot hold (Japanese
in a LATIN1 database) is an invalid record like any value that does not fit its column: one line naming
it, or quarantined (its text written with JSON escapes, which any database encoding holds).

The target always talks UTF-8 to the server: libpq's default is the database's own encoding, with which
psycopg failed in Python on the first character outside LATIN1 (a traceback saying `latin-1`), and on
SQL_ASCII sent every text parameter as bytea (`function set_config(unknown, bytea, boolean) does not
exist` at the first CREATE TABLE)."""

from __future__ import annotations

import json
import typing as t
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import Warehouse, record, schema, state, to_lines

PROPERTIES = {
    "id": {"type": "string"},
    "name": {"type": ["null", "string"]},
    "system_modstamp": {"type": ["null", "string"], "format": "date-time"},
}
STAMP = "2024-03-01T10:00:00Z"
WESTERN = "Café Müller, Señora Ñuñez: «déjà vu»"
JAPANESE = "日本語の取引先"
EMOJI = "rocket 🚀 launch"


def _accounts(names: dict[str, str]) -> list[t.Any]:
    return [
        schema("accounts", PROPERTIES, ["id"]),
        *(
            record("accounts", {"id": key, "name": name, "system_modstamp": STAMP})
            for key, name in names.items()
        ),
        state({"bookmarks": {"accounts": 1}}),
    ]


@pytest.fixture
def database_in(postgres_url: str, tmp_path: Path) -> Iterator[t.Callable[[str], Warehouse]]:
    """Makes a fresh database with the given encoding (from template0, locale C, which accepts any)."""
    made: list[str] = []

    def make(encoding: str) -> Warehouse:
        name = f"test_{encoding.lower()}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(
                f"CREATE DATABASE \"{name}\" ENCODING '{encoding}' TEMPLATE template0 "
                "LC_COLLATE 'C' LC_CTYPE 'C'"
            )
        made.append(name)
        url = f"{postgres_url.rpartition('/')[0]}/{name}"
        return Warehouse("postgres", {"engine": "postgres", "sqlalchemy_url": url}, tmp_path=tmp_path)

    yield make
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        for name in made:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _read(warehouse: Warehouse, sql: str) -> list[tuple]:
    """Rows read as UTF-8 (psycopg hands SQL_ASCII text back as bytes otherwise)."""
    with psycopg.connect(warehouse.base_config["sqlalchemy_url"], client_encoding="UTF8") as connection:
        return connection.execute(sql).fetchall()


@pytest.mark.parametrize("encoding", ["LATIN1", "WIN1252"])
def test_text_the_database_holds_loads_exactly(database_in, encoding: str) -> None:
    warehouse = database_in(encoding)
    done = warehouse.cli(to_lines(_accounts({"1": WESTERN, "2": "plain"})))
    assert done.returncode == 0, done.stderr
    assert _read(warehouse, "SELECT id, name FROM salesforce.accounts ORDER BY id") == [
        ("1", WESTERN),
        ("2", "plain"),
    ]
    assert f"the database's encoding is {encoding}, not UTF8" in done.stderr
    assert done.states == [{"bookmarks": {"accounts": 1}}]


def test_text_outside_the_encoding_stops_the_run_with_one_line(database_in) -> None:
    warehouse = database_in("LATIN1")
    done = warehouse.cli(to_lines(_accounts({"1": WESTERN, "2": JAPANESE})))
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert len(done.error_lines) == 1, done.stderr
    error = done.error_lines[0]
    assert "line 3, stream accounts, key id='2', field name" in error
    assert 'has no equivalent in encoding "LATIN1"' in error
    assert done.states == []
    assert warehouse.count("accounts") == 0  # nothing of the batch


def test_text_outside_the_encoding_is_quarantined_with_escapes(database_in) -> None:
    warehouse = database_in("LATIN1")
    names = {"1": WESTERN, "2": JAPANESE, "3": EMOJI, "4": "kept"}
    done = warehouse.cli(to_lines(_accounts(names)), on_invalid_record="quarantine")
    assert done.returncode == 0, done.stderr
    assert _read(warehouse, "SELECT id, name FROM salesforce.accounts ORDER BY id") == [
        ("1", WESTERN),
        ("4", "kept"),
    ]
    rejected = _read(
        warehouse,
        "SELECT line, record_key, field, error, record FROM salesforce._rejected_records ORDER BY line",
    )
    assert [(line, key, field) for line, key, field, _, _ in rejected] == [
        (3, {"id": "2"}, "name"),
        (4, {"id": "3"}, "name"),
    ]
    assert all('has no equivalent in encoding "LATIN1"' in error for _, _, _, error, _ in rejected)
    # The stored record is JSON whose escapes read back as the record's own text.
    assert [json.loads(text)["name"] for *_, text in rejected] == [JAPANESE, EMOJI]
    assert "\\u65e5" in rejected[0][4] and "\\ud83d\\ude80" in rejected[1][4]
    assert done.states == [{"bookmarks": {"accounts": 1}}]


def test_a_key_outside_the_encoding_leaves_record_key_empty(database_in) -> None:
    warehouse = database_in("LATIN1")
    done = warehouse.cli(
        to_lines(_accounts({"é": "kept", JAPANESE: JAPANESE})), on_invalid_record="quarantine"
    )
    assert done.returncode == 0, done.stderr
    assert _read(warehouse, "SELECT id, name FROM salesforce.accounts") == [("é", "kept")]
    ((key, text),) = _read(warehouse, "SELECT record_key, record FROM salesforce._rejected_records")
    assert key is None  # jsonb would read the escapes back into characters LATIN1 has not
    assert json.loads(text) == {"id": JAPANESE, "name": JAPANESE, "system_modstamp": STAMP}


def test_sql_ascii_holds_every_text_as_utf8_bytes(database_in) -> None:
    warehouse = database_in("SQL_ASCII")
    names = {"1": WESTERN, "2": JAPANESE, "3": EMOJI}
    done = warehouse.cli(to_lines(_accounts(names)))
    assert done.returncode == 0, done.stderr
    assert dict(_read(warehouse, "SELECT id, name FROM salesforce.accounts")) == names
    assert "not UTF8" not in done.stderr


def test_a_client_encoding_from_the_environment_is_overridden(pg: Warehouse, monkeypatch) -> None:
    """PGCLIENTENCODING (set for psql on a server used with Latin-1 terminals) must not reach the
    target's connection: its values are Python text, sent as UTF-8."""
    monkeypatch.setenv("PGCLIENTENCODING", "LATIN1")
    names = {"1": WESTERN, "2": JAPANESE, "3": EMOJI}
    done = pg.cli(to_lines(_accounts(names)))
    assert done.returncode == 0, done.stderr
    assert dict(_read(pg, "SELECT id, name FROM salesforce.accounts")) == names
