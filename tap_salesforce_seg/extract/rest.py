"""REST extraction: `queryAll` with `nextRecordsUrl` paging, and wide objects split into chunks.

`RestExtractor(client).records(plan)` yields converted records in (replication field, Id) order; the
next page downloads while one is converted (prefetch.py), so memory holds two pages at most.

Wide objects: when the query's URI would pass Salesforce's limit (soql.chunk_field_names), or when
Salesforce found a query too complicated (QUERY_TOO_COMPLICATED: `narrow` halves the fields each query
selects, and Extraction reads again from the last record written), the fields are split into chunks that
each carry Id and the replication field; one query per chunk runs over the same window and the chunks
are joined by Id, all cursors advancing together (memory stays at a page per chunk). The join rule: a
record is emitted only when every chunk returned it with the *same* replication value (SystemModstamp),
i.e. every chunk read the same version of it. A record that changed between the chunk queries shows
different values (or, having moved past the window's end, is missing from the later chunks); it is left
out of this run, and because its new SystemModstamp is later than any bookmark this run can write, the
next run reads it whole. So nothing is emitted half-updated, and nothing is lost.

Records that change while a query's pages are read: Salesforce's query cursor holds the matching
records' Ids and reads each page's values when the page is fetched (not a snapshot), so a record edited
meanwhile comes at its old place in the order with its new SystemModstamp, at or past the window's end
(the window ends at Salesforce's time when the run planned it, before the query began). Such a row is
left out (`records_changed`): taking its stamp would move the bookmark past records of the window not
yet read (a stop there, or the next run's window, would skip them), and it breaks the order the join
needs. The next run's window starts before the window's end, so it reads the record whole.

The join groups rows by replication value and matches Ids inside a group, so it needs no assumption
about how Salesforce orders Ids. An object without a replication field is ordered by Id alone; there
the chunks are joined by Id order, which is checked (an out-of-order answer is an error, not a loss).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from tap_salesforce_seg.errors import TapError
from tap_salesforce_seg.extract import QueryPlan, Stamped
from tap_salesforce_seg.extract.prefetch import prefetched
from tap_salesforce_seg.soql import QueryField, build_query, chunk_field_names
from tap_salesforce_seg.values import RestRecordConverter, format_datetime, record_dict

if TYPE_CHECKING:
    from tap_salesforce_seg.client import SalesforceClient


class _Paging(msgspec.Struct):
    """Just the paging fields of a query page (decoding skips the records without building them)."""

    done: bool = True
    nextRecordsUrl: str | None = None


_paging_decoder = msgspec.json.Decoder(_Paging)
# Queries read side by side for one object when Salesforce finds a wider one too complicated: each has
# its own pages (in memory at once, and an API call each), so the split stops there.
MAX_JOINED_QUERIES = 8


class RestExtractor:
    """Reads a plan through the REST query API (see the module docstring)."""

    name = "rest"

    def __init__(
        self,
        client: SalesforceClient,
        *,
        logger: logging.Logger | None = None,
        batch_size: int | None = None,
    ) -> None:
        self.client = client
        self.logger = logger or logging.getLogger(__name__)
        self.batch_size = batch_size  # Sforce-Query-Options batchSize (200..2000), None = Salesforce's
        self.expected_records: int | None = None
        self.chunks_used = 1
        self.records_left_out = 0
        self.records_changed = 0  # rows stamped at or past the window's end (see the module docstring)
        # Other fields per chunk at most (besides Id and the replication field), once Salesforce found
        # a query too complicated (QUERY_TOO_COMPLICATED); None: only the URI limit splits.
        self.max_chunk_fields: int | None = None

    def records(self, plan: QueryPlan) -> Iterator[Stamped]:
        chunks = self._chunks(plan)
        self.chunks_used = len(chunks)
        changed_before = self.records_changed
        if len(chunks) == 1:
            yield from self._chunk_records(plan, plan.fields, count_total=True, hidden=plan.hidden)
        else:
            by_name = {field.salesforce_name: field for field in plan.fields}
            yield from self._joined(plan, [[by_name[name] for name in chunk] for chunk in chunks])
        changed = self.records_changed - changed_before
        if changed:
            self.logger.info(
                "%s: %d record(s) changed while the query's pages were being read (their SystemModstamp "
                "is past the window's end); the next run reads them.",
                plan.sobject,
                changed,
            )

    def narrow(self, plan: QueryPlan) -> int | None:
        """Halve the fields each query selects (QUERY_TOO_COMPLICATED); the number of chunks that makes,
        or None when that would pass MAX_JOINED_QUERIES or a chunk already selects one field."""
        widest = max(len(chunk) for chunk in self._chunks(plan))
        keys = 2 if plan.replication_field else 1
        if widest - keys <= 1:
            return None
        cap = (widest - keys + 1) // 2
        chunks = len(self._chunks(plan, cap))
        if chunks > MAX_JOINED_QUERIES:
            return None
        self.max_chunk_fields = cap
        return chunks

    def _chunks(self, plan: QueryPlan, max_fields: int | None = None) -> list[list[str]]:
        return chunk_field_names(
            plan.sobject,
            plan.field_names,
            api_version=self.client.api_version,
            replication_field=plan.replication_field,
            max_fields=max_fields or self.max_chunk_fields,
        )

    # --- one query ---------------------------------------------------------------------------------

    def _chunk_records(
        self,
        plan: QueryPlan,
        fields: Sequence[QueryField],
        *,
        count_total: bool,
        hidden: frozenset[str] = frozenset(),
    ) -> Iterator[Stamped]:
        """Records of one query over the plan's window, page after page."""
        converter = RestRecordConverter(fields, stamp_property=plan.replication_property, hidden=hidden)
        soql = build_query(
            plan.sobject,
            [field.salesforce_name for field in fields],
            replication_field=plan.replication_field,
            window_start=plan.window_start,
            window_end=plan.window_end,
        )
        end = _window_end_stamp(plan)
        for body in prefetched(self._page_bodies(plan, soql)):
            page = converter.decode_page(body)
            del body
            if count_total and self.expected_records is None:
                self.expected_records = page.total_size
            if end is None:
                yield from page.records
                continue
            for item in page.records:
                if item[0] is not None and item[0] >= end:  # changed after the query began
                    self.records_changed += 1
                    continue
                yield item

    def _page_bodies(self, plan: QueryPlan, soql: str) -> Iterator[bytes]:
        """The raw pages of one query: the first, then `nextRecordsUrl` until `done`."""
        headers = {"Sforce-Query-Options": f"batchSize={self.batch_size}"} if self.batch_size else None
        endpoint = "/queryAll" if plan.include_deleted else "/query"
        body = self.client.get(endpoint, params={"q": soql}, headers=headers).content
        while True:
            paging = _paging_decoder.decode(body)
            yield body
            if paging.done or not paging.nextRecordsUrl:
                return
            body = self.client.get(paging.nextRecordsUrl, headers=headers).content

    # --- wide objects: chunks joined by Id ---------------------------------------------------------

    def _joined(self, plan: QueryPlan, chunks: list[list[QueryField]]) -> Iterator[Stamped]:
        id_property = plan.id_property
        by_stamp = plan.replication_property is not None
        streams = [
            _groups(self._chunk_records(plan, chunk, count_total=i == 0), id_property, by_stamp=by_stamp)
            for i, chunk in enumerate(chunks)
        ]
        heads = [next(stream, None) for stream in streams]
        while all(head is not None for head in heads):
            key = min(head[0] for head in heads)  # type: ignore[index]
            if all(head[0] == key for head in heads):  # type: ignore[index]
                groups = [head[1] for head in heads]  # type: ignore[index]
                for record in self._join_group(groups):
                    for name in plan.hidden:
                        record.pop(name, None)
                    yield (key if by_stamp else None), record
                heads = [next(stream, None) for stream in streams]
                continue
            # Some chunks have no row at this key: those rows changed between the chunk queries.
            for i, head in enumerate(heads):
                if head[0] == key:  # type: ignore[index]
                    self.records_left_out += len(head[1])  # type: ignore[index]
                    heads[i] = next(streams[i], None)
        for head in heads:
            if head is not None:
                self.records_left_out += len(head[1])
        for stream in streams:
            stream.close()
        if self.records_left_out:
            self.logger.warning(
                "%s: %d record(s) changed while their field chunks were being read; they are left "
                "out of this run and the next run reads them whole.",
                plan.sobject,
                self.records_left_out,
            )

    def _join_group(self, groups: list[dict[str, dict]]) -> Iterator[dict]:
        first, others = groups[0], groups[1:]
        for record_id, record in first.items():
            parts = [group.get(record_id) for group in others]
            if any(part is None for part in parts):
                self.records_left_out += 1
                continue
            for part in parts:
                record.update(part)  # type: ignore[arg-type]
            yield record
        for group in others:
            self.records_left_out += sum(1 for record_id in group if record_id not in first)


def _window_end_stamp(plan: QueryPlan) -> str | None:
    """The window's end in the stamps' spelling (they compare as text), or None when unbounded."""
    if plan.window_end is None or plan.replication_property is None:
        return None
    return format_datetime(plan.window_end)


def _groups(records: Iterator[Stamped], id_property: str, *, by_stamp: bool) -> Iterator[tuple[Any, dict]]:
    """Consecutive records sharing one key (the stamp, or the Id for objects without one), as
    (key, {id: record dict}); keys must ascend."""
    current_key: Any = None
    group: dict[str, dict] = {}
    for stamp, struct in records:
        record = dict(record_dict(struct))
        key = stamp if by_stamp else record[id_property]
        if key != current_key:
            if group:
                yield current_key, group
                if key is None or key < current_key:
                    raise TapError(
                        f"Salesforce returned rows out of order ({key!r} after {current_key!r}); "
                        "cannot join the field chunks of a wide object safely"
                    )
            current_key, group = key, {}
        group[record[id_property]] = record
    if group:
        yield current_key, group
