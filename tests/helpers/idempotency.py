"""``Idempotency-Key`` tests: a service call held open on demand, and a staff member's new
session after the clock moved past their tokens."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from server_stub.clock import FakeClock
from tests.helpers.staff import StaffLogin, code_at, login

#: How long a test waits for a request it started to reach the service (never a pacing sleep).
WAIT_SECONDS = 30


class Held:
    """A service method that, once entered, waits until the test lets it go."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.released = threading.Event()
        self.calls = 0


@contextmanager
def held(obj: object, name: str) -> Iterator[Held]:
    """Replace ``obj.name`` with a version that blocks in the call until ``release``d."""
    original: Callable[..., Any] = getattr(obj, name)
    state = Held()

    def blocking(*args: Any, **kwargs: Any) -> Any:
        state.calls += 1
        state.entered.set()
        assert state.released.wait(WAIT_SECONDS), "the test never released the held call"
        return original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(obj, name, blocking)
        try:
            yield state
        finally:
            state.released.set()


def relogin(client: httpx.Client, who: StaffLogin, clock: FakeClock) -> StaffLogin:
    """A new two-factor session of the same staff member (same id: same key scope)."""
    assert who.secret is not None
    r = login(client, who.email, otp=code_at(who.secret, clock))
    assert r.status_code == 200, r.text
    body = r.json()
    clock.advance(30)  # the next login needs a fresh TOTP step
    return StaffLogin(
        who.id, who.email, who.role, body["token"], body["refresh_token"], who.secret, []
    )
