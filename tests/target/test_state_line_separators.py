"""A STATE value whose strings hold characters that are line breaks to Unicode but not to Singer:
U+2028, U+2029 and U+0085 may stand raw inside a JSON string, and the target must give the value back
equal (both engines, in process and through the console script). Control characters that JSON must
escape (\\x1c-\\x1e, also Unicode line breaks) travel escaped, and must come back too."""

from __future__ import annotations

import json

from conftest import Warehouse, record, schema, to_lines

SEPARATORS = "line\u2028para\u2029next\x85end"
ESCAPED_CONTROLS = "fs\x1cgs\x1drs\x1eus\x1f"
STATE_VALUE = {
    "bookmarks": {
        "accounts": {"replication_key_value": "2024-01-01T00:00:00.000000Z", "note": SEPARATORS},
        f"stream{SEPARATORS}": {"cursor": [SEPARATORS, ESCAPED_CONTROLS, "\u2028", "\u2029", "\x85"]},
    }
}


def messages() -> list:
    state_line = json.dumps({"type": "STATE", "value": STATE_VALUE}, ensure_ascii=False)
    for character in "\u2028\u2029\x85":
        assert character in state_line, "the test must feed the character raw"
    return [
        schema("accounts", {"id": {"type": "string"}, "name": {"type": "string"}}),
        record("accounts", {"id": "a1", "name": SEPARATORS}),
        state_line,
    ]


def test_a_state_with_unicode_line_separators_comes_back_equal_in_process(warehouse: Warehouse) -> None:
    run = warehouse.run(messages())
    assert run.error is None
    assert run.states == [STATE_VALUE]
    assert warehouse.rows("accounts", columns="id, name") == [{"id": "a1", "name": SEPARATORS}]


def test_a_state_with_unicode_line_separators_comes_back_equal_from_the_cli(warehouse: Warehouse) -> None:
    done = warehouse.cli(to_lines(messages()))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.states == [STATE_VALUE]
    assert done.stdout.count("\n") == 1, "one STATE, one line"
