"""Segment's names for Salesforce objects and fields.

- `SEGMENT_COLLECTIONS`: the 48 standard objects Segment syncs, Salesforce object -> Segment's fixed
  collection (table) name (`Account` -> `accounts`, `Group` -> `_group`, ...).
- `segment_snake_case(name)`: Segment's warehouse rule. A word is a run of upper-case letters and
  digits followed by a run of lower-case letters and digits; every other character only separates
  words. Words are lower-cased and joined by one `_` (`CreatedById` -> `created_by_id`,
  `SBQQ__Quote__c` -> `sbqq_quote_c`, `ABCField` -> `abcfield`, `2ndPhone__c` -> `2nd_phone_c`).
- `stream_name(sobject, naming)` / `stream_names(sobjects, naming)`: a collection's fixed name, else
  the rule (custom objects: `Invoice__c` -> `invoice_c`); `naming="salesforce"` keeps the API name.
- `property_names(field_names, naming)`: field -> property name, one-to-one. When two fields map to
  one name (`My_Field__c` and `MyField__c` -> `my_field_c`), the field whose own spelling already is
  that name (lower-cased, runs of other characters made one `_`) keeps it and the others take their
  plain lower-cased spelling (`myfield_c`), then `_2`, `_3`, ... if still taken; a warning names them.
  Segment's reserved warehouse columns (`received_at`, `uuid_ts`) are never given to a field.
- `can_lose_name(field, name)`: whether a custom field added later could win `name` from `field` at a
  later discovery (the sync keeps such names with their fields through the state: streams.py).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType

LOGGER = logging.getLogger("tap-salesforce-seg")

NAMING_SEGMENT = "segment"
NAMING_SALESFORCE = "salesforce"

# Segment's collections table (segment-salesforce-source.md), Salesforce object -> collection name.
SEGMENT_COLLECTIONS: Mapping[str, str] = MappingProxyType(
    {
        "Account": "accounts",
        "AccountContactRole": "account_contact_roles",
        "AccountTag": "account_tags",
        "Campaign": "campaigns",
        "CampaignMember": "campaign_members",
        "CampaignShare": "campaign_shares",
        "CampaignTag": "campaign_tags",
        "Case": "cases",
        "CaseComment": "case_comments",
        "CaseContactRole": "case_contact_role",
        "CaseSolution": "case_solution",
        "CaseTag": "case_tags",
        "Contact": "contacts",
        "ContactTag": "contact_tags",
        "Contract": "contracts",
        "ContractTag": "contract_tags",
        "Dashboard": "dashboards",
        "DashboardTag": "dashboard_tags",
        "Document": "documents",
        "DocumentTag": "document_tags",
        "Event": "events",
        "EventTag": "event_tags",
        "Group": "_group",
        "Lead": "leads",
        "LeadTag": "lead_tags",
        "Name": "names",
        "Note": "notes",
        "NoteTag": "note_tags",
        "Opportunity": "opportunities",
        "OpportunityCompetitor": "opportunity_competitor",
        "OpportunityContactRole": "opportunity_contact_role",
        "OpportunityFieldHistory": "opportunity_field_history",
        "OpportunityLineItem": "opportunity_product",
        "OpportunityLineItemSchedule": "opportunity_line_item_schedules",
        "OpportunityStage": "opportunity_stage",
        "OpportunityTag": "opportunity_tag",
        "Period": "period",
        "Pricebook2": "price_books",
        "PricebookEntry": "price_book_entries",
        "Product2": "products",
        "Profile": "profile",
        "Solution": "solutions",
        "SolutionTag": "solution_tags",
        "Task": "tasks",
        "TaskTag": "task_tags",
        "User": "users",
        "UserLogin": "user_login",
        "UserRole": "role",
    }
)

# Columns Segment's warehouses add to every table; a field never takes these names.
RESERVED_COLUMNS = frozenset({"received_at", "uuid_ts"})

_WORD = re.compile(r"[A-Z0-9]+[a-z0-9]*|[a-z0-9]+")
_ALREADY_SNAKE = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)*$")
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


def is_custom_object(sobject: str) -> bool:
    """Custom objects (`Invoice__c`, `ns__Invoice__c`); not `__mdt`, `__e`, `__Share`, ..."""
    return sobject.endswith("__c")


def segment_snake_case(name: str) -> str:
    """Segment's snake_case rule (see the module docstring)."""
    if _ALREADY_SNAKE.match(name):
        return name
    words = _WORD.findall(name)
    if not words:  # nothing but separators: keep something recognisable
        return name.lower()
    return "_".join(word.lower() for word in words)


def _plain_lower(name: str) -> str:
    """The name as written, lower-cased, each run of other characters one `_`."""
    return _NOT_ALNUM.sub("_", name.lower()).strip("_") or name.lower()


def stream_name(sobject: str, naming: str = NAMING_SEGMENT) -> str:
    """The stream (table) name of one object; see `stream_names` for a set that may collide."""
    if naming == NAMING_SALESFORCE:
        return sobject
    return SEGMENT_COLLECTIONS.get(sobject) or segment_snake_case(sobject)


def stream_names(sobjects: Iterable[str], naming: str = NAMING_SEGMENT) -> dict[str, str]:
    """Stream names of many objects, distinct even when two custom objects map to one name."""
    sobjects = list(sobjects)
    if naming == NAMING_SALESFORCE:
        return {sobject: sobject for sobject in sobjects}
    fixed = {sobject: SEGMENT_COLLECTIONS[sobject] for sobject in sobjects if sobject in SEGMENT_COLLECTIONS}
    others = [sobject for sobject in sobjects if sobject not in SEGMENT_COLLECTIONS]
    resolved = _distinct_names(
        others, taken=set(SEGMENT_COLLECTIONS.values()), what="objects", context="the org"
    )
    return {sobject: fixed.get(sobject) or resolved[sobject] for sobject in sobjects}


def property_names(
    field_names: Iterable[str], naming: str = NAMING_SEGMENT, *, context: str = ""
) -> dict[str, str]:
    """Field name -> property name, one-to-one and deterministic (module docstring)."""
    field_names = list(field_names)
    if naming == NAMING_SALESFORCE:
        return {field: field for field in field_names}
    return _distinct_names(field_names, taken=set(RESERVED_COLUMNS), what="fields", context=context)


def _distinct_names(names: list[str], *, taken: set[str], what: str, context: str) -> dict[str, str]:
    candidates = {name: segment_snake_case(name) for name in names}
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(candidates[name], []).append(name)
    reserved_names = set(taken)
    # Every name the rule produces is spoken for, so an alternative never steals another's name.
    taken = taken | set(groups)
    result: dict[str, str] = {}
    for candidate in sorted(groups):
        members = sorted(groups[candidate])
        reserved = candidate in reserved_names
        if len(members) == 1 and not reserved:
            result[members[0]] = candidate
            continue
        owner = None if reserved else _owner(candidate, members)
        renamed: list[str] = []
        for member in members:
            if member == owner:
                result[member] = candidate
                continue
            alternative = _alternative(member, taken)
            taken.add(alternative)
            result[member] = alternative
            renamed.append(f"{member} -> '{alternative}'")
        where = f" in {context}" if context else ""
        clash = " and ".join(members) if not reserved else f"{members[0]} and a reserved column"
        LOGGER.warning(
            "Salesforce %s %s%s map to the name '%s'; renamed: %s",
            what,
            clash,
            where,
            candidate,
            ", ".join(renamed),
        )
    return result


def _owner(candidate: str, members: list[str]) -> str:
    """The member whose own spelling is the candidate keeps it; else the first in sorted order."""
    for member in members:
        if _plain_lower(member) == candidate:
            return member
    return members[0]


def can_lose_name(field: str, name: str) -> bool:
    """Whether a field added to the org later could take `name` from `field` at a later discovery.

    Only custom fields can be added (their names hold `__`). `_owner` gives a contested name to the
    field spelled like it, so a field keeps its name for good when it is spelled like it and no other
    spelling can be: a namespaced field (`ns__Seats__c`) and a plain one (`Ns_Seats__c`) spell alike.
    """
    if field == name or "__" not in field:
        return False
    if _plain_lower(field) != name:
        return True
    return field.count("__") > 1


def _alternative(name: str, taken: set[str]) -> str:
    base = _plain_lower(name)
    if base not in taken:
        return base
    suffix = 2
    while f"{base}_{suffix}" in taken:
        suffix += 1
    return f"{base}_{suffix}"
