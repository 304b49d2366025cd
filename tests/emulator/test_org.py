"""The Org control API: clock, mutations with their audit stamps, late commits, schema changes, reset."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from salesforce_emulator.clock import Clock
from salesforce_emulator.errors import ApiError
from salesforce_emulator.org import Org, OrgConfig
from salesforce_emulator.soql import SoqlError

NOW = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)


@pytest.fixture(scope="module")
def shared() -> Org:
    return Org(OrgConfig(scale=0.01, seed=3))


@pytest.fixture
def org(shared: Org) -> Org:
    shared.reset()
    shared.clock.set(NOW, frozen=True)
    return shared


def one(org: Org, soql: str, include_deleted: bool = False) -> dict:
    records = org.query(soql, include_deleted).records()
    assert len(records) == 1, records
    return records[0]


def error_code(call, *args, **kwargs) -> str:
    with pytest.raises(ApiError) as error:
        call(*args, **kwargs)
    return error.value.error_code


# ---- clock ----


def test_clock_runs_in_real_time_by_default():
    clock = Clock()
    before = datetime.now(UTC)
    now = clock.now()
    assert now.tzinfo == UTC and now.microsecond % 1000 == 0
    assert before - timedelta(seconds=1) <= now <= datetime.now(UTC)


def test_clock_set_advance_freeze_unfreeze():
    clock = Clock()
    clock.set(datetime(2030, 1, 1, 0, 0, 0, 123456), frozen=True)  # naive = UTC
    assert clock.now() == datetime(2030, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)
    assert clock.advance(1.5) == datetime(2030, 1, 1, 0, 0, 1, 623000, tzinfo=UTC)
    assert clock.frozen and clock.now() == clock.now()
    clock.unfreeze()
    time.sleep(0.02)
    running = clock.now()
    assert (
        datetime(2030, 1, 1, 0, 0, 1, 623000, tzinfo=UTC) < running < datetime(2030, 1, 1, 0, 1, tzinfo=UTC)
    )
    clock.set("2031-05-06T07:08:09.010+0200", frozen=True)
    assert clock.now() == datetime(2031, 5, 6, 5, 8, 9, 10000, tzinfo=UTC)
    frozen = clock.freeze()
    assert clock.now() == frozen


# ---- mutations ----


def test_create_is_visible_in_the_next_query_with_its_stamps(org):
    record_id = org.create("Account", {"Name": "Fresh Co", "AnnualRevenue": "1234.56", "Industry": "Banking"})
    assert record_id.startswith("001") and len(record_id) == 18
    record = one(
        org,
        f"SELECT Id, Name, AnnualRevenue, CreatedDate, LastModifiedDate, SystemModstamp, CreatedById, "
        f"LastModifiedById, OwnerId, IsDeleted FROM Account WHERE Id = '{record_id}'",
    )
    assert record["CreatedDate"] == record["LastModifiedDate"] == record["SystemModstamp"] == NOW
    assert record["CreatedById"] == record["LastModifiedById"] == record["OwnerId"] == org.admin_user_id
    assert record["IsDeleted"] is False and record["Name"] == "Fresh Co"
    assert record["AnnualRevenue"] == Decimal("1235")  # AnnualRevenue has scale 0
    newest = org.query("SELECT Id FROM Account ORDER BY SystemModstamp DESC, Id DESC LIMIT 1").rows()[0][0]
    assert newest == record_id
    existing = sorted(r["Id"] for r in org.records("Account") if r["Id"] != record_id)
    assert record_id > existing[-1]  # Ids keep growing


def test_create_fills_defaults_and_derived_fields(org):
    contact_id = org.create(
        "Contact", {"FirstName": "Zoë", "LastName": "O'Brien", "Email": "zoe@example.com"}
    )
    contact = org.get("Contact", contact_id)
    assert contact["Name"] == "Zoë O'Brien" and contact["DoNotCall"] is False
    case_id = org.create("Case", {"Subject": "Broken", "Status": "New"})
    assert org.get("Case", case_id)["CaseNumber"]
    invoice_id = org.create(
        "Invoice__c",
        {"Status__c": "Draft", "Invoice_Date__c": "2026-01-02", "Channels__c": ["Email", "Portal"]},
    )
    invoice = org.get("Invoice__c", invoice_id)
    assert invoice["Name"].startswith("INV-") and invoice["Channels__c"] == "Email;Portal"
    assert invoice["Invoice_Date__c"] == date(2026, 1, 2)


def test_update_bumps_last_modified_and_system_modstamp(org):
    record = org.query("SELECT Id, Name, CreatedDate, SystemModstamp FROM Account LIMIT 1").records()[0]
    org.clock.advance(5)
    org.update("Account", record["Id"], {"Rating": "Hot", "NumberOfEmployees": 42})
    after = org.get("Account", record["Id"])
    assert after["Rating"] == "Hot" and after["NumberOfEmployees"] == 42 and after["Name"] == record["Name"]
    assert after["LastModifiedDate"] == after["SystemModstamp"] == NOW + timedelta(seconds=5)
    assert after["CreatedDate"] == record["CreatedDate"]
    assert after["LastModifiedById"] == org.admin_user_id
    seen = one(
        org, f"SELECT Id, Rating FROM Account WHERE SystemModstamp > {NOW.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    )
    assert seen == {"Id": record["Id"], "Rating": "Hot"}
    org.update("Account", record["Id"][:15], {"Rating": None})  # 15-character Ids work too
    assert org.get("Account", record["Id"])["Rating"] is None


def test_delete_undelete_and_hard_delete(org):
    record_id = org.create("Account", {"Name": "Short lived"})
    org.clock.advance(1)
    org.delete("Account", record_id)
    assert org.query(f"SELECT Id FROM Account WHERE Id = '{record_id}'").total_size == 0
    deleted = one(
        org,
        f"SELECT Id, IsDeleted, SystemModstamp, LastModifiedDate FROM Account WHERE Id = '{record_id}'",
        True,
    )
    assert deleted["IsDeleted"] is True and deleted["SystemModstamp"] == NOW + timedelta(seconds=1)
    assert deleted["LastModifiedDate"] == NOW
    assert error_code(org.delete, "Account", record_id) == "ENTITY_IS_DELETED"
    assert error_code(org.update, "Account", record_id, {"Name": "x"}) == "ENTITY_IS_DELETED"
    org.clock.advance(1)
    org.undelete("Account", record_id)
    restored = one(org, f"SELECT Id, IsDeleted, SystemModstamp FROM Account WHERE Id = '{record_id}'")
    assert restored["IsDeleted"] is False and restored["SystemModstamp"] == NOW + timedelta(seconds=2)
    assert error_code(org.undelete, "Account", record_id) == "UNDELETE_FAILED"
    org.hard_delete("Account", record_id)
    assert org.query(f"SELECT Id FROM Account WHERE Id = '{record_id}'", include_deleted=True).total_size == 0
    assert org.get("Account", record_id) is None
    assert error_code(org.hard_delete, "Account", record_id) == "NOT_FOUND"


def test_soft_delete_needs_isdeleted(org):
    group_id = org.records("Group")[0]["Id"]
    with pytest.raises(ApiError, match="no IsDeleted field") as error:
        org.delete("Group", group_id)
    assert error.value.error_code == "INVALID_OPERATION"
    org.hard_delete("Group", group_id)
    assert org.get("Group", group_id) is None


def test_recalculate_moves_a_formula_value_and_no_stamp(org):
    org.add_field("Account", "Days_Open__c", "double", precision=18, scale=0, calculated=True)
    described = {f["name"]: f for f in org.describe("Account", "58.0")["fields"]}
    assert described["Days_Open__c"]["calculated"] is True
    assert described["Days_Open__c"]["updateable"] is False
    record_id = org.create("Account", {"Name": "Formula"})
    before = org.get("Account", record_id)
    org.clock.advance(3600)
    org.recalculate("Account", record_id, {"Days_Open__c": 12})
    after = org.get("Account", record_id)
    assert after["Days_Open__c"] == 12
    assert after["SystemModstamp"] == before["SystemModstamp"]
    assert after["LastModifiedDate"] == before["LastModifiedDate"]
    # Only a formula changes so: a plain field, or one that does not exist, is refused.
    assert error_code(org.recalculate, "Account", record_id, {"Rating": "Hot"}) == "INVALID_FIELD"
    assert error_code(org.recalculate, "Account", record_id, {"Nope__c": 1}) == "INVALID_FIELD"
    assert org.get("Account", record_id)["Rating"] == before["Rating"]


def test_late_commit_is_visible_now_with_an_older_stamp(org):
    org.clock.advance(600)
    now = org.clock.now()
    visible_before = {row[0] for row in org.query("SELECT Id FROM Account").rows()}
    record_id = org.late_commit("Account", {"Name": "Long transaction"}, seconds_ago=60)
    assert record_id not in visible_before
    record = one(org, f"SELECT Id, CreatedDate, SystemModstamp FROM Account WHERE Id = '{record_id}'")
    assert record["SystemModstamp"] == record["CreatedDate"] == now - timedelta(seconds=60)
    # A client that already read up to `now - 30s` misses it on a naive `SystemModstamp > bookmark` query.
    bookmark = (now - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (
        org.query(
            f"SELECT Id FROM Account WHERE SystemModstamp > {bookmark} AND Id = '{record_id}'"
        ).total_size
        == 0
    )
    existing = org.query("SELECT Id, CreatedDate FROM Account ORDER BY CreatedDate LIMIT 1").rows()[0][0]
    org.late_commit("Account", {"Rating": "Warm"}, record_id=existing, seconds_ago=5)
    updated = org.get("Account", existing)
    assert updated["Rating"] == "Warm" and updated["SystemModstamp"] == updated[
        "LastModifiedDate"
    ] == now - timedelta(seconds=5)
    with pytest.raises(ApiError, match="before the record's CreatedDate"):
        org.late_commit("Account", {"Rating": "Cold"}, record_id=record_id, seconds_ago=3600)


def test_mutations_validate_names_and_values(org):
    assert error_code(org.create, "Nope__c", {"Name": "x"}) == "INVALID_TYPE"
    assert error_code(org.create, "Name", {"Name": "x"}) == "INVALID_TYPE"
    assert error_code(org.create, "Account", {"Nope": 1}) == "INVALID_FIELD"
    assert (
        error_code(org.create, "Account", {"Name": "x", "SystemModstamp": NOW})
        == "INVALID_FIELD_FOR_INSERT_UPDATE"
    )
    assert (
        error_code(org.create, "Account", {"Name": "x", "BillingAddress": {}})
        == "INVALID_FIELD_FOR_INSERT_UPDATE"
    )
    assert (
        error_code(org.create, "Account", {"Name": "x", "NumberOfEmployees": "many"})
        == "INVALID_TYPE_ON_FIELD_IN_RECORD"
    )
    assert (
        error_code(org.create, "Account", {"Name": "x", "NumberOfEmployees": 1.5})
        == "INVALID_TYPE_ON_FIELD_IN_RECORD"
    )
    assert (
        error_code(org.create, "Account", {"Name": "x", "IsActive": "yes"})
        == "INVALID_TYPE_ON_FIELD_IN_RECORD"
    )
    assert error_code(org.create, "Account", {"Name": "x" * 256}) == "STRING_TOO_LONG"
    assert error_code(org.create, "Account", {"Name": "x", "ParentId": "not-an-id"}) == "MALFORMED_ID"
    assert (
        error_code(org.create, "Account", {"Name": "x", "AnnualRevenue": Decimal("1e30")})
        == "NUMBER_OUTSIDE_VALID_RANGE"
    )
    assert error_code(org.create, "Account", {"Industry": "Banking"}) == "REQUIRED_FIELD_MISSING"
    assert error_code(org.create, "Contact", {"FirstName": "No last name"}) == "REQUIRED_FIELD_MISSING"
    assert error_code(org.update, "Account", "001Em000000ZZZZIAA", {"Name": "x"}) == "NOT_FOUND"
    record_id = org.create(
        "Account",
        {
            "name": "Case-insensitive names",
            "LASTACTIVITYDATE": "2025-02-03",
            "Renewal_Date__c": date(2026, 5, 1),
        },
    )
    stored = org.get("Account", record_id)
    assert stored["Name"] == "Case-insensitive names" and stored["LastActivityDate"] == date(2025, 2, 3)


def test_get_and_records_speak_python_values(org):
    record = org.records("Account")[0]
    assert isinstance(record["CreatedDate"], datetime) and record["CreatedDate"].tzinfo == UTC
    assert org.get("Account", record["Id"]) == record
    assert org.get("Account", "001Em000000ZZZZIAA") is None
    assert len(org.records("Account", include_deleted=False)) < len(org.records("Account"))


# ---- schema changes ----


def test_add_field_shows_in_describe_and_queries_at_once(org):
    org.add_field("Account", "Loyalty__c", "picklist", picklist=["Bronze", "Gold"])
    org.add_field("Account", "Flag__c", "boolean")
    describe = org.describe("Account", "58.0")
    added = next(f for f in describe["fields"] if f["name"] == "Loyalty__c")
    assert added["custom"] is True and [v["value"] for v in added["picklistValues"]] == ["Bronze", "Gold"]
    rows = org.query("SELECT Id, Loyalty__c, Flag__c FROM Account").records()
    assert rows and all(r["Loyalty__c"] is None and r["Flag__c"] is False for r in rows)
    record_id = rows[0]["Id"]
    org.update("Account", record_id, {"Loyalty__c": "Gold", "Flag__c": True})
    assert one(org, "SELECT Id, Loyalty__c, Flag__c FROM Account WHERE Loyalty__c = 'gold'") == {
        "Id": record_id,
        "Loyalty__c": "Gold",
        "Flag__c": True,
    }
    body = json.loads(
        org.query(f"SELECT Id, Flag__c FROM Account WHERE Id = '{record_id}'").rest_records(0, 1, "58.0")
    )
    assert body[0]["Flag__c"] is True
    org.add_field("Account", "Score__c", "double(5,1)")
    assert next(f for f in org.describe("Account", "58.0")["fields"] if f["name"] == "Score__c")["scale"] == 1
    assert error_code(org.add_field, "Account", "Loyalty__c", "string") == "DUPLICATE_DEVELOPER_NAME"


def test_remove_field_gives_invalid_field_in_the_next_query(org):
    assert org.query("SELECT Id, Rating FROM Account").total_size
    org.remove_field("Account", "Rating")
    assert "Rating" not in {f["name"] for f in org.describe("Account", "58.0")["fields"]}
    with pytest.raises(SoqlError) as error:
        org.query("SELECT Id, Rating FROM Account")
    assert error.value.error_code == "INVALID_FIELD"
    assert (
        error_code(org.update, "Account", org.records("Account")[0]["Id"], {"Rating": "Hot"})
        == "INVALID_FIELD"
    )
    record_id = org.create("Account", {"Name": "After removal"})
    assert "Rating" not in org.get("Account", record_id)


def test_add_and_remove_objects(org):
    org.add_object(
        "Shipment__c",
        {"Carrier__c": "picklist", "Weight__c": "double(8,2)", "Account__c": "reference >Account"},
        count=25,
    )
    assert "Shipment__c" in org.object_names()
    describe = org.describe("Shipment__c", "58.0")
    assert describe["custom"] is True and {"Id", "Name", "SystemModstamp", "Weight__c"} <= {
        f["name"] for f in describe["fields"]
    }
    assert "Shipment__c" in {entry["name"] for entry in org.describe_global("58.0")["sobjects"]}
    assert org.query("SELECT Id, Weight__c, Account__c FROM Shipment__c").total_size == 25 - sum(
        r["IsDeleted"] for r in org.records("Shipment__c")
    )
    accounts = {r["Id"] for r in org.records("Account")}
    assert all(r["Account__c"] in accounts for r in org.records("Shipment__c") if r["Account__c"])
    new_id = org.create("Shipment__c", {"Name": "Box", "Weight__c": 2.5})
    assert org.get("Shipment__c", new_id)["Weight__c"] == Decimal("2.50")
    assert error_code(org.add_object, "Shipment__c", {}) == "DUPLICATE_DEVELOPER_NAME"
    org.remove_object("Shipment__c")
    with pytest.raises(SoqlError) as error:
        org.query("SELECT Id FROM Shipment__c")
    assert error.value.error_code == "INVALID_TYPE"
    assert error_code(org.describe, "Shipment__c", "58.0") == "NOT_FOUND"


def test_reset_restores_the_generated_org(org):
    before = org.records("Account")
    before_describe = org.describe("Account", "58.0")
    org.create("Account", {"Name": "Temporary"})
    org.update("Account", before[0]["Id"], {"Name": "Renamed"})
    org.hard_delete("Account", before[1]["Id"])
    org.remove_field("Account", "Industry")
    org.add_object("Temp__c", {"Note__c": "string"}, count=3)
    org.remove_object("Lead")
    org.reset()
    assert org.records("Account") == before
    assert org.describe("Account", "58.0") == before_describe
    assert "Temp__c" not in org.object_names() and "Lead" in org.object_names()
    again = org.create("Account", {"Name": "After reset"})
    assert again == org.query("SELECT Id FROM Account ORDER BY Id DESC LIMIT 1").rows()[0][0]


def test_feature_switch_off_answers_invalid_type():
    org = Org(OrgConfig(scale=0.01, tags=False, schedules=False, custom=False))
    for soql in (
        "SELECT Id FROM AccountTag",
        "SELECT Id FROM OpportunityLineItemSchedule",
        "SELECT Id FROM Invoice__c",
    ):
        with pytest.raises(SoqlError) as error:
            org.query(soql)
        assert error.value.error_code == "INVALID_TYPE"
    assert "AccountTag" not in {e["name"] for e in org.describe_global("58.0")["sobjects"]}


def test_describe_dir_objects_get_generated_data():
    from pathlib import Path

    org = Org(OrgConfig(scale=0.1, describe_dir=Path(__file__).parent / "data", describe_dir_only=True))
    assert org.object_names() == ["Widget__c"]
    result = org.query("SELECT Id, Name, Stage__c, Price__c, Launch_Date__c FROM Widget__c")
    assert result.total_size > 0
    for record in result.records():
        assert record["Id"].startswith("a0W") and record["Stage__c"] in (None, "Idea", "Prototype", "Shipped")
    assert org.describe("Widget__c", "58.0")["urls"]["sobject"] == "/services/data/v58.0/sobjects/Widget__c"
