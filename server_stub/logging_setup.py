"""Structured (JSON) logs under named ``tgflow.*`` loggers; secrets never enter a record.

Records are handed to a queue; a writer thread formats and writes them in batches, so a request
neither formats JSON nor waits on stderr (the access log writes a line per request). The writer
wakes every ``WRITE_INTERVAL_S``, not per record: waking a thread per record costs a thread
switch (and a GIL hand-over) per request, more than formatting the line. A line thus appears up
to that long after it was logged; everything queued is written at exit.
"""

from __future__ import annotations

import atexit
import logging
import queue
import sys
import threading
from logging.handlers import QueueHandler
from typing import TextIO

from pythonjsonlogger.json import JsonFormatter

WRITE_INTERVAL_S = 0.2


class BatchingWriter:
    """Writes ``records`` with ``handler``'s format and stream every ``interval`` seconds, on a
    thread of its own."""

    def __init__(
        self,
        records: queue.SimpleQueue[logging.LogRecord],
        handler: logging.StreamHandler[TextIO],
        interval: float = WRITE_INTERVAL_S,
    ) -> None:
        self._records = records
        self._handler = handler
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tgflow-log-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop and write what is still queued."""
        self._stopped.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            self._drain()
        self._drain()

    def _drain(self) -> None:
        lines: list[str] = []
        while True:
            try:
                record = self._records.get_nowait()
            except queue.Empty:
                break
            try:
                lines.append(self._handler.format(record))
            except Exception:
                self._handler.handleError(record)
        if lines:  # one write and one flush per batch, not per line
            stream = self._handler.stream
            stream.write("\n".join(lines) + "\n")
            stream.flush()


_writer: BatchingWriter | None = None


def _stop_writer() -> None:
    global _writer
    if _writer is not None:
        _writer.stop()
        _writer = None


def configure_logging(level: str = "INFO", *, json_output: bool = True) -> None:
    global _writer
    handler = logging.StreamHandler(sys.stderr)
    if json_output:
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"levelname": "level", "asctime": "time"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    _stop_writer()
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    _writer = BatchingWriter(records, handler)
    _writer.start()
    atexit.register(_stop_writer)
    root = logging.getLogger("tgflow")
    root.handlers[:] = [QueueHandler(records)]
    root.setLevel(level.upper())
    root.propagate = False
