"""The reader's blocks: whole lines, in order, whatever the lengths of the lines and of the reads."""

from __future__ import annotations

import io
import os
import threading

from target_warehouse_seg.reader import _blocks, _without_byte_order_mark


def test_blocks_from_a_pipe_are_whole_lines_in_order_even_past_the_block_size() -> None:
    lines = [b"a" * 10, b"b" * 300_000, b"", b"c" * 65_535, b"d" * 65_536, b"e" * 1_000_000, b"f"]
    data = b"\n".join(lines)  # the last line has no newline: the reader adds one
    read_end, write_end = os.pipe()

    def write() -> None:
        with os.fdopen(write_end, "wb") as pipe:
            for start in range(0, len(data), 7_000):  # reads see arbitrary cuts
                pipe.write(data[start : start + 7_000])

    writer = threading.Thread(target=write)
    writer.start()
    with os.fdopen(read_end, "rb") as pipe:
        blocks = list(_blocks(pipe, 1 << 16))
    writer.join()
    assert all(block.endswith(b"\n") for block in blocks)
    assert b"".join(blocks) == data + b"\n"
    assert max(map(len, blocks)) <= 1_000_001 + (1 << 16)  # a block is about one read, or one line


def test_blocks_from_text_input_are_encoded_lines() -> None:
    text = "x\n" + "é" * 100_000 + "\ny"
    assert b"".join(_blocks(io.StringIO(text), 1 << 16)) == (text + "\n").encode()


def test_a_byte_order_mark_before_the_first_line_is_dropped() -> None:
    blocks = iter([b"", b"\xef\xbb\xbf{}\n", b"\xef\xbb\xbf{}\n"])
    # Only the input's first bytes: one later in the input is the line's own (and not JSON).
    assert list(_without_byte_order_mark(blocks)) == [b"", b"{}\n", b"\xef\xbb\xbf{}\n"]
