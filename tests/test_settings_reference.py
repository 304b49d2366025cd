"""README.md's settings tables against each plugin's own description (`--about --format json`).

Each table follows a `<!-- tested: tap-settings -->` / `<!-- tested: target-settings -->` marker. Rows:
`| names | default | meaning |`, where the first cell holds one or more backticked setting names, each
optionally followed by `(secret)`, and the default cell is either exactly one backticked JSON value (the
default `--about` declares) or anything else (prose such as "all history", or empty) when `--about`
declares none. Checked: every setting of `--about` is in the table, nothing else is, each appears once,
the secret flags and the defaults agree.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_DIR = Path(__file__).resolve().parents[1]
README = REPO_DIR / "README.md"
BIN_DIR = Path(sys.executable).parent
NAME = re.compile(r"`([a-z_][a-z0-9_]*)`(\s*\(secret\))?")


def table_after(marker: str, text: str | None = None) -> list[list[str]]:
    """The rows (cells stripped) of the markdown table right after `<!-- tested: MARKER -->`."""
    text = README.read_text() if text is None else text
    match = re.search(rf"<!-- tested: {re.escape(marker)} -->\n((?:\|.*\|\n)+)", text)
    assert match, f"README.md has no table marked `tested: {marker}`"
    lines = match.group(1).splitlines()
    assert re.fullmatch(r"\|(\s*-+\s*\|)+", lines[1]), f"{marker}: the second line is not a separator"
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines[2:]]


def documented_settings(marker: str) -> dict[str, dict[str, Any]]:
    """name -> {"secret": bool, "default": cell text} from one settings table."""
    found: dict[str, dict[str, Any]] = {}
    for row in table_after(marker):
        assert len(row) == 3, f"{marker}: a row without three cells: {row}"
        names, default, meaning = row
        assert meaning, f"{marker}: {names} has no meaning"
        leftover = NAME.sub("", names).replace(",", "").strip()
        assert not leftover, f"{marker}: unexpected text {leftover!r} in the names cell {names!r}"
        for name, secret in NAME.findall(names):
            assert name not in found, f"{marker}: {name} is listed twice"
            found[name] = {"secret": bool(secret), "default": default}
    return found


def about(script: str) -> dict[str, Any]:
    done = subprocess.run(
        [str(BIN_DIR / script), "--about", "--format", "json"], capture_output=True, check=True, timeout=120
    )
    return json.loads(done.stdout)["settings"]["properties"]


def claimed_default(cell: str) -> tuple[bool, Any]:
    """(True, value) when the cell is exactly one backticked JSON value; (False, None) otherwise."""
    match = re.fullmatch(r"`([^`]+)`", cell)
    if not match:
        return False, None
    try:
        return True, json.loads(match.group(1))
    except ValueError:
        pytest.fail(f'default {cell} is not a JSON value (write strings as `"text"`)', pytrace=False)


@pytest.mark.parametrize(
    ("marker", "script"),
    [("tap-settings", "tap-salesforce-seg"), ("target-settings", "target-warehouse-seg")],
)
def test_settings_table_matches_about(marker: str, script: str) -> None:
    documented = documented_settings(marker)
    described = about(script)
    assert sorted(documented) == sorted(described), (
        f"{marker}: missing {sorted(set(described) - set(documented))}, "
        f"not settings {sorted(set(documented) - set(described))}"
    )
    problems = []
    for name, prop in described.items():
        entry = documented[name]
        if entry["secret"] != bool(prop.get("secret")):
            problems.append(f"{name}: secret is {bool(prop.get('secret'))} in --about")
        has_default, value = claimed_default(entry["default"])
        if "default" in prop:
            if not has_default or value != prop["default"] or type(value) is not type(prop["default"]):
                cell = entry["default"]
                problems.append(f"{name}: default cell {cell!r}, --about says {prop['default']!r}")
        elif has_default:
            problems.append(f"{name}: the table claims default {value!r}, --about declares none")
    assert not problems, "\n".join(problems)


def test_the_parser_sees_what_a_reader_sees() -> None:
    text = (
        "<!-- tested: sample -->\n| setting | default | meaning |\n|---|---|---|\n"
        '| `a`, `b` (secret) | `"x"` | letters |\n| `c` | all of them | prose |\n'
    )
    rows = table_after("sample", text)
    assert rows == [["`a`, `b` (secret)", '`"x"`', "letters"], ["`c`", "all of them", "prose"]]
    assert NAME.findall(rows[0][0]) == [("a", ""), ("b", " (secret)")]
    assert claimed_default('`"x"`') == (True, "x")
    assert claimed_default("`80.0`") == (True, 80.0)
    assert claimed_default("`login` when unset") == (False, None)
    assert claimed_default("") == (False, None)
