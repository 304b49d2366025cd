"""The SOQL the tap sends, and the splitting of wide field lists under Salesforce's URI limit.

- `QueryField(salesforce_name, property_name, type)`: one selected column of a query.
- `build_query(sobject, field_names, replication_field=..., window_start=..., window_end=...)`:
  `SELECT f1,f2 FROM X WHERE RF >= start AND RF < end ORDER BY RF, Id` (no replication field: a full
  `... ORDER BY Id`). Datetime literals are UTC with `Z`, milliseconds only when not zero.
- `build_count_query(...)`: `SELECT COUNT() FROM X WHERE <the same window>`.
- `query_uri_bytes(api_version, soql)`: the length of the GET request target for the query.
- `chunk_field_names(...)`: the field list split so that every chunk's query fits the URI budget; each
  chunk starts with `Id` and the replication field, so chunks can be joined by Id (extract/rest.py).

Identifiers that come from the catalog are checked (`check_identifier`) before they reach SOQL: a name
that is not a plain Salesforce API name raises ValueError instead of changing the query's meaning.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple
from urllib.parse import quote_plus, urlencode

ID_FIELD = "Id"
# Salesforce answers 414 when the URI passes 16,384 bytes and 431 when URI + headers do; the headroom
# covers the request line's method and version plus the headers (Authorization, Host, ...).
MAX_URI_BYTES = 16_384
HEADER_HEADROOM_BYTES = 2_048
QUERY_ENDPOINT = "queryAll"

# Object and field API names: letters, digits and underscores (custom `__c`, namespaces `ns__X__c`).
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,254}$")
# The widest literal a window can carry, used to size chunks once for every window of a run.
_WIDEST_INSTANT = datetime(2000, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)


class QueryField(NamedTuple):
    """One column of a query: the Salesforce field, the property it becomes, its describe type."""

    salesforce_name: str
    property_name: str
    type: str


def check_identifier(name: str) -> str:
    """Return `name` when it is a plain Salesforce API name, else raise ValueError."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ValueError(f"not a Salesforce API name: {name!r}")
    return name


def datetime_literal(value: datetime) -> str:
    """A SOQL datetime literal in UTC: `2024-01-02T03:04:05Z` or `2024-01-02T03:04:05.123Z`."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime in a SOQL window: {value!r}")
    utc = value.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    milliseconds = utc.microsecond // 1000
    return f"{text}.{milliseconds:03d}Z" if milliseconds else f"{text}Z"


def truncate_to_millisecond(value: datetime) -> datetime:
    """Salesforce keeps milliseconds; windows are cut on millisecond boundaries."""
    return value - timedelta(microseconds=value.microsecond % 1000)


def window_condition(
    replication_field: str | None, window_start: datetime | None, window_end: datetime | None
) -> str | None:
    """`RF >= start AND RF < end` (either side optional), or None for no condition."""
    if replication_field is None:
        if window_start is not None or window_end is not None:
            raise ValueError("a time window needs a replication field")
        return None
    field = check_identifier(replication_field)
    terms = []
    if window_start is not None:
        terms.append(f"{field} >= {datetime_literal(window_start)}")
    if window_end is not None:
        terms.append(f"{field} < {datetime_literal(window_end)}")
    return " AND ".join(terms) or None


def build_query(
    sobject: str,
    field_names: Sequence[str],
    *,
    replication_field: str | None = None,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
    ordered: bool = True,
) -> str:
    """The extraction query: rows in (replication field, Id) order, so a bookmark is resumable."""
    if not field_names:
        raise ValueError(f"no fields to query on {sobject}")
    select = ",".join(check_identifier(name) for name in field_names)
    text = f"SELECT {select} FROM {check_identifier(sobject)}"
    condition = window_condition(replication_field, window_start, window_end)
    if condition:
        text += f" WHERE {condition}"
    if ordered:
        order = [replication_field, ID_FIELD] if replication_field else [ID_FIELD]
        text += " ORDER BY " + ", ".join(order)
    return text


def build_count_query(
    sobject: str,
    *,
    replication_field: str | None = None,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
) -> str:
    """`SELECT COUNT() FROM X` over the same window as the extraction query."""
    text = f"SELECT COUNT() FROM {check_identifier(sobject)}"
    condition = window_condition(replication_field, window_start, window_end)
    return f"{text} WHERE {condition}" if condition else text


def query_uri_bytes(api_version: str, soql: str, endpoint: str = QUERY_ENDPOINT) -> int:
    """Length of the request target `/services/data/vXX.X/queryAll?q=...` as requests encodes it."""
    return len(f"/services/data/v{api_version}/{endpoint}?{urlencode({'q': soql})}")


def chunk_field_names(
    sobject: str,
    field_names: Sequence[str],
    *,
    api_version: str,
    replication_field: str | None,
    max_uri_bytes: int = MAX_URI_BYTES - HEADER_HEADROOM_BYTES,
    max_fields: int | None = None,
) -> list[list[str]]:
    """Split `field_names` so each chunk's query fits `max_uri_bytes` and selects at most `max_fields`
    other fields besides the keys (when given: Salesforce found a wider query too complicated).

    Every chunk begins with Id and the replication field (the join key and the order key); the other
    fields keep their order and each appears in exactly one chunk. Sizes are computed for the widest
    window literal, so one split serves every window of a run. One chunk when everything fits.
    """
    keys = [ID_FIELD] + ([replication_field] if replication_field else [])
    others = [name for name in _unique(field_names) if name not in keys]
    widest = _WIDEST_INSTANT if replication_field else None
    keys_only = build_query(
        sobject, keys, replication_field=replication_field, window_start=widest, window_end=widest
    )
    keys_bytes = query_uri_bytes(api_version, keys_only)
    if keys_bytes > max_uri_bytes:
        raise ValueError(f"the query on {sobject} does not fit the URI limit even without fields")
    chunks: list[list[str]] = []
    current, current_bytes = list(keys), keys_bytes
    for name in others:
        # Appending a name to the SELECT list adds exactly its encoded ",Name" to the URI.
        cost = len(quote_plus("," + check_identifier(name)))
        full = max_fields is not None and len(current) - len(keys) >= max_fields
        if current_bytes + cost > max_uri_bytes or full:
            if len(current) == len(keys):
                raise ValueError(f"field {name} of {sobject} alone makes the query pass the URI limit")
            chunks.append(current)
            current, current_bytes = list(keys), keys_bytes
        current.append(name)
        current_bytes += cost
    chunks.append(current)
    return chunks


def _unique(names: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    return [name for name in names if not (name in seen or seen.add(name))]
