"""simple-salesforce 1.12, unmodified, against the emulator over TLS.

simple-salesforce builds every URL as https://, and its logins go to https://login.salesforce.com: the
emulator serves TLS (its CA trusted through REQUESTS_CA_BUNDLE) and the client's own `session=` hook
(a requests transport adapter mounted for the login hosts) carries the logins to the emulator. The
login answer's serverUrl then points every later call at the emulator directly.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from decimal import Decimal

import pytest
import requests
from emulator_fixtures import (
    API_VERSION,
    csv_value,
    login_redirect_session,
    oauth_login,
    rest_value,
    start_emulator,
)
from simple_salesforce import Salesforce, SalesforceLogin
from simple_salesforce.exceptions import SalesforceExpiredSession

from salesforce_emulator import Emulator

FIELDS = ["Id", "Name", "AnnualRevenue", "NumberOfEmployees", "CreatedDate", "SystemModstamp", "IsDeleted"]
SOQL = f"SELECT {', '.join(FIELDS)} FROM Account"
SMALL_PAGES = {"Sforce-Query-Options": "batchSize=500"}


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with pytest.MonkeyPatch.context() as patch:
        emulator = start_emulator(scale=0.001, counts={"Account": 1300}, tls=True)
        patch.setenv("REQUESTS_CA_BUNDLE", emulator.ca_file)
        yield emulator
        emulator.stop()


@pytest.fixture(scope="module")
def sf(emu: Emulator) -> Salesforce:
    """Logged in through SOAP with username, password and security token."""
    credentials = emu.credentials
    return Salesforce(
        username=credentials.username,
        password=credentials.password,
        security_token=credentials.security_token,
        version=API_VERSION,
        session=login_redirect_session(emu),
    )


def same_as_org(records: list[dict], truth: list[dict]) -> None:
    by_id = {record["Id"]: record for record in truth}
    assert sorted(record["Id"] for record in records) == sorted(by_id)
    for record in json.loads(json.dumps(records), parse_float=Decimal):
        for name in FIELDS:
            assert record[name] == rest_value(by_id[record["Id"]][name]), name


def test_soap_login_describe_and_paged_query_all(emu: Emulator, sf: Salesforce) -> None:
    assert sf.sf_instance == emu.base_url.removeprefix("https://")
    names = {item["name"] for item in sf.describe()["sobjects"]}
    assert {"Account", "Contact", "Opportunity"} <= names
    assert sf.Account.describe()["name"] == "Account"
    assert json.loads(json.dumps(sf.Account.describe())) == json.loads(
        json.dumps(emu.org.describe("Account", API_VERSION))
    )
    before = emu.counters()["requests_by_route"].get("query_more", 0)
    result = sf.query_all(SOQL, headers=SMALL_PAGES)
    assert emu.counters()["requests_by_route"]["query_more"] - before == 2  # three pages of 500
    same_as_org(result["records"], emu.org.records("Account", include_deleted=False))
    assert sf.api_usage["api-usage"].used == emu.api_usage


def test_oauth_refresh_token_login(emu: Emulator) -> None:
    token = oauth_login(emu)
    sf = Salesforce(instance_url=token["instance_url"], session_id=token["access_token"], version=API_VERSION)
    assert sf.base_url == f"{emu.base_url}/services/data/v{API_VERSION}/"
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == len(
        emu.org.records("Account", include_deleted=False)
    )


def test_scratch_url_soap_login(emu: Emulator) -> None:
    credentials = emu.credentials
    session_id, instance = SalesforceLogin(
        username=credentials.username,
        password=credentials.password,
        security_token=credentials.security_token,
        sf_version=API_VERSION,
        scratch_url=emu.base_url,
    )
    assert instance == emu.base_url.removeprefix("https://")
    sf = Salesforce(session_id=session_id, instance=instance, version=API_VERSION)
    assert sf.limits()["DailyApiRequests"]["Max"] == emu.api_limit


def test_oauth_password_flow_through_the_login_host(emu: Emulator) -> None:
    credentials = emu.credentials
    sf = Salesforce(
        username=credentials.username,
        password=credentials.password + credentials.security_token,
        consumer_key=credentials.client_id,
        consumer_secret=credentials.client_secret,
        version=API_VERSION,
        session=login_redirect_session(emu),
    )
    assert sf.query("SELECT Id FROM Account LIMIT 3")["totalSize"] == 3


def test_query_all_with_deleted_rows(emu: Emulator, sf: Salesforce) -> None:
    deleted = [record for record in emu.org.records("Account") if record["IsDeleted"]]
    if not deleted:  # the generator soft-deletes a few percent; make sure there is one either way
        victim = emu.org.records("Account", include_deleted=False)[-1]["Id"]
        emu.org.delete("Account", victim)
    result = sf.query_all(SOQL, include_deleted=True, headers=SMALL_PAGES)
    assert any(record["IsDeleted"] for record in result["records"])
    same_as_org(result["records"], emu.org.records("Account", include_deleted=True))


def test_bulk2_query_over_several_locator_pages(emu: Emulator, sf: Salesforce) -> None:
    soql = "SELECT Id, Name, AnnualRevenue, CreatedDate, IsDeleted FROM Account"
    pages = list(sf.bulk2.Account.query(soql, max_records=500, wait=0.05))
    assert len(pages) == 3
    rows = [row for page in pages for row in csv.DictReader(io.StringIO(page, newline=""))]
    truth = {record["Id"]: record for record in emu.org.records("Account", include_deleted=False)}
    assert sorted(row["Id"] for row in rows) == sorted(truth)
    for row in rows:
        record = truth[row["Id"]]
        assert row["Name"] == record["Name"]
        assert row["CreatedDate"] == csv_value(record["CreatedDate"])
        assert row["IsDeleted"] == "false"
        revenue = record["AnnualRevenue"]
        assert row["AnnualRevenue"] == "" if revenue is None else Decimal(row["AnnualRevenue"]) == revenue


def test_re_login_after_session_expiry(emu: Emulator, sf: Salesforce) -> None:
    logins = emu.counters()["logins"]
    old_session = sf.session_id
    emu.expire_sessions()
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] > 0  # 401, log in again, retry
    assert sf.session_id != old_session
    assert emu.counters()["logins"] == logins + 1
    emu.faults.expire_sessions_after(calls=1)
    assert sf.query("SELECT Id FROM Account LIMIT 1")["totalSize"] == 1
    assert sf.query("SELECT Id FROM Account LIMIT 1")["totalSize"] == 1  # expired, re-logged in, retried
    assert emu.counters()["logins"] == logins + 2


def test_a_session_given_directly_cannot_re_login(emu: Emulator) -> None:
    sf = Salesforce(
        instance_url=emu.base_url, session_id=oauth_login(emu)["access_token"], version=API_VERSION
    )
    emu.expire_sessions()
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT Id FROM Account LIMIT 1")
    assert requests.get(emu.base_url + "/services/data/", timeout=30).status_code == 200
