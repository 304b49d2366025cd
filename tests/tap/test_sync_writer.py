"""The stream's RECORD writer (streams.RecordWriter): Singer lines, exact numbers, order with STATE."""

from __future__ import annotations

import json
from decimal import Decimal

from stdout_capture import captured_stdout

from tap_salesforce_seg.streams import RecordWriter


def capture(write) -> bytes:
    with captured_stdout() as raw:
        write()
    return raw.getvalue()


def test_records_are_singer_lines_with_exact_numbers():
    def write():
        writer = RecordWriter("accounts")
        writer.write({"id": "001A", "annual_revenue": Decimal("12345678901234567.12"), "n": 3, "s": 'é\n"q"'})
        writer.write({"id": "001B", "annual_revenue": None, "n": None, "s": None})
        writer.flush()

    lines = capture(write).splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0], parse_float=Decimal)
    assert first["type"] == "RECORD" and first["stream"] == "accounts"
    assert first["record"] == {
        "id": "001A",
        "annual_revenue": Decimal("12345678901234567.12"),
        "n": 3,
        "s": 'é\n"q"',
    }
    assert first["time_extracted"].endswith("Z")
    assert b'"annual_revenue":12345678901234567.12' in lines[0]
    assert json.loads(lines[1])["record"]["annual_revenue"] is None


def test_version_is_written_when_set():
    def write():
        writer = RecordWriter("x", version=1700000000)
        writer.write({"id": "1"})
        writer.flush()

    assert json.loads(capture(write))["version"] == 1700000000


def test_buffered_records_come_before_what_is_printed_after_flush():
    def write():
        writer = RecordWriter("x")
        writer.write({"id": "1"})
        writer.flush()
        print('{"type":"STATE","value":{}}', flush=True)
        writer.write({"id": "2"})
        writer.flush()

    kinds = [json.loads(line)["type"] for line in capture(write).splitlines()]
    assert kinds == ["RECORD", "STATE", "RECORD"]


def test_nothing_is_written_before_flush_for_small_outputs():
    def write():
        writer = RecordWriter("x")
        writer.write({"id": "1"})

    assert capture(write) == b""
