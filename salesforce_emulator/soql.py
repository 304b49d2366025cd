"""SOQL for the emulator: tokenizer, recursive-descent parser and binder (pure; no I/O).

`parse(text)` turns the SOQL subset that connectors issue into a frozen AST; `bind(query, schema)`
checks it against the org's objects and returns the same AST with canonical object and field names, the
field types attached and every literal checked (and, for Id fields, normalised) against its field.
Everything outside the subset, and every mistake, raises `SoqlError` with Salesforce's error code and
message shape.

The subset
    SELECT f1, f2, ... | COUNT()          plain field names, case-insensitive; `Account.Name` on FROM
                                          Account is the object-qualified form of `Name`
    FROM Object
    [WHERE cond]                          cond: `NOT c` | c (AND c)* | c (OR c)*, where c is
                                          `( cond )` or `field op value`; op: = != <> < <= > >= LIKE
                                          IN (...) NOT IN (...)
    [ORDER BY f [ASC|DESC] [NULLS FIRST|LAST], ...]
    [LIMIT n] [OFFSET n]

SOQL has no precedence between AND and OR: mixing them (or NOT with either) at one level without
parentheses is a syntax error in Salesforce (`a AND b OR c` -> unexpected token: 'OR'), and so it is
here. Keywords are case-insensitive. Literals: 'strings' with backslash escapes, numbers (Decimal),
true/false, null, dates `2024-01-02` and datetimes `2024-01-02T03:04:05[.f{1,6}](Z|+hh:mm|-hh:mm)`,
unquoted (turned into aware UTC datetimes).

Error messages follow Salesforce: syntax and field errors carry the "caret" prefix

    "\\n<window of the query>\\n<spaces>^\\nERROR at Row:<r>:Column:<c>\\n<text>"

where the window is the offending token with up to four tokens either side on its line (captured
messages show that window, not the whole query), Row and Column are 1-based and point at the offending
token. Errors about the query as a whole have no caret, as in Salesforce.

Error codes (HTTP 400 each)
- MALFORMED_QUERY: syntax ("unexpected token: 'OR'"), bad literals ("Invalid datetime: ...",
  "invalid ID field: 123"), ORDER BY on an unsortable field, empty or over-long statements.
- INVALID_FIELD: unknown field, unknown relationship, a literal of the wrong type for its field,
  unfilterable or compound field in WHERE, and "duplicate field selected: Id" (the code and text the
  SOQL reference shows for a duplicate; no caret).
- INVALID_TYPE: unknown object. INVALID_TYPE_FOR_OPERATION: an object that does not support query.
- NUMBER_OUTSIDE_VALID_RANGE: OFFSET over 2,000. QUERY_TOO_COMPLICATED: WHERE nested too deeply.

For the storage engine (AST conventions)
- After `bind`, `FieldRef.name` is the describe name and `FieldRef.type` the describe type.
- `Literal.value` is typed: str | Decimal | bool | None | date | datetime (aware UTC, microseconds).
  On id/reference fields the value is the 18-character Id (a 15-character Id gets its suffix; an
  18-character Id in any letter case is restored to its true case from the suffix).
- For LIKE the value is a pattern in SQL LIKE syntax with backslash as the escape character (SQL
  `LIKE ? ESCAPE '\\'`): `%` and `_` are wildcards, `\\%`, `\\_` and `\\\\` stand for the literal
  characters. Salesforce compares text case-insensitively for = != IN LIKE on standard text fields.
- `Comparison.op` is one of = != < <= > >= IN 'NOT IN' LIKE (`<>` is reported as `!=`).
- `BoolOp` flattens chains: `a AND b AND c` is one BoolOp with three operands.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Protocol

from salesforce_emulator.errors import ApiError

MAX_QUERY_LENGTH = 100_000  # characters; Salesforce's documented limit for a SOQL statement
MAX_STRING_LITERAL = 4_000  # characters per string in a WHERE clause (documented limit)
MAX_OFFSET = 2_000  # documented OFFSET maximum
MAX_INT32 = 2**31 - 1  # LIMIT and OFFSET are 32-bit integers
MAX_NESTING = 100  # parentheses in WHERE; deeper is "too complicated" (and would exhaust the stack)

MALFORMED_QUERY = "MALFORMED_QUERY"
INVALID_FIELD = "INVALID_FIELD"
INVALID_TYPE = "INVALID_TYPE"
INVALID_TYPE_FOR_OPERATION = "INVALID_TYPE_FOR_OPERATION"
NUMBER_OUTSIDE_VALID_RANGE = "NUMBER_OUTSIDE_VALID_RANGE"
QUERY_TOO_COMPLICATED = "QUERY_TOO_COMPLICATED"
# Salesforce's documented text for QUERY_TOO_COMPLICATED (no caret).
TOO_COMPLICATED_MESSAGE = (
    "Query is either selecting too many fields or the filter conditions are too complicated."
)


class SoqlError(ApiError):
    """A SOQL error as Salesforce reports it (HTTP 400). `row`/`column` are set for caret errors."""

    def __init__(self, error_code: str, message: str, row: int | None = None, column: int | None = None):
        super().__init__(400, error_code, message)
        self.row = row
        self.column = column


# --------------------------------------------------------------------------------------------------
# AST
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldRef:
    name: str
    position: int  # character offset of the name in the query text
    type: str | None = None  # describe type, set by bind()


@dataclass(frozen=True)
class CountAll:
    position: int


@dataclass(frozen=True)
class Literal:
    kind: str  # 'string', 'number', 'boolean', 'null', 'date', 'datetime'
    value: str | Decimal | bool | date | datetime | None
    text: str  # as written in the query (quotes included)
    position: int


@dataclass(frozen=True)
class Comparison:
    field: FieldRef
    op: str
    value: Literal | tuple[Literal, ...]  # a tuple for IN and NOT IN


@dataclass(frozen=True)
class BoolOp:
    op: str  # 'AND' | 'OR'
    operands: tuple[Expr, ...]


@dataclass(frozen=True)
class Not:
    operand: Expr


Expr = Comparison | BoolOp | Not


@dataclass(frozen=True)
class OrderItem:
    field: FieldRef
    descending: bool
    nulls_first: bool | None  # None: not given (Salesforce sorts nulls first ascending, last descending)


@dataclass(frozen=True)
class Query:
    select: tuple[FieldRef, ...] | CountAll
    sobject: str
    sobject_position: int
    where: Expr | None
    order_by: tuple[OrderItem, ...]
    limit: int | None
    offset: int | None
    text: str

    @property
    def is_count(self) -> bool:
        return isinstance(self.select, CountAll)

    @property
    def field_names(self) -> tuple[str, ...]:
        """The selected field names in order (empty for COUNT())."""
        if isinstance(self.select, CountAll):
            return ()
        return tuple(ref.name for ref in self.select)


# --------------------------------------------------------------------------------------------------
# Schema seam
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SoqlField:
    name: str
    type: str  # describe type: id, string, boolean, int, double, currency, date, datetime, address, ...
    filterable: bool = True
    sortable: bool = True


@dataclass(frozen=True)
class SoqlObject:
    name: str
    queryable: bool
    fields: Mapping[str, SoqlField]  # keys lower-case


class SchemaLookup(Protocol):
    def soql_object(self, name: str) -> SoqlObject | None:
        """The object named `name` (any letter case), or None."""
        ...


# --------------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------------

_IDENT, _STRING, _NUMBER, _DATE, _DATETIME, _OP, _PUNCT, _BADQUOTE, _EOF = (
    "ident",
    "string",
    "number",
    "date",
    "datetime",
    "op",
    "punct",
    "badquote",
    "eof",
)


class _Token:
    __slots__ = ("end", "kind", "start", "text")

    def __init__(self, kind: str, text: str, start: int, end: int):
        self.kind = kind
        self.text = text
        self.start = start
        self.end = end

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"_Token({self.kind}, {self.text!r}, {self.start})"


# Each match is optional whitespace plus one token, so matches are contiguous (only trailing
# whitespace is left over). Order matters: a datetime or date must win over a number, `!=`/`<=` over
# `<`/`=`. `error` catches any other character.
_TOKEN_RE = re.compile(
    r"""
    \s*(?:
      (?P<ident>[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*)
    | (?P<datetime>[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9A-Za-z:.+\-]*)
    | (?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2}(?![0-9A-Za-z_:.]))
    | (?P<number>[0-9]+(?:\.[0-9]+)?)
    | (?P<string>'(?:[^'\\]|\\.)*')
    | (?P<badquote>')
    | (?P<op>!=|<>|<=|>=|=|<|>)
    | (?P<punct>[(),+\-;:.\[\]{}*/&|!?@^~%])
    | (?P<error>\S)
    )
    """,
    re.VERBOSE | re.ASCII | re.DOTALL,
)


def _tokenize(text: str, start: int = 0) -> list[_Token]:
    """The tokens of `text` from `start`, then two EOF tokens placed right after the last real token.

    Two EOF tokens let the parser look one token ahead without bounds checks.
    """
    tokens: list[_Token] = []
    append = tokens.append
    for found in _TOKEN_RE.finditer(text, start):
        kind = found.lastgroup
        begin, end = found.span(kind)
        if kind == "error":
            raise _lexer_error(text, begin)
        if kind == "badquote":
            # An unterminated string: Salesforce reports the quote as the unexpected token; the
            # window runs to the end of the line, which is all the lexer could make of it.
            line_end = text.find("\n", begin)
            end = len(text) if line_end < 0 else line_end
            if text[end - 1] == "\r":
                end -= 1
            append(_Token(_BADQUOTE, "'", begin, end))
            break
        append(_Token(kind, text[begin:end], begin, end))  # type: ignore[arg-type]
    eof_at = tokens[-1].end if tokens else start
    eof = _Token(_EOF, "<EOF>", eof_at, eof_at)
    tokens += (eof, eof)
    return tokens


def _lexer_error(text: str, position: int) -> SoqlError:
    # Salesforce (Summer '24 on): "line 1:15 unexpected token: '$'" - ANTLR's 0-based column in the
    # text, 1-based in the ERROR line; the window is the whole line, as in captured responses.
    row, column, line_start = _row_column(text, position)
    line_end = text.find("\n", position)
    line = text[line_start : len(text) if line_end < 0 else line_end].rstrip("\r")
    body = f"line {row}:{column - 1} unexpected token: '{text[position]}'"
    message = f"\n{line}\n{' ' * (column - 1)}^\nERROR at Row:{row}:Column:{column}\n{body}"
    return SoqlError(MALFORMED_QUERY, message, row, column)


def _row_column(text: str, offset: int) -> tuple[int, int, int]:
    """1-based row and column of `offset`, and the offset where its line starts."""
    line_start = text.rfind("\n", 0, offset) + 1
    return text.count("\n", 0, offset) + 1, offset - line_start + 1, line_start


# --------------------------------------------------------------------------------------------------
# Caret messages
# --------------------------------------------------------------------------------------------------

_WINDOW_TOKENS = 4  # tokens Salesforce shows on each side of the offending one


def _located_error(
    error_code: str, text: str, offset: int, body: str, tokens: list[_Token] | None = None
) -> SoqlError:
    """A caret error pointing at `offset` (the start of a token, or the EOF position)."""
    if tokens is None:
        tokens = _tokenize(text)  # only for bind errors: the text is known to tokenize
    row, column, _ = _row_column(text, offset)
    index = next((i for i, token in enumerate(tokens) if token.start >= offset), len(tokens) - 1)
    nearby = tokens[max(index - _WINDOW_TOKENS, 0) : index + _WINDOW_TOKENS + 1]
    window = [t for t in nearby if t.kind != _EOF and _row_column(text, t.start)[0] == row]
    start = min([offset, *(token.start for token in window)])
    end = max([offset, *(token.end for token in window)])
    snippet = text[start:end].rstrip("\r")
    message = f"\n{snippet}\n{' ' * (offset - start)}^\nERROR at Row:{row}:Column:{column}\n{body}"
    return SoqlError(error_code, message, row, column)


def _unexpected(text: str, tokens: list[_Token], token: _Token, shown: str | None = None) -> SoqlError:
    return _located_error(
        MALFORMED_QUERY, text, token.start, f"unexpected token: '{shown or token.text}'", tokens
    )


# --------------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------------

# Words Salesforce reserves in SOQL: never a field or object name.
_RESERVED = frozenset(
    [
        "AND",
        "ASC",
        "DESC",
        "EXCLUDES",
        "FIRST",
        "FROM",
        "GROUP",
        "HAVING",
        "IN",
        "INCLUDES",
        "LAST",
        "LIKE",
        "LIMIT",
        "NOT",
        "NULL",
        "NULLS",
        "OR",
        "SELECT",
        "WHERE",
        "WITH",
        "TRUE",
        "FALSE",
    ]
)
_COMPARISON_OPS = {"=": "=", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}

_DATETIME_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))",
    re.ASCII,
)
_ESCAPES = {"'": "'", '"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}


def parse(text: str) -> Query:
    """Parse SOQL text (syntax only). Raises SoqlError (MALFORMED_QUERY) in Salesforce's style."""
    if not text.strip():
        raise SoqlError(MALFORMED_QUERY, "SOQL statements cannot be empty or null")
    if len(text) > MAX_QUERY_LENGTH:
        # Salesforce documents the 100,000-character limit but no captured body was found; the
        # message follows its wording for the empty statement ("SOQL statements cannot be ...").
        raise SoqlError(
            MALFORMED_QUERY, f"SOQL statements cannot be longer than {MAX_QUERY_LENGTH} characters"
        )
    fast = _SELECT_LIST_RE.match(text)
    if fast is not None:
        fields = _fast_select_list(text, fast)
        if fields is not None:
            try:
                return _Parser(text, _tokenize(text, fast.end(1))).query(fields)
            except SoqlError:
                pass  # the full parse below reports it, with the whole token stream for the window
    return _Parser(text, _tokenize(text)).query()


# Wide-object queries select 1,000+ plain fields; this takes the field list in one regex match and
# leaves only the rest of the query to the tokenizer. Anything unusual goes the general way.
_FIELD_NAME = r"[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*"
_SELECT_LIST_RE = re.compile(
    rf"\s*SELECT\s+({_FIELD_NAME}(?:\s*,\s*{_FIELD_NAME})*)\s+FROM\s", re.ASCII | re.IGNORECASE
)


def _fast_select_list(text: str, match: re.Match[str]) -> tuple[FieldRef, ...] | None:
    fields = []
    position = match.start(1)
    for part in match.group(1).split(","):
        name = part.strip()
        if name.upper() in _RESERVED:
            return None
        fields.append(FieldRef(name, position + part.index(name)))
        position += len(part) + 1
    return tuple(fields)


class _Parser:
    def __init__(self, text: str, tokens: list[_Token]):
        self.text = text
        self.tokens = tokens
        self.index = 0
        self.depth = 0  # open parentheses in WHERE

    # -- token helpers -------------------------------------------------------------------------

    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[self.index + ahead]  # never past the end: advance() stops at EOF

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind != _EOF:
            self.index += 1
        return token

    @staticmethod
    def keyword(token: _Token) -> str | None:
        return token.text.upper() if token.kind == _IDENT else None

    def at_keyword(self, word: str, ahead: int = 0) -> bool:
        token = self.peek(ahead)
        return token.kind == _IDENT and token.text.upper() == word

    def at_punct(self, char: str, ahead: int = 0) -> bool:
        token = self.peek(ahead)
        return token.kind == _PUNCT and token.text == char

    def unexpected(self, token: _Token | None = None, shown: str | None = None) -> SoqlError:
        return _unexpected(self.text, self.tokens, token or self.peek(), shown)

    def expect_keyword(self, word: str) -> _Token:
        if not self.at_keyword(word):
            raise self.unexpected()
        return self.advance()

    def expect_punct(self, char: str) -> _Token:
        if not self.at_punct(char):
            raise self.unexpected()
        return self.advance()

    # -- grammar -------------------------------------------------------------------------------

    def query(self, select: tuple[FieldRef, ...] | None = None) -> Query:
        """The whole statement; `select` is the field list when the caller already parsed it."""
        if select is None:
            first = self.peek()
            if not self.at_keyword("SELECT"):
                # Salesforce answers a statement that does not start with SELECT without a caret.
                raise SoqlError(MALFORMED_QUERY, f"unexpected token: '{first.text}'")
            self.advance()
            select = self.select_list(first)
        self.expect_keyword("FROM")
        sobject = self.object_name()
        where = None
        if self.at_keyword("WHERE"):
            self.advance()
            where = self.logical()
        order_by: tuple[OrderItem, ...] = ()
        if self.at_keyword("ORDER") and self.at_keyword("BY", 1):
            self.advance()
            self.advance()
            order_by = self.order_list()
        limit = self.integer_clause("LIMIT")
        offset = self.integer_clause("OFFSET")
        if self.peek().kind != _EOF:
            raise self.unexpected()
        return Query(select, sobject.text, sobject.start, where, order_by, limit, offset, self.text)

    def select_list(self, select_token: _Token) -> tuple[FieldRef, ...] | CountAll:
        if self.at_keyword("COUNT") and self.at_punct("(", 1):
            count = self.advance()
            self.advance()
            self.expect_punct(")")
            return CountAll(count.start)
        if self.at_keyword("FROM"):
            # Salesforce (Summer '24 on) names the whole span: unexpected token: 'SELECT FROM'.
            token = self.peek()
            raise self.unexpected(token, self.text[select_token.start : token.end])
        # A tight loop over the tokens: field lists are long (parse() usually takes a shortcut).
        tokens, index, fields = self.tokens, self.index, []
        while True:
            token = tokens[index]
            if token.kind != _IDENT or token.text.upper() in _RESERVED:
                self.index = index
                raise self.unexpected()
            following = tokens[index + 1]
            fields.append(FieldRef(token.text, token.start))
            if following.kind != _PUNCT:
                break
            if following.text != ",":
                self.index = index + 1
                raise self.unexpected()  # a function call or a stray character
            index += 2
        self.index = index + 1
        return tuple(fields)

    def name(self) -> _Token:
        """An identifier that is not a reserved word (field or object name)."""
        token = self.peek()
        if token.kind != _IDENT or token.text.upper() in _RESERVED:
            raise self.unexpected()
        return self.advance()

    def object_name(self) -> _Token:
        """The object after FROM: Salesforce's Group object is spelled like the GROUP keyword."""
        token = self.peek()
        if token.kind == _IDENT and token.text.upper() == "GROUP":
            return self.advance()
        return self.name()

    def field(self) -> FieldRef:
        token = self.name()
        if self.at_punct("("):  # a function: COUNT(Id), FIELDS(ALL), toLabel(x), CALENDAR_YEAR(d)
            raise self.unexpected()
        return FieldRef(token.text, token.start)

    def logical(self) -> Expr:
        if self.at_keyword("NOT"):
            self.advance()
            return Not(self.conditional())
        first = self.conditional()
        connector = self.keyword(self.peek())
        if connector not in ("AND", "OR"):
            return first
        operands = [first]
        while self.at_keyword(connector):
            self.advance()
            operands.append(self.conditional())
        return BoolOp(connector, tuple(operands))

    def conditional(self) -> Expr:
        if self.at_punct("("):
            self.advance()
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise SoqlError(QUERY_TOO_COMPLICATED, TOO_COMPLICATED_MESSAGE)
            inner = self.logical()
            self.expect_punct(")")
            self.depth -= 1
            return inner
        return self.comparison()

    def comparison(self) -> Comparison:
        field = self.field()
        token = self.peek()
        if token.kind == _OP:
            self.advance()
            return Comparison(field, _COMPARISON_OPS[token.text], self.literal())
        word = self.keyword(token)
        if word == "LIKE":
            self.advance()
            if self.peek().kind != _STRING:
                raise self.unexpected()
            return Comparison(field, "LIKE", self.string_literal(self.advance(), like=True))
        if word == "IN":
            self.advance()
            return Comparison(field, "IN", self.value_list(field))
        if word == "NOT" and self.at_keyword("IN", 1):
            self.advance()
            self.advance()
            return Comparison(field, "NOT IN", self.value_list(field))
        raise self.unexpected()

    def value_list(self, field: FieldRef) -> tuple[Literal, ...]:
        self.expect_punct("(")
        if self.at_punct(")"):
            # Salesforce (Summer '24 on): unexpected token: 'ParentId IN ()'.
            token = self.peek()
            raise self.unexpected(token, self.text[field.position : token.end])
        values = [self.literal()]
        while self.at_punct(","):
            self.advance()
            values.append(self.literal())
        self.expect_punct(")")
        return tuple(values)

    def literal(self) -> Literal:
        token = self.peek()
        kind = token.kind
        if kind == _STRING:
            return self.string_literal(self.advance(), like=False)
        if kind == _PUNCT and token.text in "+-" and self.peek(1).kind == _NUMBER:
            self.advance()
            number = self.advance()
            raw = self.text[token.start : number.end]
            sign = "-" if token.text == "-" else ""
            return Literal("number", Decimal(sign + number.text), raw, token.start)
        if kind == _NUMBER:
            self.advance()
            return Literal("number", Decimal(token.text), token.text, token.start)
        if kind == _DATETIME:
            self.advance()
            return Literal("datetime", self.datetime_value(token), token.text, token.start)
        if kind == _DATE:
            self.advance()
            return Literal("date", self.date_value(token), token.text, token.start)
        word = self.keyword(token)
        if word in ("TRUE", "FALSE"):
            self.advance()
            return Literal("boolean", word == "TRUE", token.text, token.start)
        if word == "NULL":
            self.advance()
            return Literal("null", None, token.text, token.start)
        raise self.unexpected()

    def string_literal(self, token: _Token, like: bool) -> Literal:
        value = _decode_string(self.text, self.tokens, token, like)
        if len(value) > MAX_STRING_LITERAL:
            # Documented limit ("Strings in WHERE clauses can't exceed 4,000 characters"); no
            # captured error body was found, so the wording is ours, in Salesforce's style.
            raise _located_error(
                MALFORMED_QUERY,
                self.text,
                token.start,
                f"String literal exceeds the maximum length of {MAX_STRING_LITERAL} characters",
                self.tokens,
            )
        return Literal("string", value, token.text, token.start)

    def datetime_value(self, token: _Token) -> datetime:
        match = _DATETIME_RE.fullmatch(token.text)
        try:
            if match is None:
                raise ValueError(token.text)
            year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
            fraction, zulu, sign, offset_hours, offset_minutes = match.group(7, 8, 9, 10, 11)
            micro = int((fraction or "0").ljust(6, "0"))
            offset = timedelta(0)
            if not zulu:
                hours, minutes = int(offset_hours), int(offset_minutes)
                if hours > 23 or minutes > 59:
                    raise ValueError(token.text)
                offset = timedelta(hours=hours, minutes=minutes) * (-1 if sign == "-" else 1)
            local = datetime(year, month, day, hour, minute, second, micro, tzinfo=timezone(offset))
            return local.astimezone(UTC)
        except (ValueError, OverflowError):
            # Salesforce (Summer '24 on): "Invalid datetime: 2020-12-12t12:12:00-25:00".
            raise _located_error(
                MALFORMED_QUERY, self.text, token.start, f"Invalid datetime: {token.text}", self.tokens
            ) from None

    def date_value(self, token: _Token) -> date:
        try:
            return date.fromisoformat(token.text)
        except ValueError:
            raise _located_error(
                MALFORMED_QUERY, self.text, token.start, f"Invalid date: {token.text}", self.tokens
            ) from None

    def order_list(self) -> tuple[OrderItem, ...]:
        items = [self.order_item()]
        while self.at_punct(","):
            self.advance()
            items.append(self.order_item())
        return tuple(items)

    def order_item(self) -> OrderItem:
        field = self.field()
        descending = False
        if self.at_keyword("ASC") or self.at_keyword("DESC"):
            descending = self.advance().text.upper() == "DESC"
        nulls_first = None
        if self.at_keyword("NULLS"):
            self.advance()
            if not (self.at_keyword("FIRST") or self.at_keyword("LAST")):
                raise self.unexpected()
            nulls_first = self.advance().text.upper() == "FIRST"
        return OrderItem(field, descending, nulls_first)

    def integer_clause(self, word: str) -> int | None:
        if not self.at_keyword(word):
            return None
        self.advance()
        token = self.peek()
        if token.kind != _NUMBER or "." in token.text:
            raise self.unexpected()  # includes a sign: LIMIT -1 -> unexpected token: '-'
        self.advance()
        value = int(token.text)
        if value > MAX_INT32:
            raise _located_error(
                MALFORMED_QUERY,
                self.text,
                token.start,
                f"numeric value out of range: {token.text}",
                self.tokens,
            )
        return value


def _decode_string(text: str, tokens: list[_Token], token: _Token, like: bool) -> str:
    """The value of a quoted literal. For LIKE, the result is a SQL LIKE pattern (escape `\\`)."""
    raw = token.text[1:-1]
    if "\\" not in raw:
        return raw
    out: list[str] = []
    position = 0
    while position < len(raw):
        char = raw[position]
        if char != "\\":
            out.append(char)
            position += 1
            continue
        escape = raw[position + 1]  # the tokenizer guarantees a character after a backslash
        if escape in _ESCAPES:
            value = _ESCAPES[escape]
            out.append("\\\\" if like and value == "\\" else value)
            position += 2
        elif escape in "%_":
            # LIKE escapes for a literal percent sign or underscore; elsewhere just the character.
            out.append("\\" + escape if like else escape)
            position += 2
        elif escape == "u" and re.fullmatch(r"[0-9A-Fa-f]{4}", raw[position + 2 : position + 6]):
            value = chr(int(raw[position + 2 : position + 6], 16))
            out.append("\\" + value if like and value in "%_\\" else value)
            position += 6
        else:
            sequence = raw[position : position + 2]
            # Wording modelled on Salesforce's compiler message for a bad escape.
            raise _located_error(
                MALFORMED_QUERY,
                text,
                token.start,
                f"Invalid string literal '{raw}'. Illegal character sequence '{sequence}' in string literal.",
                tokens,
            )
    return "".join(out)


# --------------------------------------------------------------------------------------------------
# Binder
# --------------------------------------------------------------------------------------------------

_STRING_TYPES = frozenset(
    [
        "string",
        "picklist",
        "multipicklist",
        "textarea",
        "email",
        "phone",
        "url",
        "combobox",
        "encryptedstring",
    ]
)
_ID_TYPES = frozenset(("id", "reference"))
_NUMBER_TYPES = {"int": "int", "long": "long", "double": "double", "currency": "double", "percent": "double"}
# field type -> (literal kind it takes, the type's name in Salesforce's message)
_UNQUOTED_TYPES = {
    "boolean": ("boolean", "boolean"),
    "date": ("date", "date"),
    "datetime": ("datetime", "dateTime"),
}
_NEVER_FILTERABLE = frozenset(("base64",))
_ID_SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_ID_RE = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-5]{3})?", re.ASCII)


def bind(query: Query, schema: SchemaLookup) -> Query:
    """Check `query` against the org and return it with canonical names and checked literals."""
    sobject = schema.soql_object(query.sobject)
    if sobject is None:
        raise _located_error(
            INVALID_TYPE,
            query.text,
            query.sobject_position,
            f"sObject type '{query.sobject}' is not supported. If you are attempting to use a custom "
            "object, be sure to append the '__c' after the entity name. Please reference your WSDL or "
            "the describe call for the appropriate names.",
        )
    if not sobject.queryable:
        raise SoqlError(INVALID_TYPE_FOR_OPERATION, f"entity type {sobject.name} does not support query")
    binder = _Binder(query, sobject)
    select: tuple[FieldRef, ...] | CountAll = query.select
    if not isinstance(select, CountAll):
        select = binder.select_fields(select)
    where = binder.expression(query.where) if query.where is not None else None
    order_by = tuple(binder.order_item(item) for item in query.order_by)
    if query.offset is not None and query.offset > MAX_OFFSET:
        # The real message (no caret), as clients report it.
        raise SoqlError(
            NUMBER_OUTSIDE_VALID_RANGE,
            f"Maximum SOQL offset allowed for apiName {sobject.name} is {MAX_OFFSET}",
        )
    return replace(query, select=select, sobject=sobject.name, where=where, order_by=order_by)


class _Binder:
    def __init__(self, query: Query, sobject: SoqlObject):
        self.query = query
        self.sobject = sobject

    def error(self, code: str, position: int, body: str) -> SoqlError:
        return _located_error(code, self.query.text, position, body)

    def resolve(self, ref: FieldRef) -> tuple[FieldRef, SoqlField]:
        name = ref.name
        if "." in name:
            head, rest = name.split(".", 1)
            if head.lower() != self.sobject.name.lower():
                raise self.error(
                    INVALID_FIELD,
                    ref.position,
                    f"Didn't understand relationship '{head}' in field path. If you are attempting to use "
                    "a custom relationship, be sure to append the '__r' after the custom relationship "
                    "name. Please reference your WSDL or the describe call for the appropriate names.",
                )
            # `Account.Name` on FROM Account is the object-qualified `Name`.
            return self.resolve(FieldRef(rest, ref.position))
        field = self.sobject.fields.get(name.lower())
        if field is None:
            raise self.error(
                INVALID_FIELD,
                ref.position,
                f"No such column '{name}' on entity '{self.sobject.name}'. If you are attempting to use a "
                "custom field, be sure to append the '__c' after the custom field name. Please reference "
                "your WSDL or the describe call for the appropriate names.",
            )
        return FieldRef(field.name, ref.position, field.type), field

    def select_fields(self, refs: tuple[FieldRef, ...]) -> tuple[FieldRef, ...]:
        bound: list[FieldRef] = []
        seen: set[str] = set()
        for ref in refs:
            resolved, _ = self.resolve(ref)
            if resolved.name in seen:
                # Salesforce's SOQL reference shows this exact body: INVALID_FIELD, no caret.
                raise SoqlError(INVALID_FIELD, f"duplicate field selected: {resolved.name}")
            seen.add(resolved.name)
            bound.append(resolved)
        return tuple(bound)

    def order_item(self, item: OrderItem) -> OrderItem:
        ref, field = self.resolve(item.field)
        if not field.sortable or field.type.lower() in ("address", "location"):
            # Reproduced against real orgs: MALFORMED_QUERY with this text.
            raise self.error(
                MALFORMED_QUERY, ref.position, f"field '{ref.name}' can not be sorted in a query call"
            )
        return replace(item, field=ref)

    def expression(self, expr: Expr) -> Expr:
        if isinstance(expr, BoolOp):
            return BoolOp(expr.op, tuple(self.expression(operand) for operand in expr.operands))
        if isinstance(expr, Not):
            return Not(self.expression(expr.operand))
        return self.comparison(expr)

    def comparison(self, comparison: Comparison) -> Comparison:
        ref, field = self.resolve(comparison.field)
        field_type = field.type.lower()
        if field_type == "address":
            raise self.error(
                INVALID_FIELD, ref.position, "Address fields can only be filtered using Distance expressions"
            )
        if field_type == "location":
            # By analogy with the address message (no captured body for geolocation fields).
            raise self.error(
                INVALID_FIELD, ref.position, "Location fields can only be filtered using Distance expressions"
            )
        if not field.filterable or field_type in _NEVER_FILTERABLE:
            raise self.error(
                INVALID_FIELD, ref.position, f"field '{ref.name}' can not be filtered in a query call"
            )
        like = comparison.op == "LIKE"
        if isinstance(comparison.value, tuple):
            value: Literal | tuple[Literal, ...] = tuple(
                self.literal(ref, item, like) for item in comparison.value
            )
        else:
            value = self.literal(ref, comparison.value, like)
        return Comparison(ref, comparison.op, value)

    def literal(self, ref: FieldRef, literal: Literal, like: bool) -> Literal:
        kind, field_type = literal.kind, (ref.type or "").lower()
        if kind == "null":
            return literal
        if field_type in _STRING_TYPES:
            if kind != "string":
                raise self.mismatch(ref, literal, "string", quoted=True)
            return literal
        if field_type in _ID_TYPES:
            if kind != "string":
                raise self.mismatch(ref, literal, "id", quoted=True)
            if like:
                return literal
            canonical = _canonical_id(str(literal.value))
            if canonical is None:
                raise self.error(MALFORMED_QUERY, literal.position, f"invalid ID field: {literal.value}")
            return replace(literal, value=canonical)
        if field_type in _NUMBER_TYPES:
            if kind != "number":
                raise self.mismatch(ref, literal, _NUMBER_TYPES[field_type], quoted=False)
            return literal
        if field_type in _UNQUOTED_TYPES:
            wanted_kind, type_word = _UNQUOTED_TYPES[field_type]
            if kind != wanted_kind:
                raise self.mismatch(ref, literal, type_word, quoted=False)
            return literal
        # time, anyType and other types have no literal in this subset: only null compares to them.
        raise self.mismatch(ref, literal, ref.type or field_type, quoted=False)

    def mismatch(self, ref: FieldRef, literal: Literal, expected: str, quoted: bool) -> SoqlError:
        # Real: "value of filter criterion for field 'SystemModstamp' must be of type dateTime and
        # should not be enclosed in quotes"; the quoted form is its counterpart for text fields.
        advice = "should be enclosed in quotes" if quoted else "should not be enclosed in quotes"
        return self.error(
            INVALID_FIELD,
            literal.position,
            f"value of filter criterion for field '{ref.name}' must be of type {expected} and {advice}",
        )


def _canonical_id(value: str) -> str | None:
    """The 18-character form of a 15- or 18-character Id, or None if it is not an Id."""
    if not _ID_RE.fullmatch(value):
        return None
    if len(value) == 18:
        # An 18-character Id is case-insensitive: its suffix says which letters are upper case.
        chars = list(value[:15])
        for chunk, flag in enumerate(value[15:].upper()):
            bits = _ID_SUFFIX_ALPHABET.index(flag)
            for offset in range(5):
                i = chunk * 5 + offset
                chars[i] = chars[i].upper() if bits >> offset & 1 else chars[i].lower()
        value = "".join(chars)
    return value + id_suffix(value)


def id_suffix(id15: str) -> str:
    """Salesforce's three-character case-safety suffix for a 15-character Id."""
    suffix = []
    for chunk in range(3):
        bits = 0
        for offset, char in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << offset
        suffix.append(_ID_SUFFIX_ALPHABET[bits])
    return "".join(suffix)
