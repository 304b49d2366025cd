"""Round trips to PostgreSQL: a warehouse is often in another zone or region than the job (2 to 30 ms
away), where every request the target waits for costs that much. A first run creates a table with a
statement per column (its comment); each DDL statement took three requests (setting lock_timeout,
the statement, restoring it), and new columns one ALTER TABLE each: 8,193 requests for a whole org's
first sync (2,469 columns), two and a half minutes at 20 ms. Counted here by a relay between the
target and the server, which counts the messages the target sends."""

from __future__ import annotations

import contextlib
import socket
import threading
import typing as t
from collections.abc import Iterator

import pytest
from conftest import Warehouse, record, schema, state, to_lines
from psycopg.conninfo import conninfo_to_dict


class CountingRelay:
    """Relays TCP connections to the server, counting the chunks clients send (one per request the
    client then waits on, as a client sends a request whole and waits for its answer)."""

    def __init__(self, host: str, port: int) -> None:
        self._server = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.sent = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._server)
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if counted:
                    with self._lock:
                        self.sent += 1
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def relayed(postgres_database: str, tmp_path) -> Iterator[tuple[Warehouse, CountingRelay]]:
    parts = conninfo_to_dict(postgres_database)
    relay = CountingRelay(parts.get("host") or "127.0.0.1", int(parts.get("port") or 5432))
    url = f"postgresql://{parts.get('user', 'postgres')}@127.0.0.1:{relay.port}/{parts['dbname']}"
    try:
        yield Warehouse("postgres", {"engine": "postgres", "sqlalchemy_url": url}, tmp_path=tmp_path), relay
    finally:
        relay.close()


def _streams(count: int, width: int, first: int = 0) -> dict[str, dict[str, t.Any]]:
    return {
        f"object_{number}": {"id": {"type": "string"}}
        | {f"field_{n}_c": {"type": ["null", "string"]} for n in range(first, first + width)}
        for number in range(count)
    }


def _run(warehouse: Warehouse, streams: dict[str, dict[str, t.Any]]) -> None:
    messages: list[t.Any] = []
    for stream, properties in streams.items():
        messages += [schema(stream, properties), record(stream, {"id": "1"}), state(stream)]
    done = warehouse.cli(to_lines(messages))
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_first_run_creates_its_tables_in_few_round_trips(relayed) -> None:
    warehouse, relay = relayed
    _run(warehouse, _streams(5, 60))  # 305 columns: 1,013 requests before
    assert relay.sent < 120, relay.sent  # 83 now
    assert len(warehouse.columns("object_4")) == 63
    comments = warehouse.query(
        "SELECT count(*) FROM pg_description d JOIN pg_class c ON c.oid = d.objoid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'salesforce' AND d.objsubid > 0"
    )
    assert comments == [(5 * 61,)]  # each property's column says which property it holds


def test_new_columns_are_added_in_few_round_trips(relayed) -> None:
    warehouse, relay = relayed
    _run(warehouse, _streams(1, 10))
    before = relay.sent
    _run(warehouse, {"object_0": _streams(1, 10)["object_0"] | _streams(1, 100, first=10)["object_0"]})
    assert relay.sent - before < 40, relay.sent - before  # 26 now, 624 before
    assert len(warehouse.columns("object_0")) == 113
