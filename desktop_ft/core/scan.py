"""Opening a file to be read through a line (or a chunk) at a time by a worker thread.

Why this is a rule of its own: a worker that reads a file in Python's default 8 KiB buffers
gives up the GIL for every read and takes it straight back, a few dozen lines apart. CPython's GIL
only forces a hand-over to a waiting thread when its holder kept it for a whole switch interval
(5 ms) *without any switch*, and the worker's brief releases count as switches; the window's GUI
thread, waiting to run its next event, loses each race for the GIL and is starved. Measured: a
worker parsing a 50,000-line metrics log this way held the event loop up for 0.5-1.4 s although
the GUI thread itself had nothing to do; with 1 MiB reads the longest gap between 20 ms timer
ticks was 25 ms. Every scan of a user's file (metrics logs, dataset files) opens it here.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

#: bytes read from the disk at once: a GIL release per MiB (thousands of lines), not per 8 KiB
SCAN_BUFFER = 1 << 20


def open_for_scan(path: str | Path, mode: str = "rb", **text_options: Any) -> IO[Any]:
    """``open(path, mode)`` reading ``SCAN_BUFFER`` bytes at a time (``encoding``/``newline`` pass
    through for text mode).

    Text mode needs the decoder's chunk raised too: ``TextIOWrapper`` asks its buffer for 8 KiB
    with ``read1``, which goes to the disk directly whenever the buffer is empty, whatever its size.
    """
    fh = open(path, mode, buffering=SCAN_BUFFER, **text_options)
    if "b" not in mode:
        fh._CHUNK_SIZE = SCAN_BUFFER  # type: ignore[attr-defined]  # settable by design (the io module's tests do)
    return fh
