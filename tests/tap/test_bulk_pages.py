"""Bulk CSV pages converted column by column (extract/bulk_pages.py) give exactly what converting each
value with values.csv_value_converter gives: the same values, of the same Python types, encoding to
the same bytes. The reference below is that per-value conversion over Python's csv module."""

from __future__ import annotations

import csv
import io
import random
import threading
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from tap_salesforce_seg import values
from tap_salesforce_seg.extract import bulk_pages
from tap_salesforce_seg.extract.bulk_pages import CsvPageConverter
from tap_salesforce_seg.soql import QueryField

ENCODER = msgspec.json.Encoder(decimal_format="number")

FIELDS = [
    QueryField("Id", "id", "id"),
    QueryField("Name", "name", "string"),
    QueryField("IsDeleted", "is_deleted", "boolean"),
    QueryField("NumberOfEmployees", "number_of_employees", "int"),
    QueryField("BigCount__c", "big_count_c", "long"),
    QueryField("AnnualRevenue", "annual_revenue", "currency"),
    QueryField("Share__c", "share_c", "percent"),
    QueryField("Latitude__c", "latitude_c", "double"),
    QueryField("SystemModstamp", "system_modstamp", "datetime"),
    QueryField("Renewal__c", "renewal_c", "date"),
    QueryField("Opens__c", "opens_c", "time"),
    QueryField("OldValue", "old_value", "anyType"),
    QueryField("Description", "description", "textarea"),
    QueryField("Tier__c", "tier_c", "picklist"),
]


def reference(page: bytes, fields=FIELDS, stamp_property=None, hidden=()) -> list[tuple[Any, Any]]:
    """`(stamp, record)` pairs by Python's csv module and the per-value converters."""
    shape = values.RecordShape(fields, stamp_property, hidden)
    rows = list(csv.reader(io.StringIO(page.replace(b"\x00", b"").decode(), newline=""), strict=True))
    if not rows:
        return []
    positions = {name.lower(): i for i, name in enumerate(rows[0])}
    converters = [values.csv_value_converter(field.type) for field in fields]
    pairs = []
    for row in rows[1:]:
        converted = [
            convert(row[positions[field.salesforce_name.lower()]])
            for field, convert in zip(fields, converters, strict=True)
        ]
        stamp = None if shape.stamp_index is None else converted[shape.stamp_index]
        pairs.append((stamp, shape.record_type(*[converted[i] for i in shape.emitted])))
    return pairs


def column_wise(page: bytes, fields=FIELDS, **options) -> list[tuple[Any, Any]]:
    return list(CsvPageConverter(fields, **options).records(page))


def typed(pairs: list[tuple[Any, Any]]) -> list[tuple[Any, bytes, list[tuple[str, type, Any]]]]:
    """What must be identical: stamps, encoded bytes, and each property (in order) with its value's
    type (records of pages with empty columns are of another Struct type: values.record_dict)."""
    return [
        (stamp, ENCODER.encode(record), [(k, type(v), v) for k, v in values.record_dict(record).items()])
        for stamp, record in pairs
    ]


def assert_same_as_reference(page: bytes, fields=FIELDS, **options) -> list[dict]:
    expected = typed(reference(page, fields, **options))
    assert typed(column_wise(page, fields, **options)) == expected
    return [values.record_dict(record) for _, record in column_wise(page, fields, **options)]


def quoted(value: str | None) -> str:
    """A Bulk CSV cell: null unquoted and empty, anything else quoted (quotes doubled)."""
    return "" if value is None else '"' + value.replace('"', '""') + '"'


def csv_page(rows: list[list[str | None]], fields=FIELDS, header: list[str] | None = None) -> bytes:
    names = header or [field.salesforce_name for field in fields]
    lines = [",".join(quoted(name) for name in names)]
    lines += [",".join(quoted(value) for value in row) for row in rows]
    return ("\n".join(lines) + "\n").encode()


USUAL_ROW = [
    "001000000000001AAA", "Acme", "false", "39000", "9000000000", "950000000.10", "12.50",
    "35.675998000000000", "2024-01-02T03:04:05.123Z", "2024-06-30", "08:30:00.000Z", "true", "Text",
    "Gold",
]  # fmt: skip


@pytest.fixture(params=[512, 3, 1], ids=lambda rows: f"slices of {rows}")
def slice_rows(request, monkeypatch) -> int:
    monkeypatch.setattr(bulk_pages, "SLICE_ROWS", request.param)
    return request.param


def test_usual_spellings_convert_as_each_value_would(slice_rows):
    rows = [list(USUAL_ROW) for _ in range(7)]
    rows[3][0] = "001000000000004AAA"
    records = assert_same_as_reference(csv_page(rows), stamp_property="system_modstamp")
    assert records[0] == {
        "id": "001000000000001AAA",
        "name": "Acme",
        "is_deleted": False,
        "number_of_employees": 39000,
        "big_count_c": 9000000000,
        "annual_revenue": Decimal("950000000.1"),
        "share_c": Decimal("12.5"),
        "latitude_c": Decimal("35.675998"),
        "system_modstamp": "2024-01-02T03:04:05.123000Z",
        "renewal_c": "2024-06-30",
        "opens_c": "08:30:00.000000",
        "old_value": "true",
        "description": "Text",
        "tier_c": "Gold",
    }


def test_null_and_empty_text_are_both_null(slice_rows):
    page = b'"Id","Name","Description"\n"001A",,""\n"001B","",\n"001C","x",""\n'
    fields = [FIELDS[0], FIELDS[1], FIELDS[12]]
    records = assert_same_as_reference(page, fields)
    assert [(r["name"], r["description"]) for r in records] == [(None, None), (None, None), ("x", None)]


def test_embedded_newlines_quotes_commas_unicode_and_nuls(slice_rows):
    texts = [
        'Acme, "Quoted"\nCo',
        "line\r\nwith CRLF, and \\ backslash",
        "Königstraße 東京 🚀",
        "tab\there",
        "nul\x00inside",
        "\x00",  # nothing left once NULs are removed: null
        '"',
        ",",
        "\n",
        " padded ",
    ]
    rows = [[f"001{i:015d}", text, "x"] for i, text in enumerate(texts)]
    fields = [FIELDS[0], FIELDS[1], FIELDS[12]]
    records = assert_same_as_reference(csv_page(rows, fields), fields)
    assert [r["name"] for r in records] == [
        'Acme, "Quoted"\nCo',
        "line\r\nwith CRLF, and \\ backslash",
        "Königstraße 東京 🚀",
        "tab\there",
        "nulinside",
        None,
        '"',
        ",",
        "\n",
        " padded ",
    ]


@pytest.mark.parametrize(
    ("field", "spellings"),
    [
        (FIELDS[8], ["2024-01-02T03:04:05Z", "2024-01-02T05:04:05.5+02:00", "2024-01-01T23:30:00-0100",
                     "2024-01-02T03:04:05.123456Z", "2024-01-02T03:04:05.000+0000"]),
        (FIELDS[5], ["1E+2", "-0.0", "0.0000001", "007.50", "12345678901234567.12", "5.", ".5", "+5",
                     "1234567890123456789012.5", "-0", "100", "3.000"]),
        (FIELDS[7], ["1e-3", "-12.340", "0.000", "99999999999999999999"]),
        (FIELDS[3], ["39000.0", "-0", "007", "+12", "1234567890123456789012"]),
    ],
    ids=["datetime", "currency", "double", "int"],
)  # fmt: skip
def test_unusual_spellings_take_the_per_value_path(slice_rows, field, spellings):
    usual = {"datetime": "2024-01-02T03:04:05.123Z", "currency": "12.50", "double": "1.5", "int": "12"}
    kind = "int" if field.type == "int" else field.type
    column = [usual[kind], *spellings, None, usual[kind]]
    fields = [FIELDS[0], field]
    rows = [[f"001{i:015d}", value] for i, value in enumerate(column)]
    assert_same_as_reference(csv_page(rows, fields), fields)


def test_usual_number_spellings_keep_int_and_decimal_apart(slice_rows):
    column = ["683409", "683409.000", "35.675998000000000", "-0.50", "0", "-0.0", "0.000001", None, "10.0500"]
    fields = [FIELDS[0], FIELDS[7]]
    rows = [[f"001{i:015d}", value] for i, value in enumerate(column)]
    records = assert_same_as_reference(csv_page(rows, fields), fields)
    converted = [r["latitude_c"] for r in records]
    assert converted == [683409, 683409, Decimal("35.675998"), Decimal("-0.5"), 0, 0, Decimal("0.000001"),
                         None, Decimal("10.05")]  # fmt: skip
    assert [type(v) for v in converted[:3]] == [int, int, Decimal]


def test_bad_values_fail_as_each_value_would():
    fields = [FIELDS[0], FIELDS[2]]
    with pytest.raises(ValueError, match="not a boolean: 'TRUE'"):
        column_wise(csv_page([["001A", "true"], ["001B", "TRUE"]], fields), fields)
    fields = [FIELDS[0], FIELDS[8]]
    with pytest.raises(ValueError, match="not a datetime: 'yesterday'"):
        column_wise(csv_page([["001A", "yesterday"]], fields), fields)


def test_header_in_another_order_and_case(slice_rows):
    fields = [FIELDS[0], FIELDS[2], FIELDS[1]]
    page = b'"NAME","isdeleted","Extra","ID"\n"Acme","true","x","001A"\n,"false",,"001B"\n'
    records = assert_same_as_reference(page, fields)
    assert records == [
        {"id": "001A", "is_deleted": True, "name": "Acme"},
        {"id": "001B", "is_deleted": False, "name": None},
    ]


def test_missing_column_is_an_error():
    with pytest.raises(ValueError, match="lacks the columns Name"):
        column_wise(b'"Id"\n"001A"\n', FIELDS[:2])


def test_rows_of_the_wrong_width_are_an_error():
    with pytest.raises(ValueError, match="not valid CSV"):
        column_wise(b'"Id","Name"\n"001A","a"\n"001B"\n', FIELDS[:2])


def test_text_that_is_not_utf8_is_an_error():
    with pytest.raises(ValueError, match="not valid UTF-8"):
        column_wise(b'"Id","Name"\n"001A","caf\xe9"\n', FIELDS[:2])


@pytest.mark.parametrize("page", [b"", b"\n", b'"Id","Name"', b'"Id","Name"\n', b'"Id","Name"\r\n'])
def test_pages_without_rows_give_no_records(page):
    assert column_wise(page, FIELDS[:2]) == []


def test_crlf_line_endings(slice_rows):
    page = b'"Id","Name"\r\n"001A","a"\r\n"001B",\r\n'
    assert assert_same_as_reference(page, FIELDS[:2]) == [
        {"id": "001A", "name": "a"},
        {"id": "001B", "name": None},
    ]


def test_stamps_without_a_stamp_property_and_with_a_hidden_one(slice_rows):
    page = csv_page([USUAL_ROW, USUAL_ROW])
    assert [stamp for stamp, _ in column_wise(page)] == [None, None]
    options = {"stamp_property": "system_modstamp", "hidden": {"system_modstamp"}}
    pairs = column_wise(page, **options)
    assert [stamp for stamp, _ in pairs] == ["2024-01-02T03:04:05.123000Z"] * 2
    assert "system_modstamp" not in values.record_dict(pairs[0][1])
    assert typed(pairs) == typed(reference(page, **options))


def test_prepared_in_another_thread(slice_rows):
    page = csv_page([USUAL_ROW] * 5)
    converter = CsvPageConverter(FIELDS, stamp_property="system_modstamp")
    prepared = []
    worker = threading.Thread(target=lambda: prepared.append(converter.prepare(page)))
    worker.start()
    worker.join()
    assert typed(converter.records(prepared[0])) == typed(reference(page, stamp_property="system_modstamp"))


def test_a_page_longer_than_arrows_batches_keeps_its_order():
    count = 70_000  # Arrow's projections work in batches of 32,768 rows
    fields = [FIELDS[0], FIELDS[8], FIELDS[7]]
    lines = ['"Id","SystemModstamp","Latitude__c"']
    lines += [f'"{i:018d}","2024-01-02T03:04:{i % 60:02d}.{i % 1000:03d}Z","{i}.50"' for i in range(count)]
    records = column_wise(("\n".join(lines) + "\n").encode(), fields)
    assert [values.record_dict(r)["id"] for _, r in records] == [f"{i:018d}" for i in range(count)]
    assert values.record_dict(records[-1][1]) == {
        "id": f"{count - 1:018d}",
        "system_modstamp": f"2024-01-02T03:04:{(count - 1) % 60:02d}.{(count - 1) % 1000:03d}000Z",
        "latitude_c": Decimal(f"{count - 1}.5"),
    }


# Spellings per describe type, usual and not, for random pages.
SPELLINGS: dict[str, list[str | None]] = {
    "id": ["001000000000001AAA", "001000000000002AAA"],
    "string": ["Acme", "", 'a "q", b', "x\ny", "東京", "\x00", "nul\x00"],
    "boolean": ["true", "false", ""],
    "int": ["1", "-12", "0", "123456789012345678", ""],
    "long": ["9000000000", "-1", ""],
    "currency": ["950000000.10", "12", "0.00", "-3.50", ""],
    "percent": ["12.50", "100", "0.0001000", ""],
    "double": ["35.675998000000000", "-0.0", "1.5", ""],
    "datetime": ["2024-01-02T03:04:05.123Z", "2023-12-31T23:59:59.999Z", ""],
    "date": ["2024-06-30", ""],
    "time": ["08:30:00.000Z", "23:59:59.999Z", ""],
    "anyType": ["true", "12.50", "2023-05-06T07:08:09.000Z", "text", ""],
    "textarea": ["line\r\nline", "", "\\"],
    "picklist": ["Gold", "Silver", ""],
}
UNUSUAL: dict[str, list[str]] = {
    "int": ["39000.0", "007"],
    "long": ["+5"],
    "currency": ["1E+2", "0.0000001", "1234567890123456789012.5"],
    "percent": ["5."],
    "double": ["1e-3"],
    "datetime": ["2024-01-02T03:04:05Z", "2024-01-02T05:04:05.5+02:00"],
}


@pytest.mark.parametrize("seed", range(6))
def test_random_pages_match_the_reference(seed, monkeypatch):
    rng = random.Random(seed)
    monkeypatch.setattr(bulk_pages, "SLICE_ROWS", rng.choice([1, 7, 64, 1024]))
    unusual = {field.type for field in FIELDS if field.type in UNUSUAL and rng.random() < 0.4}
    fields = rng.sample(FIELDS, rng.randint(1, len(FIELDS)))
    rows = []
    for _ in range(rng.randint(0, 150)):
        row = []
        for field in fields:
            pool = SPELLINGS[field.type] + (UNUSUAL[field.type] if field.type in unusual else [])
            value = rng.choice(pool)
            row.append(None if value == "" and rng.random() < 0.5 else value)
        rows.append(row)
    header = [f.salesforce_name.upper() if rng.random() < 0.3 else f.salesforce_name for f in fields]
    order = list(range(len(fields)))
    rng.shuffle(order)
    page = csv_page([[row[i] for i in order] for row in rows], header=[header[i] for i in order])
    stamp = "system_modstamp" if any(f.property_name == "system_modstamp" for f in fields) else None
    assert typed(column_wise(page, fields, stamp_property=stamp)) == typed(
        reference(page, fields, stamp_property=stamp)
    )


# Property names that are not identifiers (msgspec refuses backslashes, quotes and controls in any).
ODD_NAMES = ["id", "my-prop", "with space", "東京", "ünï_côde", "plain", "last"]


@pytest.mark.parametrize(
    "null",
    [
        (False, True, True, False, True, False, True),
        (False, False, False, False, False, False, False),
        (False, True, True, True, True, True, True),
        (True, True, False, True, False, False, True),
    ],
)
def test_null_run_records_encode_like_full_records(null):
    full_type = values.output_record_type(ODD_NAMES)
    run_type, constants = values.null_run_record_type(ODD_NAMES, null)
    row = ["001A", "a", "b", "c", 4, Decimal("5.5"), True]
    full = full_type(*[None if empty else value for value, empty in zip(row, null, strict=True)])
    given = iter(value for value, empty in zip(row, null, strict=True) if not empty)
    compact = run_type(*[next(given) if c is None else c for c in constants])
    assert ENCODER.encode(compact) == ENCODER.encode(full)
    assert list(values.record_dict(compact).items()) == list(values.record_dict(full).items())
    assert len(constants) == sum(1 for i, empty in enumerate(null) if not (empty and i and null[i - 1]))


def test_pages_with_empty_columns_match_the_reference(slice_rows):
    fields = [QueryField(f"F{i}__c", name, "string") for i, name in enumerate(ODD_NAMES)]
    rows = [["001A", None, None, "x", None, "y", None], ["001B", None, None, None, None, "z", None]]
    records = assert_same_as_reference(csv_page(rows, fields), fields)
    assert records[1] == dict(zip(ODD_NAMES, ["001B", None, None, None, None, "z", None], strict=True))
    pages = [csv_page([row], fields) for row in rows]  # another empty-column pattern on each page
    converter = CsvPageConverter(fields)
    assert typed([pair for page in pages for pair in converter.records(page)]) == typed(
        [pair for page in pages for pair in reference(page, fields)]
    )


def test_a_byte_order_mark_before_the_header_is_not_part_of_a_name():
    """A page starting with a UTF-8 byte-order mark failed: `Bulk result lacks the columns Id`."""
    page = b"\xef\xbb\xbf" + csv_page([list(USUAL_ROW)])
    records = [values.record_dict(record) for _, record in column_wise(page)]
    assert [record["id"] for record in records] == ["001000000000001AAA"]
