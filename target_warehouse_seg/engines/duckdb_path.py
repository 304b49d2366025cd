"""The DuckDB engine's ``path`` setting: what it may name, checked when the run starts, before any input is
read (this module does not import DuckDB, so the check costs a stat and a 16-byte read).

Besides a file path, ``path`` may be ``:memory:`` (a database that lives as long as the run: the standard
tests'). A MotherDuck name (``md:name``) is not a local file either: it goes to DuckDB unchecked, as it
always did (DuckDB needs its motherduck extension for it; this project does not test it).
"""

from __future__ import annotations

from pathlib import Path

from target_warehouse_seg.errors import ConfigError

MEMORY = ":memory:"
_MOTHERDUCK_PREFIXES = ("md:", "motherduck:")
_SQLITE_HEADER = b"SQLite format 3\x00"
# A DuckDB file starts with its main header: an 8-byte checksum, then these magic bytes.
_DUCKDB_MAGIC = b"DUCK"
_DUCKDB_MAGIC_OFFSET = 8
# A DuckDB file holds at least its main header and two database headers of 4 KB each: a shorter one is a
# creation cut short (a full disk while the first run created it), which DuckDB refuses on every later
# run ("Could not read enough bytes from file") until someone removes it.
DUCKDB_HEADERS_BYTES = 3 * 4096


def is_file_path(path: str) -> bool:
    """Whether ``path`` names a local file (not ``:memory:`` nor a MotherDuck database)."""
    return path != MEMORY and not path.startswith(_MOTHERDUCK_PREFIXES)


def checked_path(path: str) -> str:
    """``path`` as the engine opens it (``~`` expanded), or ``ConfigError`` in one line when it cannot
    be a DuckDB database: its folder is missing, or it exists and is not a DuckDB file. DuckDB 2.0 opens
    an existing JSON, CSV or Parquet file as a database in memory (views over the file): every load
    into it succeeded, the run wrote its STATE, and nothing was kept. A SQLite file it opens through
    its sqlite extension, which it first tries to download."""
    if not is_file_path(path):
        return path
    file = Path(path).expanduser()
    if not file.resolve().parent.is_dir():
        raise ConfigError(f"setting `path`: the folder of {path!r} does not exist")
    header = _header(file)
    if header is None:
        return str(file)
    if not header:
        raise ConfigError(
            f"setting `path`: {path!r} is an empty file, not a DuckDB database; remove it, and the target "
            "creates the database there"
        )
    if header.startswith(_SQLITE_HEADER):
        raise ConfigError(f"setting `path`: {path!r} is a SQLite database, not a DuckDB file")
    if header[_DUCKDB_MAGIC_OFFSET : _DUCKDB_MAGIC_OFFSET + len(_DUCKDB_MAGIC)] != _DUCKDB_MAGIC:
        raise not_a_duckdb_file(path)
    size = _size(file)
    if size is not None and size < DUCKDB_HEADERS_BYTES:
        raise ConfigError(
            f"setting `path`: {path!r} is a DuckDB file cut short ({size:,} bytes; a database has at least "
            f"{DUCKDB_HEADERS_BYTES:,}): its creation failed, as on a full disk. It holds no data: remove "
            "it, and the target creates the database anew"
        )
    return str(file)


def _size(file: Path) -> int | None:
    try:
        return file.stat().st_size
    except OSError:
        return None


def not_a_duckdb_file(path: str) -> ConfigError:
    return ConfigError(
        f"setting `path`: {path!r} exists, but it is not a DuckDB database file; name a DuckDB file, "
        "or a new file for the target to create"
    )


def _header(file: Path) -> bytes | None:
    """The first bytes of an existing regular file; None otherwise: an absent file DuckDB creates, and a
    folder or an unreadable file DuckDB's own error names (a FIFO is never opened: it would block)."""
    try:
        if not file.is_file():
            return None
        with file.open("rb") as opened:
            return opened.read(len(_SQLITE_HEADER))
    except OSError:
        return None
