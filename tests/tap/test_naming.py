"""Segment's names: the 48 collections (the spec's table, written out here) and the snake_case rule."""

from __future__ import annotations

import logging

import pytest

from tap_salesforce_seg.naming import (
    SEGMENT_COLLECTIONS,
    can_lose_name,
    property_names,
    segment_snake_case,
    stream_name,
    stream_names,
)

# Segment's collections table (segment-salesforce-source.md): collection name -> Salesforce object.
EXPECTED_COLLECTIONS = {
    "accounts": "Account",
    "account_contact_roles": "AccountContactRole",
    "account_tags": "AccountTag",
    "campaigns": "Campaign",
    "campaign_members": "CampaignMember",
    "campaign_shares": "CampaignShare",
    "campaign_tags": "CampaignTag",
    "cases": "Case",
    "case_comments": "CaseComment",
    "case_contact_role": "CaseContactRole",
    "case_solution": "CaseSolution",
    "case_tags": "CaseTag",
    "contacts": "Contact",
    "contact_tags": "ContactTag",
    "contracts": "Contract",
    "contract_tags": "ContractTag",
    "dashboards": "Dashboard",
    "dashboard_tags": "DashboardTag",
    "documents": "Document",
    "document_tags": "DocumentTag",
    "events": "Event",
    "event_tags": "EventTag",
    "_group": "Group",
    "leads": "Lead",
    "lead_tags": "LeadTag",
    "names": "Name",
    "notes": "Note",
    "note_tags": "NoteTag",
    "opportunities": "Opportunity",
    "opportunity_competitor": "OpportunityCompetitor",
    "opportunity_contact_role": "OpportunityContactRole",
    "opportunity_field_history": "OpportunityFieldHistory",
    "opportunity_product": "OpportunityLineItem",
    "opportunity_line_item_schedules": "OpportunityLineItemSchedule",
    "opportunity_stage": "OpportunityStage",
    "opportunity_tag": "OpportunityTag",
    "period": "Period",
    "price_books": "Pricebook2",
    "price_book_entries": "PricebookEntry",
    "products": "Product2",
    "profile": "Profile",
    "solutions": "Solution",
    "solution_tags": "SolutionTag",
    "tasks": "Task",
    "task_tags": "TaskTag",
    "users": "User",
    "user_login": "UserLogin",
    "role": "UserRole",
}

# The replication key Segment's rule gives each collection (SystemModstamp > LastModifiedDate >
# CreatedDate), as property names; `names` (Name) is not queryable and never becomes a stream.
EXPECTED_REPLICATION_KEYS = {
    collection: "system_modstamp" for collection in EXPECTED_COLLECTIONS if collection != "names"
} | {
    "campaign_shares": "last_modified_date",
    "user_login": "last_modified_date",
    "opportunity_field_history": "created_date",
}


def test_the_table_has_48_collections() -> None:
    assert len(EXPECTED_COLLECTIONS) == 48
    assert len(set(EXPECTED_COLLECTIONS.values())) == 48


def test_segment_collections_match_the_spec_table() -> None:
    assert {name: sobject for sobject, name in SEGMENT_COLLECTIONS.items()} == EXPECTED_COLLECTIONS


@pytest.mark.parametrize(("collection", "sobject"), sorted(EXPECTED_COLLECTIONS.items()))
def test_stream_name_of_each_collection(collection: str, sobject: str) -> None:
    assert stream_name(sobject) == collection
    assert stream_name(sobject, "salesforce") == sobject


# Every example of segment-naming.md.
@pytest.mark.parametrize(
    ("salesforce", "segment"),
    [
        ("Id", "id"),
        ("IsDeleted", "is_deleted"),
        ("SystemModstamp", "system_modstamp"),
        ("CreatedById", "created_by_id"),
        ("BillingAddress", "billing_address"),
        ("SBQQ__Quote__c", "sbqq_quote_c"),
        ("My_Field__c", "my_field_c"),
        ("MyField__c", "my_field_c"),
        ("Email__c", "email_c"),
        ("ABCField", "abcfield"),
        ("2ndPhone__c", "2nd_phone_c"),
        ("Account.Name", "account_name"),
        ("select", "select"),
        # More of the rule: digits stay in their word, already-snake names are kept.
        ("Pricebook2Id", "pricebook2_id"),
        ("LastModifiedDate", "last_modified_date"),
        ("already_snake_2", "already_snake_2"),
        ("double__under", "double_under"),
        ("Name-With Spaces", "name_with_spaces"),
        ("Invoice__c", "invoice_c"),
    ],
)
def test_segment_snake_case(salesforce: str, segment: str) -> None:
    assert segment_snake_case(salesforce) == segment


def test_custom_objects_take_the_rule() -> None:
    assert stream_name("Invoice__c") == "invoice_c"
    assert stream_name("SBQQ__Quote__c") == "sbqq_quote_c"


def test_colliding_fields_get_distinct_names_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    fields = ["Id", "MyField__c", "My_Field__c", "Email__c"]
    with caplog.at_level(logging.WARNING):
        names = property_names(fields, context="Account")
    # The field already spelled as the name keeps it; the other takes its plain spelling.
    assert names == {
        "Id": "id",
        "My_Field__c": "my_field_c",
        "MyField__c": "myfield_c",
        "Email__c": "email_c",
    }
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "MyField__c" in warnings[0] and "My_Field__c" in warnings[0] and "Account" in warnings[0]


def test_collision_resolution_does_not_depend_on_field_order() -> None:
    fields = ["MyField__c", "My_Field__c", "MYField__c", "Myfield_c"]
    first = property_names(fields)
    assert property_names(list(reversed(fields))) == first
    assert len(set(first.values())) == len(fields)


def test_an_alternative_never_takes_a_name_the_rule_gives_another_field() -> None:
    # MyField__c would fall back to `myfield_c`, which Myfield__c owns by the rule: it becomes `myfield_c_2`.
    names = property_names(["MyField__c", "My_Field__c", "Myfield__c"])
    assert names == {"My_Field__c": "my_field_c", "Myfield__c": "myfield_c", "MyField__c": "myfield_c_2"}


def test_reserved_warehouse_columns_are_never_given_to_a_field() -> None:
    names = property_names(["Id", "ReceivedAt", "UuidTs"])
    assert names["Id"] == "id"
    assert names["ReceivedAt"] not in {"received_at", "uuid_ts"}
    assert names["UuidTs"] not in {"received_at", "uuid_ts"}
    assert len(set(names.values())) == 3


def test_salesforce_naming_keeps_api_names() -> None:
    assert property_names(["Id", "MyField__c"], "salesforce") == {"Id": "Id", "MyField__c": "MyField__c"}


def test_custom_object_stream_names_are_distinct() -> None:
    names = stream_names(["Account", "MyObj__c", "My_Obj__c", "Invoice__c"])
    assert names["Account"] == "accounts"
    assert names["Invoice__c"] == "invoice_c"
    assert names["My_Obj__c"] == "my_obj_c"
    assert names["MyObj__c"] == "myobj_c"


def test_only_names_a_field_added_later_could_win_are_at_risk() -> None:
    assert can_lose_name("TotalSeats__c", "total_seats_c")  # `Total_Seats__c` would win it
    assert can_lose_name("My_Field__c", "my_field_c_2")  # an alternative
    assert can_lose_name("ns__Seats__c", "ns_seats_c")  # `Ns_Seats__c` spells alike
    assert not can_lose_name("Total_Seats__c", "total_seats_c")  # spelled like it: no rival can be
    assert not can_lose_name("TotalSeats__c", "totalseats_c")  # `Totalseats__c` is the same API name
    assert not can_lose_name("CreatedById", "created_by_id")  # admins add custom fields only
    assert not can_lose_name("TotalSeats__c", "TotalSeats__c")  # naming: salesforce
