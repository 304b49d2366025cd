"""The deterministic data generator: Ids, counts, values that fit their types, timestamps, clusters."""

from __future__ import annotations

import re
import time as clock
from collections import Counter
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from salesforce_emulator.generator import (
    CHUNK_ROWS,
    DEFAULT_EPOCH,
    generate_object,
    id_counter,
    id_suffix,
    make_id,
    make_ids,
    record_counts,
    storage_check,
)
from salesforce_emulator.model import ModelError, build_catalog
from salesforce_emulator.org import Org, OrgConfig

# Real Ids recorded from real orgs (public client test fixtures): the suffix must match.
REAL_IDS = [
    "0014W000027f6UwQAI",
    "0014W000027f6V3QAI",
    "0014W00002DkoWNQAZ",
    "003q000000KvQ1tAAF",
    "003RO0000035WQgYAM",
    "005R0000000UyrWIAS",
    "0054W00000BZkk0QAD",
    "00Q4W00001WGXdDUAX",
    "01254000001upcKAAQ",
    "012000000000000AAA",
    "0174W00010EpxkSQAR",
]
ID_RE = re.compile(r"[0-9A-Za-z]{15}[A-Z0-5]{3}")


@pytest.fixture(scope="module")
def small() -> Org:
    return Org(OrgConfig(scale=0.02))


@pytest.fixture(scope="module")
def full() -> Org:
    return Org(OrgConfig(scale=1.0))


def test_case_safety_suffix_matches_real_ids():
    for real in REAL_IDS:
        assert id_suffix(real[:15]) == real[15:], real


def test_ids_have_the_prefix_sort_by_creation_and_round_trip():
    ids = [make_id("001", n) for n in (1, 2, 61, 62, 63, 3843, 3844, 10**9, 62**9 - 1)]
    assert all(ID_RE.fullmatch(i) and i.startswith("001") for i in ids)
    assert ids == sorted(ids)
    assert [id_counter(i) for i in ids] == [1, 2, 61, 62, 63, 3843, 3844, 10**9, 62**9 - 1]
    counters = np.array([1, 5, 62, 99_999, 123_456_789], dtype=np.int64)
    assert make_ids("00Q", counters).to_pylist() == [make_id("00Q", int(n)) for n in counters]
    with pytest.raises(OverflowError):
        make_id("001", 62**9)


def test_generated_ids_are_unique_ordered_and_case_safe(small):
    for name in ("Account", "Contact", "Opportunity", "AccountTag", "Invoice__c"):
        obj_prefix = small.describe(name, "58.0")["keyPrefix"]
        ids = [r["Id"] for r in small.records(name)]
        assert len(ids) == len(set(ids))
        assert all(
            ID_RE.fullmatch(i) and i.startswith(obj_prefix) and id_suffix(i[:15]) == i[15:] for i in ids
        )
        by_creation = sorted(small.records(name), key=lambda r: (r.get("CreatedDate") or 0, r["Id"]))
        assert [r["Id"] for r in by_creation] == sorted(ids), name  # Ids sort by creation order


def test_same_seed_same_org_other_seed_other_org():
    def snapshot(org: Org) -> list:
        return [(name, org.records(name)) for name in ("Account", "Opportunity", "Invoice__c", "AccountTag")]

    first = snapshot(Org(OrgConfig(seed=7, scale=0.01)))
    assert first == snapshot(Org(OrgConfig(seed=7, scale=0.01)))
    assert first != snapshot(Org(OrgConfig(seed=8, scale=0.01)))


def test_counts_follow_the_scale_and_overrides():
    catalog = build_catalog()
    one = record_counts(catalog, 1.0)
    assert one["Account"] >= 5_000
    assert 1.8 <= one["Contact"] / one["Account"] <= 2.2
    assert 1.3 <= one["Opportunity"] / one["Account"] <= 1.7
    assert 80 <= one["User"] <= 150 and 10 <= one["Profile"] <= 20
    assert one["Name"] == 0
    for name in ("OpportunityLineItem", "Case", "Task", "Event", "Lead", "Campaign", "CampaignMember",
                 "UserRole", "Group", "Period", "Pricebook2", "Product2", "AccountTag"):  # fmt: skip
        assert one[name] > 0, name
    double = record_counts(catalog, 2.0)
    assert double["Account"] == 2 * one["Account"] and double["Task"] == 2 * one["Task"]
    tiny = record_counts(catalog, 0.0001)
    assert all(count >= 1 for name, count in tiny.items() if name != "Name")
    assert record_counts(catalog, 0.01, {"account": 1_000_000})["Account"] == 1_000_000
    with pytest.raises(ModelError, match="Nope"):
        record_counts(catalog, 1.0, {"Nope": 3})


def test_org_counts_match(full):
    assert full.count("Account") == record_counts(build_catalog(), 1.0)["Account"]
    assert Org(OrgConfig(scale=0.01, counts={"Account": 12, "Contact": 0})).count("Contact") == 0


def _check_value(field: dict, value, references: dict[str, set[str]]) -> None:
    t = field["type"]
    name = field["name"]
    if value is None:
        assert field["nillable"] or t in ("address", "location") or field["calculated"], name
        return
    if t in (
        "string",
        "textarea",
        "phone",
        "url",
        "email",
        "combobox",
        "encryptedstring",
        "anyType",
        "base64",
    ):
        assert isinstance(value, str) and value, name
        if t not in ("base64", "anyType"):
            assert len(value) <= field["length"], name
        if t == "email":
            assert re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]{2,}", value), value
        if t == "url":
            assert value.startswith("https://"), value
    elif t == "picklist":
        assert value in {v["value"] for v in field["picklistValues"]}, (name, value)
    elif t == "multipicklist":
        parts = value.split(";")
        assert len(parts) == len(set(parts)) and set(parts) <= {v["value"] for v in field["picklistValues"]}
    elif t == "boolean":
        assert isinstance(value, bool)
    elif t == "int":
        assert isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**31
    elif t in ("double", "currency", "percent"):
        assert isinstance(value, Decimal) and -value.as_tuple().exponent == field["scale"], (name, value)
        assert len(value.as_tuple().digits) <= max(field["precision"], field["scale"] + 1), (name, value)
    elif t == "date":
        assert isinstance(value, date) and not isinstance(value, datetime)
    elif t == "datetime":
        assert isinstance(value, datetime) and value.tzinfo == UTC and value.microsecond % 1000 == 0
    elif t == "time":
        assert isinstance(value, time)
    elif t in ("id", "reference"):
        assert ID_RE.fullmatch(value), (name, value)
        if t == "reference":
            targets = set().union(*(references.get(target, set()) for target in field["referenceTo"]))
            assert value in targets, (name, value)
    elif t == "address":
        assert isinstance(value, dict) and list(value) == sorted(value)
        assert any(v is not None for v in value.values())
    else:  # pragma: no cover - a new type needs a check here
        raise AssertionError(f"unchecked type {t}")


def test_values_fit_their_types_in_every_object(small):
    references = {
        name: {r["Id"] for r in small.records(name)} for name in small.object_names() if name != "Name"
    }
    seen_types = Counter()
    for name in small.object_names():
        if name == "Name":
            continue
        fields = small.describe(name, "58.0")["fields"]
        records = small.records(name)
        assert records, name
        for record in records:
            assert set(record) == {f["name"] for f in fields}
            for field in fields:
                _check_value(field, record[field["name"]], references)
                if record[field["name"]] is not None:
                    seen_types[field["type"]] += 1
    assert set(seen_types) >= {"id", "reference", "string", "textarea", "picklist", "multipicklist", "boolean",  # noqa: E501
                               "int", "double", "currency", "percent", "date", "datetime", "email", "phone",
                               "url", "address", "combobox"}  # fmt: skip


def test_generated_columns_have_the_store_types():
    catalog = build_catalog(describe_dir=Path(__file__).parent / "data")
    counts = record_counts(catalog, 0.01)
    for obj in catalog:
        if counts[obj.name]:
            table = generate_object(obj, catalog, counts, seed=1)
            for chunk in table.chunks:
                assert set(chunk) == {f.name for f in obj.stored_fields()}
                storage_check(obj, chunk)


def test_values_are_consistent_where_salesforce_derives_them(full):
    opportunities = full.query(
        "SELECT Id, IsWon, IsClosed, StageName, Amount, Probability, ExpectedRevenue "
        "FROM Opportunity LIMIT 2000"
    ).records()
    for opportunity in opportunities:
        won, closed = opportunity["IsWon"], opportunity["IsClosed"]
        assert won == (opportunity["StageName"] == "Closed Won")
        assert closed == (opportunity["StageName"] in ("Closed Won", "Closed Lost"))
        if opportunity["Amount"] is not None and opportunity["Probability"] is not None:
            expected = (opportunity["Amount"] * opportunity["Probability"] / 100).quantize(
                Decimal("0.01"), "ROUND_DOWN"
            )
            assert opportunity["ExpectedRevenue"] == expected
    for case in full.query("SELECT Id, IsClosed, Status, ClosedDate FROM Case LIMIT 2000").records():
        assert case["IsClosed"] == (case["Status"] == "Closed")
        assert (case["ClosedDate"] is not None) == case["IsClosed"]
    for contact in full.query("SELECT Id, Name, FirstName, LastName FROM Contact LIMIT 500").records():
        assert contact["Name"] == " ".join(n for n in (contact["FirstName"], contact["LastName"]) if n)
    admin = full.get("User", full.admin_user_id)
    assert admin["Username"] == "admin@example.com" and admin["IsActive"] is not None
    for account in full.query("SELECT Id, BillingAddress FROM Account LIMIT 2000").records():
        address = account["BillingAddress"]
        if address is not None and address["city"] == "Toronto":
            assert (address["country"], address["countryCode"], address["stateCode"]) == (
                "Canada",
                "CA",
                "ON",
            )


def test_text_has_unicode_quotes_commas_and_newlines(full):
    texts = [
        value
        for row in full.query("SELECT Name, BillingStreet, Description FROM Account").rows()
        for value in row
        if value is not None
    ]
    assert any("\n" in t for t in texts) and any('"' in t for t in texts) and any("," in t for t in texts)
    assert any(any(ord(ch) > 0x2FFF for ch in t) for t in texts)  # CJK
    assert any(any(ord(ch) > 0xFFFF for ch in t) for t in texts)  # emoji
    assert any(any(0xC0 <= ord(ch) <= 0x17F for ch in t) for t in texts)  # accents
    names = {row[0] for row in full.query("SELECT LastName FROM Contact").rows()}
    assert any("'" in n for n in names)


def test_timestamps_are_ordered_and_end_at_the_epoch(small):
    for name in small.object_names():
        if name == "Name":
            continue
        for record in small.records(name):
            stamps = [
                record.get(n) for n in ("CreatedDate", "LastModifiedDate", "SystemModstamp") if n in record
            ]
            assert stamps == sorted(stamps), (name, record["Id"])
            assert all(s <= DEFAULT_EPOCH for s in stamps)
            assert all(s >= datetime(2022, 12, 1, tzinfo=UTC) for s in stamps)


def test_bulk_update_clusters_share_a_systemmodstamp_across_page_boundaries(full):
    live = full.query("SELECT Id, SystemModstamp FROM Account ORDER BY SystemModstamp, Id").records()
    assert live == sorted(live, key=lambda r: (r["SystemModstamp"], r["Id"]))
    per_ms = Counter(r["SystemModstamp"] for r in live)
    per_second = Counter(r["SystemModstamp"].replace(microsecond=0) for r in live)
    assert max(per_ms.values()) >= 100  # hundreds of records on one exact timestamp
    assert sum(1 for count in per_second.values() if count >= 50) >= 3
    assert sum(per_ms[s] for s in per_ms if per_ms[s] > 1) >= len(live) * 0.1
    # The 2,000th and 2,001st records of ORDER BY SystemModstamp, Id share their timestamp: a page
    # boundary inside a cluster.
    assert live[1999]["SystemModstamp"] == live[2000]["SystemModstamp"]


def test_a_few_percent_are_soft_deleted_only_where_isdeleted_exists(full):
    for name in ("Account", "Contact", "Task", "Opportunity"):
        total = full.count(name, include_deleted=True)
        deleted = full.query(
            f"SELECT COUNT() FROM {name} WHERE IsDeleted = true", include_deleted=True
        ).total_size
        assert 0.01 <= deleted / total <= 0.06, (name, deleted, total)
        assert full.count(name, include_deleted=False) == total - deleted
    assert "IsDeleted" not in full.records("User")[0]


def test_large_object_generation_is_fast_and_sound():
    catalog = build_catalog()
    obj = catalog.get("Account")
    n = 400_000
    started = clock.perf_counter()
    table = generate_object(obj, catalog, {"Account": n, "User": 50}, seed=3)
    elapsed = clock.perf_counter() - started
    assert elapsed < 20, elapsed
    assert table.count == n and sum(table.lengths) == n and max(table.lengths) <= CHUNK_ROWS
    ids = np.concatenate([np.asarray(chunk["Id"].to_pylist()) for chunk in table.chunks])
    assert len(np.unique(ids)) == n
    stamps = np.concatenate([chunk["SystemModstamp"].to_numpy() for chunk in table.chunks])
    assert np.all(np.diff(stamps.astype(np.int64)) >= 0)  # physical order = SystemModstamp order
    biggest = Counter(stamps.tolist()).most_common(1)[0][1]
    assert biggest > 2_000  # one bulk update larger than a REST page
