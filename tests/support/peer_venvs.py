"""Isolated virtual environments for Meltano and for peer Singer plugins, pinned and cached.

Meltano and the MeltanoLabs plugins pin their own dependency trees (their own singer-sdk, SQLAlchemy,
psycopg, ...), so none of them goes into the project's `.venv`: each gets a venv of its own under
`.venvs/<distribution>-<version>/` at the repository root (gitignored). A venv is complete only once
its marker file exists, so an interrupted install is redone from scratch on next use, and a lock file
serialises concurrent pytest processes that want the same venv. A new pinned version is a new folder.

    from peer_venvs import MELTANO, ensure_venv
    meltano = ensure_venv(MELTANO).executable("meltano")

`python tests/support/peer_venvs.py [name ...]` creates (or checks) them ahead of a test run and prints
how long each install took; `--list` shows the pins.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parents[2]
VENVS_DIR = Path(os.environ.get("PEER_VENVS_DIR", REPO_DIR / ".venvs"))
COMPLETE_MARKER = ".install-complete"
INSTALL_TIMEOUT_SECONDS = 1500


class PeerInstallError(RuntimeError):
    """A peer venv could not be created; the message says which package and why (pip's last lines)."""


@dataclasses.dataclass(frozen=True)
class PeerPackage:
    """One pinned distribution and the console scripts the tests run from it."""

    distribution: str
    version: str
    executables: tuple[str, ...]

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"

    @property
    def folder_name(self) -> str:
        return f"{self.distribution}-{self.version}"


MELTANO = PeerPackage("meltano", "4.4.1", ("meltano",))
TARGET_POSTGRES = PeerPackage("meltanolabs-target-postgres", "0.8.1", ("target-postgres",))
TAP_POSTGRES = PeerPackage("meltanolabs-tap-postgres", "0.10.0", ("tap-postgres",))
PACKAGES = {package.distribution: package for package in (MELTANO, TARGET_POSTGRES, TAP_POSTGRES)}


@dataclasses.dataclass(frozen=True)
class PeerVenv:
    package: PeerPackage
    path: Path

    @property
    def bin_dir(self) -> Path:
        return self.path / "bin"

    @property
    def python(self) -> Path:
        return self.bin_dir / "python"

    def executable(self, name: str) -> Path:
        return self.bin_dir / name

    def is_complete(self) -> bool:
        marker = self.path / COMPLETE_MARKER
        return marker.exists() and all(self.executable(name).exists() for name in self.package.executables)


def venv_for(package: PeerPackage, root: Path = VENVS_DIR) -> PeerVenv:
    return PeerVenv(package, root / package.folder_name)


def ensure_venv(package: PeerPackage, root: Path = VENVS_DIR) -> PeerVenv:
    """The package's venv, created on first use; raises PeerInstallError with pip's reason."""
    venv = venv_for(package, root)
    if venv.is_complete():
        return venv
    root.mkdir(parents=True, exist_ok=True)
    with locked(root / f"{package.folder_name}.lock"):
        if not venv.is_complete():  # another process may have finished it while we waited
            _install(venv)
    return venv


@contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    with lock_path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _install(venv: PeerVenv) -> None:
    started = time.monotonic()
    print(f"peer_venvs: installing {venv.package.requirement} into {venv.path}", file=sys.stderr)
    shutil.rmtree(venv.path, ignore_errors=True)
    try:
        _run([_base_python(), "-m", "venv", str(venv.path)], venv)
        _run([str(venv.python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], venv)
        _run([str(venv.python), "-m", "pip", "install", "--quiet", venv.package.requirement], venv)
        missing = [name for name in venv.package.executables if not venv.executable(name).exists()]
        if missing:
            raise PeerInstallError(
                f"{venv.package.requirement}: installed, but {', '.join(missing)} is missing from "
                f"{venv.bin_dir}"
            )
    except BaseException:
        shutil.rmtree(venv.path, ignore_errors=True)
        raise
    elapsed = time.monotonic() - started
    (venv.path / COMPLETE_MARKER).write_text(f"{venv.package.requirement} installed in {elapsed:.0f} s\n")
    print(f"peer_venvs: {venv.package.requirement} ready in {elapsed:.0f} s", file=sys.stderr)


def _base_python() -> str:
    """The interpreter behind the running one: a venv made from inside a venv still gets a clean base."""
    return getattr(sys, "_base_executable", None) or sys.executable


def _run(command: list[str], venv: PeerVenv) -> None:
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise PeerInstallError(
            f"{venv.package.requirement}: `{' '.join(command[:4])} ...` took more than "
            f"{INSTALL_TIMEOUT_SECONDS} s"
        ) from error
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise PeerInstallError(
            f"{venv.package.requirement}: `{' '.join(command[:4])} ...` failed with exit status "
            f"{result.returncode} (is the PyPI mirror reachable?):\n{tail}"
        )


def require_venv(package: PeerPackage) -> PeerVenv:
    """For tests: the venv, or a test failure (never a skip) that says why it could not be made."""
    import pytest

    try:
        return ensure_venv(package)
    except PeerInstallError as error:
        pytest.fail(f"cannot install {package.requirement} in its own venv: {error}", pytrace=False)


def project_script(name: str) -> Path:
    """A console script of the project itself (beside the running interpreter, i.e. in .venv/bin)."""
    return Path(sys.executable).parent / name


def install_time(venv: PeerVenv) -> str:
    marker = venv.path / COMPLETE_MARKER
    return marker.read_text().strip() if marker.exists() else "not installed"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"distributions to prepare (default: {', '.join(PACKAGES)})")
    parser.add_argument("--list", action="store_true", help="show the pinned packages and their venvs")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in PACKAGES]
    if unknown:
        parser.error(f"unknown package(s) {', '.join(unknown)}; known: {', '.join(PACKAGES)}")
    packages = [PACKAGES[name] for name in args.names] or list(PACKAGES.values())
    for package in packages:
        venv = venv_for(package)
        if not args.list:
            try:
                venv = ensure_venv(package)
            except PeerInstallError as error:
                print(f"peer_venvs: {error}", file=sys.stderr)
                return 1
        print(f"{package.requirement}: {venv.path} ({install_time(venv)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
