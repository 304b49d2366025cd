"""Warehouse identifiers: conform stream and property names into table and column names.

The rule (documented in the README):

1. Conform: fold accents to ASCII (``café`` -> ``cafe``), lower-case, replace every character outside
   ``[a-z0-9_]`` with ``_``; an empty result becomes ``_``.
2. Length: PostgreSQL keeps 63 bytes of an identifier. A longer name is cut to 54 characters and gets
   ``_`` plus the first 8 hex digits of the SHA-1 of the *original* name, so it stays unique and stable.
3. Collisions: every column remembers the property it was created for (in its SQL comment). A property
   keeps the column it owns. A new property takes its conformed name when no column (existing or
   assigned in this schema, system columns included) already has it; otherwise it takes the hashed
   form of step 2 (``amount_1a2b3c4d``). New properties are served in a fixed order (names that are
   already conformed first, then by name), so the result does not depend on the order of the SCHEMA
   message, and names once given never move: two properties never share a column, in one run or across
   runs. Tables follow the same rule with the stream name in the table's comment.

Every identifier the target emits is double-quoted, so reserved words (``select``, ``order``) and names
starting with a digit are safe.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Mapping

MAX_IDENTIFIER_BYTES = 63
HASH_LENGTH = 8
_OUTSIDE_ALPHABET = re.compile(r"[^a-z0-9_]")


def conform(name: str) -> str:
    """The conformed form of a name: ASCII lower case, digits and underscores, at most 63 bytes."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    conformed = _OUTSIDE_ALPHABET.sub("_", folded.lower()) or "_"
    if len(conformed) > MAX_IDENTIFIER_BYTES:
        return hashed(name)
    return conformed


def hashed(name: str) -> str:
    """The conformed name cut short with a stable hash of the original name appended."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    stem = _OUTSIDE_ALPHABET.sub("_", folded.lower()) or "_"
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:HASH_LENGTH]
    return f"{stem[: MAX_IDENTIFIER_BYTES - HASH_LENGTH - 1]}_{digest}"


# A comment that keeps someone's note and the source name the target claimed the identifier for.
_CLAIM_MARK = "\n[target-warehouse-seg: "


def could_name(identifier: str, source_name: str) -> bool:
    """Whether the rule above could have given ``identifier`` to ``source_name``."""
    if identifier in (conform(source_name), hashed(source_name)):
        return True
    stem = hashed(source_name)[:-2]  # step 3's numbered forms, for hashes that collide
    return len(identifier) == len(stem) + 2 and identifier.startswith(stem) and identifier[-2:].isdigit()


def read_comment(identifier: str, comment: str | None) -> tuple[str | None, str | None]:
    """The source name an identifier's SQL comment says it was made or claimed for, and the note
    someone else wrote there: ``(owner, note)``. A comment that could not have named the identifier
    is a note (``Salesforce accounts, loaded hourly`` on a table made by hand, a column's
    description): taken for an owner, the table was passed over for a new one beside it, and the
    column was set to NULL by every upsert as a property that had left the SCHEMA."""
    if comment is None:
        return None, None
    note, mark, claimed = comment.rpartition(_CLAIM_MARK)
    if mark and claimed.endswith("]") and could_name(identifier, claimed[:-1]):
        return claimed[:-1], note
    if could_name(identifier, comment):
        return comment, None
    return None, comment


def write_comment(owner: str | None, note: str | None) -> str | None:
    """The SQL comment that ``read_comment`` reads back as ``(owner, note)``."""
    if owner is None or note is None:
        return owner if owner is not None else note
    return f"{note}{_CLAIM_MARK}{owner}]"


def quote(identifier: str) -> str:
    """A double-quoted SQL identifier (valid in PostgreSQL and DuckDB)."""
    return '"' + identifier.replace('"', '""') + '"'


def assign(
    names: Iterable[str],
    owners: Mapping[str, str | None],
    reserved: Iterable[str] = (),
) -> dict[str, str]:
    """Give each source name (property or stream) an identifier, following the rule above.

    Args:
        names: the source names that need an identifier.
        owners: existing identifiers (columns or tables) and the source name each belongs to
            (``None`` when unknown, e.g. a column made by someone else).
        reserved: identifiers that no source name may take (system columns, internal tables).
    """
    reserved_set = set(reserved)
    taken = set(owners) | reserved_set
    owned = {owner: identifier for identifier, owner in owners.items() if owner is not None}
    # A column nobody claims (made before comments, or by hand) goes to the first property it fits.
    adoptable = {identifier for identifier, owner in owners.items() if owner is None} - reserved_set
    result: dict[str, str] = {}
    pending = []
    for name in names:
        if name in owned:
            result[name] = owned[name]
        else:
            pending.append(name)
    # Already-conformed names first, so that `amount` keeps `amount` when `Amount` also arrives.
    for name in sorted(pending, key=lambda item: (conform(item) != item, item)):
        candidate = conform(name)
        if candidate in adoptable:
            adoptable.discard(candidate)
        elif candidate in taken:
            candidate = hashed(name)
            counter = 1
            while candidate in taken:
                candidate = f"{hashed(name)[:-2]}{counter:02d}"
                counter += 1
        taken.add(candidate)
        result[name] = candidate
    return result
