"""What both fakes share: serving on an ephemeral port, and webhooks delivered in order from a
thread of their own (a real provider never delivers inside the API call that caused it)."""

from __future__ import annotations

import html
import logging
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import httpx
from fastapi import FastAPI

from ..embedded import EmbeddedServer

log = logging.getLogger("tgflow.fake_providers")


@dataclass(frozen=True)
class Delivery:
    url: str
    body: bytes
    headers: Mapping[str, str]
    #: Told whether the receiver answered 2xx (and with what body, for CloudPayments' Check).
    on_done: Callable[[bool, bytes], None]


class WebhookSender:
    """Delivers webhooks one by one, in the order they were sent. ``flush()`` waits until every
    webhook sent so far was answered (tests synchronise on it, never on sleeps)."""

    def __init__(self, timeout_s: float = 10.0) -> None:
        self._queue: queue.Queue[Delivery | None] = queue.Queue()
        self._http = httpx.Client(timeout=timeout_s)
        self._thread = threading.Thread(
            target=self._run, name="fake-provider-webhooks", daemon=True
        )
        self._thread.start()

    def send(self, delivery: Delivery) -> None:
        self._queue.put(delivery)

    def flush(self) -> None:
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(10)
        self._http.close()

    def post_now(self, delivery: Delivery) -> tuple[bool, bytes]:
        """A synchronous delivery (CloudPayments' Check waits for the answer)."""
        try:
            response = self._http.post(
                delivery.url, content=delivery.body, headers=dict(delivery.headers)
            )
        except httpx.HTTPError as exc:
            log.info("webhook to %s failed: %s", delivery.url, type(exc).__name__)
            return False, b""
        return response.is_success, response.content

    def _run(self) -> None:
        while True:
            delivery = self._queue.get()
            try:
                if delivery is None:
                    return
                ok, body = self.post_now(delivery)
                delivery.on_done(ok, body)
            except Exception:  # a fake must keep delivering whatever one receiver did
                log.exception("webhook delivery failed")
            finally:
                self._queue.task_done()


class FakeProvider(Protocol):
    app: FastAPI
    base_url: str

    def close(self) -> None: ...


@contextmanager
def serving(fake: FakeProvider) -> Iterator[str]:
    """Serve ``fake`` on a free loopback port; yields its URL (also set as ``fake.base_url``)."""
    with EmbeddedServer(fake.app) as server:
        fake.base_url = server.url
        try:
            yield server.url
        finally:
            fake.close()


def pay_page(title: str, what: str, state: str) -> str:
    """The hosted payment page of a fake: what is paid, its state, Pay and Cancel buttons (a
    form posting ``outcome=pay|cancel`` back to the same URL)."""
    return (
        f"<!doctype html><title>{html.escape(title)}</title><h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(what)}</p><p>It is {html.escape(state)}.</p>"
        '<form method="post"><button name="outcome" value="pay">Pay</button> '
        '<button name="outcome" value="cancel">Cancel</button></form>'
    )
