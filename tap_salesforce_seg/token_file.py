"""A refresh token kept in a file of its own (`refresh_token_file`), which the tap rewrites when
Salesforce rotates the token.

With refresh token rotation on for a connected app, each refresh answers with a new refresh token and
revokes the one it was given: a token kept in a config file (or in Meltano's settings) logged in once,
and the next run was refused. The file is replaced whole (a new file beside it, synced, then renamed over
it, with the old one's permissions: its owner's alone for a new one), so a crash while saving leaves the
old token or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from tap_salesforce_seg.errors import ConfigError

SETTING = "refresh_token_file"


def read_token(path: str) -> str:
    """The token the file holds (surrounding whitespace and a final newline ignored)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise ConfigError(f"{SETTING}: cannot read {path}: {reason}") from None
    token = text.strip()
    if not token:
        raise ConfigError(f"{SETTING}: {path} is empty: put the connected app's refresh token in it")
    if any(character.isspace() for character in token):
        raise ConfigError(f"{SETTING}: {path} holds more than one line or word; it must hold the token alone")
    return token


def save_token(path: str, token: str) -> None:
    """Replace the file's token with ``token``; raises OSError when it cannot. A symbolic link is
    followed (the file it names is replaced, the link kept), and the file keeps its permissions."""
    target = Path(path).resolve()
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except OSError:
        mode = 0o600
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(token + "\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    _sync_directory(target.parent)


def _sync_directory(directory: Path) -> None:
    """The rename itself survives a power cut once the directory is synced (where the OS allows it)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
