"""The emulator's SOQL parser and binder: accepted forms, AST shape, and Salesforce's errors."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from salesforce_emulator import soql
from salesforce_emulator.errors import ApiError
from salesforce_emulator.soql import (
    BoolOp,
    Comparison,
    CountAll,
    FieldRef,
    Literal,
    Not,
    OrderItem,
    Query,
    SoqlError,
    SoqlField,
    SoqlObject,
    bind,
    parse,
)

UTC = UTC

NO_SUCH_COLUMN_TAIL = (
    "If you are attempting to use a custom field, be sure to append the '__c' after the custom field "
    "name. Please reference your WSDL or the describe call for the appropriate names."
)


def _fields(*specs: tuple) -> dict[str, SoqlField]:
    return {spec[0].lower(): SoqlField(*spec) for spec in specs}


ACCOUNT = SoqlObject(
    "Account",
    True,
    _fields(
        ("Id", "id"),
        ("Name", "string"),
        ("Industry", "picklist"),
        ("Tags__c", "multipicklist"),
        ("Website", "url"),
        ("Description", "textarea", False, False),
        ("IsDeleted", "boolean"),
        ("NumberOfEmployees", "int"),
        ("AnnualRevenue", "currency"),
        ("Score__c", "double"),
        ("LastActivityDate", "date"),
        ("SystemModstamp", "datetime"),
        ("CreatedDate", "datetime"),
        ("OwnerId", "reference"),
        ("CreatedById", "reference"),
        ("BillingAddress", "address"),  # flags say filterable/sortable: the type still forbids it
        ("BillingLatitude", "double"),
        ("Location__c", "location"),
        ("Logo__c", "base64"),
        ("OpenTime__c", "time"),
        ("Payload__c", "anyType"),
        ("OCE__ActualCap__c", "double"),
        ("OCE__JobId__c", "string"),
    ),
)
NAME = SoqlObject("Name", False, _fields(("Id", "id"), ("Name", "string")))


class TinySchema:
    def __init__(self, *objects: SoqlObject):
        self.objects = {obj.name.lower(): obj for obj in objects}

    def soql_object(self, name: str) -> SoqlObject | None:
        return self.objects.get(name.lower())


SCHEMA = TinySchema(ACCOUNT, NAME)


def check(text: str) -> Query:
    return bind(parse(text), SCHEMA)


def error_of(text: str, *, bound: bool = True) -> SoqlError:
    with pytest.raises(SoqlError) as caught:
        check(text) if bound else parse(text)
    return caught.value


def caret(error: SoqlError) -> tuple[int, int, str, str]:
    """(row, column, text the caret points at, body) of a caret-style message; asserts its shape."""
    blank, snippet, marker, where, *body = error.message.split("\n")
    assert blank == ""
    assert re.fullmatch(r" *\^", marker), marker
    found = re.fullmatch(r"ERROR at Row:(\d+):Column:(\d+)", where)
    assert found, where
    row, column = int(found.group(1)), int(found.group(2))
    assert (error.row, error.column) == (row, column)
    return row, column, snippet[len(marker) - 1 :], "\n".join(body)


def assert_points_at(text: str, error: SoqlError, token: str, *, occurrence: int = 1) -> None:
    """The caret, Row and Column designate the `occurrence`-th `token` in `text`."""
    offset = -1
    for _ in range(occurrence):
        offset = text.index(token, offset + 1)
    row, column, pointed, _ = caret(error)
    line_start = text.rfind("\n", 0, offset) + 1
    assert (row, column) == (text.count("\n", 0, offset) + 1, offset - line_start + 1)
    assert pointed.startswith(token) or token == "<EOF>"


def cmp(name: str, op: str, value: Literal | tuple[Literal, ...]) -> Comparison:
    return Comparison(FieldRef(name, 0), op, value)


def shape(expr):
    """The expression without positions, for comparing trees."""
    if isinstance(expr, BoolOp):
        return (expr.op, *(shape(operand) for operand in expr.operands))
    if isinstance(expr, Not):
        return ("NOT", shape(expr.operand))
    value = expr.value
    values = tuple(v.value for v in value) if isinstance(value, tuple) else value.value
    return (expr.field.name, expr.op, values)


# --------------------------------------------------------------------------------------------------
# What real clients send (API_FACTS section 6), verbatim
# --------------------------------------------------------------------------------------------------


def test_singer_incremental_query_with_double_space_and_microseconds():
    text = (
        "SELECT Id,Name,SystemModstamp FROM Account WHERE SystemModstamp >= 2024-01-01T00:00:00Z  "
        "AND SystemModstamp < 2024-02-01T00:00:00.000000Z ORDER BY SystemModstamp ASC"
    )
    query = check(text)
    assert query.field_names == ("Id", "Name", "SystemModstamp")
    assert query.sobject == "Account"
    assert shape(query.where) == (
        "AND",
        ("SystemModstamp", ">=", datetime(2024, 1, 1, tzinfo=UTC)),
        ("SystemModstamp", "<", datetime(2024, 2, 1, tzinfo=UTC)),
    )
    assert query.where.operands[1].value.text == "2024-02-01T00:00:00.000000Z"
    assert query.order_by == (
        OrderItem(FieldRef("SystemModstamp", text.rindex("SystemModstamp"), "datetime"), False, None),
    )
    assert (query.limit, query.offset) == (None, None)


def test_singer_query_with_start_only_and_full_table_query():
    query = check(
        "SELECT Id,Name FROM Account WHERE SystemModstamp >= 2000-11-23T00:00:00Z ORDER BY SystemModstamp ASC"
    )
    assert shape(query.where) == ("SystemModstamp", ">=", datetime(2000, 11, 23, tzinfo=UTC))
    full = check("SELECT Id,Name,Industry FROM Account")
    assert full.where is None and full.order_by == () and full.field_names == ("Id", "Name", "Industry")


def test_singer_bulk_window_without_fraction():
    query = check(
        "SELECT Id FROM Account WHERE SystemModstamp >= 2024-01-01T00:00:00Z "
        "AND SystemModstamp < 2024-01-31T00:00:00Z"
    )
    assert shape(query.where)[2] == ("SystemModstamp", "<", datetime(2024, 1, 31, tzinfo=UTC))


def test_airbyte_queries():
    query = check(
        "SELECT Id,Name,SystemModstamp FROM Account WHERE SystemModstamp >= 2021-07-25T00:00:00.000+00:00 "
        "AND SystemModstamp < 2021-08-24T00:00:00.000+00:00"
    )
    assert shape(query.where) == (
        "AND",
        ("SystemModstamp", ">=", datetime(2021, 7, 25, tzinfo=UTC)),
        ("SystemModstamp", "<", datetime(2021, 8, 24, tzinfo=UTC)),
    )
    full = check("SELECT Id,Name FROM Account ORDER BY Id ASC")
    assert full.order_by[0].field.name == "Id" and not full.order_by[0].descending


def test_estuary_queries():
    window = check(
        "SELECT Id,SystemModstamp FROM Account WHERE SystemModstamp > 1999-02-03T00:00:00.000Z "
        "AND SystemModstamp <= 2026-07-01T00:00:00.000Z ORDER BY SystemModstamp ASC"
    )
    assert shape(window.where) == (
        "AND",
        ("SystemModstamp", ">", datetime(1999, 2, 3, tzinfo=UTC)),
        ("SystemModstamp", "<=", datetime(2026, 7, 1, tzinfo=UTC)),
    )
    paging = check(
        "SELECT Id,Name FROM Account WHERE SystemModstamp <= 2026-07-01T00:00:00.000Z "
        "AND Id > '001000000000005AAA' AND Id <= '001000000000009AAA' ORDER BY Id ASC LIMIT 2000"
    )
    assert shape(paging.where) == (
        "AND",
        ("SystemModstamp", "<=", datetime(2026, 7, 1, tzinfo=UTC)),
        ("Id", ">", "001000000000005AAA"),
        ("Id", "<=", "001000000000009AAA"),
    )
    assert paging.limit == 2000
    probe = check("SELECT Id FROM Account ORDER BY Id ASC LIMIT 1 OFFSET 1999")
    assert (probe.limit, probe.offset) == (1, 1999)


def test_simple_salesforce_style_queries():
    assert check("SELECT Id, Name FROM Account").field_names == ("Id", "Name")
    count = check("SELECT COUNT() FROM Account")
    assert count.is_count and count.select == CountAll(7) and count.field_names == ()
    assert check("select count() from account where IsDeleted = false").is_count


# --------------------------------------------------------------------------------------------------
# Accepted forms and the AST
# --------------------------------------------------------------------------------------------------


def test_keywords_and_names_are_case_insensitive_and_bind_canonicalises():
    query = check(
        "select id, NAME from account where systemmodstamp > 2024-01-01T00:00:00Z order by name desc "
        "nulls last, id asc nulls first limit 5 offset 2"
    )
    assert query.sobject == "Account"
    assert query.select == (FieldRef("Id", 7, "id"), FieldRef("Name", 11, "string"))
    assert query.where.field == FieldRef("SystemModstamp", 35, "datetime")
    assert [(i.field.name, i.descending, i.nulls_first) for i in query.order_by] == [
        ("Name", True, False),
        ("Id", False, True),
    ]
    assert (query.limit, query.offset) == (5, 2)


def test_parse_keeps_names_as_written_and_positions():
    query = parse("SELECT id , nAmE FROM account WHERE name = 'x'")
    assert query.select == (FieldRef("id", 7), FieldRef("nAmE", 12))
    assert (query.sobject, query.sobject_position) == ("account", 22)
    assert query.where == Comparison(FieldRef("name", 36), "=", Literal("string", "x", "'x'", 43))


def test_every_comparison_operator():
    text = (
        "SELECT Id FROM Account WHERE Name = 'a' AND Name != 'b' AND Name <> 'c' AND NumberOfEmployees < 1 "
        "AND NumberOfEmployees <= 2 AND NumberOfEmployees > 3 AND NumberOfEmployees >= 4 "
        "AND Industry IN ('x', 'y') AND Industry NOT IN ('z') AND Name LIKE 'A%'"
    )
    ops = [c.op for c in check(text).where.operands]
    assert ops == ["=", "!=", "!=", "<", "<=", ">", ">=", "IN", "NOT IN", "LIKE"]
    in_values = check(text).where.operands[7].value
    assert [v.value for v in in_values] == ["x", "y"]


def test_operators_without_spaces_and_multiline_query():
    query = check("SELECT Id,\n  Name\nFROM Account\nWHERE NumberOfEmployees>=10\n  AND Name!='x'\nLIMIT 3")
    assert shape(query.where) == ("AND", ("NumberOfEmployees", ">=", Decimal(10)), ("Name", "!=", "x"))
    assert query.limit == 3


@pytest.mark.parametrize(
    "text", ["SELECT Id FROM Account ", "SELECT Id FROM Account\n", "\n SELECT Id\tFROM Account \r\n"]
)
def test_surrounding_whitespace_is_ignored(text):
    assert check(text).field_names == ("Id",)


def test_nesting_depth_is_bounded():
    nested = "(" * 100 + "Name = 'x'" + ")" * 100
    assert shape(check(f"SELECT Id FROM Account WHERE {nested}").where) == ("Name", "=", "x")
    for depth in (101, 30_000):
        too_deep = "(" * depth + "Name = 'x'" + ")" * depth
        error = error_of(f"SELECT Id FROM Account WHERE {too_deep}", bound=False)
        assert (error.error_code, error.message) == (
            "QUERY_TOO_COMPLICATED",
            "Query is either selecting too many fields or the filter conditions are too complicated.",
        )


def test_object_qualified_field_names_mean_the_plain_field():
    query = check("SELECT Account.Name, Id FROM Account WHERE account.Id != null ORDER BY Account.Name")
    assert query.field_names == ("Name", "Id")
    assert query.where.field.name == "Id" and query.order_by[0].field.name == "Name"


def test_ast_is_frozen():
    query = check("SELECT Id FROM Account WHERE Name = 'x'")
    with pytest.raises(dataclasses.FrozenInstanceError):
        query.limit = 5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        query.where.op = "!="  # type: ignore[union-attr]


def test_wide_select_of_a_thousand_fields():
    names = [f"Field_{i:04d}__c" for i in range(1000)]
    wide = SoqlObject("Wide__c", True, _fields(("Id", "id"), *((n, "string") for n in names)))
    text = "SELECT Id," + ",".join(names) + " FROM wide__c ORDER BY Id ASC"
    query = bind(parse(text), TinySchema(wide))
    assert query.field_names == ("Id", *names)
    assert query.select[500].position == text.index(names[499])
    assert query.sobject == "Wide__c"


FAST_PATH_SAMPLES = [
    "SELECT Id,Name FROM Account",
    "  select  Id ,\n Name,Industry\tFROM Account WHERE Name = 'x' ORDER BY Name LIMIT 5",
    "SELECT Account.Name , Id FROM Account WHERE (Name = 'a' OR Name = 'b') AND IsDeleted = false",
    "SELECT Id FROM Account WHERE SystemModstamp >= 2024-01-01T00:00:00Z  AND Id > '001000000000005AAA'",
]


@pytest.mark.parametrize("text", FAST_PATH_SAMPLES)
def test_wide_select_shortcut_gives_the_same_tree_as_the_general_parser(text):
    general = soql._Parser(text, soql._tokenize(text)).query()
    assert parse(text) == general


@pytest.mark.parametrize(
    "text",
    [
        "SELECT Id, From FROM Account",
        "SELECT Id,Name FROM Account WHERE",
        "SELECT Id,Name FROM Account WHERE Name = 'x' OR",
        "SELECT Id,Name FROM  Account LIMIT -1",
    ],
)
def test_errors_after_the_wide_select_shortcut_match_the_general_parser(text):
    with pytest.raises(SoqlError) as caught:
        parse(text)
    with pytest.raises(SoqlError) as general:
        soql._Parser(text, soql._tokenize(text)).query()
    assert caught.value.message == general.value.message


# --------------------------------------------------------------------------------------------------
# AND / OR / NOT: SOQL requires parentheses to mix them
# --------------------------------------------------------------------------------------------------

A, B, C = "Name = 'a'", "Name = 'b'", "Name = 'c'"


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (f"{A} AND {B} AND {C}", ("AND", ("Name", "=", "a"), ("Name", "=", "b"), ("Name", "=", "c"))),
        (f"{A} OR {B} OR {C}", ("OR", ("Name", "=", "a"), ("Name", "=", "b"), ("Name", "=", "c"))),
        (
            f"({A} AND {B}) OR {C}",
            ("OR", ("AND", ("Name", "=", "a"), ("Name", "=", "b")), ("Name", "=", "c")),
        ),
        (
            f"{A} AND ({B} OR {C})",
            ("AND", ("Name", "=", "a"), ("OR", ("Name", "=", "b"), ("Name", "=", "c"))),
        ),
        (f"NOT {A}", ("NOT", ("Name", "=", "a"))),
        (f"NOT ({A} OR {B})", ("NOT", ("OR", ("Name", "=", "a"), ("Name", "=", "b")))),
        (f"{A} AND (NOT {B})", ("AND", ("Name", "=", "a"), ("NOT", ("Name", "=", "b")))),
        (f"(NOT {A}) or ({B})", ("OR", ("NOT", ("Name", "=", "a")), ("Name", "=", "b"))),
        (f"((({A})))", ("Name", "=", "a")),
        (f"not (not {A})", ("NOT", ("NOT", ("Name", "=", "a")))),
    ],
)
def test_logical_structure(where, expected):
    assert shape(check(f"SELECT Id FROM Account WHERE {where}").where) == expected


@pytest.mark.parametrize(
    ("where", "token", "occurrence"),
    [
        (f"{A} AND {B} OR {C}", "OR", 1),  # Salesforce: unexpected token: 'OR'
        (f"{A} OR {B} AND {C}", "AND", 1),
        (f"({A} AND {B} OR {C})", "OR", 1),
        (f"NOT {A} AND {B}", "AND", 1),
        (f"{A} AND NOT {B}", "NOT", 1),
        (f"({A}", "<EOF>", 1),
        (f"{A})", ")", 1),
        (f"{A} AND", "<EOF>", 1),
        ("()", ")", 1),
    ],
)
def test_mixing_without_parentheses_is_malformed(where, token, occurrence):
    text = f"SELECT Id FROM Account WHERE {where}"
    error = error_of(text, bound=False)
    assert error.error_code == "MALFORMED_QUERY"
    assert caret(error)[3] == f"unexpected token: '{token}'"
    if token == "<EOF>":
        assert caret(error)[1] == len(text) + 1
    else:
        before_where = text[: text.index("WHERE")].count(token)
        assert_points_at(text, error, token, occurrence=occurrence + before_where)


# --------------------------------------------------------------------------------------------------
# Literals
# --------------------------------------------------------------------------------------------------


def where_value(where: str):
    return check(f"SELECT Id FROM Account WHERE {where}").where.value


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        (r"'it\'s'", "it's"),
        (r"'say \"hi\"'", 'say "hi"'),
        (r"'back\\slash'", "back\\slash"),
        (r"'a\nb'", "a\nb"),
        (r"'a\rb'", "a\rb"),
        (r"'a\tb'", "a\tb"),
        (r"'a\bb'", "a\bb"),
        (r"'a\fb'", "a\fb"),
        (r"'caf\u00e9 \u20AC'", "café €"),
        (r"'100\% \_'", "100% _"),
        ("''", ""),
        ("'unicode ✓ and, commas'", "unicode ✓ and, commas"),
        ("'line\nbreak'", "line\nbreak"),
    ],
)
def test_string_literals_and_escapes(literal, expected):
    value = where_value(f"Name = {literal}")
    assert (value.kind, value.value, value.text) == ("string", expected, literal)


@pytest.mark.parametrize(
    ("literal", "pattern"),
    [
        ("'A%'", "A%"),
        ("'_b%'", "_b%"),
        (r"'100\%'", "100\\%"),
        (r"'a\_b'", "a\\_b"),
        (r"'back\\slash%'", "back\\\\slash%"),
        (r"'it\'s%'", "it's%"),
        (r"'\u0025'", "\\%"),
    ],
)
def test_like_literal_is_an_sql_like_pattern_with_backslash_escape(literal, pattern):
    value = where_value(f"Name LIKE {literal}")
    assert value.value == pattern


@pytest.mark.parametrize(
    ("where", "kind", "value", "text"),
    [
        ("NumberOfEmployees = 42", "number", Decimal(42), "42"),
        ("AnnualRevenue = 1234.50", "number", Decimal("1234.50"), "1234.50"),
        ("Score__c > -3.25", "number", Decimal("-3.25"), "-3.25"),
        ("Score__c > - 3", "number", Decimal(-3), "- 3"),
        ("Score__c > +7", "number", Decimal(7), "+7"),
        ("IsDeleted = true", "boolean", True, "true"),
        ("IsDeleted = FALSE", "boolean", False, "FALSE"),
        ("Name = null", "null", None, "null"),
        ("SystemModstamp != NULL", "null", None, "NULL"),
        ("LastActivityDate = 2024-02-29", "date", date(2024, 2, 29), "2024-02-29"),
    ],
)
def test_other_literals(where, kind, value, text):
    literal = where_value(where)
    assert (literal.kind, literal.value, literal.text) == (kind, value, text)
    assert type(literal.value) is type(value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-02T03:04:05Z", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2024-01-02t03:04:05z", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2024-01-02T03:04:05.1Z", datetime(2024, 1, 2, 3, 4, 5, 100000, tzinfo=UTC)),
        ("2024-01-02T03:04:05.123Z", datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=UTC)),
        ("2024-01-02T03:04:05.123456Z", datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)),
        ("2024-01-02T03:04:05+02:00", datetime(2024, 1, 2, 1, 4, 5, tzinfo=UTC)),
        ("2024-01-02T03:04:05-08:30", datetime(2024, 1, 2, 11, 34, 5, tzinfo=UTC)),
        ("2024-01-01T00:30:00.000+01:00", datetime(2023, 12, 31, 23, 30, tzinfo=UTC)),
    ],
)
def test_datetime_literals_become_aware_utc(text, expected):
    literal = where_value(f"SystemModstamp > {text}")
    assert literal.kind == "datetime" and literal.text == text
    assert literal.value == expected and literal.value.tzinfo == UTC


@pytest.mark.parametrize(
    "bad",
    [
        "2024-01-02T03:04:05",  # no zone
        "2024-01-02T03:04:05.1234567Z",  # more than six fractional digits
        "2024-01-02T03:04:05+0200",
        "2020-12-12t12:12:00-25:00",  # Salesforce's own example
        "2020-52-12T12:12:00-05:00",
        "2024-01-02T24:00:00Z",
        "2024-01-02T03:04Z",
        "2024-01-02T03:04:05ZZ",
    ],
)
def test_invalid_datetime_literal(bad):
    text = f"SELECT Id FROM Account WHERE SystemModstamp > {bad}"
    error = error_of(text, bound=False)
    assert error.error_code == "MALFORMED_QUERY"
    assert caret(error)[3] == f"Invalid datetime: {bad}"
    assert_points_at(text, error, bad)


def test_invalid_date_literal():
    text = "SELECT Id FROM Account WHERE LastActivityDate = 2023-02-29"
    error = error_of(text, bound=False)
    assert caret(error)[3] == "Invalid date: 2023-02-29"
    assert_points_at(text, error, "2023-02-29")


def test_invalid_escape_sequence():
    text = r"SELECT Id FROM Account WHERE Name = 'a\qb'"
    error = error_of(text, bound=False)
    assert error.error_code == "MALFORMED_QUERY"
    assert caret(error)[3] == (
        r"Invalid string literal 'a\qb'. Illegal character sequence '\q' in string literal."
    )
    assert_points_at(text, error, "'a")


def test_short_unicode_escape_is_invalid():
    error = error_of(r"SELECT Id FROM Account WHERE Name = '\u00e'", bound=False)
    assert "Illegal character sequence '\\u'" in error.message


def test_string_literal_length_limit():
    assert len(where_value("Name = '" + "x" * 4000 + "'").value) == 4000
    assert len(where_value("Name = '" + "\\'" * 4000 + "'").value) == 4000  # counted after unescaping
    text = "SELECT Id FROM Account WHERE Name = '" + "x" * 4001 + "'"
    error = error_of(text, bound=False)
    assert error.error_code == "MALFORMED_QUERY"
    assert caret(error)[3] == "String literal exceeds the maximum length of 4000 characters"
    assert caret(error)[:2] == (1, text.index("'") + 1)


# --------------------------------------------------------------------------------------------------
# Syntax errors: MALFORMED_QUERY with Salesforce's caret message
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ("SELECT Id FROM Account GROUP BY Name", "GROUP"),
        ("SELECT Id FROM Account WHERE Name = 'x' GROUP BY Name", "GROUP"),
        ("SELECT Id FROM Account HAVING COUNT(Id) > 1", "HAVING"),
        ("SELECT Id, (SELECT Id FROM Contacts) FROM Account", "("),
        ("SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Contact)", "SELECT"),
        ("SELECT TYPEOF What WHEN Account THEN Name END FROM Event", "What"),
        ("SELECT FIELDS(ALL) FROM Account LIMIT 200", "("),
        ("SELECT COUNT(Id) FROM Account", "Id"),
        ("SELECT Id, COUNT() FROM Account", "("),
        ("SELECT COUNT(), Id FROM Account", ","),
        ("SELECT toLabel(Industry) FROM Account", "("),
        ("SELECT Id FROM Account WHERE CALENDAR_YEAR(CreatedDate) = 2020", "("),
        ("SELECT Id FROM Account WHERE CreatedDate = TODAY", "TODAY"),
        ("SELECT Id FROM Account WHERE CreatedDate = LAST_N_DAYS:30", "LAST_N_DAYS"),
        ("SELECT Id FROM Account WHERE Tags__c INCLUDES ('a')", "INCLUDES"),
        ("SELECT Id FROM Account WHERE Name NOT LIKE 'a%'", "NOT"),
        ("SELECT Id FROM Account WHERE Name LIKE 5", "5"),
        ("SELECT Id FROM Account WHERE Name LIKE null", "null"),
        ("SELECT Id FROM Account WHERE Name = Industry", "Industry"),
        ("SELECT Id FROM Account WHERE Name = :name", ":"),
        ("SELECT Id FROM Account WHERE Name 'x'", "'x'"),
        ("SELECT Id FROM Account WITH SECURITY_ENFORCED", "WITH"),
        ("SELECT Id FROM Account FOR UPDATE", "FOR"),
        ("SELECT Id FROM Account USING SCOPE Everything", "USING"),
        ("SELECT Id FROM Account a", "a"),
        ("SELECT Id FROM Account LIMIT 5 garbage", "garbage"),
        ("SELECT Id FROM Account;", ";"),
        ("SELECT Id FROM Account OFFSET 5 LIMIT 10", "LIMIT"),
        ("SELECT Id FROM Account LIMIT -1", "-"),
        ("SELECT Id FROM Account OFFSET -5", "-"),
        ("SELECT Id FROM Account LIMIT 1.5", "1.5"),
        ("SELECT Id FROM Account LIMIT", "<EOF>"),
        ("SELECT Id FROM Account ORDER Name", "ORDER"),
        ("SELECT Id FROM Account ORDER BY Name NULLS", "<EOF>"),
        ("SELECT Id FROM Account ORDER BY Name DESC ASC", "ASC"),
        ("SELECT Id Name FROM Account", "Name"),
        ("SELECT Id, FROM Account", "FROM"),
        ("SELECT * FROM Account", "*"),
        ("SELECT Id Account", "Account"),
        ("SELECT Id", "<EOF>"),
        ("SELECT Id FROM", "<EOF>"),
        ("SELECT Id FROM WHERE Name = 'x'", "WHERE"),
        ("SELECT Id FROM Account WHERE Name = 'x' AND", "<EOF>"),
        ("SELECT Id FROM Account WHERE Name IN 'x'", "'x'"),
        ("SELECT Id FROM Account WHERE Name IN ('x',)", ")"),
        ("SELECT Id FROM Account WHERE Name IN ('x' 'y')", "'y'"),
        ("SELECT Id FROM Account WHERE Score__c > -'x'", "-"),
        ("SELECT Id FROM Account WHERE Score__c > 1e5", "e5"),
        ("SELECT Id FROM Account WHERE Score__c > .5", "."),
        ("SELECT Id FROM Account WHERE Name = 'O'Brien'", "Brien"),
    ],
)
def test_unsupported_or_malformed_syntax(text, token):
    error = error_of(text, bound=False)
    assert error.error_code == "MALFORMED_QUERY" and error.http_status == 400
    _, column, _, body = caret(error)
    assert body == f"unexpected token: '{token}'"
    if token == "<EOF>":
        assert column == len(text.rstrip(";")) + 1
    else:
        assert_points_at(text, error, token, occurrence=text[: text.index(token, 7)].count(token) + 1)


def test_unexpected_token_message_exactly():
    error = error_of("SELECT Id FROM Account WHERE", bound=False)
    assert error.message == (
        "\nId FROM Account WHERE\n                     ^\nERROR at Row:1:Column:29\nunexpected token: '<EOF>'"
    )
    assert error.body() == [{"message": error.message, "errorCode": "MALFORMED_QUERY"}]


def test_window_is_four_tokens_either_side_on_the_error_line():
    text = "SELECT Id FROM Account WHERE Name = 'a' AND Industry = 'b' OR IsDeleted = true AND Score__c = 1"
    error = error_of(text, bound=False)
    assert error.message == (
        "\nAND Industry = 'b' OR IsDeleted = true AND\n"
        "                   ^\n"
        "ERROR at Row:1:Column:60\n"
        "unexpected token: 'OR'"
    )


def test_multiline_query_errors_count_rows_and_show_only_that_line():
    text = "SELECT Id\nFROM Account\nWHERE Name = 'x'\n  AND Name = 'y' OR Name = 'z'"
    error = error_of(text, bound=False)
    assert error.message == (
        "\nAND Name = 'y' OR Name = 'z'\n               ^\nERROR at Row:4:Column:18\nunexpected token: 'OR'"
    )


def test_unknown_character_is_a_lexer_error():
    text = "select Id from Account where id = $sfid"
    error = error_of(text, bound=False)
    assert error.error_code == "MALFORMED_QUERY"
    # Salesforce's text keeps ANTLR's 0-based column ("line 1:34"); Row/Column are 1-based.
    assert error.message == (
        "\nselect Id from Account where id = $sfid\n"
        "                                  ^\n"
        "ERROR at Row:1:Column:35\n"
        "line 1:34 unexpected token: '$'"
    )
    second_line = error_of('SELECT Id\nFROM Account WHERE Name = "x"', bound=False)
    assert caret(second_line)[:2] == (2, 27)
    assert caret(second_line)[3] == "line 2:26 unexpected token: '\"'"


def test_unterminated_string():
    text = "SELECT Id FROM Account WHERE Name = 'abc"
    error = error_of(text, bound=False)
    assert error.message == (
        "\nAccount WHERE Name = 'abc\n                     ^\nERROR at Row:1:Column:37\nunexpected token: '''"
    )


def test_empty_select_and_empty_in_list_name_the_span_like_current_salesforce():
    select = error_of("SELECT FROM Account", bound=False)
    assert caret(select)[1:] == (8, "FROM Account", "unexpected token: 'SELECT FROM'")
    text = "SELECT Id FROM Account WHERE Industry IN ()"
    empty_in = error_of(text, bound=False)
    assert caret(empty_in)[1] == text.index(")") + 1
    assert caret(empty_in)[3] == "unexpected token: 'Industry IN ()'"


def test_statement_not_starting_with_select_has_no_caret():
    samples = [("SELEKT Name FROM Account", "SELEKT"), ("DELETE FROM Account", "DELETE"), ("'x'", "'x'")]
    for text, token in samples:
        error = error_of(text, bound=False)
        assert (error.error_code, error.message) == ("MALFORMED_QUERY", f"unexpected token: '{token}'")
        assert error.row is None


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_statement(text):
    error = error_of(text, bound=False)
    assert (error.error_code, error.message) == ("MALFORMED_QUERY", "SOQL statements cannot be empty or null")


def test_statement_length_limit():
    def query_of_length(n: int) -> str:
        head = "SELECT Id FROM Account WHERE Name = '"
        return head + "x" * (n - len(head) - 1) + "'"

    with pytest.raises(SoqlError):  # under the length limit, this fails only for the 4,000-char literal
        parse(query_of_length(100_000))
    head = "SELECT Id," + ",".join(f"F{i:06d}__c" for i in range(9088)) + ",G"
    long_fields = head + "x" * (100_000 - len(head) - len(" FROM Account")) + " FROM Account"
    assert len(long_fields) == 100_000 and len(parse(long_fields).select) == 9090
    too_long = long_fields.replace(",G", ",GG")
    assert len(too_long) == 100_001
    error = error_of(too_long, bound=False)
    assert (error.error_code, error.message) == (
        "MALFORMED_QUERY",
        "SOQL statements cannot be longer than 100000 characters",
    )


def test_limit_and_offset_are_32_bit():
    assert check("SELECT Id FROM Account LIMIT 2147483647").limit == 2_147_483_647
    text = "SELECT Id FROM Account LIMIT 2147483648"
    error = error_of(text, bound=False)
    assert caret(error)[3] == "numeric value out of range: 2147483648"
    assert_points_at(text, error, "2147483648")


# --------------------------------------------------------------------------------------------------
# Binding: objects and fields
# --------------------------------------------------------------------------------------------------


def test_unknown_object_is_invalid_type():
    text = "SELECT Id, Name FROM Bogus WHERE Name = 'x'"
    error = error_of(text)
    assert error.error_code == "INVALID_TYPE" and error.http_status == 400
    assert error.message == (
        "\nId, Name FROM Bogus WHERE Name = 'x'\n"
        "              ^\n"
        "ERROR at Row:1:Column:22\n"
        "sObject type 'Bogus' is not supported. If you are attempting to use a custom object, be sure to "
        "append the '__c' after the entity name. Please reference your WSDL or the describe call for the "
        "appropriate names."
    )


def test_object_that_does_not_support_query():
    error = error_of("SELECT Id FROM name")
    assert (error.error_code, error.message) == (
        "INVALID_TYPE_FOR_OPERATION",
        "entity type Name does not support query",
    )
    assert error.body() == [
        {"message": "entity type Name does not support query", "errorCode": "INVALID_TYPE_FOR_OPERATION"}
    ]


def test_unknown_field_matches_the_real_message():
    # The exact body from API_FACTS 2.3 and a captured response.
    error = error_of("SELECT Id, Foo FROM Account")
    assert error.error_code == "INVALID_FIELD"
    assert error.message == (
        "\nSELECT Id, Foo FROM Account\n           ^\nERROR at Row:1:Column:12\n"
        f"No such column 'Foo' on entity 'Account'. {NO_SUCH_COLUMN_TAIL}"
    )
    bacon = error_of("SELECT Bacon__c FROM account LIMIT 2")
    assert bacon.message == (
        "\nSELECT Bacon__c FROM account LIMIT 2\n       ^\nERROR at Row:1:Column:8\n"
        f"No such column 'Bacon__c' on entity 'Account'. {NO_SUCH_COLUMN_TAIL}"
    )


def test_unknown_field_window_in_a_long_select():
    text = (
        "SELECT Id,Industry,CreatedById,OCE__ActualCap__c,TPI_Product__c,Name,OCE__JobId__c,OwnerId "
        "FROM Account"
    )
    error = error_of(text)
    column = text.index("TPI_Product__c") + 1
    assert error.message == (
        "\nCreatedById,OCE__ActualCap__c,TPI_Product__c,Name,OCE__JobId__c\n"
        f"{' ' * 30}^\nERROR at Row:1:Column:{column}\n"
        f"No such column 'TPI_Product__c' on entity 'Account'. {NO_SUCH_COLUMN_TAIL}"
    )


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("SELECT Id FROM Account WHERE Bogus__c = 'x'", "Bogus__c"),
        ("SELECT Id FROM Account WHERE Name = 'x' AND (IsDeleted = false OR Nope = 1)", "Nope"),
        ("SELECT Id FROM Account ORDER BY Name, Missing DESC", "Missing"),
        ("SELECT Id\nFROM Account\nWHERE Nope__c = 1", "Nope__c"),
    ],
)
def test_unknown_field_anywhere(text, field):
    error = error_of(text)
    assert error.error_code == "INVALID_FIELD"
    assert caret(error)[3] == f"No such column '{field}' on entity 'Account'. {NO_SUCH_COLUMN_TAIL}"
    assert_points_at(text, error, field)


def test_relationship_path_is_not_understood():
    text = "SELECT Id, Owner.Name FROM Account"
    error = error_of(text)
    assert error.error_code == "INVALID_FIELD"
    assert caret(error)[3] == (
        "Didn't understand relationship 'Owner' in field path. If you are attempting to use a custom "
        "relationship, be sure to append the '__r' after the custom relationship name. Please reference "
        "your WSDL or the describe call for the appropriate names."
    )
    assert_points_at(text, error, "Owner.Name")
    deeper = error_of("SELECT Id FROM Account WHERE Account.Parent.Name = 'x'")
    assert "relationship 'Parent'" in deeper.message


def test_duplicate_field_is_rejected_case_insensitively():
    # The SOQL reference shows this exact body (INVALID_FIELD, no caret).
    for text, name in [
        ("SELECT Id, Name, ID FROM Account", "Id"),
        ("SELECT Name, Account.Name FROM Account", "Name"),
    ]:
        error = error_of(text)
        assert (error.error_code, error.message) == ("INVALID_FIELD", f"duplicate field selected: {name}")
        expected_body = {"message": f"duplicate field selected: {name}", "errorCode": "INVALID_FIELD"}
        assert error.body() == [expected_body]


def test_bound_fields_carry_their_type():
    query = check("SELECT Id, AnnualRevenue, BillingAddress, LastActivityDate FROM Account")
    assert [(f.name, f.type) for f in query.select] == [
        ("Id", "id"),
        ("AnnualRevenue", "currency"),
        ("BillingAddress", "address"),
        ("LastActivityDate", "date"),
    ]


# --------------------------------------------------------------------------------------------------
# Binding: literals against field types
# --------------------------------------------------------------------------------------------------

# (where, field, type in the message, "should"/"should not", the literal the caret points at)
MISMATCHES = [
    ("SystemModstamp > '2024-01-01T00:00:00Z'", "SystemModstamp", "dateTime", "should not", "'2024"),
    ("SystemModstamp > 2024-01-01", "SystemModstamp", "dateTime", "should not", "2024"),
    ("SystemModstamp > 5", "SystemModstamp", "dateTime", "should not", "5"),
    ("LastActivityDate = 2024-01-01T00:00:00Z", "LastActivityDate", "date", "should not", "2024"),
    ("LastActivityDate = '2024-01-01'", "LastActivityDate", "date", "should not", "'2024"),
    ("NumberOfEmployees = '5'", "NumberOfEmployees", "int", "should not", "'5'"),
    ("AnnualRevenue > '100'", "AnnualRevenue", "double", "should not", "'100'"),
    ("Score__c > true", "Score__c", "double", "should not", "true"),
    ("IsDeleted = 'true'", "IsDeleted", "boolean", "should not", "'true'"),
    ("IsDeleted = 1", "IsDeleted", "boolean", "should not", "1"),
    ("Name = 5", "Name", "string", "should", "5"),
    ("Industry = true", "Industry", "string", "should", "true"),
    ("Website = 2024-01-01", "Website", "string", "should", "2024"),
    ("Id = 5", "Id", "id", "should", "5"),
    ("OwnerId IN ('005000000000001AAA', 7)", "OwnerId", "id", "should", "7"),
    ("Score__c LIKE '1%'", "Score__c", "double", "should not", "'1%'"),
    ("OpenTime__c = '10:00:00'", "OpenTime__c", "time", "should not", "'10"),
    ("Payload__c = 'x'", "Payload__c", "anyType", "should not", "'x'"),
]


@pytest.mark.parametrize(("where", "field", "type_name", "quotes", "literal"), MISMATCHES)
def test_literal_of_the_wrong_type(where, field, type_name, quotes, literal):
    text = f"SELECT Id FROM Account WHERE {where}"
    error = error_of(text)
    assert error.error_code == "INVALID_FIELD"
    assert caret(error)[3] == (
        f"value of filter criterion for field '{field}' must be of type {type_name} and {quotes} be "
        "enclosed in quotes"
    )
    assert_points_at(text, error, literal, occurrence=text.count(literal))


def test_the_real_quoted_datetime_message():
    error = error_of("SELECT Id FROM Account WHERE SystemModstamp >= '2024-01-01T00:00:00Z'")
    assert error.message.endswith(
        "\nvalue of filter criterion for field 'SystemModstamp' must be of type dateTime and should not "
        "be enclosed in quotes"
    )


@pytest.mark.parametrize(
    "where",
    [
        "Name = null",
        "IsDeleted = null",
        "SystemModstamp != null",
        "OpenTime__c = null",
        "Industry IN ('a', null)",
        "Tags__c = 'a;b'",
        "Name LIKE '%x%'",
        "OwnerId = null",
        "NumberOfEmployees = 1.5",
        "BillingLatitude > -33.5",
    ],
)
def test_literals_that_fit(where):
    check(f"SELECT Id FROM Account WHERE {where}")


@pytest.mark.parametrize(
    ("literal", "canonical"),
    [
        ("001000000000005AAA", "001000000000005AAA"),
        ("001000000000005", "001000000000005AAA"),
        ("001RO0000035WQg", "001RO0000035WQgYAM"),
        ("001RO0000035WQgYAM", "001RO0000035WQgYAM"),
        ("001ro0000035wqgyam", "001RO0000035WQgYAM"),  # 18-character Ids are case-insensitive
    ],
)
def test_id_literals_are_normalised_to_18_characters(literal, canonical):
    value = where_value(f"Id = '{literal}'")
    assert (value.value, value.text) == (canonical, f"'{literal}'")
    listed = where_value(f"OwnerId IN ('{literal}')")
    assert listed[0].value == canonical


@pytest.mark.parametrize(
    "bad", ["123", "abc", "001000000000005AA", "001000000000005AAA1", "001000000000005A-A", "0010000000000$$"]
)
def test_invalid_id_literal(bad):
    text = f"SELECT Id FROM Account WHERE Id = '{bad}'"
    error = error_of(text)
    assert error.error_code == "MALFORMED_QUERY"  # since Summer '24 (was INVALID_QUERY_FILTER_OPERATOR)
    assert caret(error)[3] == f"invalid ID field: {bad}"
    assert_points_at(text, error, f"'{bad}'")


def test_id_suffix_matches_salesforce():
    assert soql.id_suffix("001RO0000035WQg") == "YAM"
    assert soql.id_suffix("003RO0000035WQg") == "YAM"
    assert soql.id_suffix("000000000000000") == "AAA"
    assert soql.id_suffix("ABCDEABCDEABCDE") == "555"


# --------------------------------------------------------------------------------------------------
# Binding: what a field allows
# --------------------------------------------------------------------------------------------------


ONLY_DISTANCE = "fields can only be filtered using Distance expressions"


@pytest.mark.parametrize(
    ("where", "field", "message"),
    [
        ("BillingAddress = null", "BillingAddress", f"Address {ONLY_DISTANCE}"),
        ("Location__c != null", "Location__c", f"Location {ONLY_DISTANCE}"),
        ("Description = 'x'", "Description", "field 'Description' can not be filtered in a query call"),
        ("Name = 'x' AND Logo__c = null", "Logo__c", "field 'Logo__c' can not be filtered in a query call"),
    ],
)
def test_fields_that_cannot_be_filtered(where, field, message):
    text = f"SELECT Id FROM Account WHERE {where}"
    error = error_of(text)
    assert error.error_code == "INVALID_FIELD"
    assert caret(error)[3] == message
    assert_points_at(text, error, field)


@pytest.mark.parametrize("field", ["Description", "BillingAddress", "Location__c"])
def test_fields_that_cannot_be_sorted(field):
    text = f"SELECT Id FROM Account ORDER BY Name, {field} DESC"
    error = error_of(text)
    assert error.error_code == "MALFORMED_QUERY"
    assert caret(error)[3] == f"field '{field}' can not be sorted in a query call"
    assert_points_at(text, error, field)


def test_offset_limit():
    assert check("SELECT Id FROM Account LIMIT 10 OFFSET 2000").offset == 2000
    error = error_of("SELECT Id FROM account LIMIT 10 OFFSET 2001")
    assert (error.error_code, error.message) == (
        "NUMBER_OUTSIDE_VALID_RANGE",
        "Maximum SOQL offset allowed for apiName Account is 2000",
    )


def test_soql_error_is_an_api_error():
    error = error_of("SELECT Id FROM Bogus")
    assert isinstance(error, ApiError) and error.http_status == 400
    assert error.body()[0]["errorCode"] == "INVALID_TYPE"
    assert str(error).startswith("INVALID_TYPE: \nSELECT Id FROM Bogus")


def test_bind_leaves_the_parsed_query_untouched():
    parsed = parse("select id from account where id = '001000000000005'")
    bound = bind(parsed, SCHEMA)
    assert parsed.sobject == "account" and parsed.where.value.value == "001000000000005"
    assert bound.sobject == "Account" and bound.where.value.value == "001000000000005AAA"
    assert bound.text == parsed.text
