"""Unit tests of the pure parts: identifier conforming and collisions, JSON Schema -> column kinds."""

from __future__ import annotations

from target_warehouse_seg import identifiers
from target_warehouse_seg.typemap import Kind, Source, holds, kind_of, source_of, type_tokens, widen


def test_conform_lowercases_and_replaces_outside_the_alphabet() -> None:
    assert identifiers.conform("clientName") == "clientname"
    assert identifiers.conform("agent:os:version") == "agent_os_version"
    assert identifiers.conform("test:SpecialChars!in?attributes") == "test_specialchars_in_attributes"
    assert identifiers.conform("Café Crème") == "cafe_creme"
    assert identifiers.conform("2nd_phone_c") == "2nd_phone_c"
    assert identifiers.conform("") == "_"


def test_long_names_are_cut_with_a_stable_hash() -> None:
    name = "a_very_long_property_name_that_goes_on_and_on_beyond_postgres_limits_x"
    assert len(name) == 70
    conformed = identifiers.conform(name)
    assert len(conformed.encode()) <= 63
    assert conformed == identifiers.conform(name)  # stable
    assert conformed.startswith(name[:54])
    other = identifiers.conform(name[:-1] + "y")
    assert other != conformed and other.startswith(name[:54])


def test_quote_doubles_quotes() -> None:
    assert identifiers.quote("select") == '"select"'
    assert identifiers.quote('we"ird') == '"we""ird"'


def test_collisions_resolve_deterministically_whatever_the_order() -> None:
    first = identifiers.assign(["Amount", "amount"], {})
    second = identifiers.assign(["amount", "Amount"], {})
    assert first == second
    assert first["amount"] == "amount"
    assert first["Amount"].startswith("amount_") and len(first["Amount"]) == len("amount_") + 8


def test_owned_columns_keep_their_owner_across_runs() -> None:
    # Run 1 saw only `Amount`, which took `amount`; run 2 adds `amount`: it must not take that column.
    owners: dict[str, str | None] = {"amount": "Amount"}
    names = identifiers.assign(["amount", "Amount"], owners)
    assert names["Amount"] == "amount"
    assert names["amount"] != "amount"


def test_system_columns_are_reserved_and_unowned_columns_are_adopted() -> None:
    names = identifiers.assign(
        ["received_at", "name"], {"name": None, "received_at": None}, reserved=("received_at", "uuid_ts")
    )
    assert names["name"] == "name"
    assert names["received_at"] != "received_at"


def test_a_comment_is_an_owner_only_when_it_could_have_named_the_identifier() -> None:
    long_name = "a_very_long_property_name_that_goes_on_and_on_beyond_postgres_limits_x"
    for owner in ("accounts", "Account Name", "Café", long_name, "Amount"):
        assert identifiers.read_comment(identifiers.conform(owner), owner) == (owner, None)
        assert identifiers.read_comment(identifiers.hashed(owner), owner) == (owner, None)
    numbered = identifiers.hashed("Amount")[:-2] + "07"  # a hash taken already: step 3's numbered form
    assert identifiers.read_comment(numbered, "Amount") == ("Amount", None)
    note = "Salesforce accounts, loaded hourly"
    assert identifiers.read_comment("accounts", note) == (None, note)
    assert identifiers.read_comment("name", "The account's legal name") == (None, "The account's legal name")
    assert identifiers.read_comment("name", "amount") == (None, "amount")
    assert identifiers.read_comment("name", None) == (None, None)


def test_a_claim_keeps_the_note_beside_the_owner() -> None:
    note = "The account's name\n[as typed]"
    for owner, identifier in (("Name", "name"), ("Billing City", "billing_city")):
        comment = identifiers.write_comment(owner, note)
        assert identifiers.read_comment(identifier, comment) == (owner, note)
        assert identifiers.read_comment("other", comment) == (None, comment)  # not a claim on this one
    assert identifiers.write_comment("name", None) == "name"
    assert identifiers.write_comment(None, note) == note
    assert identifiers.write_comment(None, None) is None


def test_type_tokens_and_kinds() -> None:
    def kind(schema: object) -> Kind:
        return kind_of(type_tokens(schema))

    assert kind({"type": "string"}) is Kind.TEXT
    assert kind({"type": ["null", "string"], "format": "date-time"}) is Kind.TIMESTAMP
    assert kind({"type": "string", "format": "date"}) is Kind.DATE
    assert kind({"type": "string", "format": "time"}) is Kind.TIME
    assert kind({"type": ["integer", "null"]}) is Kind.INTEGER
    assert kind({"type": ["number", "integer"]}) is Kind.NUMBER
    assert kind({"type": "boolean"}) is Kind.BOOLEAN
    assert kind({"type": "object"}) is Kind.JSON
    assert kind({"type": "array", "items": {"type": "string"}}) is Kind.JSON
    assert kind({}) is Kind.JSON
    assert (
        kind({"anyOf": [{"type": "string", "format": "date-time"}, {"type": ["string", "null"]}]})
        is Kind.TEXT
    )
    assert kind({"anyOf": [{"type": "integer"}, {"type": "number"}]}) is Kind.NUMBER
    assert kind({"type": ["integer", "string"]}) is Kind.TEXT
    assert kind({"type": ["boolean", "object"]}) is Kind.JSON
    assert (
        kind({"anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}]})
        is Kind.TIMESTAMP
    )
    assert kind({"type": "null"}) is Kind.TEXT
    assert kind({"enum": ["a", "b"]}) is Kind.TEXT
    # singer-sdk's decimal text (use_singer_decimal), in both spellings of its format
    assert kind({"type": ["string", "null"], "format": "singer.decimal"}) is Kind.NUMBER
    assert kind({"type": "string", "format": "x-singer.decimal"}) is Kind.NUMBER
    assert (
        kind({"anyOf": [{"type": "integer"}, {"type": "string", "format": "x-singer.decimal"}]})
        is Kind.NUMBER
    )
    assert kind({"anyOf": [{"type": "string"}, {"type": "string", "format": "singer.decimal"}]}) is Kind.TEXT


def test_sources() -> None:
    assert source_of(frozenset({"string", "datetime"})) is Source.TEXT
    assert source_of(frozenset({"string", "integer"})) is Source.LOOSE
    assert source_of(frozenset({"date", "datetime"})) is Source.TIMESTAMP_TEXT
    assert source_of(frozenset({"integer", "number"})) is Source.NUMBER
    assert source_of(frozenset({"decimal", "number"})) is Source.NUMBER
    assert source_of(frozenset({"decimal", "string"})) is Source.TEXT


def test_widening_is_safe() -> None:
    assert widen(Kind.INTEGER, Kind.NUMBER) is Kind.NUMBER
    assert widen(Kind.NUMBER, Kind.INTEGER) is Kind.NUMBER
    assert widen(Kind.NUMBER, Kind.TEXT) is Kind.TEXT
    assert widen(Kind.DATE, Kind.TIMESTAMP) is Kind.TIMESTAMP
    assert widen(Kind.TIMESTAMP, Kind.TEXT) is Kind.TEXT
    assert widen(Kind.BOOLEAN, Kind.INTEGER) is Kind.TEXT
    assert widen(Kind.TEXT, Kind.JSON) is Kind.TEXT
    assert widen(Kind.INTEGER, Kind.JSON) is Kind.TEXT
    assert widen(Kind.JSON, Kind.INTEGER) is Kind.JSON
    assert holds(Kind.TEXT, Kind.TIMESTAMP) and not holds(Kind.INTEGER, Kind.NUMBER)
