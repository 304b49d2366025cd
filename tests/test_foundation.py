"""The project's foundation: the packages stay independent and PostgreSQL is really there."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("tap_salesforce_seg", "target_warehouse_seg", "salesforce_emulator")


def imported_top_level_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_never_import_one_another(package: str) -> None:
    others = set(PACKAGES) - {package}
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_top_level_modules(path) & others)
        for path in (ROOT / package).rglob("*.py")
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_backoff_is_python_backoff_only() -> None:
    from importlib import metadata

    installed = {dist.metadata["Name"].lower() for dist in metadata.distributions()}
    assert "python-backoff" in installed
    assert "backoff" not in installed, "the `backoff` package overwrites python-backoff's files"


@pytest.mark.postgres
def test_postgres_server_answers(postgres_url: str) -> None:
    import psycopg

    with psycopg.connect(postgres_url) as connection:
        version = connection.execute("SHOW server_version_num").fetchone()[0]
    assert int(version) >= 150000
