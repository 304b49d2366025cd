"""The set-based statements that apply a staged batch to its table (same SQL on both engines).

* Duplicates inside the batch collapse to one row per key: the one with the newest replication key,
  and among equals the last one read (``DISTINCT ON ... ORDER BY``). This is only added when the batch
  really has duplicate keys.
* Upsert: ``INSERT ... ON CONFLICT (key) DO UPDATE``; with a replication key the update only happens
  when the stored row is not newer (``WHERE t.rk IS NULL OR s.rk >= t.rk``), so replays and
  out-of-order batches never bring back old values. A NULL replication key counts as older than any
  date: such a row is stored when no dated version exists, and never replaces a dated one.
* Hard deletes (``hard_delete: true``): rows whose ``is_deleted`` is true delete their key's row
  (under the same "not newer" rule) instead of being upserted.
* Streams without key properties are appended in reading order.
"""

from __future__ import annotations

import typing as t

from target_warehouse_seg.engines import LoadBatch
from target_warehouse_seg.identifiers import quote

SEQ = "@seq"  # the staging column holding each row's input line (no property can take this name)


def statements(
    batch: LoadBatch,
    table: str,
    staging: str,
    value: t.Callable[[str], str] = lambda column: f"s.{quote(column)}",
) -> list[str]:
    """SQL statements applying ``staging`` to ``table`` (both already quoted and qualified).

    ``value(column)`` is the SELECT expression for a staged column (engines cast there if needed).
    """
    names = [column.name for column in batch.columns]
    insert_columns = ", ".join(quote(name) for name in [*names, "received_at", "uuid_ts"])
    select = ", ".join([*(f"{value(name)}" for name in names), value("received_at"), "now()"])
    if not batch.key:
        return [
            f"INSERT INTO {table} ({insert_columns}) SELECT {select} FROM {staging} AS s "
            f"ORDER BY s.{quote(SEQ)}"
        ]
    key = ", ".join(quote(name) for name in batch.key)
    source = f"{staging} AS s"
    if batch.has_duplicates:
        keys = ", ".join(value(k) for k in batch.key)
        newest = f"{value(batch.replication_key)} DESC NULLS LAST, " if batch.replication_key else ""
        source = (
            f"(SELECT DISTINCT ON ({keys}) s.* FROM {staging} AS s "
            f"ORDER BY {keys}, {newest}s.{quote(SEQ)} DESC) AS s"
        )
    delete_guard = update_guard = ""
    if batch.replication_key:
        stored, incoming = f"t.{quote(batch.replication_key)}", value(batch.replication_key)
        delete_guard = f" AND ({stored} IS NULL OR {incoming} >= {stored})"
        update_guard = f" WHERE {stored} IS NULL OR EXCLUDED.{quote(batch.replication_key)} >= {stored}"
    result = []
    keep = ""
    if batch.delete_flag:
        flag = value(batch.delete_flag)
        matches = " AND ".join(f"t.{quote(k)} = {value(k)}" for k in batch.key)
        result.append(f"DELETE FROM {table} AS t USING {source} WHERE {flag} AND {matches}{delete_guard}")
        keep = f" WHERE {flag} IS NOT TRUE"
    updates = [f"{quote(name)} = EXCLUDED.{quote(name)}" for name in names if name not in batch.key]
    updates += [f"{quote(name)} = NULL" for name in batch.nulled]
    updates += [f"{quote(name)} = EXCLUDED.{quote(name)}" for name in ("received_at", "uuid_ts")]
    result.append(
        f"INSERT INTO {table} AS t ({insert_columns}) SELECT {select} FROM {source}{keep} "
        f"ON CONFLICT ({key}) DO UPDATE SET {', '.join(updates)}{update_guard}"
    )
    return result
