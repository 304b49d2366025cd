"""The org's clock: real UTC time by default, settable and freezable for tests.

Salesforce stamps records with millisecond precision, so `now()` is truncated to milliseconds. A set
clock keeps running from the set instant unless frozen; `advance` moves it (frozen or not).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta


def to_utc_ms(moment: datetime) -> datetime:
    """`moment` as an aware UTC datetime truncated to milliseconds (naive values are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def parse_instant(value: datetime | str) -> datetime:
    if isinstance(value, datetime):
        return to_utc_ms(value)
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        if len(text) >= 5 and text[-5] in "+-" and text[-3] != ":":  # +0000 -> +00:00
            text = f"{text[:-2]}:{text[-2:]}"
        try:
            return to_utc_ms(datetime.fromisoformat(text))
        except ValueError:
            raise ValueError(f"not an ISO 8601 datetime: {value!r}") from None
    raise TypeError(f"expected a datetime or an ISO 8601 string, not {type(value).__name__}")


class Clock:
    """Thread-safe; `now()` never goes backwards while the clock runs unless `set` moves it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = timedelta(0)  # added to the real time while running
        self._frozen_at: datetime | None = None

    @staticmethod
    def _real() -> datetime:
        return datetime.fromtimestamp(time.time(), tz=UTC)

    def now(self) -> datetime:
        with self._lock:
            if self._frozen_at is not None:
                return self._frozen_at
            return to_utc_ms(self._real() + self._offset)

    def set(self, moment: datetime | str, frozen: bool = False) -> datetime:
        """Jump to `moment` (aware, or naive UTC, or ISO text); keep running from there unless `frozen`."""
        target = parse_instant(moment)
        with self._lock:
            self._offset = target - self._real()
            self._frozen_at = target if frozen else None
        return target

    def advance(self, seconds: float) -> datetime:
        delta = timedelta(seconds=float(seconds))
        with self._lock:
            self._offset += delta
            if self._frozen_at is not None:
                self._frozen_at = to_utc_ms(self._frozen_at + delta)
        return self.now()

    def freeze(self) -> datetime:
        with self._lock:
            if self._frozen_at is None:
                self._frozen_at = to_utc_ms(self._real() + self._offset)
            return self._frozen_at

    def unfreeze(self) -> datetime:
        """Run again from the frozen instant."""
        with self._lock:
            if self._frozen_at is not None:
                self._offset = self._frozen_at - self._real()
                self._frozen_at = None
        return self.now()

    @property
    def frozen(self) -> bool:
        return self._frozen_at is not None
