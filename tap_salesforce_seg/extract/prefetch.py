"""Reading the next page while the current one is converted: `prefetched(pages)`.

Salesforce (or the emulator) takes a while to produce each page, and the tap takes a while to convert
it; done one after the other the two waits add up. `prefetched` runs a page iterator in a background
thread, at most `depth` pages ahead, so the next page is on its way while this one is converted.
Memory stays bounded (`depth` + 1 pages); the order is kept; an exception in the producer (an API
error, QuotaExceeded) is raised in the consumer at the point the failed page would have arrived; and
when the consumer stops early the producer is told to stop and is not waited for beyond a moment.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()
_POLL_SECONDS = 0.1
_JOIN_SECONDS = 1.0


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetched(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """Iterate `items` (consumed in a background thread) with `depth` items fetched ahead."""
    buffer: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
        except BaseException as error:  # handed over to the consumer, raised there
            offer(_Failure(error))
            return
        finally:
            if stop.is_set():
                close = getattr(items, "close", None)
                if close is not None:
                    close()
        offer(_DONE)

    worker = threading.Thread(target=produce, name="page-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        worker.join(_JOIN_SECONDS)
