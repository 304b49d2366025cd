"""The PostgreSQL password never shows in a message, and masking it leaves the rest of the message whole.

Masking every occurrence of the password's text corrupted messages: with password `x` a refusal read
`byte sequence 0***e6 0***9d 0***b1` (and was stored so in `_rejected_records.error`). A URL whose
password holds an unencoded `@` was cut at it by libpq (password `p`, host `ss`), and the connection
error then quoted pieces of the real password."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import Warehouse, record, schema, to_lines

from target_warehouse_seg.engines.postgres import mask_secrets

# A message, a password, and the message as shown.
MASKED = [
    (
        'character with byte sequence 0xe6 0x9d 0xb1 in encoding "UTF8" has no equivalent',
        "x",
        'character with byte sequence 0xe6 0x9d 0xb1 in encoding "UTF8" has no equivalent',
    ),
    (
        "failed to resolve host 'db': Servname not supported for ai_socktype",
        "p",
        "failed to resolve host 'db': Servname not supported for ai_socktype",
    ),
    ('password "s3cret" refused; s3cret, (s3cret)', "s3cret", 'password "***" refused; ***, (***)'),
    ("at postgresql://loader:s3cret@db:5432/x", "s3cret", "at postgresql://loader:***@db:5432/x"),
    ("at postgresql://loader:p%40ss@db/x or p@ss", "p@ss", "at postgresql://loader:***@db/x or ***"),
    ("token -!- and a-!-b", "-!-", "token *** and a***b"),  # no letter or digit at its edges
]


def test_the_password_is_masked_and_nothing_else() -> None:
    assert [mask_secrets(message, password) for message, password, _ in MASKED] == [
        masked for _, _, masked in MASKED
    ]


def test_a_url_password_with_an_unencoded_at_stops_before_connecting(tmp_path: Path) -> None:
    secret = "p@ss:w/rd"
    url = f"postgresql://loader:{secret}@127.0.0.1:9/db"  # port 9: nothing listens, nothing is tried
    warehouse = Warehouse("postgres", {"engine": "postgres", "sqlalchemy_url": url}, tmp_path=tmp_path)
    done = warehouse.cli(to_lines([schema("accounts", {"id": {"type": "string"}})]))
    assert done.returncode == 1
    assert len(done.error_lines) == 1, done.stderr
    assert "setting `sqlalchemy_url` holds more than one `@`" in done.error_lines[0]
    assert "`@` as `%40`" in done.error_lines[0]
    assert "cannot connect" not in done.stderr
    assert "ss:w" not in done.stderr and "w/rd" not in done.stderr


@pytest.fixture
def latin1_url(postgres_url: str) -> Iterator[str]:
    name = f"test_latin1_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(
            f"CREATE DATABASE \"{name}\" ENCODING 'LATIN1' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'"
        )
    try:
        yield f"{postgres_url.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_one_letter_password_leaves_the_stored_refusal_whole(latin1_url: str, tmp_path: Path) -> None:
    """The server's refusal of Japanese text in a LATIN1 database names its bytes in hexadecimal."""
    url = latin1_url.replace("://postgres@", "://postgres:x@")  # the test cluster trusts: unused
    assert ":x@" in url
    warehouse = Warehouse("postgres", {"engine": "postgres", "sqlalchemy_url": url}, tmp_path=tmp_path)
    lines = [schema("accounts", {"id": {"type": "string"}, "name": {"type": ["null", "string"]}})]
    lines += [record("accounts", {"id": "1", "name": "日本"})]
    done = warehouse.cli(to_lines(lines), on_invalid_record="quarantine")
    assert done.returncode == 0, done.stderr
    ((error, stored),) = warehouse.query("SELECT error, record FROM salesforce._rejected_records")
    assert "byte sequence 0xe6 0x97 0xa5" in error, error
    assert json.loads(stored)["name"] == "日本"
