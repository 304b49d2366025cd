"""The emulated org's object model and describe payloads (no HTTP)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from salesforce_emulator.describe import describe_global, describe_object
from salesforce_emulator.model import (
    Catalog,
    ModelError,
    build_catalog,
    field_label,
    parse_description,
    standard_objects,
)

DATA = Path(__file__).parent / "data"

# Segment's 48 collections (segment-salesforce-source.md) by sObject name.
STANDARD_48 = {
    "Account", "AccountContactRole", "AccountTag", "Campaign", "CampaignMember", "CampaignShare",
    "CampaignTag", "Case", "CaseComment", "CaseContactRole", "CaseSolution", "CaseTag", "Contact",
    "ContactTag", "Contract", "ContractTag", "Dashboard", "DashboardTag", "Document", "DocumentTag",
    "Event", "EventTag", "Group", "Lead", "LeadTag", "Name", "Note", "NoteTag", "Opportunity",
    "OpportunityCompetitor", "OpportunityContactRole", "OpportunityFieldHistory", "OpportunityLineItem",
    "OpportunityLineItemSchedule", "OpportunityStage", "OpportunityTag", "Period", "Pricebook2",
    "PricebookEntry", "Product2", "Profile", "Solution", "SolutionTag", "Task", "TaskTag", "User",
    "UserLogin", "UserRole",
}  # fmt: skip
TAGS = {name for name in STANDARD_48 if name.endswith("Tag")}

# Keys of real describe payloads (API_FACTS 1.3 / 1.4: recorded from real orgs).
DESCRIBE_KEYS = set(
    [
        "actionOverrides",
        "activateable",
        "associateEntityType",
        "associateParentEntity",
        "childRelationships",
        "compactLayoutable",
        "createable",
        "custom",
        "customSetting",
        "deepCloneable",
        "defaultImplementation",
        "deletable",
        "deprecatedAndHidden",
        "extendedBy",
        "extendsInterfaces",
        "feedEnabled",
        "fields",
        "hasSubtypes",
        "implementedBy",
        "implementsInterfaces",
        "isInterface",
        "isSubtype",
        "keyPrefix",
        "label",
        "labelPlural",
        "layoutable",
        "listviewable",
        "lookupLayoutable",
        "mergeable",
        "mruEnabled",
        "name",
        "namedLayoutInfos",
        "networkScopeFieldName",
        "queryable",
        "recordTypeInfos",
        "replicateable",
        "retrieveable",
        "searchLayoutable",
        "searchable",
        "supportedScopes",
        "triggerable",
        "undeletable",
        "updateable",
        "urls",
    ]
)
FIELD_KEYS = set(
    [
        "aggregatable",
        "aiPredictionField",
        "autoNumber",
        "byteLength",
        "calculated",
        "calculatedFormula",
        "cascadeDelete",
        "caseSensitive",
        "compoundFieldName",
        "controllerName",
        "createable",
        "custom",
        "defaultValue",
        "defaultValueFormula",
        "defaultedOnCreate",
        "dependentPicklist",
        "deprecatedAndHidden",
        "digits",
        "displayLocationInDecimal",
        "encrypted",
        "externalId",
        "extraTypeInfo",
        "filterable",
        "filteredLookupInfo",
        "formulaTreatNullNumberAsZero",
        "groupable",
        "highScaleNumber",
        "htmlFormatted",
        "idLookup",
        "inlineHelpText",
        "label",
        "length",
        "mask",
        "maskType",
        "name",
        "nameField",
        "namePointing",
        "nillable",
        "permissionable",
        "picklistValues",
        "polymorphicForeignKey",
        "precision",
        "queryByDistance",
        "referenceTargetField",
        "referenceTo",
        "relationshipName",
        "relationshipOrder",
        "restrictedDelete",
        "restrictedPicklist",
        "scale",
        "searchPrefilterable",
        "soapType",
        "sortable",
        "type",
        "unique",
        "updateable",
        "writeRequiresMasterRead",
    ]
)
GLOBAL_ENTRY_KEYS = set(
    [
        "activateable",
        "associateEntityType",
        "associateParentEntity",
        "createable",
        "custom",
        "customSetting",
        "deepCloneable",
        "deletable",
        "deprecatedAndHidden",
        "feedEnabled",
        "hasSubtypes",
        "isInterface",
        "isSubtype",
        "keyPrefix",
        "label",
        "labelPlural",
        "layoutable",
        "mergeable",
        "mruEnabled",
        "name",
        "queryable",
        "replicateable",
        "retrieveable",
        "searchable",
        "triggerable",
        "undeletable",
        "updateable",
        "urls",
    ]
)
URL_KEYS = {
    "compactLayouts",
    "rowTemplate",
    "approvalLayouts",
    "listviews",
    "describe",
    "quickActions",
    "layouts",
    "sobject",
}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return build_catalog()


def fields_of(describe: dict) -> dict[str, dict]:
    return {f["name"]: f for f in describe["fields"]}


def test_the_48_standard_objects_are_described_without_org_custom_fields():
    objects = {o.name: o for o in standard_objects()}
    assert set(objects) == STANDARD_48
    for obj in objects.values():
        assert "Id" in obj.fields, obj.name
        assert not [f for f in obj.fields if f.endswith("__c")], obj.name
    assert {name for name, o in objects.items() if o.feature == "tags"} == TAGS
    assert objects["OpportunityLineItemSchedule"].feature == "schedules"
    assert len(objects["Profile"].fields) > 1000  # the widest standard object (Permissions* booleans)


def test_system_fields_follow_the_fact_table(catalog):
    account = catalog.get("Account")
    assert [
        n for n in ("CreatedDate", "LastModifiedDate", "SystemModstamp", "IsDeleted") if n in account.fields
    ]
    assert not catalog.get("Group").has_is_deleted and not catalog.get("User").has_is_deleted
    assert catalog.get("AccountTag").replication_key == "SystemModstamp"
    assert "LastModifiedDate" not in catalog.get("AccountTag").fields
    assert catalog.get("CampaignShare").replication_key == "LastModifiedDate"
    assert catalog.get("UserLogin").replication_key == "LastModifiedDate"
    assert catalog.get("OpportunityFieldHistory").replication_key == "CreatedDate"
    assert list(catalog.get("Period").fields).count("SystemModstamp") == 1
    assert "CreatedDate" not in catalog.get("Period").fields


def test_name_is_listed_but_not_queryable(catalog):
    entry = next(e for e in describe_global(catalog, "58.0")["sobjects"] if e["name"] == "Name")
    assert entry["queryable"] is False and entry["keyPrefix"] is None
    assert catalog.soql_object("name").queryable is False


def test_describe_has_every_key_of_a_real_payload(catalog):
    for name in ("Account", "Contact", "Opportunity", "Profile", "AccountTag", "Invoice__c"):
        describe = describe_object(catalog.get(name), catalog, "58.0")
        assert set(describe) >= DESCRIBE_KEYS, name
        for f in describe["fields"]:
            assert set(f) >= FIELD_KEYS, (name, f["name"])
        assert describe["urls"]["rowTemplate"] == f"/services/data/v58.0/sobjects/{name}/{{ID}}"
        assert describe["urls"]["describe"] == f"/services/data/v58.0/sobjects/{name}/describe"
    assert describe_object(catalog.get("Account"), catalog, "41.0")["urls"]["sobject"].startswith(
        "/services/data/v41.0/"
    )


def test_describe_field_facts(catalog):
    account = fields_of(describe_object(catalog.get("Account"), catalog, "58.0"))
    stamp = account["SystemModstamp"]
    assert (stamp["type"], stamp["soapType"]) == ("datetime", "xsd:dateTime")
    assert stamp["nillable"] is False and stamp["createable"] is False and stamp["updateable"] is False
    assert stamp["defaultedOnCreate"] is True and stamp["filterable"] and stamp["sortable"]
    assert stamp["groupable"] is False
    assert (account["Id"]["type"], account["Id"]["soapType"], account["Id"]["idLookup"]) == (
        "id",
        "tns:ID",
        True,
    )
    assert account["IsDeleted"]["defaultValue"] is False
    address = account["BillingAddress"]
    assert (address["type"], address["soapType"]) == ("address", "urn:address")
    assert address["createable"] is False and address["sortable"] is False
    assert account["BillingCity"]["compoundFieldName"] == "BillingAddress"
    assert account["BillingLatitude"]["compoundFieldName"] == "BillingAddress"
    assert (account["BillingLatitude"]["precision"], account["BillingLatitude"]["scale"]) == (18, 15)
    assert account["Name"]["nameField"] is True and account["Name"]["nillable"] is False
    assert account["Description"]["type"] == "textarea" and account["Description"]["filterable"] is False
    assert account["Description"]["extraTypeInfo"] == "plaintextarea"
    assert account["NumberOfEmployees"]["soapType"] == "xsd:int"
    assert account["AnnualRevenue"]["soapType"] == "xsd:double"
    assert account["Phone"]["length"] == 40 and account["Phone"]["byteLength"] == 120


def test_picklists_carry_realistic_values(catalog):
    account = fields_of(describe_object(catalog.get("Account"), catalog, "58.0"))
    values = [v["value"] for v in account["Industry"]["picklistValues"]]
    assert {"Banking", "Technology", "Healthcare", "Food & Beverage"} <= set(values)
    entry = account["Industry"]["picklistValues"][0]
    assert set(entry) == {"active", "defaultValue", "label", "validFor", "value"}
    assert {v["value"] for v in account["Type"]["picklistValues"]} >= {"Prospect", "Customer - Direct"}
    assert {v["value"] for v in account["Rating"]["picklistValues"]} == {"Hot", "Warm", "Cold"}
    opportunity = fields_of(describe_object(catalog.get("Opportunity"), catalog, "58.0"))
    assert {"Prospecting", "Closed Won", "Closed Lost"} <= {
        v["value"] for v in opportunity["StageName"]["picklistValues"]
    }
    assert "Commit" in {v["value"] for v in opportunity["ForecastCategoryName"]["picklistValues"]}
    case = fields_of(describe_object(catalog.get("Case"), catalog, "58.0"))
    assert {v["value"] for v in case["Priority"]["picklistValues"]} == {"High", "Medium", "Low"}
    assert "Escalated" in {v["value"] for v in case["Status"]["picklistValues"]}
    lead = fields_of(describe_object(catalog.get("Lead"), catalog, "58.0"))
    assert "Web" in {v["value"] for v in lead["LeadSource"]["picklistValues"]}


def test_references_point_at_sensible_targets(catalog):
    def field(obj: str, name: str) -> dict:
        return fields_of(describe_object(catalog.get(obj), catalog, "58.0"))[name]

    assert field("Account", "OwnerId")["referenceTo"] == ["User"]
    assert field("Account", "OwnerId")["relationshipName"] == "Owner"
    assert field("Account", "CreatedById")["referenceTo"] == ["User"]
    assert field("Account", "ParentId")["referenceTo"] == ["Account"]
    assert field("Contact", "AccountId")["referenceTo"] == ["Account"]
    assert field("Contact", "AccountId")["relationshipName"] == "Account"
    assert field("OpportunityLineItem", "OpportunityId")["referenceTo"] == ["Opportunity"]
    who = field("Task", "WhoId")
    assert who["referenceTo"] == ["Contact", "Lead"] and who["polymorphicForeignKey"] is True
    assert field("AccountTag", "ItemId")["referenceTo"] == ["Account"]
    children = {
        (c["childSObject"], c["field"]): c
        for c in describe_object(catalog.get("Account"), catalog, "58.0")["childRelationships"]
    }
    assert children[("Contact", "AccountId")]["relationshipName"] == "Contacts"
    assert children[("Account", "ParentId")]["relationshipName"] == "ChildAccounts"


def test_describe_global_shape(catalog):
    body = describe_global(catalog, "60.0")
    assert body["encoding"] == "UTF-8" and body["maxBatchSize"] == 200
    names = [entry["name"] for entry in body["sobjects"]]
    assert set(names) == STANDARD_48 | {"Invoice__c"}
    for entry in body["sobjects"]:
        assert set(entry) == GLOBAL_ENTRY_KEYS
        assert set(entry["urls"]) == URL_KEYS
        assert entry["urls"]["sobject"] == f"/services/data/v60.0/sobjects/{entry['name']}"
    account = next(e for e in body["sobjects"] if e["name"] == "Account")
    assert account["keyPrefix"] == "001" and account["queryable"] and account["replicateable"]
    tag = next(e for e in body["sobjects"] if e["name"] == "AccountTag")
    assert tag["replicateable"] is False
    assert next(e for e in body["sobjects"] if e["name"] == "UserLogin")["replicateable"] is False


def test_feature_switches_remove_objects():
    without = build_catalog(tags=False, schedules=False)
    assert not [name for name in without.names() if name in TAGS]
    assert "OpportunityLineItemSchedule" not in without.names()
    assert without.soql_object("AccountTag") is None
    assert set(build_catalog().names()) >= TAGS | {"OpportunityLineItemSchedule"}


def test_custom_objects_and_fields(catalog):
    invoice = describe_object(catalog.get("Invoice__c"), catalog, "58.0")
    assert invoice["custom"] is True and invoice["keyPrefix"]
    fields = fields_of(invoice)
    types = {f["type"] for f in fields.values() if f["custom"]}
    assert types >= {"reference", "currency", "percent", "double", "date", "datetime", "boolean",
                     "picklist", "multipicklist", "email", "phone", "url", "textarea", "string"}  # fmt: skip
    assert sum(1 for f in fields.values() if f["custom"]) >= 12
    assert fields["Account__c"]["referenceTo"] == ["Account"]
    assert fields["Account__c"]["relationshipName"] == "Account__r"
    account = fields_of(describe_object(catalog.get("Account"), catalog, "58.0"))
    assert account["Tier__c"]["type"] == "picklist" and account["Tier__c"]["custom"] is True
    assert account["Renewal_Date__c"]["type"] == "date"
    assert account["Seats__c"]["type"] == "double"
    plain = build_catalog(custom=False)
    assert plain.get("Invoice__c") is None and "Tier__c" not in plain.get("Account").fields


def test_wide_object_switch():
    wide = build_catalog(wide_object="contact", wide_field_count=1200)
    contact = wide.get("Contact")
    added = [f for f in contact.fields.values() if f.name.startswith("Wide_Field_")]
    assert len(added) == 1200 and len(contact.fields) > 1200
    assert {f.type for f in added} >= {
        "string",
        "double",
        "boolean",
        "date",
        "datetime",
        "picklist",
        "currency",
    }
    assert wide.soql_object("Contact").fields["wide_field_1200__c"].name == "Wide_Field_1200__c"
    with pytest.raises(ModelError):
        build_catalog(wide_object="NoSuchObject")


def test_describe_dir_adds_real_describe_files(tmp_path):
    catalog = build_catalog(describe_dir=DATA)
    widget = catalog.get("widget__c")
    assert widget is not None and "Account" in catalog
    assert widget.fields["Price__c"].type == "currency" and widget.fields["Price__c"].scale == 2
    assert widget.fields["Stage__c"].picklist == ("Idea", "Prototype", "Shipped")
    assert widget.fields["Site__Latitude__s"].compound_field_name == "Site__c"
    assert "Metadata__c" not in widget.fields  # a type outside the emulator's set: served, not stored
    served = describe_object(widget, catalog, "61.0")
    original = json.loads((DATA / "Widget__c.json").read_text())
    assert served["urls"]["describe"] == "/services/data/v61.0/sobjects/Widget__c/describe"
    assert [f["name"] for f in served["fields"]] == [f["name"] for f in original["fields"]]
    assert served["fields"][3] == original["fields"][3]

    only = build_catalog(describe_dir=DATA, describe_dir_only=True)
    assert only.names() == ["Widget__c"]

    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(DATA / "Widget__c.json", bad / "Gadget__c.json")
    with pytest.raises(ModelError, match="expected Gadget__c"):
        build_catalog(describe_dir=bad)
    with pytest.raises(ModelError, match="does not exist"):
        build_catalog(describe_dir=tmp_path / "missing")


def test_catalog_lookup_is_case_insensitive(catalog):
    assert catalog.get("ACCOUNT").name == "Account"
    soql_account = catalog.soql_object("account")
    assert soql_account.fields["systemmodstamp"].type == "datetime"
    assert soql_account.fields["description"].filterable is False


def test_labels_and_description_errors():
    assert field_label("AnnualRevenue") == "Annual Revenue"
    assert field_label("OwnerId") == "Owner ID"
    assert field_label("IsDeleted") == "Deleted"
    assert field_label("Renewal_Date__c") == "Renewal Date"
    with pytest.raises(ModelError, match="unknown picklist set"):
        parse_description("Thing__c a01\n  Id id\n  Kind__c picklist @Nope\n")
    with pytest.raises(ModelError, match="unsupported type"):
        parse_description("Thing__c a01\n  Id id\n  Odd__c hologram\n")
