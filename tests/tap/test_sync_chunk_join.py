"""The join rule for wide objects (extract/rest.py) when records change between the chunk queries.

The emulator cannot change a record exactly between two chunk queries of one run, so these tests use
a tiny in-memory stand-in for the query API that can (a test double of Salesforce, not of our code).
The end-to-end wide-object test against the emulator is in tests/e2e/test_tap_sync.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tap_salesforce_seg.extract import QueryPlan
from tap_salesforce_seg.extract.rest import RestExtractor
from tap_salesforce_seg.soql import QueryField
from tap_salesforce_seg.values import parse_datetime, record_dict

UTC = UTC
T0 = datetime(2024, 1, 1, tzinfo=UTC)
WINDOW_END = T0 + timedelta(days=1)
FIELD_COUNT = 400  # long names: several chunks


def rest_stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


class _Response:
    def __init__(self, body: dict) -> None:
        self.content = json.dumps(body).encode()


class FakeQueryApi:
    """Answers SELECT ... WHERE SystemModstamp >= / < ... ORDER BY SystemModstamp, Id with paging."""

    api_version = "58.0"

    def __init__(self, records: dict[str, dict], page_size: int = 3, *, live: bool = False) -> None:
        self.records = records
        self.page_size = page_size
        # live: a page shows its records' values when it is fetched, as Salesforce's query cursor does
        # (it holds the matching Ids, not their values); otherwise the query's snapshot.
        self.live = live
        self.after_page: Callable[[int, int], None] = lambda number, offset: None
        self._fields: dict[int, list[str]] = {}
        self.before_query: Callable[[int], None] = lambda number: None
        self.queries: list[str] = []
        self._results: dict[int, list[dict]] = {}

    def get(self, path: str, params: dict | None = None, headers: dict | None = None) -> _Response:
        if params is None:  # nextRecordsUrl: /next/<query>/<offset>
            _, _, number, offset = path.split("/")
            return self._page(int(number), int(offset))
        soql = params["q"]
        number = len(self.queries)
        self.before_query(number)
        self.queries.append(soql)
        fields = re.match(r"SELECT (\S+) FROM", soql).group(1).split(",")
        low = re.search(r"SystemModstamp >= (\S+)", soql)
        high = re.search(r"SystemModstamp < (\S+)", soql)
        rows = []
        for record in self.records.values():
            stamp = record["SystemModstamp"]
            if low and stamp < parse_datetime(low.group(1)):
                continue
            if high and stamp >= parse_datetime(high.group(1)):
                continue
            rows.append(record)
        rows.sort(key=lambda r: (r["SystemModstamp"], r["Id"]))
        self._fields[number] = fields
        self._results[number] = [self._row(r, fields) for r in rows]
        return self._page(number, 0)

    @staticmethod
    def _row(record: dict, fields: list[str]) -> dict:
        return {"attributes": {"type": "Wide__c"}} | {
            f: rest_stamp(record[f]) if f == "SystemModstamp" else record[f] for f in fields
        }

    def _page(self, number: int, offset: int) -> _Response:
        rows = self._results[number]
        end = offset + self.page_size
        page = rows[offset:end]
        if self.live:  # the page's records as they are now (a deleted one is gone)
            now = (self.records.get(row["Id"]) for row in page)
            page = [self._row(r, self._fields[number]) for r in now if r is not None]
        self.after_page(number, offset)
        body: dict[str, Any] = {"totalSize": len(rows), "done": end >= len(rows), "records": page}
        if end < len(rows):
            body["nextRecordsUrl"] = f"/next/{number}/{end}"
        return _Response(body)


def wide_fields() -> list[QueryField]:
    custom = [
        QueryField(
            f"Quite_Long_Custom_Field_Name_{i:04d}__c", f"quite_long_custom_field_name_{i:04d}_c", "string"
        )
        for i in range(FIELD_COUNT)
    ]
    return [
        QueryField("Id", "id", "id"),
        QueryField("SystemModstamp", "system_modstamp", "datetime"),
        *custom,
    ]


def make_org(count: int, shared_stamp_every: int = 4) -> dict[str, dict]:
    records = {}
    for n in range(count):
        record_id = f"a00{n:015d}"
        # groups of records share one SystemModstamp, as bulk updates do
        stamp = T0 + timedelta(seconds=n // shared_stamp_every)
        record = {"Id": record_id, "SystemModstamp": stamp}
        for field in wide_fields()[2:]:
            record[field.salesforce_name] = f"{field.salesforce_name[-8:]}-{n}-v1"
        records[record_id] = record
    return records


def expected(record: dict) -> dict:
    out = {"id": record["Id"], "system_modstamp": record["SystemModstamp"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    for field in wide_fields()[2:]:
        out[field.property_name] = record[field.salesforce_name]
    return out


def run(api: FakeQueryApi) -> tuple[list[dict], RestExtractor]:
    plan = QueryPlan("Wide__c", tuple(wide_fields()), "SystemModstamp", T0, WINDOW_END)
    extractor = RestExtractor(api)  # type: ignore[arg-type]
    pairs = list(extractor.records(plan))
    assert all(stamp == record_dict(record)["system_modstamp"] for stamp, record in pairs)
    return [record_dict(record) for _, record in pairs], extractor


def test_chunks_are_joined_into_whole_records():
    org = make_org(23)
    api = FakeQueryApi(org)
    records, extractor = run(api)
    assert extractor.chunks_used > 1
    assert len(api.queries) == extractor.chunks_used
    assert records == [expected(org[key]) for key in sorted(org)]
    assert extractor.records_left_out == 0


def update(org: dict[str, dict], record_id: str, stamp: datetime) -> None:
    record = org[record_id]
    record["SystemModstamp"] = stamp
    for field in wide_fields()[2:]:
        record[field.salesforce_name] = record[field.salesforce_name].replace("-v1", "-v2")


@pytest.mark.parametrize(
    "new_stamp",
    [WINDOW_END + timedelta(seconds=5), T0 + timedelta(seconds=1, milliseconds=500)],
    ids=["moved-past-the-window", "late-commit-inside-the-window"],
)
def test_a_record_changed_between_chunk_queries_is_never_emitted_half_updated(new_stamp):
    org = make_org(23)
    api = FakeQueryApi(org)
    changed = "a00000000000000009"

    def change_after_first_chunk(number: int) -> None:
        if number == 1:
            update(org, changed, new_stamp)

    api.before_query = change_after_first_chunk
    records, extractor = run(api)
    by_id = {record["id"]: record for record in records}
    assert changed not in by_id  # neither v1 nor a v1/v2 mix
    assert extractor.records_left_out >= 1
    untouched = {key: org[key] for key in org if key != changed}
    assert [by_id[key] for key in sorted(untouched)] == [
        expected(untouched[key]) for key in sorted(untouched)
    ]
    for record in records:
        values = {v for k, v in record.items() if k.startswith("quite_long")}
        assert all(v.endswith("-v1") for v in values) or all(v.endswith("-v2") for v in values)
    # The bookmark this run could write stays below the changed record's new SystemModstamp when it
    # moved past the window, so the next run reads it whole.
    if new_stamp >= WINDOW_END:
        assert max(record["system_modstamp"] for record in records) < rest_stamp(new_stamp)


def test_a_record_deleted_between_chunk_queries_is_left_out():
    org = make_org(10)
    api = FakeQueryApi(org)

    def delete_after_first_chunk(number: int) -> None:
        if number == 1:
            del org["a00000000000000003"]

    api.before_query = delete_after_first_chunk
    records, extractor = run(api)
    assert [r["id"] for r in records] == sorted(org)
    assert extractor.records_left_out == 1


def test_out_of_order_answers_are_an_error():
    org = make_org(6, shared_stamp_every=1)
    api = FakeQueryApi(org)
    real_get = api.get

    def shuffled(path, params=None, headers=None):
        response = real_get(path, params, headers)
        body = json.loads(response.content)
        body["records"].reverse()
        response.content = json.dumps(body).encode()
        return response

    api.get = shuffled  # type: ignore[method-assign]
    with pytest.raises(Exception, match="out of order"):
        run(api)


# Salesforce's cursor reads a page's values when the page is fetched: a record edited during the read
# comes at its old place with a SystemModstamp past the window's end. Taking that stamp moved the
# bookmark past the window's records not yet read (a stop there skipped them; so did the next run's
# window, which starts from the bookmark), and a wide object's join stopped on "rows out of order".


def narrow_fields() -> list[QueryField]:
    return wide_fields()[:3]


@pytest.mark.parametrize("fields", [narrow_fields, wide_fields], ids=["one-query", "joined-chunks"])
def test_a_record_edited_during_the_read_is_left_for_the_next_run(fields):
    org = make_org(12, shared_stamp_every=1)
    api = FakeQueryApi(org, live=True)
    edited = "a00000000000000008"  # on the third page of each query

    def edit_after_first_page(number: int, offset: int) -> None:
        if number == 0 and offset == 0:
            update(org, edited, WINDOW_END + timedelta(minutes=5))

    api.after_page = edit_after_first_page
    plan = QueryPlan("Wide__c", tuple(fields()), "SystemModstamp", T0, WINDOW_END)
    extractor = RestExtractor(api)  # type: ignore[arg-type]
    pairs = list(extractor.records(plan))
    stamps = [stamp for stamp, _ in pairs]
    assert stamps == sorted(stamps)
    assert max(stamps) < rest_stamp(WINDOW_END).replace(".000+0000", ".000000Z")
    ids = [record_dict(record)["id"] for _, record in pairs]
    assert ids == [key for key in sorted(org) if key != edited]
    assert extractor.records_changed >= 1


def test_the_bookmark_never_takes_a_stamp_past_the_window():
    from types import SimpleNamespace

    from tap_salesforce_seg.streams import SyncPlan, _Checkpoint
    from tap_salesforce_seg.values import format_datetime

    written: list[dict] = []
    state: dict = {}
    tap = SimpleNamespace(state_writer=SimpleNamespace(write_state=lambda s: written.append(dict(s))))
    stream = SimpleNamespace(replication_key="system_modstamp", stream_state=state, tap_state=state, _tap=tap)
    query = QueryPlan("Wide__c", tuple(narrow_fields()), "SystemModstamp", T0, WINDOW_END)
    checkpoint = _Checkpoint(stream, SyncPlan("incremental", query, (), None))  # type: ignore[arg-type]
    inside = format_datetime(T0 + timedelta(hours=1))
    checkpoint.advance(inside, write=True)
    checkpoint.advance(format_datetime(WINDOW_END + timedelta(minutes=5)), write=True)
    checkpoint.advance(format_datetime(WINDOW_END), write=True)
    assert [entry["replication_key_value"] for entry in written] == [inside] * 3
