"""PostgreSQL: when the connection breaks mid-run (a server restart, a failover, an idle-session killer,
a network cut), the target connects again and loads the batch in flight again, so the run ends as if
nothing happened; when the server stays away, it stops with one line, and a rerun from its last STATE
restores everything. The server really ends the target's session here (`pg_terminate_backend`)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
import time
import types
import typing as t
from pathlib import Path

import psycopg
import pytest
from conftest import Warehouse, json_lines, record, schema, start_target, state, to_lines
from stdout_capture import captured_stdout

from target_warehouse_seg import loader as loader_module
from target_warehouse_seg.engines import RowRejected
from target_warehouse_seg.errors import ConnectionLost, DatabaseError

ROWS = 6000
PROPERTIES = {
    "id": {"type": "integer"},
    "name": {"type": ["null", "string"]},
    "is_deleted": {"type": ["null", "boolean"]},
    "system_modstamp": {"type": "string", "format": "date-time"},
}


def tap_output(rows: int = ROWS) -> list[t.Any]:
    """Updates of 2,000 keys, some soft-deleted, a STATE every 200 records, a new property halfway."""
    properties = dict(PROPERTIES)
    messages: list[t.Any] = [schema("deals", properties, bookmark=["system_modstamp"])]
    for index in range(rows):
        if index == rows // 2:
            properties["stage"] = {"type": ["null", "string"]}
            messages.append(schema("deals", dict(properties), bookmark=["system_modstamp"]))
        values = {
            "id": index % 2000,
            "name": f"deal {index}",
            "is_deleted": index % 17 == 0,
            "system_modstamp": f"2024-01-01T{index // 3600:02d}:{index // 60 % 60:02d}:{index % 60:02d}Z",
        }
        if "stage" in properties:
            values["stage"] = f"stage {index}"
        messages.append(record("deals", values))
        if index % 200 == 199:
            messages.append(state({"position": index}))
    return messages


def expected_rows(messages: list[t.Any], hard_delete: bool) -> list[tuple]:
    latest: dict[int, dict[str, t.Any]] = {}
    for message in messages:
        if message["type"] == "RECORD":
            latest[message["record"]["id"]] = message["record"]
    return sorted(
        (key, values["name"], values["is_deleted"], values.get("stage"))
        for key, values in latest.items()
        if not (hard_delete and values["is_deleted"])
    )


def stored_rows(pg: Warehouse) -> list[tuple]:
    return sorted(pg.query("SELECT id, name, is_deleted, stage FROM salesforce.deals"))


class CuttingInput:
    """Singer lines read in chunks (as the target reads a file), calling ``action`` before line ``at``."""

    def __init__(self, lines: list[str], at: int, action: t.Callable[[], None]) -> None:
        self.lines, self.at, self.action, self.position = lines, at, action, 0

    def readlines(self, size: int) -> list[str]:
        end = min(len(self.lines), self.position + 50)
        if self.position < self.at <= end:
            end = self.at
        if self.position == self.at:
            self.action()
        chunk, self.position = self.lines[self.position : end], end
        return chunk


def run_in_process(pg: Warehouse, source: t.Any, **settings: t.Any) -> tuple[list[t.Any], Exception | None]:
    from target_warehouse_seg.target import TargetWarehouseSeg

    error = None
    with captured_stdout() as captured:
        try:
            target = TargetWarehouseSeg(config=pg.config(**settings))
            target.process_lines(source)
            target.process_endofpipe()
        except Exception as caught:
            error = caught
    return json_lines(captured.getvalue().decode("utf-8")), error


def terminate_target_sessions(database_url: str) -> int:
    """End the target's sessions on that database, as an administrator would (from another database:
    the target's may be refusing connections)."""
    base, _, database = database_url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'target-warehouse-seg' AND datname = %s",
            (database,),
        ).fetchall()
    return len(rows)


def feed_target(
    pg: Warehouse,
    tmp_path: Path,
    messages: list[t.Any],
    gates: t.Sequence[tuple[int, threading.Event]] = (),
    **settings: t.Any,
) -> tuple[subprocess.Popen, list[str], threading.Thread]:
    """The console script, fed `messages` by a thread; its stderr lines gather in the list. Each gate
    `(position, event)` holds back the records after the STATE of that position until the event is set,
    so the target cannot finish (and close its session) before the test has done its part."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps(pg.config(**settings)))
    process = start_target(config)
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    errors: list[str] = []
    threading.Thread(target=lambda: errors.extend(t.cast(t.IO[str], process.stderr)), daemon=True).start()

    def feed() -> None:
        stdin = t.cast(t.IO[str], process.stdin)
        start = 0
        for position, event in gates:
            cut = 1 + next(
                index
                for index, message in enumerate(messages)
                if message["type"] == "STATE" and message["value"]["position"] == position
            )
            stdin.write(to_lines(messages[start:cut]))
            stdin.flush()
            assert event.wait(timeout=120), f"the test never let the records after position {position} go"
            start = cut
        stdin.write(to_lines(messages[start:]))
        stdin.close()

    feeder = threading.Thread(target=feed)
    feeder.start()
    return process, errors, feeder


@pytest.mark.parametrize("hard_delete", [False, True])
def test_the_run_goes_on_after_its_session_is_killed(pg: Warehouse, tmp_path, hard_delete: bool) -> None:
    messages = tap_output()
    # Kill its session after the 3rd STATE, then again (while it may be committing, loading or between
    # units) after the 12th; each time the server rolls back what was in flight. The input after the 7th
    # and the 15th STATE waits for the kill, so a target that runs ahead cannot have ended its session.
    kills = {3: threading.Event(), 12: threading.Event()}
    process, errors, feeder = feed_target(
        pg,
        tmp_path,
        messages,
        gates=[(1399, kills[3]), (2999, kills[12])],
        batch_size_rows=250,
        hard_delete=hard_delete,
    )
    states, killed = [], 0
    url = pg.base_config["sqlalchemy_url"]
    for line in process.stdout:
        states.append(json.loads(line))
        if len(states) in kills:
            killed += terminate_target_sessions(url)
            kills[len(states)].set()
    feeder.join()
    assert process.wait(timeout=120) == 0, "".join(errors)[-3000:]
    assert killed == 2
    assert sum("the connection broke" in line and "connecting again" in line for line in errors) >= 2
    assert states[-1] == {"position": ROWS - 1}
    assert [s["position"] for s in states] == sorted(s["position"] for s in states)
    assert stored_rows(pg) == expected_rows(messages, hard_delete)


def test_a_server_that_refuses_connections_for_a_while_is_waited_for(pg: Warehouse, tmp_path) -> None:
    messages = tap_output(3000)
    database = pg.base_config["sqlalchemy_url"].rpartition("/")[2]
    admin_url = pg.base_config["sqlalchemy_url"].rpartition("/")[0] + "/postgres"
    refusing = threading.Event()
    process, errors, feeder = feed_target(
        pg, tmp_path, messages, gates=[(999, refusing)], batch_size_rows=250
    )
    states = []
    for line in process.stdout:
        states.append(json.loads(line))
        if len(states) == 2:
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
            terminate_target_sessions(pg.base_config["sqlalchemy_url"])
            refusing.set()  # the records that follow make the target connect again, and be refused
            time.sleep(4)  # the target's first tries are refused
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
    feeder.join()
    assert process.wait(timeout=120) == 0, "".join(errors)[-3000:]
    refused = [line for line in errors if "cannot connect" in line and "connecting again" in line]
    assert refused, "".join(errors)[-3000:]
    assert states[-1] == {"position": 2999}
    assert stored_rows(pg) == expected_rows(messages, hard_delete=False)


def test_a_server_that_stays_away_stops_the_run_with_one_line(
    pg: Warehouse, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loader_module, "RECONNECT_FIRST_SECONDS", 0.2)
    monkeypatch.setattr(loader_module, "RECONNECT_LIMIT_SECONDS", 1.0)
    database = pg.base_config["sqlalchemy_url"].rpartition("/")[2]
    messages = tap_output(2000)
    cut = next(i for i, m in enumerate(messages) if m["type"] == "STATE" and m["value"]["position"] == 999)

    def close_the_doors() -> None:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        terminate_target_sessions(pg.base_config["sqlalchemy_url"])

    text = to_lines(messages).splitlines(keepends=True)
    try:
        states, error = run_in_process(pg, CuttingInput(text, cut + 1, close_the_doors), batch_size_rows=250)
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
    run = types.SimpleNamespace(states=states, error=error)
    assert isinstance(run.error, DatabaseError), run.error
    message = str(run.error)
    assert "could not connect again" in message and "\n" not in message
    assert run.states and run.states[-1]["position"] <= 999
    # A rerun from the last STATE written restores everything.
    last = run.states[-1]["position"]
    resume = next(
        i for i, m in enumerate(messages) if m["type"] == "STATE" and m["value"]["position"] == last
    )
    schemas = {m["stream"]: m for m in messages[:resume] if m["type"] == "SCHEMA"}
    rerun = pg.run([*schemas.values(), *messages[resume + 1 :]], batch_size_rows=250)
    assert rerun.error is None
    assert stored_rows(pg) == expected_rows(messages, hard_delete=False)


def test_rows_appended_while_the_connection_broke_committing_are_not_appended_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A commit whose outcome the database cannot tell: upserts may be applied again, appended rows
    (streams without key properties, quarantined records) may not. One it can tell is not applied
    again when it went through."""
    monkeypatch.setattr(loader_module, "RECONNECT_FIRST_SECONDS", 0.0)
    outcome: list[bool | None] = [None]
    engine = types.SimpleNamespace(reconnect=lambda: None, lost_commit_outcome=lambda: outcome[0])
    loader = loader_module.Loader(t.cast(t.Any, engine), emit_state=lambda value: None, quarantine=False)
    try:
        keyless = types.SimpleNamespace(stream="events", key_properties=[])
        keyed = types.SimpleNamespace(stream="deals", key_properties=["id"])
        lost = ConnectionLost("PostgreSQL at db: the connection broke: gone", while_committing=True)
        with pytest.raises(DatabaseError, match=r"rows that are appended \(events\)"):
            loader.reconnect_after(lost, loader_module.Unit(batches=t.cast(t.Any, [keyed, keyless])))
        quarantining = loader_module.Unit(batches=t.cast(t.Any, [keyed]), rejected=t.cast(t.Any, [object()]))
        with pytest.raises(DatabaseError, match=r"rows that are appended \(quarantined records\)"):
            loader.reconnect_after(lost, quarantining)
        assert loader.reconnect_after(lost, loader_module.Unit(batches=t.cast(t.Any, [keyed]))) is False
        before_commit = ConnectionLost("PostgreSQL at db: the connection broke: gone")
        assert (
            loader.reconnect_after(before_commit, loader_module.Unit(batches=t.cast(t.Any, [keyless])))
            is False
        )
        for known in (True, False):
            outcome[0] = known
            assert loader.reconnect_after(lost, loader_module.Unit(batches=t.cast(t.Any, [keyless]))) is known
    finally:
        loader._executor.shutdown(wait=True)


class CuttingProxy:
    """A TCP proxy to PostgreSQL that cuts the client's connection once, at the first message holding
    ``cut`` sent after one holding ``arm`` (``arm`` None: at once). With ``deliver``, that message reaches
    the server first and the server's answer goes nowhere (a COMMIT made, its answer lost)."""

    def __init__(self, server_port: int, cut: bytes, *, arm: bytes | None = None, deliver: bool = False):
        self.server_port = server_port
        self.cut_marker, self.arm_marker, self.deliver = cut, arm, deliver
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.armed = arm is None
        self.cut = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, url: str) -> str:
        return url.replace(f":{self.server_port}/", f":{self.port}/")

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                server = socket.create_connection(("127.0.0.1", self.server_port))
                muted = threading.Event()
                threading.Thread(target=self._upstream, args=(client, server, muted), daemon=True).start()
                threading.Thread(target=self._downstream, args=(server, client, muted), daemon=True).start()

    def _upstream(self, client: socket.socket, server: socket.socket, muted: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                if self.arm_marker is not None and self.arm_marker in data and not self.cut.is_set():
                    self.armed = True
                if self.cut_marker in data and self.armed and not self.cut.is_set():
                    muted.set()
                    if self.deliver:
                        server.sendall(data)
                        time.sleep(0.5)  # the server acts on it; its answer goes nowhere
                    self.cut.set()
                    break
                server.sendall(data)
        for end in (client, server):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def _downstream(self, server: socket.socket, client: socket.socket, muted: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := server.recv(65536):
                if not muted.is_set():
                    client.sendall(data)

    def close(self) -> None:
        self.listener.close()


def server_port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


def test_a_connection_cut_at_the_schema_check_is_made_again(
    pg: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's first statements (does the schema exist?) meet a broken connection as any other do."""
    monkeypatch.setattr(loader_module, "RECONNECT_FIRST_SECONDS", 0.1)
    proxy = CuttingProxy(server_port(pg.base_config["sqlalchemy_url"]), cut=b"pg_namespace")
    try:
        lines = [schema("deals", {"id": {"type": "integer"}}), record("deals", {"id": 1}), state(1)]
        run = pg.run(lines, sqlalchemy_url=proxy.url(pg.base_config["sqlalchemy_url"]))
    finally:
        proxy.close()
    assert proxy.cut.is_set(), "the proxy never cut the schema check"
    assert run.error is None, run.error
    assert run.states == [1] and pg.count("deals") == 1


def test_a_database_gone_for_good_stops_the_run_at_once(pg: Warehouse, tmp_path) -> None:
    """Reconnecting meets a refusal no wait can cure (the database dropped; a rotated password, a dropped
    role alike): the run stops at once, not after 5 minutes of tries."""
    messages = tap_output(1200)
    gate = threading.Event()
    process, errors, feeder = feed_target(pg, tmp_path, messages, gates=[(399, gate)], batch_size_rows=250)
    url = pg.base_config["sqlalchemy_url"]
    base, _, database = url.rpartition("/")
    assert process.stdout is not None
    process.stdout.readline()  # a STATE: a unit committed
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
    started = time.monotonic()
    gate.set()
    feeder.join(timeout=60)
    assert process.wait(timeout=60) == 1
    assert time.monotonic() - started < 30
    stderr = "".join(errors)
    assert f'database "{database}" does not exist' in stderr
    assert "connecting again in" in stderr and stderr.count("connecting again in") == 1, stderr[-3000:]


def test_a_commit_cut_off_after_the_server_made_it_is_not_applied_again(pg: Warehouse) -> None:
    """The server committed, the answer never came: the target asks the server (txid_status) and goes
    on. Appended rows (a stream without key properties, a quarantined record) were written twice, or
    the run stopped, when the outcome was not asked."""
    url = pg.base_config["sqlalchemy_url"]
    proxy = CuttingProxy(server_port(url), cut=b"Q\x00\x00\x00\x0bCOMMIT\x00", arm=b"COPY", deliver=True)
    try:
        proxied = proxy.url(url)
        keyed = {"id": {"type": "integer"}, "amount": {"type": ["null", "integer"]}}
        lines = [schema("events", {"name": {"type": "string"}}, key=[]), schema("deals", keyed)]
        lines += [record("events", {"name": f"e{n}"}) for n in range(50)]
        lines += [record("deals", {"id": 1, "amount": 5}), record("deals", {"id": 2, "amount": "lots"})]
        lines.append(state(1))
        run = pg.run(lines, sqlalchemy_url=proxied, on_invalid_record="quarantine")
    finally:
        proxy.close()
    assert proxy.cut.is_set(), "the proxy never cut a commit"
    assert run.error is None, run.error
    assert run.states == [1]
    assert pg.count("events") == 50 and pg.count("deals") == 1 and pg.count("_rejected_records") == 1


def test_a_try_of_the_bisection_runs_again_once_connected_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding a refused row tries batches in rolled-back transactions: one that broke is tried again."""
    monkeypatch.setattr(loader_module, "RECONNECT_FIRST_SECONDS", 0.0)

    class FlakyEngine:
        def __init__(self) -> None:
            self.begins = self.reconnects = 0

        def begin(self) -> None:
            self.begins += 1
            if self.begins == 1:
                raise ConnectionLost("PostgreSQL at db: the connection broke: gone")

        def table(self, name: str) -> None:
            return None

        def load(self, batch: t.Any) -> None:
            raise RowRejected("value too long", index=0)

        def rollback(self) -> None: ...

        def forget(self) -> None: ...

        def reconnect(self) -> None:
            self.reconnects += 1

    engine = FlakyEngine()
    loader = loader_module.Loader(t.cast(t.Any, engine), emit_state=lambda value: None, quarantine=False)
    try:
        refusal = loader._try(t.cast(t.Any, types.SimpleNamespace(table="deals")))
    finally:
        loader._executor.shutdown(wait=True)
    assert isinstance(refusal, RowRejected) and refusal.message == "value too long"
    assert (engine.begins, engine.reconnects) == (2, 1)


@contextlib.contextmanager
def role_with_one_connection(pg: Warehouse) -> t.Iterator[str]:
    """A role that may hold one connection (CONNECTION LIMIT 1), owning the warehouse's schema: the URL
    the target connects with."""
    url = pg.base_config["sqlalchemy_url"]
    base, _, database = url.rpartition("/")
    role = f"one_{database}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 1')
        admin.execute(f'CREATE SCHEMA salesforce AUTHORIZATION "{role}"')
    try:
        yield f"{base.replace('//postgres@', f'//{role}@')}/{database}"
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("DROP SCHEMA salesforce CASCADE")
            admin.execute(f'DROP ROLE "{role}"')


def test_a_server_out_of_connection_slots_at_the_start_is_waited_for(pg: Warehouse) -> None:
    """Many jobs starting on the hour take a small server's every connection: the run's first connection
    was refused and it stopped; it now waits for a slot, as for a connection that broke."""
    messages = tap_output(600)
    with role_with_one_connection(pg) as url:
        holder = psycopg.connect(url)  # the role's one slot, taken by another job for 3 s
        threading.Timer(3.0, holder.close).start()
        run = pg.cli(to_lines(messages), sqlalchemy_url=url)
        assert run.returncode == 0, run.stderr[-2000:]
        waits = [line for line in run.stderr.splitlines() if "too many connections" in line]
        assert waits and all("trying again in" in line for line in waits), run.stderr[-2000:]
        assert run.states[-1] == {"position": 599}
        assert stored_rows(pg) == expected_rows(messages, hard_delete=False)


def test_a_server_that_keeps_refusing_at_the_start_stops_the_run_with_one_line(
    pg: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loader_module, "RECONNECT_FIRST_SECONDS", 0.2)
    monkeypatch.setattr(loader_module, "RECONNECT_LIMIT_SECONDS", 1.0)
    with role_with_one_connection(pg) as url, psycopg.connect(url):
        run = pg.run(tap_output(10), sqlalchemy_url=url)
    assert isinstance(run.error, DatabaseError), run.error
    message = str(run.error)
    assert "too many connections" in message and "still refused after" in message, message
    assert "\n" not in message and not run.states


def test_the_connection_sends_keepalives_unless_the_url_says_otherwise(pg: Warehouse) -> None:
    """An idle connection (the tap waiting for a Bulk job) sends TCP keepalives after a minute, so that a
    NAT gateway or a load balancer does not forget it and a dead one is noticed in two minutes."""
    import socket

    from target_warehouse_seg.engines.postgres import PostgresEngine

    url = pg.base_config["sqlalchemy_url"]
    for config_url, idle in ((url, 60), (f"{url}?keepalives_idle=25", 25)):
        engine = PostgresEngine.from_config(
            {"engine": "postgres", "sqlalchemy_url": config_url, "schema": "s"}
        )
        engine.connect()
        try:
            assert engine.connection.info.get_parameters()["connect_timeout"] == "20"
            with socket.socket(fileno=os.dup(engine.connection.fileno())) as sock:
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == idle
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 6
        finally:
            engine.close()
    with pytest.MonkeyPatch.context() as environment:  # libpq's own variable is kept
        environment.setenv("PGCONNECT_TIMEOUT", "7")
        engine = PostgresEngine.from_config({"engine": "postgres", "sqlalchemy_url": url, "schema": "s"})
        engine.connect()
        try:
            assert engine.connection.info.get_parameters()["connect_timeout"] == "7"
        finally:
            engine.close()


def test_a_server_that_never_answers_the_connection_stops_the_run_in_time(
    pg: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A port that accepts and says nothing (a half-dead server, a proxy with nothing behind it): libpq
    waited for ever. The target now gives up after `connect_timeout` (20 s unless the URL or
    PGCONNECT_TIMEOUT says otherwise; 2 s here)."""
    import socket

    from target_warehouse_seg.engines import postgres

    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    monkeypatch.setitem(postgres.NETWORK_DEFAULTS, "connect_timeout", "2")
    outcome: list[t.Any] = []
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/db"
        runner = threading.Thread(
            target=lambda: outcome.append(pg.run(tap_output(10), sqlalchemy_url=url)), daemon=True
        )
        runner.start()
        runner.join(timeout=15)
        assert outcome, "the target still waits for the server's answer"
    error = outcome[0].error
    assert isinstance(error, DatabaseError) and "cannot connect" in str(error) and "timeout" in str(error), (
        error
    )
