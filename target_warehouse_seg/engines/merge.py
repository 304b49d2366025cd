"""The set-based statements that apply a staged batch to its table (same SQL on both engines).

* Duplicates inside the batch collapse to one row per key: the one with the newest replication key,
  and among equals the last one read (``DISTINCT ON ... ORDER BY``). This is only added when the batch
  really has duplicate keys.
* Upsert: ``INSERT ... ON CONFLICT (key) DO UPDATE`` (PostgreSQL), or ``UPDATE ... FROM`` then
  ``INSERT ... WHERE NOT EXISTS`` (DuckDB); with a replication key the update only happens when the
  stored row is not newer (``t.rk IS NULL OR s.rk >= t.rk``), so replays and out-of-order batches
  never bring back old values. A NULL replication key counts as older than any
  date: such a row is stored when no dated version exists, and never replaces a dated one.
* Hard deletes (``hard_delete: true``): rows whose ``is_deleted`` is true delete their key's row
  (under the same "not newer" rule) instead of being upserted. With a replication key, each deleted key
  keeps a tombstone in ``_deleted_keys`` (the key as text, the newest replication key it was deleted at),
  and a row of a key that is not stored (before the batch) is dropped from the staged batch when it is
  older than its tombstone: a replay of old input cannot bring a deleted record back. Tombstones are
  kept and consulted only while ``hard_delete`` is on.
* Streams without key properties are appended in reading order.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

from target_warehouse_seg.engines import LoadBatch
from target_warehouse_seg.identifiers import quote

SEQ = "@seq"  # the staging column holding each row's input line (no property can take this name)


@dataclass(frozen=True)
class Tombstones:
    """Where hard deletes leave their keys, for one table, in an engine's SQL.

    ``key_text`` spells a row's key values (SQL expressions, cast to the table's types) as one text that
    is equal for equal keys; ``replication_type`` is the table's type of the replication key, which the
    tombstones keep as text (spelled by ``value_text``).
    """

    table: str  # the tombstones' table, quoted and qualified
    name: str  # the table whose keys these are (a SQL literal)
    key_text: t.Callable[[list[str]], str]
    replication_type: str
    # How a replication key value (a SQL expression of ``replication_type``) is kept as text: read back
    # with a cast, so its spelling must not depend on session settings (PostgreSQL's DateStyle).
    value_text: t.Callable[[str], str] = lambda expression: f"CAST({expression} AS TEXT)"

    def ddl(self, text: str, timestamp: str) -> str:
        return (
            f"CREATE TABLE IF NOT EXISTS {self.table} (table_name {text} NOT NULL, "
            f"record_key {text} NOT NULL, replication_value {text}, deleted_at {timestamp} NOT NULL, "
            "PRIMARY KEY (table_name, record_key))"
        )


def applies(batch: LoadBatch) -> bool:
    """Whether the batch's hard deletes keep tombstones (they need a key and a replication key)."""
    return bool(batch.delete_flag and batch.key and batch.replication_key)


def statements(
    batch: LoadBatch,
    table: str,
    staging: str,
    value: t.Callable[[str], str] = lambda column: f"s.{quote(column)}",
    *,
    upsert: str = "on_conflict",
) -> list[str]:
    """SQL statements applying ``staging`` to ``table`` (both already quoted and qualified).

    ``value(column)`` is the SELECT expression for a staged column (engines cast there if needed).
    ``upsert`` chooses the statements, all set-based and giving the same result in the transaction:

    * ``on_conflict``: one ``INSERT ... ON CONFLICT DO UPDATE`` (PostgreSQL's best);
    * ``update_insert``: an ``UPDATE ... FROM`` of the keys present, then an ``INSERT`` of the others;
    * ``delete_insert``: a ``DELETE`` of the stored rows the batch wins over, then an ``INSERT`` of
      every row whose key is not there (a stored row that is newer stays, and keeps its key). DuckDB
      keeps updated values in memory until its next checkpoint, while a deleted row costs it nothing.
      Columns the batch does not write become NULL: only for tables whose every column it writes;
    * ``insert``: a plain ``INSERT`` of the batch (its duplicates collapsed), only right when none of
      its keys is in the table yet, which the table's primary key then enforces (the engine upserts
      when it refuses).
    """
    names = [column.name for column in batch.columns]
    insert_columns = ", ".join(quote(name) for name in [*names, "received_at", "uuid_ts"])
    select = ", ".join([*(f"{value(name)}" for name in names), value("received_at"), "now()"])
    if not batch.key:
        return [
            f"INSERT INTO {table} ({insert_columns}) SELECT {select} FROM {staging} AS s "
            f"ORDER BY s.{quote(SEQ)}"
        ]
    source = _source(batch, staging, value)
    keep = f"{value(batch.delete_flag)} IS NOT TRUE" if batch.delete_flag else ""
    if upsert == "insert":
        return [f"INSERT INTO {table} ({insert_columns}) SELECT {select} FROM {source}{_where(keep)}"]
    matches = _matches(batch, value)
    not_newer = ""  # the stored row is not newer than the incoming one (a NULL counts as oldest)
    if batch.replication_key:
        stored = f"t.{quote(batch.replication_key)}"
        not_newer = f"({stored} IS NULL OR {value(batch.replication_key)} >= {stored})"
    absent = f"NOT EXISTS (SELECT 1 FROM {table} AS t WHERE {matches})"
    insert_absent = (
        f"INSERT INTO {table} ({insert_columns}) SELECT {select} FROM {source}{_where(absent, keep)}"
    )
    if upsert == "delete_insert":
        return [f"DELETE FROM {table} AS t USING {source}{_where(matches, not_newer)}", insert_absent]
    result = []
    if batch.delete_flag:
        result.append(
            f"DELETE FROM {table} AS t USING {source}{_where(value(batch.delete_flag), matches, not_newer)}"
        )
    if upsert == "update_insert":
        sets = [f"{quote(name)} = {value(name)}" for name in names if name not in batch.key]
        sets += [f"{quote(name)} = NULL" for name in batch.nulled]
        sets += [f'"received_at" = {value("received_at")}', '"uuid_ts" = now()']
        result.append(
            f"UPDATE {table} AS t SET {', '.join(sets)} FROM {source}{_where(matches, not_newer, keep)}"
        )
        result.append(insert_absent)
        return result
    updates = [f"{quote(name)} = EXCLUDED.{quote(name)}" for name in names if name not in batch.key]
    updates += [f"{quote(name)} = NULL" for name in batch.nulled]
    updates += [f"{quote(name)} = EXCLUDED.{quote(name)}" for name in ("received_at", "uuid_ts")]
    guard = ""
    if batch.replication_key:
        stored = f"t.{quote(batch.replication_key)}"
        guard = f" WHERE {stored} IS NULL OR EXCLUDED.{quote(batch.replication_key)} >= {stored}"
    key = ", ".join(quote(name) for name in batch.key)
    result.append(
        f"INSERT INTO {table} AS t ({insert_columns}) SELECT {select} FROM {source}"
        f"{_where(keep)} ON CONFLICT ({key}) DO UPDATE SET {', '.join(updates)}{guard}"
    )
    return result


def prune_statement(
    batch: LoadBatch,
    table: str,
    staging: str,
    tombstones: Tombstones,
    value: t.Callable[[str], str] = lambda column: f"s.{quote(column)}",
) -> str:
    """Drop from the staged batch the rows that a tombstone outdates: not deletes, of a key that is not
    stored, and older than the key's tombstone (a NULL replication key is older; an equal one is not).
    Run before the batch is applied, so that "stored" means before this batch (a stored row follows
    the never-regress rule, whatever tombstone its key has)."""
    _, same_key, incoming, recorded = _tombstone_terms(batch, tombstones, value)
    outdated = (
        f"EXISTS (SELECT 1 FROM {tombstones.table} AS d WHERE {same_key} "
        f"AND d.replication_value IS NOT NULL AND ({incoming} IS NULL OR {incoming} < {recorded}))"
    )
    not_stored = f"NOT EXISTS (SELECT 1 FROM {table} AS t WHERE {_matches(batch, value)})"
    not_deleted = f"{value(t.cast(str, batch.delete_flag))} IS NOT TRUE"
    return f"DELETE FROM {staging} AS s{_where(not_deleted, not_stored, outdated)}"


def tombstone_statements(
    batch: LoadBatch,
    staging: str,
    tombstones: Tombstones,
    value: t.Callable[[str], str] = lambda column: f"s.{quote(column)}",
) -> list[str]:
    """Record the batch's deleted keys: a key's tombstone keeps the newest replication key it was
    deleted at (a NULL one is older than any date), whether or not the delete found a row to remove."""
    source = _source(batch, staging, value)
    key, same_key, incoming, recorded = _tombstone_terms(batch, tombstones, value)
    not_older = f"(d.replication_value IS NULL OR ({incoming} IS NOT NULL AND {incoming} >= {recorded}))"
    deleted = value(t.cast(str, batch.delete_flag))
    return [
        f"DELETE FROM {tombstones.table} AS d USING {source}{_where(deleted, same_key, not_older)}",
        f"INSERT INTO {tombstones.table} (table_name, record_key, replication_value, deleted_at) "
        f"SELECT {tombstones.name}, {key}, {tombstones.value_text(incoming)}, now() FROM {source}"
        f"{_where(deleted, f'NOT EXISTS (SELECT 1 FROM {tombstones.table} AS d WHERE {same_key})')}",
    ]


def _tombstone_terms(
    batch: LoadBatch, tombstones: Tombstones, value: t.Callable[[str], str]
) -> tuple[str, str, str, str]:
    """A staged row's key as text, the condition that tombstone ``d`` is its key's, its replication key,
    and ``d``'s replication key as the table's type."""
    key = tombstones.key_text([value(name) for name in batch.key])
    same_key = f"d.table_name = {tombstones.name} AND d.record_key = {key}"
    incoming = value(t.cast(str, batch.replication_key))
    return key, same_key, incoming, f"CAST(d.replication_value AS {tombstones.replication_type})"


def _matches(batch: LoadBatch, value: t.Callable[[str], str]) -> str:
    """Stored row ``t`` has the staged row's key."""
    return " AND ".join(f"t.{quote(k)} = {value(k)}" for k in batch.key)


def _source(batch: LoadBatch, staging: str, value: t.Callable[[str], str]) -> str:
    """The staged rows as a FROM item ``s``: one row per key when the batch repeats keys (the newest by
    replication key, the last read among equals)."""
    if not batch.has_duplicates:
        return f"{staging} AS s"
    keys = ", ".join(value(k) for k in batch.key)
    newest = f"{value(batch.replication_key)} DESC NULLS LAST, " if batch.replication_key else ""
    return (
        f"(SELECT DISTINCT ON ({keys}) s.* FROM {staging} AS s "
        f"ORDER BY {keys}, {newest}s.{quote(SEQ)} DESC) AS s"
    )


def _where(*conditions: str) -> str:
    """`` WHERE a AND b`` of the conditions given (empty ones left out), or nothing."""
    present = [condition for condition in conditions if condition]
    return f" WHERE {' AND '.join(present)}" if present else ""
