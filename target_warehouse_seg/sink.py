"""One stream's buffer: decode its records, check them, and build its batch payload chunk by chunk.

The hot path (``add``) is one msgspec decode into the stream's own record type (which type-checks
every value in C) and three list appends. Every ``chunk_rows`` records the chunk is converted column
by column (convert.py) into the engine's payload (COPY text, Arrow) and the decoded records are
dropped, so a batch costs about its payload size in memory, not its size as Python objects.

Unlike singer-sdk's ``Sink``, whose contract is one ``process_record`` call per record, this class
works on chunks; the target drives it directly.
"""

from __future__ import annotations

import datetime
import logging
import typing as t
from decimal import Decimal

import msgspec

from target_warehouse_seg import convert
from target_warehouse_seg.engines import BatchColumn, Codec, LoadBatch, Rejected
from target_warehouse_seg.errors import InvalidRecord, MissingKeyProperty
from target_warehouse_seg.plan import StreamPlan, utc_now

logger = logging.getLogger("target-warehouse-seg")

_generic = msgspec.json.Decoder(float_hook=Decimal)
Reject = t.Callable[[Rejected], None]


class StreamSink:
    """Buffers and converts one stream's records; ``take_batch`` hands the batch over for loading."""

    def __init__(self, plan: StreamPlan, codec: Codec, *, reject: Reject | None, chunk_values: int) -> None:
        self.plan = plan
        self._codec = codec
        self._reject = reject
        self._decode = plan.decoder.decode
        self._chunk_rows = max(256, min(20_000, chunk_values // max(1, len(plan.columns))))
        self._key_indexes = [
            index
            for name in plan.key_columns
            for index, column in enumerate(plan.columns)
            if column.name == name
        ]
        self._rows: list[t.Any] = []
        self._lines: list[int] = []
        self._extracted: list[datetime.datetime | None] = []
        self._read_at: datetime.datetime | None = None
        self._reset_batch()

    def _reset_batch(self) -> None:
        self._parts: list[t.Any] = []
        self._batch_lines: list[int] = []
        self._batch_keys: list[t.Any] = []
        self._key_set: set[t.Any] = set()
        self.stats = convert.Stats()
        self.rows = 0  # records in the current batch, decoded or converted

    # The hot path -------------------------------------------------------------------------------

    def add(self, raw: msgspec.Raw, line: int, time_extracted: datetime.datetime | None) -> None:
        try:
            row = self._decode(raw)
        except msgspec.MsgspecError as error:
            row = self._decode_slowly(raw, line, error)
            if row is None:
                return
        if not self._rows:
            self._read_at = utc_now()
        self._rows.append(row)
        self._lines.append(line)
        self._extracted.append(time_extracted)
        self.rows += 1
        if len(self._rows) >= self._chunk_rows:
            self.convert_chunk()

    def _decode_slowly(self, raw: msgspec.Raw, line: int, error: Exception) -> t.Any | None:
        """A record the strict decoder refused: read it leniently, or report exactly what is wrong."""
        stream = self.plan.stream
        try:
            record = _generic.decode(raw)
        except msgspec.MsgspecError:
            return self._invalid(
                InvalidRecord(f"record is not valid JSON ({error})", line=line, stream=stream), raw
            )
        if not isinstance(record, dict):
            return self._invalid(InvalidRecord("record is not a JSON object", line=line, stream=stream), raw)
        key = {name: record.get(name) for name in self.plan.key_properties}
        values: dict[str, t.Any] = {}
        for column in self.plan.columns:
            value = record.get(column.prop)
            try:
                values[column.field] = convert.lenient(column.declared, value)
            except ValueError as problem:
                return self._invalid(
                    InvalidRecord(str(problem), line=line, stream=stream, key=key, field=column.prop), raw
                )
        return self.plan.record_type(**values)

    def _invalid(self, error: InvalidRecord, raw: t.Any) -> None:
        if self._reject is None:
            raise error
        text = bytes(raw).decode("utf-8", "replace") if not isinstance(raw, str) else raw
        self._reject(Rejected(error.stream, error.line, error.key, error.field, error.problem, text))
        return None

    # Chunk conversion ---------------------------------------------------------------------------

    def convert_chunk(self) -> None:
        """Check and convert the decoded records into a payload part, then drop them."""
        rows, lines, extracted = self._rows, self._lines, self._extracted
        self._rows, self._lines, self._extracted = [], [], []
        if not rows:
            return
        read_at = self._read_at or utc_now()
        while True:
            try:
                values, keys = self._normalize(rows, lines)
                received_at = [stamp or read_at for stamp in extracted]
                part = self._encode(values, lines, received_at)
                break
            except _RowProblem as problem:
                self._invalid(problem.error, convert.json_encoder.encode(rows[problem.index]))
                del rows[problem.index], lines[problem.index], extracted[problem.index]
                self.rows -= 1
                if not rows:
                    return
        self._parts.append(part)
        self._batch_lines.extend(lines)
        self._batch_keys.extend(keys)
        self._key_set.update(keys)

    def _columns(self) -> list[BatchColumn]:
        return [BatchColumn(column.name, column.kind, column.prop) for column in self.plan.columns]

    def _normalize(self, rows: list[t.Any], lines: list[int]) -> tuple[list[list[t.Any]], list[t.Any]]:
        columns = list(zip(*map(msgspec.structs.astuple, rows), strict=False)) or [
            () for _ in self.plan.columns
        ]
        for index in self._key_indexes:
            if None in columns[index]:
                row = columns[index].index(None)
                prop = self.plan.columns[index].prop
                raise _RowProblem(
                    row,
                    MissingKeyProperty(
                        f"record is missing key property {prop!r}",
                        line=lines[row],
                        stream=self.plan.stream,
                        key=self._key(columns, row),
                        field=prop,
                    ),
                )
        normalized: list[list[t.Any]] = []
        for index, column in enumerate(self.plan.columns):
            normalized.append(self._normalize_column(index, column, columns, lines))
        if not self._key_indexes:
            keys: list[t.Any] = []
        elif len(self._key_indexes) == 1:
            keys = normalized[self._key_indexes[0]]
        else:
            keys = list(zip(*(normalized[index] for index in self._key_indexes), strict=False))
        return normalized, keys

    def _normalize_column(self, index: int, column: t.Any, columns: list[tuple], lines: list[int]) -> list:
        while True:
            try:
                return convert.normalize(column.kind, columns[index], self.stats)
            except convert.NeedsWidening as need:
                self._widen(column, need)
            except convert.ValueProblem as problem:
                raise _RowProblem(
                    problem.index,
                    InvalidRecord(
                        problem.message,
                        line=lines[problem.index],
                        stream=self.plan.stream,
                        key=self._key(columns, problem.index),
                        field=column.prop,
                    ),
                ) from None

    def _widen(self, column: t.Any, need: convert.NeedsWidening) -> None:
        logger.warning(
            "stream %s: widening column %s from %s to %s (%s)",
            self.plan.stream,
            column.name,
            column.kind.value,
            need.kind.value,
            need.reason,
        )
        column.kind = need.kind

    def _encode(self, values: list[list[t.Any]], lines: list[int], received_at: list[t.Any]) -> t.Any:
        while True:
            try:
                return self._codec.encode(self._columns(), values, lines, received_at)
            except convert.NeedsWidening as need:
                if need.column is None:
                    raise
                column = self.plan.columns[need.column]
                self._widen(column, need)
                values[need.column] = convert.normalize(column.kind, values[need.column], self.stats)
            except convert.ValueProblem as problem:
                prop = self.plan.columns[problem.column].prop if problem.column is not None else None
                key = dict(
                    zip(
                        self.plan.key_properties,
                        (values[i][problem.index] for i in self._key_indexes),
                        strict=False,
                    )
                )
                raise _RowProblem(
                    problem.index,
                    InvalidRecord(
                        problem.message,
                        line=lines[problem.index],
                        stream=self.plan.stream,
                        key=key,
                        field=prop,
                    ),
                ) from None

    def _key(self, columns: list[tuple], row: int) -> dict[str, t.Any]:
        return {self.plan.columns[index].prop: columns[index][row] for index in self._key_indexes}

    # Handing over -------------------------------------------------------------------------------

    def take_batch(self) -> LoadBatch | None:
        """The converted batch (None when empty); the sink starts a new one."""
        self.convert_chunk()
        if not self._batch_lines:
            self._reset_batch()
            return None
        if self.stats.nul_removed:
            logger.warning(
                "stream %s: removed %d NUL character(s) (PostgreSQL text cannot hold them)",
                self.plan.stream,
                self.stats.nul_removed,
            )
        columns = self._columns()
        batch = LoadBatch(
            stream=self.plan.stream,
            table=self.plan.table,
            columns=columns,
            key=self.plan.key_columns,
            replication_key=self.plan.replication_column,
            delete_flag=self.plan.delete_flag,
            nulled=self.plan.nulled,
            payload=self._codec.finish(columns, self._parts),
            lines=self._batch_lines,
            keys=self._batch_keys,
            key_properties=self.plan.key_properties,
            has_duplicates=bool(self.plan.key_columns) and len(self._key_set) < len(self._batch_lines),
        )
        self._reset_batch()
        return batch

    @property
    def pending(self) -> bool:
        return self.rows > 0


class _RowProblem(Exception):
    def __init__(self, index: int, error: InvalidRecord) -> None:
        super().__init__(str(error))
        self.index = index
        self.error = error
