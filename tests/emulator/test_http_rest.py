"""The REST API over real sockets: versions, describe, records, limits, composite batch, query paging."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import requests
from emulator_fixtures import API_VERSION, bearer_session, rest_value, start_emulator

from salesforce_emulator import Emulator

V = f"/services/data/v{API_VERSION}"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    emulator = start_emulator(counts={"Account": 450})
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def http(emu: Emulator) -> requests.Session:
    return bearer_session(emu)


def get(http: requests.Session, emu: Emulator, path: str, **kwargs) -> requests.Response:
    return http.get(emu.base_url + path, timeout=60, **kwargs)


def live_accounts(emu: Emulator) -> list[dict]:
    return emu.org.records("Account", include_deleted=False)


def read_all_pages(http: requests.Session, emu: Emulator, first: requests.Response, **kwargs) -> list[dict]:
    page = first.json()
    records = list(page["records"])
    while not page["done"]:
        response = get(http, emu, page["nextRecordsUrl"], **kwargs)
        assert response.status_code == 200, response.text
        page = response.json()
        records.extend(page["records"])
    return records


# ---------------------------------------------------------------- versions and resources
def test_versions_list_40_to_64_with_release_labels(emu: Emulator) -> None:
    for path in ("/services/data/", "/services/data"):
        response = requests.get(emu.base_url + path, timeout=30)  # no login needed
        assert response.status_code == 200
        versions = response.json()
        assert [item["version"] for item in versions] == [f"{n}.0" for n in range(40, 65)]
        by_version = {item["version"]: item for item in versions}
        assert by_version["58.0"] == {"label": "Summer '23", "url": "/services/data/v58.0", "version": "58.0"}
        assert by_version["40.0"]["label"] == "Summer '17"
        assert by_version["59.0"]["label"] == "Winter '24"
        assert by_version["60.0"]["label"] == "Spring '24"
        assert by_version["64.0"]["label"] == "Summer '25"


@pytest.mark.parametrize("version", ["39.0", "65.0", "20.0", "58.5"])
def test_unserved_versions_are_not_found(http: requests.Session, emu: Emulator, version: str) -> None:
    response = get(http, emu, f"/services/data/v{version}/sobjects")
    assert response.status_code == 404
    assert response.json() == [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]


@pytest.mark.parametrize("version", ["40.0", "47.0", "58.0", "64.0"])
def test_every_served_version_answers(http: requests.Session, emu: Emulator, version: str) -> None:
    response = get(http, emu, f"/services/data/v{version}/")
    assert response.status_code == 200
    resources = response.json()
    assert resources["sobjects"] == f"/services/data/v{version}/sobjects"
    assert resources["query"] == f"/services/data/v{version}/query"
    assert resources["jobs"] == f"/services/data/v{version}/jobs"


def test_unknown_paths_are_not_found(http: requests.Session, emu: Emulator) -> None:
    for path in (f"{V}/nothing", "/nothing", f"{V}/sobjects/Account/describe/extra"):
        response = get(http, emu, path)
        assert response.status_code == 404, path
        assert response.json()[0]["errorCode"] == "NOT_FOUND"


def test_wrong_method_is_method_not_allowed(http: requests.Session, emu: Emulator) -> None:
    response = http.post(f"{emu.base_url}{V}/query", json={}, timeout=30)
    assert response.status_code == 405
    assert response.json() == [
        {"message": "HTTP Method 'POST' not allowed. Allowed are GET,HEAD", "errorCode": "METHOD_NOT_ALLOWED"}
    ]


# ---------------------------------------------------------------- headers on every response
def test_limit_header_counts_every_authenticated_call(http: requests.Session, emu: Emulator) -> None:
    first = get(http, emu, f"{V}/limits")
    second = get(http, emu, f"{V}/sobjects")
    used_first = int(first.headers["Sforce-Limit-Info"].split("=")[1].split("/")[0])
    assert second.headers["Sforce-Limit-Info"] == f"api-usage={used_first + 1}/100000"
    assert emu.api_usage == used_first + 1


def test_date_header_follows_the_org_clock(emulator_factory) -> None:
    emu = emulator_factory(scale=0.001)
    emu.org.clock.set(datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC), frozen=True)
    for response in (
        requests.get(emu.base_url + "/services/data/", timeout=30),
        requests.get(emu.base_url + f"{V}/limits", timeout=30),  # a 401 carries it too
    ):
        assert response.headers["Date"] == "Wed, 02 Jan 2030 03:04:05 GMT"


def test_uri_over_16384_bytes_is_414(http: requests.Session, emu: Emulator) -> None:
    prefix = f"{V}/query?q="
    too_long = prefix + "A" * (16_385 - len(prefix))
    assert len(too_long) == 16_385
    response = http.get(emu.base_url + too_long, timeout=30)
    assert response.status_code == 414
    # A URI of 16,384 bytes is no 414, but with the headers the request passes 16,384 bytes: 431.
    assert http.get(emu.base_url + too_long[:-1], timeout=30).status_code == 431
    # Well under the limit the request is served (here: a SOQL syntax error).
    response = http.get(emu.base_url + too_long[:15_000], timeout=30)
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "MALFORMED_QUERY"


def test_uri_over_the_standard_library_limit_is_414_too(http: requests.Session, emu: Emulator) -> None:
    response = get(http, emu, f"{V}/query", params={"q": "x" * 70_000})
    assert response.status_code == 414


def test_request_line_and_headers_over_16384_bytes_is_431(http: requests.Session, emu: Emulator) -> None:
    response = get(http, emu, f"{V}/limits", headers={"X-Padding": "p" * 16_500})
    assert response.status_code == 431


# ---------------------------------------------------------------- describe and records
def test_describe_global(http: requests.Session, emu: Emulator) -> None:
    response = get(http, emu, f"{V}/sobjects")
    assert response.status_code == 200
    body = response.json()
    assert body == emu.org.describe_global(API_VERSION)
    assert "Account" in {item["name"] for item in body["sobjects"]}


@pytest.mark.parametrize("suffix", ["describe", "describe/"])
def test_describe(http: requests.Session, emu: Emulator, suffix: str) -> None:
    response = get(http, emu, f"{V}/sobjects/Account/{suffix}")
    assert response.status_code == 200
    body = response.json()
    assert body == json.loads(json.dumps(emu.org.describe("Account", API_VERSION)))
    assert body["name"] == "Account"
    assert "SystemModstamp" in {field["name"] for field in body["fields"]}


def test_describe_of_an_unknown_object_is_not_found(http: requests.Session, emu: Emulator) -> None:
    response = get(http, emu, f"{V}/sobjects/Bogus/describe")
    assert response.status_code == 404
    assert response.json() == [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]


def test_sobject_metadata(http: requests.Session, emu: Emulator) -> None:
    for path in (f"{V}/sobjects/Account", f"{V}/sobjects/Account/"):
        response = get(http, emu, path)
        assert response.status_code == 200
        body = response.json()
        assert body["objectDescribe"]["name"] == "Account"
        assert body["recentItems"] == []


def test_one_record_by_id(http: requests.Session, emu: Emulator) -> None:
    account = live_accounts(emu)[0]
    response = get(http, emu, f"{V}/sobjects/Account/{account['Id']}")
    assert response.status_code == 200
    body = response.json(parse_float=Decimal)
    assert body["attributes"] == {"type": "Account", "url": f"{V}/sobjects/Account/{account['Id']}"}
    for name in ("Id", "Name", "CreatedDate", "SystemModstamp", "IsDeleted", "BillingCity"):
        assert body[name] == rest_value(account[name]), name
    only = get(http, emu, f"{V}/sobjects/Account/{account['Id'][:15]}", params={"fields": "Name"}).json()
    assert set(only) == {"attributes", "Id", "Name"}
    assert only["Name"] == account["Name"]


def test_missing_and_deleted_records(emulator_factory) -> None:
    emu = emulator_factory(scale=0.001, counts={"Account": 5})
    http = bearer_session(emu)
    record_id = emu.org.records("Account", include_deleted=False)[0]["Id"]
    emu.org.delete("Account", record_id)
    deleted = get(http, emu, f"{V}/sobjects/Account/{record_id}")
    assert deleted.status_code == 404
    assert deleted.json()[0]["errorCode"] == "ENTITY_IS_DELETED"
    missing = get(http, emu, f"{V}/sobjects/Account/001000000000000AAA")
    assert missing.status_code == 404
    assert missing.json()[0]["errorCode"] == "NOT_FOUND"


# ---------------------------------------------------------------- limits
def test_limits_report_the_allowance_by_version(http: requests.Session, emu: Emulator) -> None:
    body = get(http, emu, f"{V}/limits/").json()
    assert body["DailyApiRequests"] == {"Max": 100_000, "Remaining": 100_000 - emu.api_usage}
    assert "DailyBulkApiBatches" in body and "DailyBulkV2QueryJobs" in body
    assert "DailyBulkApiRequests" not in body
    old = get(http, emu, "/services/data/v48.0/limits").json()
    assert "DailyBulkApiRequests" in old and "DailyBulkApiBatches" not in old
    oldest = get(http, emu, "/services/data/v46.0/limits").json()
    assert "DailyBulkV2QueryJobs" not in oldest


# ---------------------------------------------------------------- composite batch
def test_composite_batch_of_describes(http: requests.Session, emu: Emulator) -> None:
    names = ["Account", "Contact", "Bogus"]
    body = {
        "batchRequests": [{"method": "GET", "url": f"v{API_VERSION}/sobjects/{n}/describe"} for n in names]
    }
    response = http.post(f"{emu.base_url}{V}/composite/batch", json=body, timeout=60)
    assert response.status_code == 200
    result = response.json()
    assert result["hasErrors"] is True
    assert [item["statusCode"] for item in result["results"]] == [200, 200, 404]
    assert result["results"][0]["result"]["name"] == "Account"
    assert result["results"][1]["result"]["name"] == "Contact"
    assert result["results"][2]["result"][0]["errorCode"] == "NOT_FOUND"


def test_composite_batch_halt_on_error(http: requests.Session, emu: Emulator) -> None:
    urls = [f"{V}/sobjects/Bogus/describe", f"{V}/sobjects/Account/describe"]
    body = {"haltOnError": True, "batchRequests": [{"method": "GET", "url": url} for url in urls]}
    result = http.post(f"{emu.base_url}{V}/composite/batch", json=body, timeout=60).json()
    assert [item["statusCode"] for item in result["results"]] == [404, 412]
    assert result["results"][1]["result"][0]["errorCode"] == "BATCH_PROCESSING_HALTED"


def test_composite_batch_counts_once_and_caps_at_25(http: requests.Session, emu: Emulator) -> None:
    before = emu.api_usage
    body = {"batchRequests": [{"method": "GET", "url": f"v{API_VERSION}/sobjects/Account/describe"}] * 25}
    response = http.post(f"{emu.base_url}{V}/composite/batch", json=body, timeout=60)
    assert response.status_code == 200
    assert emu.api_usage == before + 1
    body["batchRequests"].append(body["batchRequests"][0])
    too_many = http.post(f"{emu.base_url}{V}/composite/batch", json=body, timeout=60)
    assert too_many.status_code == 400


# ---------------------------------------------------------------- queries
@pytest.mark.parametrize("endpoint", ["query", "query/"])
def test_query_pages_through_every_live_record(http: requests.Session, emu: Emulator, endpoint: str) -> None:
    headers = {"Sforce-Query-Options": "batchSize=200"}
    first = get(http, emu, f"{V}/{endpoint}", params={"q": "SELECT Id, Name FROM Account"}, headers=headers)
    assert first.status_code == 200
    page = first.json()
    expected = live_accounts(emu)
    assert page["totalSize"] == len(expected)
    assert page["done"] is False
    assert len(page["records"]) == 200
    assert page["nextRecordsUrl"].startswith(f"{V}/query/01g")
    assert page["nextRecordsUrl"].endswith("-200")
    assert list(page) == ["totalSize", "done", "nextRecordsUrl", "records"]
    records = read_all_pages(http, emu, first)
    assert len(records) == len(expected)
    assert {record["Id"] for record in records} == {record["Id"] for record in expected}
    assert records[0]["attributes"]["type"] == "Account"


def test_query_all_includes_soft_deleted_records(emulator_factory) -> None:
    emu = emulator_factory(scale=0.001, counts={"Account": 30})
    http = bearer_session(emu)
    deleted_id = emu.org.records("Account", include_deleted=False)[0]["Id"]
    emu.org.delete("Account", deleted_id)
    soql = "SELECT Id, IsDeleted FROM Account"
    live = get(http, emu, f"{V}/query", params={"q": soql}).json()
    every = get(http, emu, f"{V}/queryAll/", params={"q": soql}).json()
    assert deleted_id not in {record["Id"] for record in live["records"]}
    by_id = {record["Id"]: record for record in every["records"]}
    assert by_id[deleted_id]["IsDeleted"] is True
    assert every["totalSize"] == len(emu.org.records("Account", include_deleted=True))


def test_query_all_pages_and_next_records_url_under_query_all(http: requests.Session, emu: Emulator) -> None:
    headers = {"Sforce-Query-Options": "batchSize=300"}
    first = get(http, emu, f"{V}/queryAll", params={"q": "SELECT Id FROM Account"}, headers=headers)
    page = first.json()
    assert page["nextRecordsUrl"].startswith(f"{V}/query/")
    as_query_all = page["nextRecordsUrl"].replace("/query/", "/queryAll/")
    second = get(http, emu, as_query_all)
    assert second.status_code == 200
    assert second.json()["records"][0]["Id"] != page["records"][0]["Id"]
    assert len(read_all_pages(http, emu, first)) == len(emu.org.records("Account", include_deleted=True))


@pytest.mark.parametrize(("asked", "served"), [("50", 200), ("1000", 1000), ("5000", 2000), ("junk", 2000)])
def test_batch_size_is_clamped_to_200_2000(emulator_factory, asked: str, served: int) -> None:
    emu = emulator_factory(scale=0.001, counts={"Account": 2500})
    http = bearer_session(emu)
    headers = {"Sforce-Query-Options": f"batchSize={asked}"}
    page = get(http, emu, f"{V}/query", params={"q": "SELECT Id FROM Account"}, headers=headers).json()
    assert len(page["records"]) == min(served, page["totalSize"])


def test_query_more_pages_are_re_readable(http: requests.Session, emu: Emulator) -> None:
    headers = {"Sforce-Query-Options": "batchSize=200"}
    page = get(http, emu, f"{V}/query", params={"q": "SELECT Id FROM Account"}, headers=headers).json()
    url = page["nextRecordsUrl"]
    assert get(http, emu, url).json() == get(http, emu, url).json()


def test_query_snapshot_ignores_later_changes(emulator_factory) -> None:
    emu = emulator_factory(scale=0.001, counts={"Account": 500})
    http = bearer_session(emu)
    headers = {"Sforce-Query-Options": "batchSize=200"}
    first = get(http, emu, f"{V}/query", params={"q": "SELECT Id FROM Account"}, headers=headers)
    total = first.json()["totalSize"]
    emu.org.create("Account", {"Name": "Arrived later"})
    assert len(read_all_pages(http, emu, first)) == total


def test_count_query(http: requests.Session, emu: Emulator) -> None:
    response = get(http, emu, f"{V}/query", params={"q": "SELECT COUNT() FROM Account"})
    assert response.status_code == 200
    assert response.json() == {"totalSize": len(live_accounts(emu)), "done": True, "records": []}


def test_empty_result(http: requests.Session, emu: Emulator) -> None:
    soql = "SELECT Id FROM Account WHERE Name = 'no such account, surely'"
    assert get(http, emu, f"{V}/query", params={"q": soql}).json() == {
        "totalSize": 0,
        "done": True,
        "records": [],
    }


def test_query_values_are_salesforce_wire_values(http: requests.Session, emu: Emulator) -> None:
    fields = [
        "Id",
        "Name",
        "AnnualRevenue",
        "NumberOfEmployees",
        "CreatedDate",
        "IsDeleted",
        "BillingAddress",
    ]
    soql = f"SELECT {', '.join(fields)} FROM Account"
    records = read_all_pages(http, emu, get(http, emu, f"{V}/query", params={"q": soql}))
    truth = {record["Id"]: record for record in live_accounts(emu)}
    for record in json.loads(json.dumps(records), parse_float=Decimal):
        expected = truth[record["Id"]]
        for name in fields:
            assert record[name] == rest_value(expected[name]), (name, record[name], expected[name])


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, "MALFORMED_QUERY"),
        ({"q": "  "}, "MALFORMED_QUERY"),
        ({"q": "SELECT Id FROM"}, "MALFORMED_QUERY"),
        ({"q": "SELECT Nope FROM Account"}, "INVALID_FIELD"),
        ({"q": "SELECT Id FROM Bogus"}, "INVALID_TYPE"),
    ],
)
def test_query_errors(http: requests.Session, emu: Emulator, params: dict, code: str) -> None:
    response = get(http, emu, f"{V}/query", params=params)
    assert response.status_code == 400
    body = response.json()
    assert isinstance(body, list) and body[0]["errorCode"] == code


def test_unknown_or_spent_locator_is_invalid_query_locator(http: requests.Session, emu: Emulator) -> None:
    response = get(http, emu, f"{V}/query/01gEm0000000999AAA-200")
    assert response.status_code == 400
    assert response.json() == [{"message": "invalid query locator", "errorCode": "INVALID_QUERY_LOCATOR"}]


def test_gzip_only_when_enabled_and_asked_for(emulator_factory) -> None:
    plain = emulator_factory(scale=0.001, counts={"Account": 300})
    zipped = emulator_factory(scale=0.001, counts={"Account": 300}, gzip=True)
    soql = {"q": "SELECT Id, Name, Description FROM Account"}
    for emu, expected in ((plain, None), (zipped, "gzip")):
        http = bearer_session(emu)
        response = get(http, emu, f"{V}/query", params=soql)  # requests sends Accept-Encoding: gzip
        assert response.headers.get("Content-Encoding") == expected
        assert response.json()["totalSize"] == 300 - sum(r["IsDeleted"] for r in emu.org.records("Account"))
    http = bearer_session(zipped)
    identity = get(http, zipped, f"{V}/query", params=soql, headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in identity.headers
