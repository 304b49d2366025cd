"""`make test-lowest` runs the suite with .ci/lowest-constraints.txt: that file must pin exactly the lower
bound of each dependency pyproject.toml declares, or the run tests versions nobody is promised."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

REPO_DIR = Path(__file__).resolve().parents[1]
CONSTRAINTS = REPO_DIR / ".ci" / "lowest-constraints.txt"


def lower_bounds() -> dict[str, str]:
    """Each dependency's `>=` bound, by normalised name (an extra such as psycopg[binary] also names its
    package, psycopg-binary, which psycopg pins to its own version)."""
    project = tomllib.loads((REPO_DIR / "pyproject.toml").read_text())["project"]
    bounds: dict[str, str] = {}
    for line in project["dependencies"]:
        requirement = Requirement(line)
        minimums = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        assert len(minimums) == 1, f"{line}: every dependency needs one lower bound (>=), tested"
        name = requirement.name.lower()
        bounds[name] = minimums[0]
        for extra in requirement.extras:
            bounds[f"{name}-{extra}"] = minimums[0]
    return bounds


def pins() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{CONSTRAINTS.name}: {line!r} is not name==version"
            found[name.strip().lower()] = version.strip()
    return found


def test_the_lowest_constraints_pin_every_lower_bound_and_nothing_else() -> None:
    assert pins() == lower_bounds()


def test_make_test_lowest_installs_with_the_constraints() -> None:
    makefile = (REPO_DIR / "Makefile").read_text()
    assert "PIP_CONSTRAINTS=.ci/lowest-constraints.txt" in makefile
    assert "make test-lowest" in (REPO_DIR / ".ci" / "run").read_text()
