"""Value conversion (tap_salesforce_seg.values): REST JSON and Bulk CSV give the same output."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import msgspec
import pytest

from tap_salesforce_seg import values
from tap_salesforce_seg.extract.bulk_pages import CsvPageConverter
from tap_salesforce_seg.soql import QueryField

FIELDS = [
    QueryField("Id", "id", "id"),
    QueryField("Name", "name", "string"),
    QueryField("IsDeleted", "is_deleted", "boolean"),
    QueryField("NumberOfEmployees", "number_of_employees", "int"),
    QueryField("AnnualRevenue", "annual_revenue", "currency"),
    QueryField("Probability__c", "probability_c", "percent"),
    QueryField("Score__c", "score_c", "double"),
    QueryField("SystemModstamp", "system_modstamp", "datetime"),
    QueryField("Renewal_Date__c", "renewal_date_c", "date"),
    QueryField("Open_At__c", "open_at_c", "time"),
    QueryField("OldValue", "old_value", "anyType"),
    QueryField("Description", "description", "textarea"),
]

REST_PAGE = (
    b'{"totalSize":2,"done":true,"records":['
    b'{"attributes":{"type":"Account","url":"/services/data/v58.0/sobjects/Account/001"},'
    b'"Id":"001000000000001AAA","Name":"Acme, \\"Quoted\\"\\nCo","IsDeleted":false,'
    b'"NumberOfEmployees":39000,"AnnualRevenue":950000000.10,"Probability__c":12.50,'
    b'"Score__c":3.0,"SystemModstamp":"2024-01-02T03:04:05.123+0000",'
    b'"Renewal_Date__c":"2024-06-30","Open_At__c":"08:30:00.000Z","OldValue":true,'
    b'"Description":"nul\\u0000here"},'
    b'{"attributes":{"type":"Account"},"Id":"001000000000002AAA","Name":null,"IsDeleted":true,'
    b'"NumberOfEmployees":null,"AnnualRevenue":null,"Probability__c":null,"Score__c":null,'
    b'"SystemModstamp":"2024-01-02T03:04:05.000+0000","Renewal_Date__c":null,"Open_At__c":null,'
    b'"OldValue":"2023-05-06T07:08:09.000+0000","Description":null}]}'
)

CSV_PAGE = (
    b'"Id","Name","IsDeleted","NumberOfEmployees","AnnualRevenue","Probability__c","Score__c",'
    b'"SystemModstamp","Renewal_Date__c","Open_At__c","OldValue","Description"\n'
    b'"001000000000001AAA","Acme, ""Quoted""\nCo","false","39000","950000000.10","12.50","3.0",'
    b'"2024-01-02T03:04:05.123Z","2024-06-30","08:30:00.000Z","true","nul\x00here"\n'
    b'"001000000000002AAA","","true","","","","","2024-01-02T03:04:05.000Z","","",'
    b'"2023-05-06T07:08:09.000Z",""\n'
)

EXPECTED = [
    {
        "id": "001000000000001AAA",
        "name": 'Acme, "Quoted"\nCo',
        "is_deleted": False,
        "number_of_employees": 39000,
        "annual_revenue": Decimal("950000000.1"),
        "probability_c": Decimal("12.5"),
        "score_c": 3,
        "system_modstamp": "2024-01-02T03:04:05.123000Z",
        "renewal_date_c": "2024-06-30",
        "open_at_c": "08:30:00.000000",
        "old_value": "true",
        "description": "nulhere",
    },
    {
        "id": "001000000000002AAA",
        "name": None,
        "is_deleted": True,
        "number_of_employees": None,
        "annual_revenue": None,
        "probability_c": None,
        "score_c": None,
        "system_modstamp": "2024-01-02T03:04:05.000000Z",
        "renewal_date_c": None,
        "open_at_c": None,
        "old_value": "2023-05-06T07:08:09.000000Z",
        "description": None,
    },
]


def rest_records(page: bytes, fields=FIELDS, **options) -> list[dict]:
    converter = values.RestRecordConverter(fields, **options)
    return [values.record_dict(record) for _, record in converter.decode_page(page).records]


def csv_records(page: bytes, fields=FIELDS, **options) -> list[dict]:
    converter = CsvPageConverter(fields, **options)
    return [values.record_dict(record) for _, record in converter.records(page)]


def test_rest_page_converts_every_type():
    assert rest_records(REST_PAGE) == EXPECTED


def test_csv_page_converts_every_type():
    assert csv_records(CSV_PAGE) == EXPECTED


def test_rest_and_csv_are_byte_identical_once_encoded():
    encoder = msgspec.json.Encoder(decimal_format="number")
    rest_pairs = values.RestRecordConverter(FIELDS).decode_page(REST_PAGE).records
    from_rest = [encoder.encode(record) for _, record in rest_pairs]
    from_csv = [encoder.encode(record) for _, record in CsvPageConverter(FIELDS).records(CSV_PAGE)]
    assert from_rest == from_csv
    assert b'"annual_revenue":950000000.1,' in from_rest[0]


def test_csv_columns_in_another_order_are_matched_by_name():
    fields = [QueryField("Id", "id", "id"), QueryField("IsDeleted", "is_deleted", "boolean")]
    page = b'"IsDeleted","Id"\n"true","001A"\n'
    assert csv_records(page, fields) == [{"id": "001A", "is_deleted": True}]


def test_csv_missing_column_is_an_error():
    fields = [QueryField("Id", "id", "id"), QueryField("Gone__c", "gone_c", "string")]
    with pytest.raises(ValueError, match="Gone__c"):
        csv_records(b'"Id"\n"001A"\n', fields)


def test_empty_csv_page_gives_no_records():
    assert csv_records(b"") == []


def test_clean_rest_page_takes_the_fast_path_with_the_same_result():
    page = REST_PAGE.replace(b"\\u0000", b"")
    expected = [dict(record) for record in EXPECTED]
    expected[0]["description"] = "nulhere"
    assert rest_records(page) == expected


def test_rest_page_metadata_and_missing_fields():
    page = values.RestRecordConverter(FIELDS[:2]).decode_page(
        b'{"totalSize":7,"done":false,"nextRecordsUrl":"/services/data/v58.0/query/01g-2000",'
        b'"records":[{"attributes":{"type":"Account"},"Id":"001A"}]}'
    )
    assert (page.total_size, page.done, page.next_records_url) == (
        7,
        False,
        "/services/data/v58.0/query/01g-2000",
    )
    assert [values.record_dict(record) for _, record in page.records] == [{"id": "001A", "name": None}]


def test_empty_rest_text_is_null():
    page = b'{"totalSize":1,"done":true,"records":[{"Id":"001A","Name":""}]}'
    assert rest_records(page, FIELDS[:2]) == [{"id": "001A", "name": None}]


def test_property_names_need_not_be_identifiers():
    fields = [
        QueryField("Id", "id", "id"),
        QueryField("Class__c", "class", "string"),
        QueryField("X__c", "my-prop", "int"),
    ]
    page = b'{"records":[{"Id":"001A","Class__c":"c","X__c":4}]}'
    assert rest_records(page, fields) == [{"id": "001A", "class": "c", "my-prop": 4}]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-02T03:04:05.000+0000", "2024-01-02T03:04:05.000000Z"),
        ("2024-01-02T03:04:05.999Z", "2024-01-02T03:04:05.999000Z"),
        ("2024-01-02T05:04:05.5+02:00", "2024-01-02T03:04:05.500000Z"),
        ("2024-01-01T23:30:00-0100", "2024-01-02T00:30:00.000000Z"),
        ("2024-01-02T03:04:05Z", "2024-01-02T03:04:05.000000Z"),
        ("2024-01-02T03:04:05.123456Z", "2024-01-02T03:04:05.123456Z"),
    ],
)
def test_datetimes_become_utc_with_six_digits(text, expected):
    assert values.convert_datetime(text) == expected
    assert values.format_datetime(values.parse_datetime(expected)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("08:30:00.000Z", "08:30:00.000000"),
        ("08:30:00Z", "08:30:00.000000"),
        ("10:30:00.250+02:00", "08:30:00.250000"),
        ("08:30:00", "08:30:00.000000"),
    ],
)
def test_times(text, expected):
    assert values.convert_time(text) == expected


def test_bad_values_raise():
    with pytest.raises(ValueError):
        values.parse_datetime("yesterday")
    with pytest.raises(ValueError):
        values.convert_time("noon")
    with pytest.raises(ValueError):
        values.boolean_from_text("yes")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (Decimal("3.0"), 3),
        (Decimal("1E+2"), 100),
        (Decimal("0.10"), Decimal("0.1")),
        (Decimal("12345678901234567.12"), Decimal("12345678901234567.12")),
        (Decimal("-0.000001"), Decimal("-0.000001")),
        (7, 7),
    ],
)
def test_numbers_stay_exact_with_one_spelling(raw, expected):
    result = values.exact_number(raw)
    assert result == expected and type(result) is type(expected)
    assert values.number_from_text(str(raw)) == expected


def test_currency_from_json_never_passes_through_float():
    body = b'{"v": 12345678901234567.12}'
    value = values.decode_json(body)["v"]
    assert isinstance(value, Decimal)
    encoded = msgspec.json.Encoder(decimal_format="number").encode({"v": values.exact_number(value)})
    assert encoded == b'{"v":12345678901234567.12}'


def test_integers_from_either_spelling():
    assert values.integer_from_text("39000") == 39000
    assert values.integer_from_text("39000.0") == 39000
    assert values.integer_from_json(Decimal("39000.0")) == 39000


def test_any_type_values_are_text():
    assert values.any_text(False) == "false"
    assert values.any_text(Decimal("2.50")) == "2.50"
    assert values.any_text(12) == "12"
    assert values.any_text("plain") == "plain"
    assert values.any_text({"a": 1}) == '{"a":1}'


def test_format_datetime_treats_naive_as_utc():
    assert values.format_datetime(datetime(2024, 1, 2, 3, 4, 5)) == "2024-01-02T03:04:05.000000Z"
    eastern = values.parse_datetime("2024-01-02T03:04:05.000-0500")
    assert eastern == datetime(2024, 1, 2, 8, 4, 5, tzinfo=UTC)


def test_stamps_come_with_the_records_and_hidden_properties_stay_out():
    options = {"stamp_property": "system_modstamp", "hidden": {"system_modstamp"}}
    rest = values.RestRecordConverter(FIELDS, **options).decode_page(REST_PAGE).records
    bulk = CsvPageConverter(FIELDS, **options).records(CSV_PAGE)
    for pairs in (list(rest), list(bulk)):
        assert [stamp for stamp, _ in pairs] == [r["system_modstamp"] for r in EXPECTED]
        expected = [{k: v for k, v in r.items() if k != "system_modstamp"} for r in EXPECTED]
        assert [values.record_dict(record) for _, record in pairs] == expected


def test_records_encode_like_dicts():
    encoder = msgspec.json.Encoder(decimal_format="number")
    pairs = CsvPageConverter(FIELDS).records(CSV_PAGE)
    for (_, record), expected in zip(pairs, EXPECTED, strict=True):
        assert encoder.encode(record) == encoder.encode(expected)
