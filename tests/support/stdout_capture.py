"""Capture what code run in this process writes to stdout, as the bytes a process would emit.

The tap and the target write Singer lines as UTF-8 bytes to `sys.stdout.buffer` (whatever the locale), so
an in-process run needs a stdout with a byte buffer under it, as a process has: a StringIO has none.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator


@contextlib.contextmanager
def captured_stdout() -> Iterator[io.BytesIO]:
    """Redirect stdout to a UTF-8 text layer over a byte buffer; yields the buffer, complete on exit
    (text written through the text layer and bytes written to its buffer, in the order written)."""
    captured = io.BytesIO()
    text = io.TextIOWrapper(captured, encoding="utf-8", write_through=True)
    try:
        with contextlib.redirect_stdout(text):
            yield captured
    finally:
        text.flush()
        text.detach()  # leave the buffer open for the caller (closing the wrapper would close it)
