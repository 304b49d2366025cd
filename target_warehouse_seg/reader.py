"""Read Singer messages fast: one msgspec decode per line, records left as raw JSON for their stream.

The envelope of each line is decoded into a small typed message; a RECORD's ``record`` stays a
``msgspec.Raw`` (the exact bytes), so its values are decoded once, by its stream's own typed decoder.
Numbers that are not integers decode as ``Decimal`` (never through a float), so currency and state
bookmarks stay exact.
"""

from __future__ import annotations

import datetime
import logging
import sys
import typing as t
from collections import Counter
from decimal import Decimal

import msgspec
from singer_sdk.singerlib.encoding.base import GenericSingerReader

from target_warehouse_seg.errors import InvalidRecord

logger = logging.getLogger("target-warehouse-seg")


class RecordMessage(msgspec.Struct, tag="RECORD", tag_field="type"):
    stream: str
    record: msgspec.Raw
    time_extracted: datetime.datetime | None = None


class SchemaMessage(msgspec.Struct, tag="SCHEMA", tag_field="type"):
    stream: str
    schema: t.Any
    key_properties: list[str] | None = None
    bookmark_properties: list[str] | None = None


class StateMessage(msgspec.Struct, tag="STATE", tag_field="type"):
    value: t.Any = None


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
_generic = msgspec.json.Decoder(float_hook=Decimal)
_encoder = msgspec.json.Encoder(decimal_format="number")


class InvalidLine(t.NamedTuple):
    """A line that is not a usable Singer message."""

    line: int
    text: str
    problem: str
    stream: str | None


class MessageReader(GenericSingerReader[t.Any]):
    """Decode Singer lines and hand each message to the target, counting lines as it goes.

    ``line_number`` is the 1-based number of the line being handled, for error messages.
    ``on_invalid_line`` (set by the target) decides what happens to a line that is not a message:
    raise (the default) or quarantine.
    """

    def __init__(self) -> None:
        super().__init__()
        self.line_number = 0
        self.on_invalid_line: t.Callable[[InvalidLine], None] | None = None
        self.on_error: t.Callable[[], None] | None = None  # cleanup when reading stops on an error
        self.current_line = b""  # the line being handled, as bytes

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
        by_class = {cls: callbacks[name] for cls, name in MESSAGE_TYPES.items()}
        counts: Counter[str] = Counter()
        decode = _envelope.decode
        number = self.line_number
        try:
            for line in file_input or self.default_input:
                number += 1
                self.line_number = number
                self.current_line = line if type(line) is bytes else line.encode("utf-8", "surrogatepass")
                try:
                    message = decode(line)
                except msgspec.MsgspecError:
                    message = self._fallback(line, number)
                    if message is None:
                        continue
                by_class[type(message)](message)
                counts[MESSAGE_TYPES[type(message)]] += 1
        except BaseException:
            if self.on_error is not None:
                self.on_error()
            raise
        return counts

    def _fallback(self, line: t.Any, number: int) -> Message | None:
        """Decode a line the fast path refused; return a message, or None to skip the line."""
        text = line.decode("utf-8", "replace") if isinstance(line, (bytes, bytearray)) else line
        if not text.strip():
            return None  # blank lines carry nothing
        try:
            payload = _generic.decode(line)
        except msgspec.MsgspecError as error:
            return self._invalid(InvalidLine(number, text, f"not valid JSON ({error})", None))
        if not isinstance(payload, dict):
            return self._invalid(InvalidLine(number, text, "not a Singer message (not a JSON object)", None))
        kind = payload.get("type")
        stream = payload.get("stream") if isinstance(payload.get("stream"), str) else None
        if kind == "RECORD" and payload.get("time_extracted") is not None:
            # An unreadable time_extracted is not worth losing a record: read time stands in.
            logger.warning(
                "line %d: ignoring time_extracted %r (not a date-time)", number, payload["time_extracted"]
            )
            payload["time_extracted"] = None
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

    def _invalid(self, invalid: InvalidLine) -> None:
        if self.on_invalid_line is None:
            raise InvalidRecord(invalid.problem, line=invalid.line, stream=invalid.stream)
        self.on_invalid_line(invalid)
