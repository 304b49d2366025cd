"""Fixtures shared by every test folder.

PostgreSQL: `make test` starts a throwaway server and exports TEST_POSTGRES_URL. Tests that need it fail
(never skip) when it is missing, so CI cannot pass without exercising PostgreSQL.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "support"))

pytest_plugins = ["emulator_fixtures"]

POSTGRES_URL_VARIABLE = "TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not url:
        pytest.fail(
            f"{POSTGRES_URL_VARIABLE} is not set: run the tests through `make test`, which starts a "
            "throwaway PostgreSQL server (or export the URL of a disposable database)."
        )
    return url


@pytest.fixture
def postgres_database(postgres_url: str) -> Iterator[str]:
    """A fresh, empty database for one test; dropped afterwards. Yields its URL."""
    import psycopg

    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = postgres_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
