"""Read Singer messages fast: one msgspec decode per block of lines, each record decoded by its stream's type.

A block of lines is usually records of the stream read last: it is decoded in one pass by a decoder
made for that stream (its RECORD message type holds the stream's own record type, see
``TypedBlocks``), which type-checks every value in C. A block that this decoder refuses (a record of
another stream, a bad value, a SCHEMA message, a guarded escape) is decoded again by the generic
envelope: each line into a small typed message whose ``record`` stays a ``msgspec.Raw`` (the exact
bytes), for its stream's sink to decode. Numbers that are not integers decode as ``Decimal`` (never
through a float), so currency and state bookmarks stay exact.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import logging
import os
import re
import select
import sys
import typing as t
from collections import Counter
from decimal import Decimal

import msgspec
from singer_sdk.singerlib.encoding.base import GenericSingerReader

from target_warehouse_seg.convert import (
    DECODE_ERRORS,
    decode_problem,
    parse_timestamp,
    utf8_problem,
    without_lone_surrogates,
)
from target_warehouse_seg.errors import InvalidRecord

logger = logging.getLogger("target-warehouse-seg")


ZonedDateTime = t.Annotated[datetime.datetime, msgspec.Meta(tz=True)]


class RecordMessage(msgspec.Struct, tag="RECORD", tag_field="type"):
    stream: str
    record: msgspec.Raw
    # Zoned only: a naive one takes the slow path (``_fallback``), which reads it as UTC.
    time_extracted: ZonedDateTime | None = None


class SchemaMessage(msgspec.Struct, tag="SCHEMA", tag_field="type"):
    stream: str
    schema: t.Any
    key_properties: list[str] | None = None
    bookmark_properties: list[str] | None = None


class StateMessage(msgspec.Struct, tag="STATE", tag_field="type"):
    # Required: passed on without one, it would become a `null` state for the next run to stumble on.
    value: t.Any


class ActivateVersionMessage(msgspec.Struct, tag="ACTIVATE_VERSION", tag_field="type"):
    stream: str
    version: t.Any = None


class BatchMessage(msgspec.Struct, tag="BATCH", tag_field="type"):
    stream: str


Message = RecordMessage | SchemaMessage | StateMessage | ActivateVersionMessage | BatchMessage
MESSAGE_TYPES = {
    RecordMessage: "RECORD",
    SchemaMessage: "SCHEMA",
    StateMessage: "STATE",
    ActivateVersionMessage: "ACTIVATE_VERSION",
    BatchMessage: "BATCH",
}

_envelope = msgspec.json.Decoder(Message, float_hook=Decimal)
_envelopes = msgspec.json.Decoder(list[Message], float_hook=Decimal)
_generic = msgspec.json.Decoder(float_hook=Decimal)
_encoder = msgspec.json.Encoder(decimal_format="number")


# After a block the stream's decoder refused: how many blocks go straight to the envelope path (input
# that interleaves streams line by line would otherwise be decoded twice, block after block).
TYPED_PAUSE_BLOCKS = 8


@dataclasses.dataclass(frozen=True)
class TypedBlocks:
    """How to decode a block of one stream's records in one pass: the stream's own RECORD message type
    (``stream`` a literal, ``record`` the stream's record type) among the other messages. A record of
    another stream, or a value of the wrong type, fails the whole block; so does any other message type.
    ``guard`` finds what the sink must read slowly (NUL escapes): a block it matches is not tried."""

    stream: str
    record_class: type
    decoder: msgspec.json.Decoder
    guard: re.Pattern[bytes]

    @classmethod
    def of(cls, stream: str, record_type: type, guard: re.Pattern[bytes]) -> TypedBlocks:
        record_class = msgspec.defstruct(
            "TypedRecordMessage",
            [
                ("stream", t.Literal[stream]),  # type: ignore[valid-type]
                ("record", record_type),
                ("time_extracted", ZonedDateTime | None, None),
            ],
            tag="RECORD",
            tag_field="type",
            gc=False,
        )
        others = SchemaMessage | StateMessage | ActivateVersionMessage | BatchMessage
        decoder = msgspec.json.Decoder(list[record_class | others], float_hook=Decimal)
        return cls(stream, record_class, decoder, guard)


class InvalidLine(t.NamedTuple):
    """A line that is not a usable Singer message."""

    line: int
    text: str
    problem: str
    stream: str | None


class MessageReader(GenericSingerReader[t.Any]):
    """Decode Singer lines and hand the messages to the target, counting lines as it goes.

    Lines are read in blocks (whatever the pipe holds, up to ``BLOCK_BYTES``). A block is first tried
    with the typed decoder of the stream whose record came last (``typed_blocks``): its runs of records
    go, decoded, to ``on_typed_records`` with their lines' text. Otherwise the block's envelopes are
    decoded by one msgspec call, and runs of RECORD messages of one stream go to ``on_records`` in one
    call. A block that does not decode as a whole (a bad or blank line) is read again line by line, so
    errors name their exact line.

    ``line_number`` is the 1-based number of the line being handled, for error messages.
    ``on_invalid_line`` (set by the target) decides what happens to a line that is not a message:
    raise (the default) or quarantine.
    """

    # Small: the decode of a block holds the GIL, which the loader thread's database driver needs
    # between its steps (see loader.GIL_SWITCH_SECONDS); 1 MB blocks held it ~2 ms at a time.
    BLOCK_BYTES = 1 << 16

    def __init__(self) -> None:
        super().__init__()
        self.line_number = 0
        self._surrogates_replaced: Counter[str] = Counter()  # lone surrogates replaced, by stream
        self._surrogate_lines: Counter[str] = Counter()  # lines where they were, by stream
        self.on_invalid_line: t.Callable[[InvalidLine], None] | None = None
        self.on_error: t.Callable[[], None] | None = None  # cleanup when reading stops on an error
        # Runs of records: (stream, messages, line number of the first); else RECORD one by one.
        self.on_records: t.Callable[[str, list[RecordMessage], int], None] | None = None
        # A stream's one-pass block decoder (None: that stream's blocks take the envelope path), and
        # where runs of records it decoded go: (stream, messages, first line, their lines' text).
        self.typed_blocks: t.Callable[[str], TypedBlocks | None] | None = None
        self.on_typed_records: t.Callable[[str, list[t.Any], int, bytes], None] | None = None
        self._recent_stream: str | None = None  # the stream of the last record handed over
        self._typed_pause = 0  # blocks left before the typed decoder is tried again
        # While the input is silent: how long to wait (None: forever), and what to do then.
        self.idle_timeout: t.Callable[[], float | None] | None = None
        self.on_idle: t.Callable[[], None] | None = None
        # Set by `_blocks` when the input ended without a newline: its last line may be cut short.
        self._unterminated: list[bool] = []

    @property
    def default_input(self) -> t.IO[t.Any]:
        return sys.stdin.buffer

    def deserialize_json(self, line: t.Any) -> dict:
        return _generic.decode(line)

    def process_lines(
        self,
        file_input: t.IO[t.Any] | None,
        callbacks: dict[str, t.Callable[[t.Any], None]],
    ) -> t.Counter[str]:
        self._by_class = {cls: callbacks[name] for cls, name in MESSAGE_TYPES.items()}
        self._counts: Counter[str] = Counter()
        try:
            blocks = _blocks(
                file_input or self.default_input, self.BLOCK_BYTES, self.idle_timeout, self._unterminated
            )
            for block in _without_byte_order_mark(blocks):
                if not block:
                    if self.on_idle is not None:
                        self.on_idle()
                    continue
                array = b"[" + block[:-1].replace(b"\n", b",") + b"]"  # the block's lines as one JSON array
                if self._decode_typed(block, array):
                    continue
                try:
                    messages = _envelopes.decode(array)
                except DECODE_ERRORS:
                    self._line_by_line(block)
                else:
                    first = self.line_number + 1
                    self._dispatch(messages, first)
                    self.line_number = first + len(messages) - 1
        except BaseException:
            if self.on_error is not None:
                self.on_error()
            raise
        for stream, lines in self._surrogate_lines.items():
            if lines > 1:
                logger.warning(
                    "stream %s: replaced %d lone UTF-16 surrogate escape(s) with U+FFFD in %d lines",
                    stream,
                    self._surrogates_replaced[stream],
                    lines,
                )
        return self._counts

    def _decode_typed(self, block: bytes, array: bytes) -> bool:
        """Decode and hand over a block (``array``: its lines as one JSON array) in one pass with the
        recent stream's typed decoder; False when the block must take the envelope path instead (nothing
        was handed over then)."""
        if self._typed_pause:
            self._typed_pause -= 1
            return False
        stream, lookup = self._recent_stream, self.typed_blocks
        typed = lookup(stream) if lookup is not None and stream is not None else None
        if typed is None or self.on_typed_records is None or typed.guard.search(block) is not None:
            return False
        try:
            messages = typed.decoder.decode(array)
        except DECODE_ERRORS:
            self._typed_pause = TYPED_PAUSE_BLOCKS
            return False
        kinds = set(map(type, messages))
        if SchemaMessage in kinds:
            return False  # the records after it may need the new schema's type
        first = self.line_number + 1
        if kinds == {typed.record_class}:  # the usual block: nothing but the stream's records
            self.line_number = first
            self.on_typed_records(typed.stream, messages, first, block[:-1])
            self._counts["RECORD"] += len(messages)
        else:
            self._dispatch(messages, first, typed, block)
        self.line_number = first + len(messages) - 1
        return True

    def _dispatch(
        self,
        messages: list[t.Any],
        first_line: int,
        typed: TypedBlocks | None = None,
        block: bytes = b"",
    ) -> None:
        """Hand decoded messages over; consecutive records of one stream go in one call (with their
        lines' text when ``typed`` decoded them from ``block``)."""
        on_records, by_class, counts = self.on_records, self._by_class, self._counts
        typed_class = typed.record_class if typed is not None else None
        lines: list[bytes] | None = None
        index, count = 0, len(messages)
        while index < count:
            message = messages[index]
            kind = type(message)
            if (kind is RecordMessage and on_records is not None) or kind is typed_class:
                end = index + 1
                stream = message.stream
                while end < count and type(messages[end]) is kind and messages[end].stream == stream:
                    end += 1
                self.line_number = first_line + index
                if kind is typed_class:
                    lines = lines if lines is not None else block[:-1].split(b"\n")
                    text = b"\n".join(lines[index:end])
                    on_typed = t.cast(t.Callable, self.on_typed_records)
                    on_typed(stream, messages[index:end], first_line + index, text)
                else:
                    t.cast(t.Callable, on_records)(stream, messages[index:end], first_line + index)
                counts["RECORD"] += end - index
                self._recent_stream = stream
                index = end
                continue
            self.line_number = first_line + index
            by_class[kind](message)
            counts[MESSAGE_TYPES[kind]] += 1
            index += 1

    def _line_by_line(self, block: bytes) -> None:
        first = self.line_number + 1
        lines = block[:-1].split(b"\n")
        for offset, line in enumerate(lines):
            self.line_number = number = first + offset
            try:
                message = _envelope.decode(line)
            except DECODE_ERRORS:
                if self._unterminated and offset == len(lines) - 1:
                    self._refuse_cut_line(line, number)
                message = self._fallback(line, number)
                if message is None:
                    continue
            self._dispatch([message], number)
        self.line_number = first + block.count(b"\n") - 1

    def _refuse_cut_line(self, line: bytes, number: int) -> None:
        """The input's last line, without its newline, that is no JSON: the program writing the input
        stopped in the middle of it (a tap killed) or the input was cut. Not a bad record, so never
        quarantined (it was stored as one): the run stops as on any invalid input."""
        try:
            _generic.decode(line)
        except DECODE_ERRORS:
            raise InvalidRecord(
                "the input ended in the middle of this line (the program writing it stopped, or the "
                "input was cut)",
                line=number,
                stream=None,
            ) from None

    def _fallback(self, line: t.Any, number: int) -> Message | None:
        """Decode a line the fast path refused; return a message, or None to skip the line."""
        text = line.decode("utf-8", "replace") if isinstance(line, (bytes, bytearray)) else line
        if not text.strip():
            return None  # blank lines carry nothing
        try:
            payload = _generic.decode(line)
        except DECODE_ERRORS as error:
            reason = utf8_problem(line)
            if reason is not None:
                return self._invalid(InvalidLine(number, text, f"not UTF-8 text ({reason})", None))
            cleaned = without_lone_surrogates(line) if isinstance(line, (bytes, bytearray)) else None
            if cleaned is None:
                return self._invalid(InvalidLine(number, text, decode_problem(error), None))
            payload, replaced = cleaned
            self._log_replaced_surrogates(number, payload, replaced)
            line = _encoder.encode(payload)
        if not isinstance(payload, dict):
            return self._invalid(InvalidLine(number, text, "not a Singer message (not a JSON object)", None))
        kind = payload.get("type")
        stream = payload.get("stream") if isinstance(payload.get("stream"), str) else None
        if kind == "RECORD" and payload.get("time_extracted") is not None:
            payload["time_extracted"] = _zoned(payload["time_extracted"], number)
            line = _encoder.encode(payload)
        if not isinstance(kind, str) or kind not in MESSAGE_TYPES.values():
            if isinstance(kind, str):
                logger.warning("line %d: skipping a message of unknown type %r", number, kind)
                return None
            return self._invalid(InvalidLine(number, text, "not a Singer message (no `type`)", stream))
        try:
            return _envelope.decode(line)
        except msgspec.ValidationError as error:
            return self._invalid(InvalidLine(number, text, f"malformed {kind} message ({error})", stream))

    def _log_replaced_surrogates(self, number: int, payload: t.Any, replaced: int) -> None:
        """One warning per stream (the first line), then a count at the end of the input."""
        stream = payload.get("stream") if isinstance(payload, dict) else None
        label = stream if isinstance(stream, str) else "(no stream)"
        if label not in self._surrogates_replaced:
            logger.warning(
                "line %d, stream %s: replaced %d lone UTF-16 surrogate escape(s) (half of a character "
                "cut in two, which UTF-8 cannot hold) with U+FFFD; later lines are counted, not logged",
                number,
                label,
                replaced,
            )
        self._surrogates_replaced[label] += replaced
        self._surrogate_lines[label] += 1

    def _invalid(self, invalid: InvalidLine) -> None:
        if self.on_invalid_line is None:
            raise InvalidRecord(invalid.problem, line=invalid.line, stream=invalid.stream)
        self.on_invalid_line(invalid)


def _zoned(value: t.Any, number: int) -> str | None:
    """A RECORD's time_extracted as a zoned ISO 8601 text (UTC when it has no zone), or None.

    An unreadable time_extracted is not worth losing a record: the read time stands in.
    """
    parsed = parse_timestamp(value) if isinstance(value, str) else None
    if parsed is None:
        logger.warning("line %d: ignoring time_extracted %r (not a date-time)", number, value)
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=datetime.UTC).isoformat()
    # As the same instant in UTC: an offset with seconds (which Python reads) is no RFC 3339 offset.
    return parsed.astimezone(datetime.UTC).isoformat()


def _blocks(
    source: t.IO[t.Any],
    size: int,
    timeout: t.Callable[[], float | None] | None = None,
    unterminated: list[bool] | None = None,
) -> t.Iterator[bytes]:
    """Whole lines, as bytes ending with a newline, in blocks of about ``size`` bytes.

    From a pipe or file, a block is what is available, so a slow tap's lines are handled as they come;
    when ``timeout()`` gives a number of seconds and nothing arrives within it, an empty block is
    yielded (so that an old batch can commit while the tap is silent). Text input (tests) is encoded.
    """
    fd = _binary_fd(source)
    if fd is None:
        while lines := source.readlines(size):
            block = "".join(lines) if isinstance(lines[0], str) else b"".join(lines)
            data = block.encode("utf-8", "surrogatepass") if isinstance(block, str) else block
            if not data.endswith(b"\n"):
                if unterminated is not None:
                    unterminated.append(True)
                data += b"\n"
            yield data
        return
    pending: list[bytes] = []  # read after the last newline: the start of a line (joined once whole)
    while True:
        wait = timeout() if timeout is not None else None
        if wait is not None and not select.select([fd], [], [], max(0.0, wait))[0]:
            yield b""
            continue
        data = os.read(fd, size)
        if not data:
            if pending:
                if unterminated is not None:
                    unterminated.append(True)
                yield b"".join(pending) + b"\n"
            return
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            pending.append(data)
            continue
        lines = data[:cut] if cut < len(data) else data
        if pending:
            lines = b"".join(pending) + lines
        pending = [data[cut:]] if cut < len(data) else []
        yield lines


_BYTE_ORDER_MARK = b"\xef\xbb\xbf"


def _without_byte_order_mark(blocks: t.Iterator[bytes]) -> t.Iterator[bytes]:
    """The blocks, less a UTF-8 byte order mark before the first line (some Windows tools write one)."""
    for block in blocks:
        if block:
            yield block.removeprefix(_BYTE_ORDER_MARK)
            break
        yield block
    yield from blocks


def _binary_fd(source: t.IO[t.Any]) -> int | None:
    """The descriptor under a binary stream nobody has read from (stdin), else None."""
    if isinstance(source, io.TextIOBase) or not isinstance(source, (io.BufferedReader, io.FileIO)):
        return None
    try:
        return source.fileno()
    except (OSError, ValueError):
        return None
