"""REST JSON and Bulk CSV pages, byte for byte, against a plain Python rendering of the same rows.

The store renders pages column-wise with Arrow kernels and assembles them in one `take` (store.py), in
batches of pages read ahead in background threads. The oracle here renders each row with `json` and
string formatting from the Python values `QueryResult.rows()` returns, so every byte of the fast path is
checked: quoting, escapes, nulls, numbers, dates, compounds, base64 URLs, page splits, read-ahead.
"""

from __future__ import annotations

import json
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from salesforce_emulator.org import Org, OrgConfig

DATA = Path(__file__).parent / "data"
WEIRD = [
    'Quote " backslash \\ tab \t bell \x07 nl \n cr \r ff \f bs \b end ✓ 🚀',
    "",
    '"',
    "\\",
    "\x00\x1f\x7f",
    'comma, "q"\nline',
    "a/b <c> &d; \u2028 \u00e9",
]


def json_text(value: Any, field_type: str, sobject: str, record_id: str, name: str, version: str) -> str:
    if value is None:
        return "null"
    if field_type == "base64":
        return json.dumps(f"/services/data/v{version}/sobjects/{sobject}/{record_id}/{name}")
    if field_type == "junctionidlist":
        return json.dumps(value.split(","), ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return f'"{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond // 1000:03d}+0000"'
    if isinstance(value, date):
        return f'"{value.isoformat()}"'
    if isinstance(value, time):
        return f'"{value:%H:%M:%S}.{value.microsecond // 1000:03d}Z"'
    if isinstance(value, dict):
        parts = [f'"{key}":{json_text(value[key], "", sobject, record_id, key, version)}' for key in value]
        return "{" + ",".join(parts) + "}"
    return json.dumps(value, ensure_ascii=False)


def expected_json(org: Org, result: Any, start: int, stop: int, version: str = "58.0") -> bytes:
    types = {f["name"]: f["type"] for f in org.describe(result.sobject, version)["fields"]}
    records = []
    for row in result.rows(start, stop):
        values = dict(zip(result.columns, row, strict=True))
        record_id = values["Id"]
        url = f"/services/data/v{version}/sobjects/{result.sobject}/{record_id}"
        parts = [f'"attributes":{{"type":"{result.sobject}","url":"{url}"}}']
        for name in result.columns:
            text = json_text(values[name], types[name], result.sobject, record_id, name, version)
            parts.append(f'"{name}":{text}')
        records.append("{" + ",".join(parts) + "}")
    return ("[" + ",".join(records) + "]").encode()


def csv_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, Decimal):
        text = format(value, "f")
    elif isinstance(value, datetime):
        text = f"{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond // 1000:03d}Z"
    elif isinstance(value, time):
        text = f"{value:%H:%M:%S}.{value.microsecond // 1000:03d}Z"
    elif isinstance(value, date):
        text = value.isoformat()
    else:
        text = str(value)
    return '"' + text.replace('"', '""') + '"'


def expected_csv(result: Any, start: int, stop: int) -> bytes:
    lines = [",".join('"' + name + '"' for name in result.columns)]
    lines += [",".join(csv_text(value) for value in row) for row in result.rows(start, stop)]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(scope="module")
def org() -> Org:
    org = Org(OrgConfig(scale=0.02, seed=23, counts={"Account": 700}))
    org.add_field("Account", "Opens_At__c", "time")
    org.add_field("Account", "Ratio__c", "percent")
    org.add_field("Account", "Notes__c", "textarea")
    ids = [
        org.create(
            "Account",
            {"Name": f"Weird {index} {text}"[:255], "Description": text, "Notes__c": text, "Website": text},
        )
        for index, text in enumerate(WEIRD)
    ]
    org.update("Account", ids[0], {"Opens_At__c": "09:30:00.250Z", "Ratio__c": "12.5", "BillingCity": "X"})
    org.update("Account", ids[1], {"BillingLatitude": "1.5", "BillingLongitude": "-2.25"})
    org.delete("Account", ids[2])
    return org


def all_fields(org: Org, sobject: str, compound: bool = True) -> list[str]:
    fields = org.describe(sobject, "58.0")["fields"]
    compounds = {f.get("compoundFieldName") for f in fields}
    queryable = org.soql_object(sobject).fields
    names = [f["name"] for f in fields if f["name"].lower() in queryable]
    return [name for name in names if compound or name not in compounds]


@pytest.mark.parametrize("include_deleted", [False, True])
@pytest.mark.parametrize("order", ["", " ORDER BY Name DESC, Id", " ORDER BY SystemModstamp, Id"])
def test_rest_pages_are_the_oracles_bytes(org, include_deleted, order):
    soql = f"SELECT {', '.join(all_fields(org, 'Account'))} FROM Account{order}"
    result = org.query(soql, include_deleted)
    total = result.total_size
    assert total > 300
    expected = expected_json(org, result, 0, total)
    assert result.rest_records(0, total, "58.0") == expected
    for size in (1, 37, 200):  # sequential paging: pages come from read-ahead batches
        pages = [result.rest_records(start, start + size, "58.0") for start in range(0, total, size)]
        assert b"".join(page[1:-1] + b"," for page in pages)[:-1] == expected[1:-1]
        assert all(page.startswith(b"[{") and page.endswith(b"}]") for page in pages)
    assert result.rest_records(0, 3, "41.0") == expected_json(org, result, 0, 3, "41.0")
    assert result.rest_records(total, total + 5, "58.0") == b"[]"


def test_json_escapes_every_control_character(org):
    soql = "SELECT Id, Description, Notes__c, Website FROM Account WHERE Name LIKE 'Weird%'"
    result = org.query(soql, include_deleted=True)
    records = json.loads(result.rest_records(0, result.total_size, "58.0"))
    assert sorted(r["Notes__c"] for r in records) == sorted(WEIRD)
    assert sorted(r["Description"] for r in records) == sorted(WEIRD)


def test_describe_dir_objects_and_compounds(tmp_path):
    org = Org(OrgConfig(scale=0.02, seed=4, describe_dir=DATA))
    for sobject in ("Widget__c", "Document", "Contact"):
        result = org.query(f"SELECT {', '.join(all_fields(org, sobject))} FROM {sobject}")
        assert result.total_size > 0
        total = result.total_size
        assert result.rest_records(0, total, "58.0") == expected_json(org, result, 0, total), sobject


def test_csv_pages_are_the_oracles_bytes(org):
    soql = f"SELECT {', '.join(all_fields(org, 'Account', compound=False))} FROM Account"
    for order in ("", " ORDER BY SystemModstamp DESC, Id"):
        result = org.query(soql + order, include_deleted=True)
        total = result.total_size
        assert result.csv_page(0, total) == expected_csv(result, 0, total)
        for size in (7, 100):
            for start in range(0, total, size):
                assert result.csv_page(start, start + size) == expected_csv(result, start, start + size)


def test_pages_rendered_together_equal_pages_rendered_alone(org):
    result = org.query(f"SELECT {', '.join(all_fields(org, 'Account'))} FROM Account ORDER BY Name")
    together = result._render_json(10, 25, 6, "58.0")
    alone = [result._render_json(10 + index * 25, 25, 1, "58.0")[0] for index in range(6)]
    assert [bytes(page) for page in together] == [bytes(page) for page in alone]
    last = result._render_json(result.total_size - 30, 25, 3, "58.0")
    assert [bytes(page) for page in last][2:] == [b"[]"] and len(json.loads(bytes(last[1]))) == 5


def test_read_ahead_follows_the_client_and_stays_bounded(org):
    import salesforce_emulator.store as store

    result = org.query("SELECT Id, Name FROM Account ORDER BY Id")
    whole = json.loads(result.rest_records(0, result.total_size, "58.0"))
    got = []
    ahead = store._READ_AHEAD["json"]
    per_batch = min(ahead.batch_cells // (20 * 3), ahead.batch_rows // 20)  # pages of 20 rows, 3 cells
    for start in range(0, 300, 20):
        got.extend(json.loads(result.rest_records(start, start + 20, "58.0")))
        assert len(result._ahead) <= ahead.batches * per_batch
    assert got == whole[:300]
    # the client jumps back and changes the page size: the guesses are dropped, pages stay right
    assert json.loads(result.rest_records(5, 12, "58.0")) == whole[5:12]
    assert all(key[2] - key[1] == 7 for key in result._ahead)


def test_a_page_from_the_end_of_a_pending_batch_is_served(org, monkeypatch):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import salesforce_emulator.store as store

    result = org.query("SELECT Id, Name FROM Account ORDER BY Id")
    whole = json.loads(result.rest_records(0, result.total_size, "58.0"))
    pool = ThreadPoolExecutor(max_workers=1)
    gate = threading.Event()
    pool.submit(gate.wait)  # the read-ahead batch stays pending until the gate opens
    monkeypatch.setattr(store, "_read_ahead_pool", lambda: pool)
    # batches of 4 pages of 10 rows (3 columns: Id, Name and the attributes), one batch ahead
    monkeypatch.setattr(store, "_READ_AHEAD", {"json": store._ReadAhead(2_000, 1_000, 120, 2_000, 1)})
    assert json.loads(result.rest_records(0, 10, "58.0")) == whole[:10]  # schedules pages 1-4
    timer = threading.Timer(0.2, gate.set)
    timer.start()
    try:
        # the pending batch's last page: the batch must not be cancelled under the client
        assert json.loads(result.rest_records(40, 50, "58.0")) == whole[40:50]
        assert json.loads(result.rest_records(20, 30, "58.0")) == whole[20:30]
    finally:
        gate.set()
        timer.cancel()
        pool.shutdown()


def test_pages_too_large_are_not_read_ahead(org, monkeypatch):
    import salesforce_emulator.store as store

    monkeypatch.setattr(store, "_READ_AHEAD", {"json": store._ReadAhead(2_000, 60, 1_000, 2_000, 2)})
    result = org.query("SELECT Id, Name FROM Account ORDER BY Id")  # 3 cells a row with the attributes
    result.rest_records(0, 20, "58.0")  # 60 cells: read ahead, several pages a batch
    assert len(result._ahead) >= 2 * (1_000 // 60)
    result.rest_records(100, 121, "58.0")  # 63 cells: rendered when asked for only
    assert not result._ahead


def test_only_the_results_read_most_recently_keep_pages_ahead(org):
    import salesforce_emulator.store as store

    results = [org.query(f"SELECT Id, Name FROM Account WHERE Name != 'x{n}' ORDER BY Id") for n in range(5)]
    for result in results:
        result.rest_records(0, 10, "58.0")
        assert result._ahead
    kept = [bool(result._ahead) for result in results]
    assert kept == [index >= len(results) - store._READING_LIMIT for index in range(len(results))]
    whole = json.loads(results[0].rest_records(0, results[0].total_size, "58.0"))
    assert json.loads(results[0].rest_records(10, 20, "58.0")) == whole[10:20]  # served all the same
