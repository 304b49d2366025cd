"""The folder where a run's batch files wait for DuckDB, and the removal of folders that killed runs left.

A run removes its folder when it ends, but a killed run (SIGKILL, the out-of-memory killer, a
container stopped) cannot: its folder, up to ~64 MB, would stay in the temporary folder for good. Each
run therefore holds an exclusive lock on a file in its folder for as long as it lives (the kernel
releases it when the process dies, however it dies), and the next run removes every folder whose lock
it can take. Folders without a lock file are removed once a day old.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
import typing as t
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no sweeping of abandoned folders
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("target-warehouse-seg")

PREFIX = "target-warehouse-seg-"
LOCK_NAME = "owner.lock"
UNLOCKED_MAX_AGE_S = 24 * 3600


class SpoolFolder:
    """A folder of this run's own, made on first use, removed by ``close``."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self._lock: t.IO[bytes] | None = None

    def ensure(self) -> Path:
        if self.path is None:
            remove_abandoned(Path(tempfile.gettempdir()))
            path = Path(tempfile.mkdtemp(prefix=PREFIX))
            self._lock = _hold(path / LOCK_NAME)
            self.path = path
        return self.path

    def close(self) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None
        if self._lock is not None:
            self._lock.close()  # releases the lock
            self._lock = None


def _hold(lock_path: Path) -> t.IO[bytes] | None:
    if fcntl is None:
        return None
    handle = lock_path.open("wb")
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return handle


def remove_abandoned(folder: Path) -> None:
    """Remove the spool folders in ``folder`` that no living run holds (see the module's docstring)."""
    if fcntl is None:
        return
    removed, freed = 0, 0
    try:
        candidates = [entry for entry in os.scandir(folder) if entry.name.startswith(PREFIX)]
    except OSError:
        return
    for entry in candidates:
        path = Path(entry.path)
        with contextlib.suppress(OSError):
            if not entry.is_dir(follow_symlinks=False) or not _abandoned(path):
                continue
            size = sum(item.stat().st_size for item in path.iterdir() if item.is_file())
            shutil.rmtree(path)
            removed, freed = removed + 1, freed + size
    if removed:
        logger.info(
            "removed %d batch folder(s) that killed runs left in %s (%.1f MB)", removed, folder, freed / 1e6
        )


def _abandoned(path: Path) -> bool:
    lock_path = path / LOCK_NAME
    try:
        handle = lock_path.open("rb")
    except FileNotFoundError:  # made by an earlier version, or a run between mkdtemp and its lock
        return time.time() - path.stat().st_mtime > UNLOCKED_MAX_AGE_S
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its run is alive
        return True
