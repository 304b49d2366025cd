"""Query execution and wire formats of the store, checked against the org's own records (the oracle)."""

from __future__ import annotations

import csv
import io
import json
import re
import threading
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest

from salesforce_emulator.errors import ApiError
from salesforce_emulator.org import Org, OrgConfig
from salesforce_emulator.soql import SoqlError

REST_DATETIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000")
CSV_DATETIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture(scope="module")
def org() -> Org:
    return Org(OrgConfig(scale=0.05, seed=11))


@pytest.fixture
def fresh() -> Org:
    return Org(OrgConfig(scale=0.01, seed=5))


def ids(org: Org, soql: str, include_deleted: bool = False) -> list[str]:
    result = org.query(soql, include_deleted)
    position = result.columns.index("Id")
    return [row[position] for row in result.rows()]


def live(org: Org, sobject: str) -> list[dict]:
    return [r for r in org.records(sobject) if not r.get("IsDeleted")]


def same(org: Org, soql: str, predicate, sobject: str = "Account") -> None:
    expected = {r["Id"] for r in live(org, sobject) if predicate(r)}
    got = ids(org, soql)
    assert len(got) == len(set(got))
    assert set(got) == expected, soql
    assert expected, f"the filter selects nothing, so it proves little: {soql}"


def low(value):
    return value.lower() if isinstance(value, str) else value


# ---- filters on each type ----


def test_string_and_picklist_filters_are_case_insensitive(org):
    name = live(org, "Account")[3]["Name"]
    escaped = name.replace("\\", "\\\\").replace("'", "\\'")
    same(
        org, f"SELECT Id FROM Account WHERE Name = '{escaped.upper()}'", lambda r: low(r["Name"]) == low(name)
    )
    same(org, "SELECT Id FROM Account WHERE Industry = 'banking'", lambda r: r["Industry"] == "Banking")
    same(org, "SELECT Id FROM Account WHERE Industry != 'Banking'", lambda r: r["Industry"] != "Banking")
    same(
        org,
        "SELECT Id FROM Account WHERE Rating IN ('hot', 'WARM')",
        lambda r: r["Rating"] in ("Hot", "Warm"),
    )
    same(
        org,
        "SELECT Id FROM Account WHERE Rating NOT IN ('Hot')",
        lambda r: r["Rating"] != "Hot",  # NOT IN keeps nulls, like !=
    )
    same(org, "SELECT Id FROM Account WHERE Name LIKE 'acme%'", lambda r: low(r["Name"]).startswith("acme"))
    same(
        org,
        "SELECT Id FROM Account WHERE Name LIKE '%inc_'",
        lambda r: re.fullmatch(r".*inc.", low(r["Name"])),
    )
    same(org, "SELECT Id FROM Account WHERE Rating = null", lambda r: r["Rating"] is None)
    same(org, "SELECT Id FROM Account WHERE Rating != null", lambda r: r["Rating"] is not None)
    same(
        org,
        "SELECT Id FROM Account WHERE Tier__c IN ('Gold', null)",
        lambda r: r["Tier__c"] in ("Gold", None),
    )


def test_id_and_reference_filters(org):
    accounts = sorted(r["Id"] for r in live(org, "Account"))
    pivot = accounts[len(accounts) // 2]
    same(org, f"SELECT Id FROM Account WHERE Id = '{pivot}'", lambda r: r["Id"] == pivot)
    same(org, f"SELECT Id FROM Account WHERE Id = '{pivot[:15]}'", lambda r: r["Id"] == pivot)  # 15-char Id
    same(org, f"SELECT Id FROM Account WHERE Id > '{pivot}'", lambda r: r["Id"] > pivot)
    same(org, f"SELECT Id FROM Account WHERE Id <= '{pivot}'", lambda r: r["Id"] <= pivot)
    owner = live(org, "Account")[0]["OwnerId"]
    same(org, f"SELECT Id FROM Account WHERE OwnerId = '{owner}'", lambda r: r["OwnerId"] == owner)
    account = live(org, "Contact")[0]["AccountId"]
    same(
        org,
        f"SELECT Id, AccountId FROM Contact WHERE AccountId IN ('{account}', '{accounts[0]}')",
        lambda r: r["AccountId"] in (account, accounts[0]),
        "Contact",
    )


def test_boolean_number_and_currency_filters(org):
    same(org, "SELECT Id FROM Account WHERE IsActive = true", lambda r: r["IsActive"] is True)
    same(org, "SELECT Id FROM Account WHERE IsActive = false", lambda r: r["IsActive"] is False)
    same(
        org,
        "SELECT Id FROM Account WHERE NumberOfEmployees >= 50",
        lambda r: r["NumberOfEmployees"] is not None and r["NumberOfEmployees"] >= 50,
    )
    same(
        org,
        "SELECT Id FROM Opportunity WHERE Amount > 25000.50",
        lambda r: r["Amount"] is not None and r["Amount"] > Decimal("25000.50"),
        "Opportunity",
    )
    same(
        org,
        "SELECT Id FROM Opportunity WHERE Probability < 50",
        lambda r: r["Probability"] is not None and r["Probability"] < 50,
        "Opportunity",
    )
    same(
        org,
        "SELECT Id FROM Account WHERE BillingLatitude > 40.5",
        lambda r: r["BillingLatitude"] is not None and r["BillingLatitude"] > Decimal("40.5"),
    )


def test_date_and_datetime_filters(org):
    same(
        org,
        "SELECT Id FROM Opportunity WHERE CloseDate < 2025-06-01",
        lambda r: r["CloseDate"] < date(2025, 6, 1),
        "Opportunity",
    )
    stamps = sorted(r["SystemModstamp"] for r in live(org, "Account"))
    middle = stamps[len(stamps) // 2]
    text = middle.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"  # 6 fractional digits, as singer taps write
    same(
        org, f"SELECT Id FROM Account WHERE SystemModstamp >= {text}", lambda r: r["SystemModstamp"] >= middle
    )
    same(
        org, f"SELECT Id FROM Account WHERE SystemModstamp = {text}", lambda r: r["SystemModstamp"] == middle
    )
    offset = (middle + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+02:00"
    same(
        org, f"SELECT Id FROM Account WHERE SystemModstamp > {offset}", lambda r: r["SystemModstamp"] > middle
    )
    whole = middle.replace(microsecond=0)
    same(
        org,
        f"SELECT Id FROM Account WHERE SystemModstamp < {whole.strftime('%Y-%m-%dT%H:%M:%SZ')}",
        lambda r: r["SystemModstamp"] < whole,
    )


def test_and_or_not_and_parentheses(org):
    same(
        org,
        "SELECT Id FROM Account WHERE (Industry = 'Banking' OR Industry = 'Retail') AND (NOT Rating = 'Hot')",
        lambda r: r["Industry"] in ("Banking", "Retail") and r["Rating"] != "Hot",
    )
    same(
        org,
        "SELECT Id FROM Account WHERE Rating = 'Hot' OR (IsActive = true AND NumberOfEmployees < 20)",
        lambda r: r["Rating"] == "Hot" or (r["IsActive"] and (r["NumberOfEmployees"] or 10**9) < 20),
    )


# ---- ORDER BY, LIMIT, OFFSET, COUNT ----


def _sort_key(value, descending: bool, nulls_first: bool):
    missing = value is None
    rank = (0 if missing else 1) if nulls_first else (1 if missing else 0)
    return rank, value


def test_order_by_several_fields_with_salesforce_null_ordering(org):
    rows = org.query(
        "SELECT Id, Rating, NumberOfEmployees, Name FROM Account ORDER BY Rating, NumberOfEmployees DESC, Id"
    ).records()
    rating_order = {"Hot": 0, "Warm": 1, "Cold": 2}  # a picklist sorts in its defined order
    assert [r["Rating"] for r in rows][: sum(1 for r in rows if r["Rating"] is None)] == [None] * sum(
        1 for r in rows if r["Rating"] is None
    )  # nulls first ascending
    keys = [
        (
            r["Rating"] is not None,
            rating_order.get(r["Rating"], -1),
            r["NumberOfEmployees"] is None,  # nulls last descending
            -(r["NumberOfEmployees"] or 0),
            r["Id"],
        )
        for r in rows
    ]
    assert keys == sorted(keys)
    explicit = org.query(
        "SELECT Id, NumberOfEmployees FROM Account ORDER BY NumberOfEmployees ASC NULLS LAST"
    ).rows()
    values = [v for _, v in explicit]
    assert values[-1] is None and values[0] is not None
    assert [v for v in values if v is not None] == sorted(v for v in values if v is not None)
    names = [r[1] for r in org.query("SELECT Id, Name FROM Account ORDER BY Name DESC").rows()]
    assert [n.lower() for n in names] == sorted((n.lower() for n in names), reverse=True)  # case-insensitive


def test_limit_offset_and_count(org):
    everything = ids(org, "SELECT Id FROM Account ORDER BY Id")
    assert ids(org, "SELECT Id FROM Account ORDER BY Id LIMIT 10") == everything[:10]
    assert ids(org, "SELECT Id FROM Account ORDER BY Id LIMIT 10 OFFSET 5") == everything[5:15]
    assert ids(org, "SELECT Id FROM Account ORDER BY Id OFFSET 7") == everything[7:]
    assert ids(org, "SELECT Id FROM Account LIMIT 3") == ids(org, "SELECT Id FROM Account")[:3]
    count = org.query("SELECT COUNT() FROM Account")
    assert (
        count.is_count and count.total_size == len(everything) and count.rest_records(0, 10, "58.0") == b"[]"
    )
    assert org.query("SELECT COUNT() FROM Account WHERE Industry = 'Banking'").total_size == len(
        [r for r in live(org, "Account") if r["Industry"] == "Banking"]
    )
    assert org.query("SELECT COUNT() FROM Account", include_deleted=True).total_size == len(
        org.records("Account")
    )


def test_query_hides_deleted_rows_and_query_all_shows_them(org):
    deleted = {r["Id"] for r in org.records("Account") if r["IsDeleted"]}
    assert deleted
    assert not deleted & set(ids(org, "SELECT Id FROM Account"))
    assert deleted <= set(ids(org, "SELECT Id, IsDeleted FROM Account", include_deleted=True))
    assert set(ids(org, "SELECT Id FROM Account WHERE IsDeleted = true", include_deleted=True)) == deleted
    assert ids(org, "SELECT Id FROM Account WHERE IsDeleted = true") == []
    # objects without IsDeleted: queryAll is query
    assert ids(org, "SELECT Id FROM User", include_deleted=True) == ids(org, "SELECT Id FROM User")


def test_errors_come_from_the_soql_layer(org):
    with pytest.raises(SoqlError) as error:
        org.query("SELECT Id, Nope FROM Account")
    assert error.value.error_code == "INVALID_FIELD"
    with pytest.raises(SoqlError) as error:
        org.query("SELECT Id FROM Name")
    assert error.value.error_code == "INVALID_TYPE_FOR_OPERATION"


# ---- snapshots ----


def test_a_result_is_a_snapshot(fresh):
    result = fresh.query("SELECT Id, Name FROM Account ORDER BY SystemModstamp, Id")
    before = result.rows()
    first = before[0][0]
    fresh.update("Account", first, {"Name": "Changed after the query"})
    fresh.create("Account", {"Name": "Created after the query"})
    fresh.hard_delete("Account", before[-1][0])
    fresh.add_field("Account", "Late__c", "string")
    assert result.rows() == before
    assert json.loads(result.rest_records(0, 1, "58.0"))[0]["Name"] == before[0][1]
    assert result.total_size == len(before)
    again = fresh.query("SELECT Id, Name FROM Account ORDER BY SystemModstamp, Id").rows()
    assert ("Changed after the query" in {name for _, name in again}) and len(again) == len(before)


# ---- REST JSON ----


def test_rest_records_are_salesforce_json(org):
    fields = "Id, Name, BillingAddress, AnnualRevenue, NumberOfEmployees, IsDeleted, CreatedDate, LastActivityDate, Industry, Description, Seats__c, ShippingLatitude"  # noqa: E501
    result = org.query(f"SELECT {fields} FROM Account ORDER BY SystemModstamp, Id", include_deleted=True)
    body = result.rest_records(0, result.total_size, "58.0")
    records = json.loads(body, parse_float=Decimal)
    rows = result.records()
    assert len(records) == len(rows) == result.total_size
    for record, row in zip(records, rows, strict=True):
        assert list(record) == ["attributes", *result.columns]
        assert record["attributes"] == {
            "type": "Account",
            "url": f"/services/data/v58.0/sobjects/Account/{row['Id']}",
        }
        for name in result.columns:
            value, expected = record[name], row[name]
            if isinstance(expected, datetime):
                assert REST_DATETIME.fullmatch(value), value
                assert datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z") == expected
            elif isinstance(expected, date):
                assert value == expected.isoformat()
            elif isinstance(expected, Decimal):
                assert Decimal(str(value)) == expected  # exact: no float rounding
            elif name == "BillingAddress" and expected is not None:
                assert list(value) == sorted(value)
                assert {
                    k: (Decimal(str(v)) if isinstance(v, Decimal) else v) for k, v in value.items()
                } == expected
            else:
                assert value == expected, name
    assert b'"AnnualRevenue":' in body and b'"IsDeleted":false' in body
    assert any(r["BillingAddress"] is None for r in records)  # all components null -> null
    assert any(r["Description"] and "\n" in r["Description"] for r in records)


def test_rest_records_paging_and_versions(org):
    result = org.query("SELECT Id FROM Contact ORDER BY Id")
    whole = json.loads(result.rest_records(0, result.total_size, "58.0"))
    pages = []
    for start in range(0, result.total_size, 37):
        pages.extend(json.loads(result.rest_records(start, start + 37, "58.0")))
    assert pages == whole
    assert json.loads(result.rest_records(0, 1, "41.0"))[0]["attributes"]["url"].startswith(
        "/services/data/v41.0/"
    )
    assert result.rest_records(result.total_size, result.total_size + 5, "58.0") == b"[]"


def test_rest_records_in_any_order_and_with_escapes(fresh):
    weird = 'Quote " backslash \\ tab \t bell \x07 newline \n end ✓ 🚀'
    record_id = fresh.create("Account", {"Name": "Escapes", "Description": weird})
    result = fresh.query("SELECT Id, Description, Name FROM Account ORDER BY Name DESC")
    records = json.loads(result.rest_records(0, result.total_size, "58.0"))
    assert [r["Id"] for r in records] == [row[0] for row in result.rows()]
    assert next(r for r in records if r["Id"] == record_id)["Description"] == weird


def test_base64_and_location_and_time_formats(tmp_path):
    from pathlib import Path

    data = Path(__file__).parent / "data"
    org = Org(OrgConfig(scale=0.02, describe_dir=data))
    org.add_field("Widget__c", "Opens_At__c", "time")
    record_id = org.create("Widget__c", {"Name": "Timed", "Opens_At__c": "09:30:00.250Z"})
    result = org.query(f"SELECT Id, Site__c, Opens_At__c FROM Widget__c WHERE Id = '{record_id}'")
    record = json.loads(result.rest_records(0, 1, "58.0"))[0]
    assert record["Opens_At__c"] == "09:30:00.250Z" and record["Site__c"] is None
    located = org.query("SELECT Id, Site__c FROM Widget__c WHERE Site__Latitude__s != null LIMIT 1")
    site = json.loads(located.rest_records(0, 1, "58.0"))[0]["Site__c"]
    assert list(site) == ["latitude", "longitude"] and site["latitude"] is not None
    documents = org.query("SELECT Id, Body FROM Document")
    rendered = json.loads(documents.rest_records(0, documents.total_size, "58.0"))
    with_body = [(r, row) for r, row in zip(rendered, documents.rows(), strict=True) if row[1] is not None]
    assert with_body
    for record, _ in with_body:  # REST gives a base64 field's blob URL, not its content
        assert record["Body"] == f"/services/data/v58.0/sobjects/Document/{record['Id']}/Body"


# ---- Bulk CSV ----


def test_csv_pages_are_bulk_csv(org):
    fields = "Id, Name, BillingStreet, AnnualRevenue, IsDeleted, CreatedDate, LastActivityDate, Rating"
    fields += ", Description"
    result = org.query(f"SELECT {fields} FROM Account ORDER BY SystemModstamp, Id", include_deleted=True)
    page = result.csv_page(0, result.total_size)
    text = page.decode("utf-8")
    header, _, _ = text.partition("\n")
    assert header == ",".join(f'"{name}"' for name in result.columns)
    parsed = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    assert parsed[0] == result.columns
    rows = result.records()
    assert len(parsed) - 1 == len(rows)
    for values, row in zip(parsed[1:], rows, strict=True):
        for name, value in zip(result.columns, values, strict=True):
            expected = row[name]
            if expected is None:
                assert value == ""
            elif isinstance(expected, bool):
                assert value == ("true" if expected else "false")
            elif isinstance(expected, datetime):
                assert CSV_DATETIME.fullmatch(value) and value[:-1] + "+00:00" == expected.isoformat(
                    timespec="milliseconds"
                )
            elif isinstance(expected, date):
                assert value == expected.isoformat()
            elif isinstance(expected, Decimal):
                assert Decimal(value) == expected
            else:
                assert value == expected
    # every value quoted, nulls empty and unquoted, LF line ends, quotes doubled, newlines inside quotes
    assert ",," in text or ",\n" in text
    assert '""' in text and "\r\n" not in text
    assert re.search(r'"[^"\n]*\n[^"]*"', text)


def test_csv_pages_repeat_the_header(org):
    result = org.query("SELECT Id, Name FROM Contact ORDER BY Id")
    first, second = result.csv_page(0, 10), result.csv_page(10, 20)
    assert first.split(b"\n")[0] == second.split(b"\n")[0] == b'"Id","Name"'
    assert len(first.strip().split(b"\n")) == 11
    assert result.csv_page(result.total_size, result.total_size + 10) == b'"Id","Name"\n'


def test_bulk_check_raises_the_real_bulk_errors(org):
    with pytest.raises(ApiError) as error:
        org.bulk_check("SELECT Id, BillingAddress FROM Account")
    assert (error.value.error_code, error.value.message) == (
        "API_ERROR",
        "Selecting compound data not supported in Bulk Query",
    )
    with pytest.raises(ApiError) as error:
        org.bulk_check("SELECT Id FROM AccountTag")
    assert (
        error.value.error_code == "INVALIDENTITY"
        and "is not supported by the Bulk API" in error.value.message
    )
    org.bulk_check("SELECT Id, BillingCity FROM Account WHERE SystemModstamp > 2024-01-01T00:00:00Z")
    with pytest.raises(SoqlError):
        org.bulk_check("SELECT Id FROM Nope")


# ---- threads ----


def test_queries_and_changes_from_many_threads(fresh):
    errors: list[BaseException] = []
    created: list[str] = []
    lock = threading.Lock()

    def reader() -> None:
        try:
            for _ in range(15):
                result = fresh.query(
                    "SELECT Id, Name, SystemModstamp FROM Account ORDER BY SystemModstamp, Id"
                )
                records = json.loads(result.rest_records(0, result.total_size, "58.0"))
                assert len(records) == result.total_size
                result.csv_page(0, 50)
        except BaseException as error:
            errors.append(error)

    def writer(index: int) -> None:
        try:
            for n in range(15):
                record_id = fresh.create("Account", {"Name": f"Thread {index} #{n}"})
                fresh.update("Account", record_id, {"Rating": "Hot"})
                with lock:
                    created.append(record_id)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=reader) for _ in range(3)] + [
        threading.Thread(target=writer, args=(i,)) for i in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    rows = {row[0]: row[1] for row in fresh.query("SELECT Id, Rating FROM Account").rows()}
    assert all(rows[record_id] == "Hot" for record_id in created) and len(created) == 45
