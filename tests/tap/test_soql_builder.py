"""SOQL building and the splitting of wide field lists (tap_salesforce_seg.soql)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from tap_salesforce_seg import soql

UTC = UTC


def test_incremental_query_has_window_and_order():
    text = soql.build_query(
        "Account",
        ["Id", "Name", "SystemModstamp"],
        replication_field="SystemModstamp",
        window_start=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        window_end=datetime(2024, 2, 1, tzinfo=UTC),
    )
    assert text == (
        "SELECT Id,Name,SystemModstamp FROM Account WHERE SystemModstamp >= 2024-01-02T03:04:05Z "
        "AND SystemModstamp < 2024-02-01T00:00:00Z ORDER BY SystemModstamp, Id"
    )


def test_literals_are_utc_with_milliseconds_when_present():
    plus_two = timezone(timedelta(hours=2))
    value = datetime(2024, 1, 2, 5, 4, 5, 123_456, tzinfo=plus_two)
    assert soql.datetime_literal(value) == "2024-01-02T03:04:05.123Z"
    with pytest.raises(ValueError, match="naive"):
        soql.datetime_literal(datetime(2024, 1, 1))


def test_open_windows_and_full_queries():
    start_only = soql.build_query(
        "Contact",
        ["Id"],
        replication_field="SystemModstamp",
        window_start=datetime(2024, 1, 1, tzinfo=UTC),
    )
    assert start_only.endswith("WHERE SystemModstamp >= 2024-01-01T00:00:00Z ORDER BY SystemModstamp, Id")
    no_window = soql.build_query("Contact", ["Id"], replication_field="SystemModstamp")
    assert no_window == "SELECT Id FROM Contact ORDER BY SystemModstamp, Id"
    full = soql.build_query("Custom__c", ["Id", "Name"])
    assert full == "SELECT Id,Name FROM Custom__c ORDER BY Id"
    with pytest.raises(ValueError, match="replication field"):
        soql.build_query("Custom__c", ["Id"], window_start=datetime(2024, 1, 1, tzinfo=UTC))


def test_count_query_uses_the_same_window():
    text = soql.build_count_query(
        "Account", replication_field="SystemModstamp", window_end=datetime(2024, 1, 1, tzinfo=UTC)
    )
    assert text == "SELECT COUNT() FROM Account WHERE SystemModstamp < 2024-01-01T00:00:00Z"
    assert soql.build_count_query("Account") == "SELECT COUNT() FROM Account"


@pytest.mark.parametrize("bad", ["Name, (SELECT Id FROM Contacts)", "Id FROM User--", "", "1abc", "a b"])
def test_identifiers_are_checked(bad):
    with pytest.raises(ValueError, match="not a Salesforce API name"):
        soql.build_query("Account", ["Id", bad])
    with pytest.raises(ValueError, match="not a Salesforce API name"):
        soql.build_query(bad, ["Id"])


def test_uri_length_counts_the_encoded_query():
    text = "SELECT Id,Name FROM Account"
    # ' ' -> '+', ',' -> '%2C'
    assert soql.query_uri_bytes("58.0", text) == len("/services/data/v58.0/queryAll?q=") + len(
        "SELECT+Id%2CName+FROM+Account"
    )


def test_narrow_objects_stay_one_chunk():
    chunks = soql.chunk_field_names(
        "Account",
        ["Id", "Name", "SystemModstamp", "Industry"],
        api_version="58.0",
        replication_field="SystemModstamp",
    )
    assert chunks == [["Id", "SystemModstamp", "Name", "Industry"]]


def test_a_field_cap_splits_narrow_lists_too_with_keys_in_every_chunk():
    names = ["Id", "SystemModstamp", "A", "B", "C", "D", "E"]
    chunks = soql.chunk_field_names(
        "Account", names, api_version="58.0", replication_field="SystemModstamp", max_fields=2
    )
    assert chunks == [
        ["Id", "SystemModstamp", "A", "B"],
        ["Id", "SystemModstamp", "C", "D"],
        ["Id", "SystemModstamp", "E"],
    ]


def test_wide_field_lists_split_under_the_limit_with_keys_in_every_chunk():
    fields = [f"Custom_Field_Number_{i:04d}__c" for i in range(1000)]
    chunks = soql.chunk_field_names(
        "Wide__c",
        ["Id", "SystemModstamp", *fields],
        api_version="58.0",
        replication_field="SystemModstamp",
    )
    assert len(chunks) > 1
    budget = soql.MAX_URI_BYTES - soql.HEADER_HEADROOM_BYTES
    worst = datetime(2099, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)
    for chunk in chunks:
        assert chunk[:2] == ["Id", "SystemModstamp"]
        text = soql.build_query(
            "Wide__c", chunk, replication_field="SystemModstamp", window_start=worst, window_end=worst
        )
        assert soql.query_uri_bytes("58.0", text) <= budget
    # every field exactly once, order kept
    assert [name for chunk in chunks for name in chunk[2:]] == fields
    # greedy: a chunk is full (the next field would not have fitted)
    first_next = chunks[1][2]
    text = soql.build_query(
        "Wide__c",
        [*chunks[0], first_next],
        replication_field="SystemModstamp",
        window_start=worst,
        window_end=worst,
    )
    assert soql.query_uri_bytes("58.0", text) > budget


def test_chunks_without_replication_field_carry_id():
    fields = [f"F{i:04d}__c" for i in range(3000)]
    chunks = soql.chunk_field_names("Wide__c", fields, api_version="58.0", replication_field=None)
    assert len(chunks) > 1
    assert all(chunk[0] == "Id" and "Id" not in chunk[1:] for chunk in chunks)


def test_a_field_too_long_for_any_chunk_is_an_error():
    with pytest.raises(ValueError, match="alone"):
        soql.chunk_field_names(
            "X", ["Id", "A" * 200], api_version="58.0", replication_field=None, max_uri_bytes=100
        )
