"""Structured (JSON) logs under named ``tgflow.*`` loggers; secrets never enter a record.

Records are handed to a queue and formatted and written by a listener thread, so a request
never waits on JSON formatting or on stderr (the access log writes a line per request).
"""

from __future__ import annotations

import atexit
import logging
import queue
import sys
from logging.handlers import QueueHandler, QueueListener

from pythonjsonlogger.json import JsonFormatter

_listener: QueueListener | None = None


def _stop_listener() -> None:
    global _listener
    if _listener is not None:
        _listener.stop()  # drains what is queued
        _listener = None


def configure_logging(level: str = "INFO", *, json_output: bool = True) -> None:
    global _listener
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
    _stop_listener()
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    _listener = QueueListener(records, handler)
    _listener.start()
    atexit.register(_stop_listener)
    root = logging.getLogger("tgflow")
    root.handlers[:] = [QueueHandler(records)]
    root.setLevel(level.upper())
    root.propagate = False
