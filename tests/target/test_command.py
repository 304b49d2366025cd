"""The ``target-warehouse-seg`` command ends its process at once after a run: what the run wrote still
arrives whole, and the exit status is the run's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TARGET_EXECUTABLE, Warehouse, record, schema, start_target, state, to_lines


def test_every_state_line_arrives_through_a_pipe_and_the_status_is_zero(warehouse: Warehouse) -> None:
    messages = [schema("s", {"id": {"type": "string"}})]
    for number in range(30):
        messages += [record("s", {"id": str(number)}), state({"position": number})]
    done = warehouse.cli(to_lines(messages), batch_size_rows=7)
    assert done.returncode == 0, done.stderr
    states = [line for line in done.stdout.splitlines() if line]
    assert states[-1] == '{"position":29}'
    assert len(warehouse.rows("s")) == 30


@pytest.mark.parametrize("encoding", ["latin-1", "ascii"])
def test_state_lines_are_utf_8_whatever_the_locale(warehouse: Warehouse, encoding: str) -> None:
    # A Latin-1 or ASCII locale (older servers, a Windows code page) sets the encoding of a text stdout;
    # Singer lines are UTF-8 whatever it is, and a state may hold any character (another tap's stream
    # or sheet names).
    value = {"bookmarks": {"東京 sheet": {"cursor": "café"}}}
    messages = [schema("s", {"id": {"type": "string"}}), record("s", {"id": "1"}), state(value)]
    done = warehouse.cli(to_lines(messages), env={"PYTHONIOENCODING": encoding})
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines() if line] == [value]


def test_python_m_runs_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "target_warehouse_seg", "--about", "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert '"name": "target-warehouse-seg"' in done.stdout


@pytest.mark.parametrize(
    ("status", "code", "stderr"),
    [(None, 0, ""), (0, 0, ""), (3, 3, ""), ("a message", 1, "a message\n")],
)
def test_the_process_ends_with_what_was_written_flushed(status: object, code: int, stderr: str) -> None:
    # Written without a newline to a buffered stdout (a pipe): lost unless flushed before the end.
    program = (
        "import sys, logging\n"
        "from target_warehouse_seg.__main__ import end_process\n"
        "logging.basicConfig(stream=sys.stderr, format='%(message)s')\n"
        "sys.stdout.write('partial line')\n"
        f"end_process({status!r})\n"
    )
    unbuffered = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=unbuffered,
    )
    assert (done.returncode, done.stdout, done.stderr) == (code, "partial line", stderr)


def test_the_console_script_is_the_fast_ending_command() -> None:
    script = Path(TARGET_EXECUTABLE).read_text(encoding="utf-8")
    assert "from target_warehouse_seg.__main__ import main" in script


@pytest.mark.parametrize("shared", ["schema", "_deleted_keys", "_rejected_records"])
def test_parallel_runs_into_one_postgres_schema_create_what_they_share_once(
    postgres_database: str, tmp_path: Path, shared: str
) -> None:
    """Two runs at once into one schema (parallel jobs, one stream each) both find the schema, the
    tombstones' or the rejected records' table missing; PostgreSQL's `CREATE ... IF NOT EXISTS` then
    failed the second on a duplicate key. Here another run is creating it (its transaction open, the
    target's advisory lock held) while this run starts: this run waits for it and goes on."""
    import psycopg

    ddl = {
        "schema": 'CREATE SCHEMA IF NOT EXISTS "shared"',
        "_deleted_keys": 'CREATE TABLE IF NOT EXISTS "shared"."_deleted_keys" (table_name text NOT NULL, '
        "record_key text NOT NULL, replication_value text, deleted_at timestamp with time zone NOT NULL, "
        "PRIMARY KEY (table_name, record_key))",
        "_rejected_records": 'CREATE TABLE IF NOT EXISTS "shared"."_rejected_records" (stream text, '
        "line bigint, record_key jsonb, field text, error text, record text, "
        "rejected_at timestamp with time zone DEFAULT now())",
    }[shared]
    properties = {
        "id": {"type": "string"},
        "n": {"type": "integer"},
        "is_deleted": {"type": "boolean"},
        "system_modstamp": {"type": "string", "format": "date-time"},
    }
    stamp = "2024-01-01T00:00:00Z"
    messages = [
        schema("mine", properties, bookmark=["system_modstamp"]),
        record("mine", {"id": "a", "n": 1, "is_deleted": True, "system_modstamp": stamp}),
        record("mine", {"id": "b", "n": "not a number", "is_deleted": False, "system_modstamp": stamp}),
    ]
    config = tmp_path / "config.json"
    settings = {"engine": "postgres", "sqlalchemy_url": postgres_database, "schema": "shared"}
    config.write_text(json.dumps({**settings, "hard_delete": True, "on_invalid_record": "quarantine"}))
    with psycopg.connect(postgres_database) as other:
        if shared != "schema":
            other.execute('CREATE SCHEMA "shared"')
            other.commit()
        key = f"target-warehouse-seg shared.{'shared' if shared == 'schema' else shared}"
        other.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))
        other.execute(ddl)
        run = start_target(config)
        run.stdin.write(to_lines(messages))
        run.stdin.close()
        time.sleep(2)  # the run reaches the creation and waits there
        other.commit()
        stderr = run.stderr.read()  # until the run ends (it writes no STATE: none was sent)
        run.wait(timeout=60)
    assert run.returncode == 0, stderr
    with psycopg.connect(postgres_database) as check:
        assert check.execute('SELECT count(*) FROM "shared"."_deleted_keys"').fetchone() == (1,)
        assert check.execute('SELECT count(*) FROM "shared"."_rejected_records"').fetchone() == (1,)


def _thousands_with_states(warehouse: Warehouse, tmp_path: Path, count: int) -> tuple[Path, list]:
    """A config committing every 1,000 rows, and `count` records with a STATE after each thousand."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps(warehouse.config(batch_size_rows=1000)))
    messages = [schema("s", {"id": {"type": "integer"}})]
    for number in range(count):
        messages.append(record("s", {"id": number}))
        if number % 1000 == 999:
            messages.append(state({"position": number}))
    return config, messages


def test_a_closed_stdout_stops_the_run_with_one_line(warehouse: Warehouse, tmp_path: Path) -> None:
    """When the program reading STATE goes away, the first STATE that cannot be written stops the run
    with a line saying so (Click ended it with status 1 and no word before); what was committed stays."""
    config, messages = _thousands_with_states(warehouse, tmp_path, 5000)
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody reads the target's stdout
    try:
        process = start_target(config, stdout=write_end)
    finally:
        os.close(write_end)
    _, stderr = process.communicate(to_lines(messages), timeout=120)
    assert process.returncode == 1
    errors = [line for line in stderr.splitlines() if "| ERROR" in line]
    assert len(errors) == 1 and "stdout was closed" in errors[0], stderr[-2000:]
    assert "1,000 row(s) committed" in errors[0]
    assert len(warehouse.rows("s")) == 1000


def test_stdout_on_a_full_disk_stops_the_run_with_one_line(warehouse: Warehouse, tmp_path: Path) -> None:
    """`target > state-out.jsonl` on a full disk: the first STATE that cannot be written stops the run
    with a line saying so and what was committed (a traceback before); the rows committed stay."""
    config, messages = _thousands_with_states(warehouse, tmp_path, 3000)
    with open("/dev/full", "wb") as full:
        process = start_target(config, stdout=full.fileno())
        _, stderr = process.communicate(to_lines(messages), timeout=120)
    assert process.returncode == 1
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if "| ERROR" in line]
    assert len(errors) == 1, stderr[-2000:]
    assert "stdout could not be written (No space left on device" in errors[0]
    assert "1,000 row(s) committed" in errors[0]
    assert len(warehouse.rows("s")) == 1000
    with open("/dev/full", "wb") as full:
        about = subprocess.run(
            [TARGET_EXECUTABLE, "--about"], stdout=full, stderr=subprocess.PIPE, text=True, check=False
        )
    assert about.returncode == 1 and "Traceback" not in about.stderr
    assert (
        about.stderr.strip().splitlines()[-1].endswith("stdout could not be written: No space left on device")
    )


def test_an_input_file_is_read_as_stdin_is(warehouse: Warehouse, tmp_path: Path) -> None:
    """``--input FILE`` (singer-sdk's option) reads bytes, as stdin: bytes that are not UTF-8 give the
    one line naming the input line (singer-sdk opened the file as UTF-8 text, and such bytes ended the
    run in a UnicodeDecodeError traceback)."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps(warehouse.config()))
    good = tmp_path / "good.jsonl"
    properties = {"id": {"type": "string"}, "note": {"type": ["null", "string"]}}
    good.write_text(to_lines([schema("s", properties), record("s", {"id": "a", "note": "café"}), state(1)]))
    done = subprocess.run(
        [TARGET_EXECUTABLE, "--config", str(config), "--input", str(good)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1"]
    assert warehouse.rows("s") and warehouse.rows("s")[0]["note"] == "café"
    bad = tmp_path / "bad.jsonl"
    lines = to_lines([schema("s", properties), record("s", {"id": "c"})]).encode()
    bad.write_bytes(lines + b'{"type": "RECORD", "stream": "s", "record": {"id": "b", "note": "caf\xe9"}}\n')
    failed = subprocess.run(
        [TARGET_EXECUTABLE, "--config", str(config), "--input", str(bad)], capture_output=True, text=True
    )
    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr
    errors = [line for line in failed.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and errors[0].endswith(
        "Invalid input: line 3, stream s: record holds text that is not UTF-8 (invalid continuation byte)"
    ), failed.stderr
    assert failed.stdout == ""
    assert [row["id"] for row in warehouse.rows("s")] == ["a"]


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        (["--bogus"], "Error: No such option '--bogus'"),
        (["--input", "nosuch.file"], "Error: Invalid value for '--input': 'nosuch.file': No such file"),
    ],
    ids=["unknown option", "missing input file"],
)
def test_a_usage_error_exits_with_status_1_not_the_quota_s_2(
    arguments: list[str], error: str, tmp_path: Path
) -> None:
    """Click ends a usage error with status 2, which in a `tap | target` pipeline is the tap's "API quota,
    wait and rerun": a scheduler would wait and retry a command line that can never work."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"path": str(tmp_path / "w.duckdb")}))
    command = [TARGET_EXECUTABLE, "--config", str(config), *arguments]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(error), done.stderr
    assert done.stdout == ""
    # The class's own command line (tests and programs call it in their process) exits so too.
    program = (
        "from target_warehouse_seg.target import TargetWarehouseSeg\n"
        f"TargetWarehouseSeg.cli({command[1:]!r})\n"
    )
    direct = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False
    )
    assert direct.returncode == 1, direct.stderr
    assert direct.stderr.strip().splitlines()[-1].startswith(error), direct.stderr


def test_a_state_line_that_cannot_be_written_whole_is_cut_from_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk cut the STATE line being written: `state-out.jsonl` ended in half a line, which a
    scheduler keeping the last line took for its state (every later run then stopped on it). The file
    is cut back to its whole lines; the run stops as before."""
    import errno
    import io

    from target_warehouse_seg import target as target_module

    path = tmp_path / "state-out.jsonl"
    with path.open("wb") as file:
        monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(file, write_through=True))
        target_module._write_whole_line(b'{"bookmarks":{"a":1}}\n')
        real_write = os.write
        calls = []

        def disk_fills(descriptor: int, data: bytes) -> int:
            calls.append(len(data))
            if len(calls) == 1:
                return real_write(descriptor, bytes(data[:7]))  # part of the line fits
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(target_module.os, "write", disk_fills)
        with pytest.raises(OSError, match="No space left"):
            target_module._write_whole_line(b'{"bookmarks":{"a":2}}\n')
        monkeypatch.setattr(target_module.os, "write", real_write)
        target_module._write_whole_line(b'{"bookmarks":{"a":3}}\n')  # after a cut, lines stay whole
    assert path.read_bytes() == b'{"bookmarks":{"a":1}}\n{"bookmarks":{"a":3}}\n'
    assert calls == [22, 15]
