"""The loader thread: owns the engine, applies units of work in order, emits STATE after each commit.

A *unit* is everything the target flushed at once: one batch per stream with pending records, the
records set aside for quarantine, and the latest STATE received before the flush. The unit commits in
one transaction; only then is its STATE written to stdout. Units run one at a time on a single worker
thread, so while the database works on one unit the main thread decodes and converts the next (the
database driver releases the GIL while it waits), and at most two units are in memory.

When the database refuses a unit, the loader rolls back and finds the refused row: COPY names its
line, otherwise each batch is tried alone and the failing one is bisected (every try rolled back).
With ``on_invalid_record: fail`` that row's input line is reported and the run stops; with
``quarantine`` the row joins the rejected records and the unit is applied again without it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import sys
import threading
import time
import typing as t
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from target_warehouse_seg.convert import json_encoder
from target_warehouse_seg.engines import (
    BatchColumn,
    Column,
    Engine,
    LoadBatch,
    Rejected,
    RetryUnit,
    RowRejected,
    TableInfo,
)
from target_warehouse_seg.errors import ConnectionLost, DatabaseError, InvalidRecord, widening_conflict
from target_warehouse_seg.pauses import Pauses
from target_warehouse_seg.stopping import exit_status, on_stop, stop_requested, stopped, wait_or_stop
from target_warehouse_seg.typemap import Kind, holds

logger = logging.getLogger("target-warehouse-seg")
_NO_STATE = object()


class _Skipped(Exception):
    """A unit not applied because an earlier one failed (that failure is the one reported)."""


@dataclass
class Unit:
    batches: list[LoadBatch] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    state: t.Any = _NO_STATE

    @property
    def has_state(self) -> bool:
        return self.state is not _NO_STATE

    @property
    def row_count(self) -> int:
        return sum(batch.row_count for batch in self.batches)


# How long the main thread may keep the GIL while the loader thread waits for it (Python's default is
# 5 ms). The database drivers release the GIL while they work, but take it back in between: DuckDB's
# Python client takes it after every task of a query (to check for Ctrl-C), so with the default a
# statement waited up to 5 ms each time for the main thread, which decodes records all along; DuckDB's
# statements ran 1.5-2x slower than alone. The main thread keeps its C calls short for the same
# reason (the reader's blocks are small).
GIL_SWITCH_SECONDS = 0.0001
# When the connection breaks (a server restart, a failover, a network cut), the loader connects again
# after a pause (1 s, then twice as long each time, at most 30 s) and applies the unit in flight again,
# for at most 5 minutes in all before it gives up; a commit resets the count.
RECONNECT_FIRST_SECONDS = 1.0
RECONNECT_MAX_SECONDS = 30.0
RECONNECT_LIMIT_SECONDS = 300.0
# After SIGTERM or SIGINT, how long a unit in flight may take to commit before its statement is
# cancelled (it usually commits within a second or two; a statement waiting on another session's lock
# could hold the process for as long as that session runs).
STOP_GRACE_SECONDS = 10.0
# How long the loader keeps cancelling a unit that does not end before the process exits without it: a
# database that takes the cancel but never answers (a frozen server process, a hung disk under it, a
# commit waiting for a synchronous replica that is down) kept the run alive after SIGTERM until a
# scheduler killed it. Exiting is safe: no STATE was written for the unit, and the server rolls back an
# unfinished transaction whose connection is gone.
STOP_CANCEL_LIMIT_SECONDS = 20.0


def _exit_without(unit: Unit, phase: str) -> None:
    """End the process now, the unit in flight unfinished (see STOP_CANCEL_LIMIT_SECONDS). Every STATE
    written went straight to stdout's file descriptor, and log handlers flush each line. ``phase``:
    "writing", "committing" (the outcome unknown) or "committed" (work after the commit: its STATE was
    written by the caller)."""
    outcome = {
        "writing": "nothing of it is written, and a rerun from the last STATE written loads it",
        "committing": (
            "it was committing, so whether it is written is unknown: a rerun from the last STATE written "
            "loads it again (a stream without key properties may then hold its rows twice)"
        ),
        "committed": "it is committed, and its STATE is written",
    }[phase]
    logger.error(
        "the database has not ended the cancelled batch (%s row(s)) %.0f s after cancelling it (a server, "
        "disk or network that does not answer): exiting without waiting for it; %s",
        f"{unit.row_count:,}",
        STOP_CANCEL_LIMIT_SECONDS,
        outcome,
    )
    os._exit(exit_status())


class Loader:
    """Runs engine work on one thread; ``submit`` waits for the previous unit before queueing."""

    def __init__(self, engine: Engine, *, emit_state: t.Callable[[t.Any], None], quarantine: bool) -> None:
        self.engine = engine
        self._emit_state = emit_state
        self._quarantine = quarantine
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="target-warehouse-seg-loader")
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_SECONDS))
        self._queued: list[Future[None]] = []
        self._failed = False
        self.rows_committed = 0
        self.rows_rejected = 0
        self._started = time.monotonic()
        self._reconnect_pauses = Pauses(
            RECONNECT_FIRST_SECONDS, RECONNECT_MAX_SECONDS, RECONNECT_LIMIT_SECONDS
        )
        self._in_flight: Unit | None = None
        self._committing = False  # the unit in flight is in its engine's commit
        self._forget_stop = on_stop(self._cancel_after_grace)

    def call(self, function: t.Callable[..., t.Any], *args: t.Any) -> t.Any:
        """Run ``function(*args)`` on the loader thread after the queued work, and return its result."""
        return self._executor.submit(function, *args).result()

    def submit(self, unit: Unit) -> None:
        """Queue a unit; one with rows first waits for the units before it (bounding memory).

        A state-only unit just queues: its STATE is written once the units before it commit.
        Raises the error of an earlier unit, if one failed.
        """
        if unit.batches or unit.rejected:
            self.wait()
        else:
            self._raise_failures()
        self._queued.append(self._executor.submit(self._apply, unit))

    def finishing(self) -> None:
        """Let the engine know, on the loader thread, that the unit submitted next is the run's last."""
        self._queued.append(self._executor.submit(self.engine.finishing))

    def settle(self) -> None:
        """Once every unit has committed (errors raised), the engine's ``settle``."""
        self.wait()
        self.call(self.engine.settle)

    def _raise_failures(self) -> None:
        for future in [future for future in self._queued if future.done()]:
            self._queued.remove(future)
            future.result()

    def wait(self) -> None:
        """Wait for every queued unit, raising the first error (not the skips that follow it)."""
        queued, self._queued = self._queued, []
        first: BaseException | None = None
        # The main thread only waits now: the engine may use its core until the units are done.
        lent = any(not future.done() for future in queued) and self.engine.lend_core(True)
        try:
            for future in queued:
                error = future.exception()
                if error is not None and first is None:
                    first = error
        finally:
            if lent:
                self.engine.lend_core(False)
        if first is not None:
            raise first

    def close(self) -> None:
        """Finish queued work (errors included) and close the connection."""
        try:
            self.wait()
        finally:
            try:
                self._executor.submit(self.engine.close).result()
            finally:
                self._executor.shutdown(wait=True)
                self._forget_stop()

    def _cancel_after_grace(self) -> None:
        """On a stop request (in the signal handler: must not block): give the unit in flight
        STOP_GRACE_SECONDS to commit, then cancel its statement."""
        self._cancel_later(STOP_GRACE_SECONDS, warned=False)

    def _cancel_later(self, seconds: float, *, warned: bool, since: float | None = None) -> None:
        timer = threading.Timer(seconds, self._cancel_in_flight, kwargs={"warned": warned, "since": since})
        timer.daemon = True
        timer.start()

    def _cancel_in_flight(self, *, warned: bool, since: float | None = None) -> None:
        unit = self._in_flight
        if unit is None:
            return
        if not warned:
            logger.warning(
                "the batch in flight (%s row(s)) has not committed %.0f s after the stop: cancelling it; "
                "its rows are not written, and a rerun from the last STATE written loads them",
                f"{unit.row_count:,}",
                STOP_GRACE_SECONDS,
            )
        since = time.monotonic() if since is None else since
        if time.monotonic() - since >= STOP_CANCEL_LIMIT_SECONDS:
            phase = "committed" if self._committing and self.engine.committed else self._phase()
            if phase == "committed" and unit.has_state:
                try:
                    self._emit_state(unit.state)  # its rows are in, whatever the engine does after
                except Exception as error:  # stdout gone: the exit below must still come
                    logger.error("the committed batch's STATE could not be written: %s", error)
            _exit_without(unit, phase)
        self.engine.interrupt()
        # A cancel that came between two statements cancelled nothing: try again until the unit ends.
        self._cancel_later(1.0, warned=True, since=since)

    def _phase(self) -> str:
        return "committing" if self._committing else "writing"

    # On the loader thread ------------------------------------------------------------------------

    def _apply(self, unit: Unit) -> None:
        try:
            if self._failed:
                # An earlier unit failed: nothing after it may commit, and no later STATE may be written.
                raise _Skipped("an earlier unit failed")
            if unit.batches or unit.rejected:
                self._in_flight = unit
                started = time.monotonic()
                unexplained = 0
                while True:
                    try:
                        self._transaction_unless_stopped(unit)
                        break
                    except RetryUnit as retry:  # rolled back: nothing is held while it waits
                        wait_or_stop(retry.delay)
                        continue
                    except ConnectionLost as lost:
                        if self.reconnect_after(lost, unit):
                            break  # the commit went through before the connection broke
                        continue
                    except RowRejected as refusal:
                        if not self._handle_refusal(unit):
                            # No batch alone is refused: a passing cause (another run's DDL). Once.
                            unexplained += 1
                            if unexplained > 1:
                                raise DatabaseError(
                                    f"the database refused a load twice ({refusal}) but none of its "
                                    "batches alone; nothing of it was written"
                                ) from None
                self._reconnect_pauses.reset()
                self.rows_committed += unit.row_count
                self.rows_rejected += len(unit.rejected)
                self._log(unit, time.monotonic() - started)
        except BaseException as error:
            self._failed = True
            if stop_requested() and not isinstance(error, SystemExit):
                # Cancelled, or failed for a cause the stop brought (a lost lock wait): the stop speaks.
                raise stopped() from error
            raise
        finally:
            self._in_flight = None
            for batch in unit.batches:
                self.engine.codec.release(batch.payload)
        if unit.has_state:
            self._emit_state(unit.state)

    def _transaction_unless_stopped(self, unit: Unit) -> None:
        """A unit's transaction; once a stop is requested, any error of it ends the unit (no retry, no
        search for a refused row: a cancelled statement fails as the stop's doing)."""
        try:
            self._transaction(unit.batches, unit.rejected, commit=True)
        except Exception as error:
            if stop_requested():
                raise stopped() from error
            raise

    def reconnect_after(self, lost: ConnectionLost, unit: Unit | None = None) -> bool:
        """On the loader thread, after the connection broke in ``unit`` (or in DDL): connect again,
        pausing between tries, so that the caller can apply its work again. Returns True when the
        connection broke while committing and the database says that commit went through (the unit is
        done). Applying a unit again is harmless (upserts of the same rows, the same deletes) but for
        appended rows (streams without key properties, quarantined records): when the commit's outcome
        cannot be known, the run stops rather than append them twice."""
        self._keep_connecting(
            lost,
            self.engine.reconnect,
            "connecting again in %.0f s, then loading the batch in flight again",
            "could not connect again in {spent:.0f} s. Everything before the last STATE written is "
            "committed; a rerun from it loads the rest",
        )
        if not lost.while_committing:
            return False
        committed = self.engine.lost_commit_outcome()
        if committed is not None:
            return committed
        batches = unit.batches if unit else []
        appended = sorted({batch.stream for batch in batches if not batch.key_properties})
        if unit and unit.rejected:
            appended.append("quarantined records")
        if appended:
            raise DatabaseError(
                f"{lost}, while committing rows that are appended ({', '.join(appended)}): whether they "
                "were committed is unknown, so they are not applied again (they would be appended twice); "
                "a rerun from the last STATE written loads them again"
            ) from None
        return False

    def connect_when_ready(self, busy: ConnectionLost) -> None:
        """On the loader thread, when the first connection was refused for now (the server's connection
        slots all taken, as when many jobs start on the hour, or the server starting up): try again,
        pausing between tries, within the same limit as a broken connection's."""
        self._keep_connecting(
            busy, self.engine.connect, "trying again in %.0f s", "still refused after {spent:.0f} s of trying"
        )
        self._reconnect_pauses.reset()

    def _keep_connecting(
        self, lost: ConnectionLost, connect: t.Callable[[], None], waiting: str, giving_up: str
    ) -> None:
        """Call ``connect`` after growing pauses until it connects, warning ``lost; waiting`` before each
        pause; past the pauses' limit, raise ``lost; giving_up`` (its ``{spent}``: the seconds spent)."""
        while True:
            delay = self._reconnect_pauses.next()
            if delay is None:
                spent = self._reconnect_pauses.spent
                raise DatabaseError(f"{lost}; {giving_up.format(spent=spent)}") from None
            logger.warning("%s; " + waiting, lost, delay)
            wait_or_stop(delay)
            try:
                connect()
                return
            except ConnectionLost as again:
                lost = again

    def _transaction(self, batches: list[LoadBatch], rejected: list[Rejected], *, commit: bool) -> None:
        engine = self.engine
        engine.begin()
        try:
            for batch in batches:
                self._evolve(batch)
                engine.load(batch)
            engine.quarantine(rejected)
            if commit:
                self._committing = True
                try:
                    engine.commit()  # a failed commit undoes the transaction (out of memory: RetryUnit)
                finally:
                    self._committing = False
        except BaseException:
            engine.rollback()
            engine.forget()  # DDL inside the transaction was undone too
            raise
        if not commit:
            engine.rollback()
            engine.forget()

    def _evolve(self, batch: LoadBatch) -> None:
        """Widen columns whose values outgrew them within this batch (inside the transaction)."""
        info = self.engine.table(batch.table)
        planned = {column.name for column, _ in _outgrown(info, batch)} if info is not None else set()
        if not planned:
            return
        self.engine.lock_for_ddl(batch.table)  # another run may have widened them meanwhile
        info = self.engine.table(batch.table)
        if info is None:
            return
        outgrown = _outgrown(info, batch)
        for name in sorted(planned - {column.name for column, _ in outgrown}):
            # The sink announced a widening of this column; say why the table shows another type.
            logger.info(
                "table %s: column %s is %s already (another run widened it); its values load into that",
                self.engine.qualified(batch.table),
                name,
                t.cast(Kind, info.columns[name].kind).value,
            )
        for column, current in outgrown:
            obstacle = self.engine.widening_obstacle(batch.table, column.name)
            if obstacle is not None:
                raise widening_conflict(
                    batch.stream,
                    f"{self.engine.schema}.{batch.table}",  # as the SCHEMA's conflicts name it
                    column.name,
                    current.stored_type,
                    t.cast(Kind, column.kind).value,
                    "a value of this run",
                    obstacle,
                )
            replication = column.name == batch.replication_key
            self.engine.widen_column(batch.table, column.name, column.kind, replication=replication)

    def _try(self, batch: LoadBatch) -> RowRejected | None:
        while True:
            try:
                self._transaction([batch], [], commit=False)
            except RetryUnit as retry:
                wait_or_stop(retry.delay)
                continue
            except ConnectionLost as lost:  # a try is rolled back anyway: run it again
                self.reconnect_after(lost)
                continue
            except RowRejected as refusal:
                return refusal
            return None

    def _try_rows(self, batch: LoadBatch, rows: list[int]) -> RowRejected | None:
        subset = self._subset(batch, rows)
        try:
            return self._try(subset)
        finally:
            self.engine.codec.release(subset.payload)

    def _handle_refusal(self, unit: Unit) -> bool:
        """Find the batch and the record the database refused, and quarantine the record or raise its
        error; False when no batch alone is refused. Without quarantine the error is the refused record
        with the first input line among the unit's batches (one per stream, in no order of lines)."""
        errors: list[InvalidRecord] = []
        for position, batch in enumerate(unit.batches):
            refusal = self._try(batch)
            if refusal is None:
                continue
            repaired = self.engine.codec.repair(batch.payload)
            if repaired is not None:  # the unit is tried again with the repaired batch
                logger.info("stream %s: retrying a refused batch re-encoded (%s)", batch.stream, refusal)
                unit.batches[position] = dataclasses.replace(batch, payload=repaired)
                self.engine.codec.release(batch.payload)
                return True
            index, refusal = self._locate(batch, refusal)
            record = self.engine.codec.row(batch.columns, batch.payload, index)
            field = batch.property_of(refusal.column) or _blame(record, refusal)
            error = InvalidRecord(
                refusal.message,
                line=batch.lines[index],
                stream=batch.stream,
                key={prop: record.get(prop) for prop in batch.key_properties} or None,
                field=field,
            )
            if not self._quarantine:
                errors.append(error)
                continue
            unit.rejected.append(
                Rejected(
                    batch.stream,
                    error.line,
                    error.key,
                    error.field,
                    error.problem,
                    json_encoder.encode(record).decode("utf-8"),
                )
            )
            logger.warning("quarantined: %s", error)
            remaining = [row for row in range(batch.row_count) if row != index]
            if remaining:
                unit.batches[position] = self._subset(batch, remaining)
            else:
                del unit.batches[position]
            self.engine.codec.release(batch.payload)
            return True
        if errors:
            raise min(errors, key=lambda error: t.cast(int, error.line))
        return False

    def _locate(self, batch: LoadBatch, refusal: RowRejected) -> tuple[int, RowRejected]:
        """The index of a row the database refuses, by COPY's line or by bisection."""
        if refusal.index is not None and refusal.index < batch.row_count:
            return refusal.index, refusal
        candidates = list(range(batch.row_count))
        while len(candidates) > 1:
            half = candidates[: len(candidates) // 2]
            attempt = self._try_rows(batch, half)
            if attempt is not None:
                if attempt.index is not None and attempt.index < len(half):
                    return half[attempt.index], attempt
                candidates, refusal = half, attempt
            else:
                candidates = candidates[len(candidates) // 2 :]
        single = self._try_rows(batch, candidates)
        return candidates[0], single or refusal

    def _subset(self, batch: LoadBatch, rows: list[int]) -> LoadBatch:
        return dataclasses.replace(
            batch,
            payload=self.engine.codec.subset(batch.payload, rows),
            lines=[batch.lines[row] for row in rows],
        )

    def _log(self, unit: Unit, seconds: float) -> None:
        per_stream = ", ".join(f"{batch.stream} {batch.row_count:,}" for batch in unit.batches)
        rejected = f", {len(unit.rejected)} rejected" if unit.rejected else ""
        elapsed = time.monotonic() - self._started
        rate = self.rows_committed / elapsed if elapsed > 0 else 0.0
        logger.info(
            "committed %s row(s) (%s)%s in %.2f s; %s row(s) so far, %.0f rows/s",
            f"{unit.row_count:,}",
            per_stream or "none",
            rejected,
            seconds,
            f"{self.rows_committed:,}",
            rate,
        )


def _blame(record: dict[str, t.Any], refusal: RowRejected) -> str | None:
    """The property whose value the database quotes in its message (it names no column)."""
    quoted = set(re.findall(r'"([^"]*)"', refusal.message))
    return next((prop for prop, value in record.items() if value is not None and str(value) in quoted), None)


def _outgrown(info: TableInfo, batch: LoadBatch) -> list[tuple[BatchColumn, Column]]:
    """The batch's columns whose values need a column of the table wider than it is, each with the
    table's column."""
    outgrown = []
    for column in batch.columns:
        current = info.columns.get(column.name)
        if current is not None and current.kind is not None and not holds(current.kind, column.kind):
            outgrown.append((column, current))
    return outgrown
