"""One stream's buffer: decode its records, check them, and build its batch payload chunk by chunk.

The hot path (``add_decoded``) takes records the reader has already decoded, block by block, into
the stream's own record type (which type-checks every value in C; see reader.TypedBlocks), with
their lines' text: a few list appends. Records the reader left as raw JSON (``add_many``) are
decoded here the same way, one msgspec call per run. Every chunk
(a few thousand values, small enough to stay in the CPU cache) is checked where msgspec could not
(key properties present, numbers well-formed) and handed to the engine's codec, which turns it into
payload (binary COPY rows, Arrow); the decoded records are then dropped, so a batch costs about its
payload size in memory.

Unlike singer-sdk's ``Sink``, whose contract is one ``process_record`` call per record, this class
works on chunks; the target drives it directly.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import operator
import re
import typing as t
from decimal import Decimal

import msgspec

from target_warehouse_seg import convert
from target_warehouse_seg.engines import BatchColumn, Codec, LoadBatch, Rejected
from target_warehouse_seg.errors import InvalidRecord, MissingKeyProperty
from target_warehouse_seg.plan import StreamPlan, utc_now
from target_warehouse_seg.reader import RecordMessage, TypedBlocks
from target_warehouse_seg.typemap import Kind, Source, widen

logger = logging.getLogger("target-warehouse-seg")

_generic = msgspec.json.Decoder(float_hook=Decimal)
_envelope = msgspec.json.Decoder(RecordMessage, float_hook=Decimal)
Reject = t.Callable[[Rejected], None]
# Keys whose text may differ while their values are equal (the merge then always de-duplicates).
_FUZZY_KEY_SOURCES = {Source.LOOSE, Source.TIMESTAMP_TEXT, Source.JSON}


class StreamSink:
    """Buffers and converts one stream's records; ``take_batches`` hands them over for loading."""

    def __init__(self, plan: StreamPlan, codec: Codec, *, reject: Reject | None, chunk_values: int) -> None:
        self.plan = plan
        self._codec = codec
        self._reject = reject
        self._decode = plan.decoder.decode
        self._decode_all = msgspec.json.Decoder(list[plan.record_type], float_hook=Decimal).decode
        self._chunk_rows = max(256, min(20_000, chunk_values // max(1, len(plan.columns))))
        self._json = any(column.source is Source.JSON for column in plan.columns)
        matched = {*plan.key_columns, plan.replication_column}
        self._columns = [
            BatchColumn(c.name, c.kind, c.prop, c.source, matched=c.name in matched, quoted=c.quoted)
            for c in plan.columns
        ]
        positions = {column.name: index for index, column in enumerate(plan.columns)}
        self._key_positions = [positions[name] for name in plan.key_columns]
        self._number_positions = [i for i, c in enumerate(plan.columns) if c.source is Source.NUMBER]
        self._quoted_positions = [i for i, c in enumerate(plan.columns) if c.quoted]
        self._date_or_time_positions = [
            i for i, c in enumerate(plan.columns) if c.source is Source.TIMESTAMP_TEXT
        ]
        self._fuzzy_keys = any(plan.columns[i].source in _FUZZY_KEY_SOURCES for i in self._key_positions)
        # Whether the engine counts a batch's distinct keys (else the sink keeps a set of them).
        self._codec_counts_keys = codec.counts_keys and bool(plan.key_columns) and not self._fuzzy_keys
        self._rows: list[t.Any] = []
        # For a codec that ``reads_json``: the chunk's records as JSON lines, in pieces of one or more
        # lines (joined by newlines); each line is an object whose ``record`` is the record (see
        # ``Codec``).
        self._texts: list[bytes] = []
        self._lenient = False  # whether a record of the chunk was read leniently (not by the typed decoder)
        self._keep_raw = codec.reads_json
        self._lines: list[int] = []
        self._extracted: list[datetime.datetime | None] = []
        self._read_at: datetime.datetime | None = None
        self._ready: list[LoadBatch] = []
        self.stats = convert.Stats()
        self.rows = 0  # records taken since the last hand-over
        self.typed = TypedBlocks.of(plan.stream, plan.record_type, _NUL_OR_SURROGATE if self._json else _NUL)
        self._start_batch()

    def _start_batch(self) -> None:
        self._parts: list[t.Any] = []
        self._batch_lines: list[int] = []
        self._key_set: set[t.Any] = set()

    # The hot path -------------------------------------------------------------------------------

    def add_decoded(self, messages: t.Sequence[t.Any], first_line: int, text: bytes) -> int:
        """Take consecutive RECORD messages that the reader decoded with ``self.typed`` (lines
        ``first_line``, ``first_line + 1``...), and ``text``, those lines joined by newlines.
        Returns the bytes of the records' JSON taken (for batch sizing, as ``add_many`` counts them:
        the lines less their envelopes, each taken to be as long as the first's)."""
        if not self._rows:
            self._read_at = utc_now()
        self._rows.extend([message.record for message in messages])
        if self._keep_raw:
            self._texts.append(text)
        self._lines.extend(range(first_line, first_line + len(messages)))
        self._extracted.extend([message.time_extracted for message in messages])
        self.rows += len(messages)
        if len(self._rows) >= self._chunk_rows:
            self.convert_chunk()
        return max(len(messages), len(text) - len(messages) * _envelope_bytes(text))

    def add_many(self, messages: t.Sequence[t.Any], first_line: int) -> int:
        """Take consecutive RECORD messages (lines ``first_line``, ``first_line + 1``...).

        One msgspec call decodes them all; only when that fails, or when a guarded escape appears,
        are they taken one by one. Returns the bytes of JSON taken (for batch sizing).
        """
        raws = [message.record for message in messages]
        joined = b",".join(raws)
        if self._needs_slow_path(joined):
            for offset, message in enumerate(messages):
                self.add(message.record, first_line + offset, message.time_extracted)
            return len(joined)
        try:
            rows = self._decode_all(b"[" + joined + b"]")
        except convert.DECODE_ERRORS:
            for offset, message in enumerate(messages):
                self.add(message.record, first_line + offset, message.time_extracted)
            return len(joined)
        if not self._rows:
            self._read_at = utc_now()
        self._rows.extend(rows)
        if self._keep_raw:
            self._texts.append(_RECORD_LINE_START + _RECORD_LINE_BREAK.join(raws) + _RECORD_LINE_END)
        self._lines.extend(range(first_line, first_line + len(rows)))
        self._extracted.extend([message.time_extracted for message in messages])
        self.rows += len(rows)
        if len(self._rows) >= self._chunk_rows:
            self.convert_chunk()
        return len(joined)

    def _needs_slow_path(self, text: bytes) -> bool:
        """NULs are removed on the slow path (PostgreSQL text cannot hold them); JSON values are
        re-encoded there, so a lone surrogate is caught before the database refuses it."""
        return (_NUL_OR_SURROGATE if self._json else _NUL).search(text) is not None

    def add(self, raw: msgspec.Raw, line: int, time_extracted: datetime.datetime | None) -> None:
        """Take one record (the path of records that need a closer look)."""
        lenient = self._needs_slow_path(bytes(raw))
        if lenient:
            row = self._decode_slowly(raw, line, None)
        else:
            try:
                row = self._decode(raw)
            except convert.DECODE_ERRORS as error:
                lenient = True
                row = self._decode_slowly(raw, line, error)
        if row is None:
            return
        self._lenient = self._lenient or lenient
        if not self._rows:
            self._read_at = utc_now()
        self._rows.append(row)
        if self._keep_raw:
            # A record read leniently travels as the JSON of what was read (NULs gone, 1.0 now 1...).
            self._texts.append(
                convert.json_encoder.encode({"record": row})
                if lenient
                else b"".join((_RECORD_LINE_START, raw, _RECORD_LINE_END))
            )
        self._lines.append(line)
        self._extracted.append(time_extracted)
        self.rows += 1
        if len(self._rows) >= self._chunk_rows:
            self.convert_chunk()

    def _decode_slowly(self, raw: msgspec.Raw, line: int, error: Exception | None) -> t.Any | None:
        """A record the strict decoder refused (or a guarded one): read it leniently, or report it."""
        stream = self.plan.stream
        try:
            record = _generic.decode(raw)
        except convert.DECODE_ERRORS as problem:
            reason = convert.utf8_problem(raw)
            problem_text = (
                f"record is {convert.decode_problem(problem)}"
                if reason is None
                else f"record holds text that is not UTF-8 ({reason})"
            )
            return self._invalid(InvalidRecord(problem_text, line=line, stream=stream), raw)
        if not isinstance(record, dict):
            return self._invalid(InvalidRecord("record is not a JSON object", line=line, stream=stream), raw)
        record = convert.strip_nul(record, self.stats)
        key = {name: record.get(name) for name in self.plan.key_properties}
        values: dict[str, t.Any] = {}
        for column in self.plan.columns:
            value = record.get(column.prop)
            if column.quoted and isinstance(value, str):
                value = convert.number_in_text(value)
            try:
                values[column.field] = convert.lenient(column.source, value)
            except ValueError as problem:
                return self._invalid(
                    InvalidRecord(str(problem), line=line, stream=stream, key=key, field=column.prop), raw
                )
        return self.plan.record_type(**values)

    def _invalid(self, error: InvalidRecord, raw: t.Any) -> None:
        if self._reject is None:
            # A record refused as it is read (an impossible date, say) comes after the records still
            # waiting for their chunk's checks: one of them invalid is the first, and is the one named.
            if self._rows:
                self.convert_chunk()
            raise error
        text = raw if isinstance(raw, str) else bytes(raw).decode("utf-8", "replace")
        self._reject(
            Rejected(
                error.stream, error.line, error.key, error.field, error.problem, text.replace("\x00", "")
            )
        )
        return None

    # Chunk conversion ---------------------------------------------------------------------------

    def convert_chunk(self) -> None:
        """Check the decoded records and turn them into a payload part, then drop them."""
        rows, lines, extracted, texts = self._rows, self._lines, self._extracted, self._texts
        self._rows, self._lines, self._extracted, self._texts = [], [], [], []
        lenient, self._lenient = self._lenient, False
        read_at = self._read_at or utc_now()
        while rows:
            try:
                keys, number_scans = self._check(rows, lines)
                received_at = [stamp or read_at for stamp in extracted]
                part = self._codec.encode(
                    self._columns,
                    rows,
                    lines,
                    received_at,
                    texts if self._keep_raw else None,
                    previous=self._parts[-1] if self._parts else None,
                    lenient=lenient,
                    number_scans=number_scans,
                )
            except _RowProblem as found:
                problem = self._first_problem(found, rows, lines)
                self._invalid(problem.error, convert.json_encoder.encode(rows[problem.index]))
                self._drop(problem.index, rows, lines, extracted, texts=texts)
                continue
            except convert.ValueProblem as problem:
                self._invalid(
                    self._error(rows, lines, problem.index, problem.column, problem.message),
                    convert.json_encoder.encode(rows[problem.index]),
                )
                self._drop(problem.index, rows, lines, extracted, texts=texts)
                continue
            except convert.NeedsWidening as need:
                self._widen(need)
                continue
            self._parts.append(part)
            self._batch_lines.extend(lines)
            self._key_set.update(keys)
            return

    def _first_problem(self, found: _RowProblem, rows: list[t.Any], lines: list[int]) -> _RowProblem:
        """With ``on_invalid_record: fail``, the chunk's first invalid record. ``_check`` goes check by
        check (date-times, then keys, then numbers), so it may find a later record's problem before an
        earlier record's of another kind (the error named line 4 of a chunk whose line 3 was invalid
        too): the records before it are checked again until none is invalid. Only a failing run pays
        for it; with quarantine each invalid record is set aside whatever the order."""
        if self._reject is not None:
            return found
        while found.index > 0:
            try:
                # Checking again what _check rewrote in place (instants, unquoted numbers) finds it valid.
                self._check(rows[: found.index], lines[: found.index])
            except _RowProblem as earlier:
                found = earlier
                continue
            break
        return found

    def _drop(self, index: int, rows: list[t.Any], *lists: list[t.Any], texts: list[bytes]) -> None:
        """Remove a rejected record from the chunk's parallel lists (its texts split into lines first)."""
        if texts:
            texts[:] = b"\n".join(texts).split(b"\n")  # JSON lines hold no raw newline
        for values in (rows, *lists, texts):
            if values:
                del values[index]
        self.rows -= 1

    def _check(self, rows: list[t.Any], lines: list[int]) -> tuple[list[t.Any], dict[int, bytes]]:
        """Check what msgspec did not (keys present, numbers well-formed); return the chunk's keys, for
        the sink's own count of distinct keys (none when the engine counts them), and each number
        column's scan (``convert.scan_numbers``: the codec reads there whether a value needs a closer
        look, without going over the column again)."""
        for position in self._quoted_positions:
            convert.unquote_numbers(rows, f"f{position}")
        for position in self._date_or_time_positions:
            self._read_instants(rows, lines, position)
        key_values = [self._values(rows, i) for i in self._key_positions]
        for position, values in zip(self._key_positions, key_values, strict=True):
            if None in values:
                index = values.index(None)
                prop = self.plan.columns[position].prop
                raise _RowProblem(
                    index,
                    MissingKeyProperty(
                        f"record is missing key property {prop!r}",
                        line=lines[index],
                        stream=self.plan.stream,
                        key=self._key(rows, index),
                        field=prop,
                    ),
                )
        number_scans: dict[int, bytes] = {}
        for position in self._number_positions:
            scan = convert.scan_numbers(map(operator.attrgetter(f"f{position}"), rows))
            if convert.NOT_NUMBER in scan:
                index = t.cast(int, convert.first_non_number(self._values(rows, position)))
                value = getattr(rows[index], f"f{position}")
                raise _RowProblem(
                    index,
                    self._error(
                        rows, lines, index, position, f"expected a number, got {convert.describe(value)}"
                    ),
                )
            number_scans[position] = scan
            if self._columns[position].kind is Kind.TEXT:
                self._spell_numbers(rows, position)
        if not key_values or self._codec_counts_keys:
            return [], number_scans
        comparable = [
            self._comparable(position, values)
            for position, values in zip(self._key_positions, key_values, strict=True)
        ]
        keys = comparable[0] if len(comparable) == 1 else list(zip(*comparable, strict=True))
        return keys, number_scans

    @staticmethod
    def _spell_numbers(rows: list[t.Any], position: int) -> None:
        """In a text column, a number is written as a number column widened to text writes it
        (``convert.plain_number``): a replay of records from before such a widening then stores the
        same text as the widening did (``7.5``, not ``7.50`` as sent), and a number key meets the
        widened keys."""
        field = f"f{position}"
        for row in rows:
            value = getattr(row, field)
            if value is not None:
                setattr(row, field, convert.plain_number_raw(value))

    def _read_instants(self, rows: list[t.Any], lines: list[int], position: int) -> None:
        """Check each value of a property that may hold a date or a date-time and, in a timestamp
        column, put the text of its instant in its place (``convert.instant_text``): the database
        then parses only that form. A text column keeps the value as it came."""
        field = f"f{position}"
        to_instant = self._columns[position].kind is Kind.TIMESTAMP
        for index, row in enumerate(rows):
            value = getattr(row, field)
            if value is None:
                continue
            try:
                instant = convert.instant_text(value)
            except ValueError as problem:
                raise _RowProblem(index, self._error(rows, lines, index, position, str(problem))) from None
            if to_instant:
                setattr(row, field, instant)

    def _values(self, rows: list[t.Any], position: int) -> list[t.Any]:
        values = list(map(operator.attrgetter(f"f{position}"), rows))
        if self.plan.columns[position].source in (Source.NUMBER, Source.JSON):
            return [convert.raw_or_none(value) for value in values]
        return values

    def _comparable(self, position: int, values: list[t.Any]) -> list[t.Any]:
        """Key values that compare as the database compares them (numbers by value)."""
        source = self.plan.columns[position].source
        if source is Source.NUMBER:
            return [convert.decimal_of(value) for value in values]
        if source is Source.JSON:  # raw JSON (msgspec.Raw cannot be hashed): its text
            return [bytes(value) for value in values]
        return values

    def _error(
        self, rows: list[t.Any], lines: list[int], index: int, position: int | None, message: str
    ) -> InvalidRecord:
        prop = self.plan.columns[position].prop if position is not None else None
        return InvalidRecord(
            message, line=lines[index], stream=self.plan.stream, key=self._key(rows, index), field=prop
        )

    def _key(self, rows: list[t.Any], index: int) -> dict[str, t.Any]:
        return {self.plan.columns[i].prop: _plain(getattr(rows[index], f"f{i}")) for i in self._key_positions}

    def _widen(self, need: convert.NeedsWidening) -> None:
        """A column outgrew its kind: later rows travel wider, and the batch so far is handed over."""
        column = self._columns[need.column]
        kind = widen(column.kind, need.kind)
        if kind is column.kind:  # the column is wide enough already (an earlier run widened it)
            logger.info(
                "stream %s: column %s: %s; its values are read as %s from here on",
                self.plan.stream,
                column.name,
                need.reason,
                kind.value,
            )
        else:
            logger.warning(
                "stream %s: widening column %s from %s to %s (%s)",
                self.plan.stream,
                column.name,
                column.kind.value,
                kind.value,
                need.reason,
            )
        if self._parts:
            self._seal()
        self._columns[need.column] = dataclasses.replace(column, kind=kind, wide=True)
        self.plan.columns[need.column].kind = kind

    # Handing over -------------------------------------------------------------------------------

    def _seal(self) -> None:
        """Close the batch built so far (its columns are about to change)."""
        self._ready.append(
            LoadBatch(
                stream=self.plan.stream,
                table=self.plan.table,
                columns=list(self._columns),
                key=self.plan.key_columns,
                replication_key=self.plan.replication_column,
                delete_flag=self.plan.delete_flag,
                nulled=self.plan.nulled,
                payload=self._codec.finish(self._columns, self._parts),
                lines=self._batch_lines,
                key_properties=self.plan.key_properties,
                has_duplicates=self._has_duplicates(),
            )
        )
        self._start_batch()

    def _has_duplicates(self) -> bool | None:
        """Whether two rows of the batch built so far share a key (its merge then collapses them);
        None when the engine counts them."""
        if not self.plan.key_columns:
            return False
        if self._fuzzy_keys:
            return True
        if self._codec_counts_keys:
            return None
        return len(self._key_set) < len(self._batch_lines)

    def take_batches(self) -> list[LoadBatch]:
        """The converted batches (usually one); the sink starts afresh."""
        self.convert_chunk()
        if self._parts:
            self._seal()
        if self.stats.nul_removed:
            logger.warning(
                "stream %s: removed %d NUL character(s) (PostgreSQL text cannot hold them)",
                self.plan.stream,
                self.stats.nul_removed,
            )
            self.stats = convert.Stats()
        ready, self._ready = self._ready, []
        self.rows = 0
        return ready

    @property
    def pending(self) -> bool:
        return self.rows > 0


def _plain(value: t.Any) -> t.Any:
    """A key value for an error message."""
    if isinstance(value, msgspec.Raw):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return value


# A NUL escape (or, in records with JSON values, a surrogate escape): the record takes the slow path.
_NUL = re.compile(rb"\\u0000")
# A record's raw JSON as a line for a codec that reads JSON: an object holding it as ``record``, as the
# input's own lines do.
_RECORD_LINE_START, _RECORD_LINE_BREAK, _RECORD_LINE_END = b'{"record":', b'}\n{"record":', b"}"
_NUL_OR_SURROGATE = re.compile(rb"\\u(?:0000|[dD])")


def _envelope_bytes(text: bytes) -> int:
    """The bytes of the first line of ``text`` around its record (``{"type":"RECORD",...}``)."""
    end = text.find(b"\n")
    line = text if end < 0 else text[:end]
    try:
        return len(line) - len(_envelope.decode(line).record)
    except (*convert.DECODE_ERRORS, AttributeError):
        return 0


class _RowProblem(Exception):
    def __init__(self, index: int, error: InvalidRecord) -> None:
        super().__init__(str(error))
        self.index = index
        self.error = error
