"""Reading an append-only JSON lines file from its end: the gateway's audit log, read by the gateway itself
(to resume its chain) and by the cmdb server (change records, newest first).

Only complete lines count: a last line without its newline is being written, or was torn by a crash.
Blocking file I/O: callers on an event loop run these in a thread.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import IO

_BLOCK = 1 << 16


def complete_end(handle: IO[bytes]) -> int:
    """The offset just after the file's last newline (0 when there is none)."""
    end = handle.seek(0, os.SEEK_END)
    while end > 0:
        start = max(0, end - _BLOCK)
        handle.seek(start)
        chunk = handle.read(end - start)
        index = chunk.rfind(b"\n")
        if index >= 0:
            return start + index + 1
        end = start
    return 0


def lines_backwards(handle: IO[bytes], end: int) -> Iterator[tuple[int, bytes]]:
    """(offset, line) of the lines before ``end``, last first; each line keeps its newline."""
    pos, buffer = end, b""
    while True:
        cut = buffer.rfind(b"\n", 0, len(buffer) - 1)
        if cut >= 0:
            yield pos + cut + 1, buffer[cut + 1 :]
            buffer = buffer[: cut + 1]
            continue
        if pos == 0:
            if buffer:
                yield 0, buffer
            return
        size = min(_BLOCK, pos)
        pos -= size
        handle.seek(pos)
        buffer = handle.read(size) + buffer
