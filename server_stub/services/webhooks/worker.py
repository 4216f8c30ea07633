"""Running the inbox's worker: as a task of the app's lifespan, or alone (``tgflow-server
webhooks work``). Every server process runs one; on PostgreSQL they share the queue through
``SKIP LOCKED``, on SQLite each claim waits for the one write lock.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from fastapi.concurrency import run_in_threadpool

from .inbox import WebhookInbox

log = logging.getLogger("tgflow.server.webhooks")


async def work_forever(inbox: WebhookInbox, poll_seconds: float) -> None:
    """Apply due events until cancelled; idle rounds wait ``poll_seconds``."""
    log.info("webhook worker started", extra={"worker": inbox.worker})
    while True:
        try:
            claimed = await run_in_threadpool(inbox.work_once)
        except Exception:  # the worker must outlive a database hiccup
            log.warning("webhook worker round failed; will retry", exc_info=True)
            claimed = 0
        if not claimed:
            await asyncio.sleep(poll_seconds)


def run_until(inbox: WebhookInbox, stop: threading.Event, poll_seconds: float) -> None:
    """The same loop, blocking, for a process that runs only the worker."""
    log.info("webhook worker started", extra={"worker": inbox.worker})
    while not stop.is_set():
        try:
            claimed = inbox.work_once()
        except Exception:  # the worker must outlive a database hiccup
            log.warning("webhook worker round failed; will retry", exc_info=True)
            claimed = 0
        if not claimed:
            stop.wait(poll_seconds)
