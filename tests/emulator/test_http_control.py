"""The HTTP control API (through ControlClient): every Org mutation shows in the next query."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import requests
from emulator_fixtures import API_VERSION, bearer_session, rest_value

from salesforce_emulator import ControlClient, ControlError, Emulator
from salesforce_emulator.app import Request

V = f"/services/data/v{API_VERSION}"
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def emu(emulator_factory) -> Emulator:
    emulator = emulator_factory(scale=0.001, counts={"Account": 30, "Opportunity": 10})
    emulator.org.clock.set(T0, frozen=True)
    return emulator


@pytest.fixture
def control(emu: Emulator) -> ControlClient:
    return ControlClient(emu.base_url)


@pytest.fixture
def http(emu: Emulator) -> requests.Session:
    return bearer_session(emu)


def soql(http: requests.Session, emu: Emulator, text: str, include_deleted: bool = False) -> list[dict]:
    endpoint = "queryAll" if include_deleted else "query"
    response = http.get(f"{emu.base_url}{V}/{endpoint}", params={"q": text}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["records"]


def one(http: requests.Session, emu: Emulator, sobject: str, record_id: str, fields: str) -> dict | None:
    records = soql(
        http, emu, f"SELECT {fields} FROM {sobject} WHERE Id = '{record_id}'", include_deleted=True
    )
    return records[0] if records else None


def stamp(moment: datetime) -> str:
    return rest_value(moment)


def test_create_update_delete_undelete_hard_delete(http, emu: Emulator, control: ControlClient) -> None:
    record_id = control.create("Account", {"Name": "Created by control", "AnnualRevenue": Decimal("1234500")})
    assert record_id.startswith("001") and len(record_id) == 18
    created = one(http, emu, "Account", record_id, "Id, Name, AnnualRevenue, CreatedDate, SystemModstamp")
    assert created["Name"] == "Created by control"
    assert created["AnnualRevenue"] == 1234500
    assert created["CreatedDate"] == created["SystemModstamp"] == stamp(T0)

    control.clock.advance(90)
    control.update("Account", record_id, {"Name": "Renamed"})
    updated = one(http, emu, "Account", record_id, "Name, CreatedDate, LastModifiedDate, SystemModstamp")
    assert updated["Name"] == "Renamed"
    assert updated["CreatedDate"] == stamp(T0)
    assert updated["LastModifiedDate"] == updated["SystemModstamp"] == stamp(T0 + timedelta(seconds=90))

    control.clock.advance(60)
    control.delete("Account", record_id)
    assert soql(http, emu, f"SELECT Id FROM Account WHERE Id = '{record_id}'") == []
    deleted = one(http, emu, "Account", record_id, "IsDeleted, SystemModstamp")
    assert deleted["IsDeleted"] is True
    assert deleted["SystemModstamp"] == stamp(T0 + timedelta(seconds=150))

    control.clock.advance(60)
    control.undelete("Account", record_id)
    restored = soql(http, emu, f"SELECT Id, IsDeleted, SystemModstamp FROM Account WHERE Id = '{record_id}'")
    assert restored[0]["IsDeleted"] is False
    assert restored[0]["SystemModstamp"] == stamp(T0 + timedelta(seconds=210))

    control.hard_delete("Account", record_id)
    assert one(http, emu, "Account", record_id, "Id") is None
    assert control.get("Account", record_id) is None


def test_typed_values_round_trip(http, emu: Emulator, control: ControlClient) -> None:
    record_id = control.create(
        "Opportunity",
        {
            "Name": "Deal",
            "StageName": "Prospecting",
            "CloseDate": date(2026, 6, 30),
            "Amount": Decimal("99.99"),
        },
    )
    stored = control.get("Opportunity", record_id)
    assert stored["CloseDate"] == date(2026, 6, 30)
    assert stored["Amount"] == Decimal("99.99")
    assert stored["SystemModstamp"] == T0
    assert stored == emu.org.get("Opportunity", record_id)
    served = one(http, emu, "Opportunity", record_id, "CloseDate, Amount")
    assert (served["CloseDate"], served["Amount"]) == ("2026-06-30", 99.99)
    assert [record["Id"] for record in control.records("Opportunity")] == [
        record["Id"] for record in emu.org.records("Opportunity")
    ]


def test_late_commit_is_visible_with_an_older_modstamp(http, emu: Emulator, control: ControlClient) -> None:
    control.clock.advance(600)
    now = T0 + timedelta(seconds=600)
    visible_before = control.create("Account", {"Name": "Committed first"})
    bookmark = stamp(now)
    late_id = control.late_commit("Account", {"Name": "Long transaction"}, seconds_ago=120)
    late = one(http, emu, "Account", late_id, "Name, SystemModstamp")
    assert late["Name"] == "Long transaction"
    assert late["SystemModstamp"] == stamp(now - timedelta(seconds=120))
    # A client that already read up to `bookmark` would miss it with `>` and even with `>=` the bookmark.
    after_bookmark = soql(
        http, emu, f"SELECT Id FROM Account WHERE SystemModstamp >= {bookmark.replace('+0000', 'Z')}"
    )
    assert visible_before in {record["Id"] for record in after_bookmark}
    assert late_id not in {record["Id"] for record in after_bookmark}
    # A late update to an existing record behaves the same way.
    existing = emu.org.records("Account", include_deleted=False)[0]["Id"]
    control.late_commit("Account", {"Name": "Late update"}, record_id=existing, seconds_ago=30)
    changed = one(http, emu, "Account", existing, "Name, SystemModstamp")
    assert changed == {
        "attributes": changed["attributes"],
        "Name": "Late update",
        "SystemModstamp": stamp(now - timedelta(seconds=30)),
    }


def test_recalculate_moves_a_formula_value_only(http, emu: Emulator, control: ControlClient) -> None:
    control.add_field("Account", "Days_Open__c", "double", precision=18, scale=0, calculated=True)
    existing = emu.org.records("Account", include_deleted=False)[0]["Id"]
    before = one(http, emu, "Account", existing, "SystemModstamp")["SystemModstamp"]
    control.clock.advance(600)
    control.recalculate("Account", existing, {"Days_Open__c": 12})
    after = one(http, emu, "Account", existing, "Days_Open__c, SystemModstamp")
    assert (after["Days_Open__c"], after["SystemModstamp"]) == (12, before)


def test_fields_and_objects_come_and_go(http, emu: Emulator, control: ControlClient) -> None:
    control.add_field("Account", "Loyalty__c", "double")
    describe = http.get(f"{emu.base_url}{V}/sobjects/Account/describe", timeout=30).json()
    assert "Loyalty__c" in {field["name"] for field in describe["fields"]}
    assert soql(http, emu, "SELECT Id, Loyalty__c FROM Account")[0]["Loyalty__c"] is None
    control.remove_field("Account", "Loyalty__c")
    gone = http.get(f"{emu.base_url}{V}/query", params={"q": "SELECT Loyalty__c FROM Account"}, timeout=30)
    assert gone.status_code == 400
    assert gone.json()[0]["errorCode"] == "INVALID_FIELD"

    control.add_object("Gadget__c", {"Size__c": "double", "Label__c": "string"}, count=7)
    names = {item["name"] for item in http.get(f"{emu.base_url}{V}/sobjects", timeout=30).json()["sobjects"]}
    assert "Gadget__c" in names
    assert "Gadget__c" in control.object_names()
    assert len(soql(http, emu, "SELECT Id, Size__c, Label__c FROM Gadget__c")) == 7
    control.remove_object("Gadget__c")
    missing = http.get(f"{emu.base_url}{V}/query", params={"q": "SELECT Id FROM Gadget__c"}, timeout=30)
    assert missing.json()[0]["errorCode"] == "INVALID_TYPE"


def test_clock_controls(emu: Emulator, control: ControlClient) -> None:
    assert control.clock.now() == T0
    control.clock.set(datetime(2027, 5, 6, 7, 8, 9, tzinfo=UTC), frozen=True)
    assert requests.get(emu.base_url + "/services/data/", timeout=30).headers["Date"] == (
        "Thu, 06 May 2027 07:08:09 GMT"
    )
    control.clock.advance(3600)
    assert control.clock.now() == datetime(2027, 5, 6, 8, 8, 9, tzinfo=UTC)
    control.clock.unfreeze()
    control.clock.freeze()
    assert control.clock.now() == emu.org.clock.now()


def test_reset_returns_to_the_generated_org(http, emu: Emulator, control: ControlClient) -> None:
    before = [record["Id"] for record in control.records("Account")]
    control.create("Account", {"Name": "Temporary"})
    control.delete("Account", before[0])
    control.reset()
    assert [record["Id"] for record in control.records("Account")] == before


def test_faults_and_counters_through_control(http, emu: Emulator, control: ControlClient) -> None:
    fault = control.faults.http_error(503, count=1, path="/limits")
    assert control.faults.active() == [fault]
    assert http.get(f"{emu.base_url}{V}/limits", timeout=30).status_code == 503
    assert control.faults.active() == []
    control.faults.query_timeout(rows=1)
    assert (
        http.get(f"{emu.base_url}{V}/query", params={"q": "SELECT Id FROM Account"}, timeout=30).status_code
        == 400
    )
    control.faults.slow(0.01, count=None)
    control.faults.reset()
    assert control.faults.active() == []

    counters = control.counters()
    # The 503 came before authentication (not counted); the QUERY_TIMEOUT answer counts.
    assert counters["api_usage"] == emu.api_usage == 1
    assert counters["requests_by_route"]["fault_http_error"] == 1
    assert counters["requests_by_route"]["query"] == 1
    last = control.requests(last=1)[0]
    assert (last["method"], last["status"], last["route"]) == ("GET", 400, "query")
    assert "SELECT" in requests.utils.unquote(last["target"]).replace("+", " ")
    control.set_api_usage(99_999)
    assert emu.api_usage == 99_999
    control.reset_counters()
    assert control.counters()["api_usage"] == 0
    assert control.expire_sessions() >= 1
    assert http.get(f"{emu.base_url}{V}/limits", timeout=30).status_code == 401
    assert control.info()["base_url"] == emu.base_url


def test_control_errors(emu: Emulator, control: ControlClient) -> None:
    with pytest.raises(ControlError) as unknown_method:
        control.call("org", "drop_everything")
    assert unknown_method.value.status == 404
    with pytest.raises(ControlError) as bad_object:
        control.create("Bogus", {"Name": "x"})
    assert bad_object.value.status in (400, 404)
    with pytest.raises(ControlError) as bad_arguments:
        control.call("org", "create", nonsense=1)
    assert bad_arguments.value.status == 400
    response = requests.post(f"{emu.base_url}/__emulator__/org/create", data=b"[1, 2]", timeout=30)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "BadRequest"


def test_plain_json_works_for_curl_users(http, emu: Emulator) -> None:
    response = requests.post(
        f"{emu.base_url}/__emulator__/org/create",
        json={"sobject": "Account", "values": {"Name": "From curl"}},
        timeout=30,
    )
    assert response.status_code == 200
    record_id = response.json()["result"]
    assert one(http, emu, "Account", record_id, "Name")["Name"] == "From curl"
    now = requests.get(f"{emu.base_url}/__emulator__/clock/now", timeout=30).json()
    assert now == {"result": {"$datetime": T0.isoformat(timespec="microseconds")}}


def test_the_control_api_answers_loopback_clients_only(emu: Emulator) -> None:
    remote = Request("POST", "/__emulator__/org/reset", {}, b"{}", client_host="10.1.2.3")
    assert emu.app.handle(remote).status == 403
    local = Request("GET", "/__emulator__/clock/now", {}, b"", client_host="127.0.0.1")
    assert emu.app.handle(local).status == 200
