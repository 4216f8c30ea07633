"""The account state machine: ``Active → Cooldown → Active | Excluded``.

Events come from the broadcaster, which reports what the transport raised:

* ``FloodWait(n)`` puts the account in Cooldown for exactly ``n`` seconds; the consecutive-error
  count is left alone, because Telegram told us precisely what to do and we do it.
* ``PeerFlood`` and ``Timeout`` count as consecutive errors. Each one backs off exponentially from
  ``[flood] cooldown_sec`` (300 s, 600 s, 1200 s, …); at ``[flood] max_consecutive_errors`` the
  account is Excluded.
* A fatal transport error (banned, deactivated, session revoked) and the user's own exclusion
  move the account to Excluded at once.
* A successful send clears the consecutive-error count.

Excluded only ever leaves by :meth:`AntiSpamWorker.restore`, the user's explicit decision (after
checking @SpamBot, for instance). A Cooldown ends by itself when its time has passed; the count
of consecutive errors survives that, so the next error backs off further.

When ``[anti_spam] enabled`` is false, PeerFlood and timeouts do not change the state: no
backoff, no exclusion. That switch does not make the program ignore Telegram, though. FloodWait
is still honoured (waiting exactly what Telegram asked is not optional), fatal errors still
exclude, and the broadcaster itself stops sending from an account on PeerFlood. What the switch
turns off is only our own, stricter, pacing on top of Telegram's.

States persist in a JSON file, so that an Excluded account stays Excluded and a cooldown goes on
across restarts. The worker lives on the app's one asyncio engine thread; nothing here locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from app.catalog import N_, Reason, story
from app.clock import AsyncClock, seconds_until
from app.settings_schema import DEFAULTS, Settings

log = logging.getLogger("tgflow.antispam")

_FILE_VERSION = 1


class AccountState(StrEnum):
    """Where an account stands with respect to sending."""

    ACTIVE = "active"
    COOLDOWN = "cooldown"
    EXCLUDED = "excluded"


@dataclass(frozen=True)
class AccountStatus:
    """One account's state, as the broadcaster and the accounts panel see it."""

    account_id: str
    state: AccountState
    #: End of the Cooldown (``None`` unless the state is COOLDOWN).
    until: datetime | None = None
    #: Consecutive PeerFlood / timeout errors since the last success or restore.
    errors: int = 0
    #: Why the account is cooling down or excluded ("" when none).
    reason: str = ""

    @property
    def usable(self) -> bool:
        """Whether messages may be sent from this account now."""
        return self.state is AccountState.ACTIVE


@dataclass(frozen=True)
class FloodPolicy:
    """Settings ``[flood]`` and ``[anti_spam] enabled`` (defaults from the settings schema)."""

    max_consecutive_errors: int = DEFAULTS.flood.max_consecutive_errors
    cooldown_sec: int = DEFAULTS.flood.cooldown_sec
    enabled: bool = DEFAULTS.anti_spam.enabled

    @classmethod
    def from_settings(cls, settings: Settings) -> FloodPolicy:
        return cls(
            max_consecutive_errors=settings.flood.max_consecutive_errors,
            cooldown_sec=settings.flood.cooldown_sec,
            enabled=settings.anti_spam.enabled,
        )

    def __post_init__(self) -> None:
        if self.max_consecutive_errors < 1:
            raise ValueError("max_consecutive_errors must be at least 1")
        if self.cooldown_sec < 0:
            raise ValueError("cooldown_sec must not be negative")


StatusCallback = Callable[[AccountStatus], None]


class AntiSpamWorker:
    """Owns every account's :class:`AccountStatus`: applies events, persists, notifies."""

    def __init__(self, policy: FloodPolicy, state_path: Path, clock: AsyncClock) -> None:
        self._policy = policy
        self._path = state_path
        self._clock = clock
        self._subscribers: list[StatusCallback] = []
        self._statuses: dict[str, AccountStatus] = self._load()

    @property
    def policy(self) -> FloodPolicy:
        """The policy this worker applies."""
        return self._policy

    # --- queries -------------------------------------------------------------------------------

    def status(self, account_id: str) -> AccountStatus:
        """The account's current status; an unknown account is Active.

        A Cooldown whose end has passed is turned into Active here (and reported to subscribers);
        the consecutive-error count stays as it was.
        """
        current = self._statuses.get(account_id)
        if current is None:
            return AccountStatus(account_id, AccountState.ACTIVE)
        if (
            current.state is AccountState.COOLDOWN
            and current.until is not None
            and current.until <= self._clock.now()
        ):
            return self._set(
                replace(current, state=AccountState.ACTIVE, until=None, reason=""),
            )
        return current

    def statuses(self) -> list[AccountStatus]:
        """The status of every account this worker knows, sorted by account id."""
        return [self.status(account_id) for account_id in sorted(self._statuses)]

    def subscribe(self, callback: StatusCallback) -> None:
        """Call ``callback`` with the new status after every change."""
        self._subscribers.append(callback)

    # --- events --------------------------------------------------------------------------------

    def on_success(self, account_id: str) -> AccountStatus:
        """A message went out: the consecutive-error count goes back to 0."""
        current = self.status(account_id)
        if current.errors == 0:
            return current
        return self._set(replace(current, errors=0))

    def on_flood_wait(
        self, account_id: str, seconds: int, kind: str = "FLOOD_WAIT"
    ) -> AccountStatus:
        """Telegram asked to wait ``seconds``: Cooldown for exactly that long.

        ``kind`` names the wait (FLOOD_WAIT, SLOWMODE_WAIT, FLOOD_PREMIUM_WAIT, 2FA_CONFIRM_WAIT);
        all are the same Cooldown, the reason says which one it was.

        Honoured whether or not the anti-spam policy is enabled. An existing longer Cooldown is
        kept as it is; an Excluded account stays Excluded.
        """
        current = self.status(account_id)
        if current.state is AccountState.EXCLUDED:
            return current
        until = self._clock.now() + timedelta(seconds=max(0, seconds))
        if self._cooling_past(current, until):
            return current
        return self._set(
            replace(
                current,
                state=AccountState.COOLDOWN,
                until=until,
                reason=_wait_reason(kind, seconds),
            )
        )

    def on_peer_flood(self, account_id: str) -> AccountStatus:
        """Telegram refused messages to new contacts (PEER_FLOOD)."""
        return self._on_error(account_id, "PeerFlood")

    def on_timeout(self, account_id: str) -> AccountStatus:
        """Telegram did not answer in time."""
        return self._on_error(account_id, "Timeout")

    def on_fatal(self, account_id: str, reason: str) -> AccountStatus:
        """The account cannot be used (banned, deactivated, session revoked): Excluded."""
        return self._exclude(account_id, reason)

    def exclude(self, account_id: str, reason: str = "excluded by the user") -> AccountStatus:
        """The user takes the account out of use (ManualExclude)."""
        return self._exclude(account_id, reason)

    def restore(self, account_id: str) -> AccountStatus:
        """The user puts the account back: Active, no errors, no reason."""
        current = self.status(account_id)
        restored = AccountStatus(account_id, AccountState.ACTIVE)
        if current == restored:
            return current
        return self._set(restored)

    def forget(self, account_id: str) -> None:
        """Drop the account (it was removed from TGFlow). Subscribers are not called."""
        if self._statuses.pop(account_id, None) is not None:
            self._save()

    # --- waiting -------------------------------------------------------------------------------

    async def wait_until_usable(self, account_id: str, stop: asyncio.Event) -> AccountStatus:
        """Wait out the account's Cooldown.

        Returns the status as soon as the account is Active or Excluded, or when ``stop`` is set
        (then the account may still be in Cooldown). Each wait is exactly the remaining time of
        the Cooldown, on the worker's clock.
        """
        while True:
            current = self.status(account_id)
            if current.state is not AccountState.COOLDOWN or stop.is_set():
                return current
            assert current.until is not None
            await _first_of(self._clock.sleep(seconds_until(self._clock, current.until)), stop)

    # --- internals -----------------------------------------------------------------------------

    def _on_error(self, account_id: str, kind: str) -> AccountStatus:
        current = self.status(account_id)
        if not self._policy.enabled or current.state is AccountState.EXCLUDED:
            return current
        errors = current.errors + 1
        limit = self._policy.max_consecutive_errors
        if errors >= limit:
            return self._set(
                AccountStatus(
                    account_id,
                    AccountState.EXCLUDED,
                    until=None,
                    errors=errors,
                    reason=_exclusion_reason(kind, errors),
                )
            )
        backoff = self._policy.cooldown_sec * 2 ** (errors - 1)
        until = self._clock.now() + timedelta(seconds=backoff)
        if self._cooling_past(current, until):
            return self._set(replace(current, errors=errors))
        return self._set(
            AccountStatus(
                account_id,
                AccountState.COOLDOWN,
                until=until,
                errors=errors,
                reason=f"{kind} ({errors} of {limit} in a row): backing off {backoff} s",
            )
        )

    def _exclude(self, account_id: str, reason: str) -> AccountStatus:
        current = self.status(account_id)
        excluded = replace(current, state=AccountState.EXCLUDED, until=None, reason=reason)
        if excluded == current:
            return current
        return self._set(excluded)

    @staticmethod
    def _cooling_past(current: AccountStatus, until: datetime) -> bool:
        """Whether ``current`` is a Cooldown that already lasts at least until ``until``."""
        return (
            current.state is AccountState.COOLDOWN
            and current.until is not None
            and current.until >= until
        )

    def _set(self, status: AccountStatus) -> AccountStatus:
        previous = self._statuses.get(status.account_id)
        if previous is None or (previous.state, previous.until) != (status.state, status.until):
            _log_transition(status)
        self._statuses[status.account_id] = status
        self._save()
        for callback in list(self._subscribers):
            try:
                callback(status)
            except Exception:
                # A broken listener (a closed window) must not stop the state machine.
                log.exception("status subscriber failed for account %s", status.account_id)
        return status

    def _load(self) -> dict[str, AccountStatus]:
        try:
            data = self._path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            return _decode(json.loads(data.decode("utf-8")))
        except (ValueError, TypeError, KeyError) as exc:
            corrupt = self._path.with_name(self._path.name + ".corrupt")
            try:
                os.replace(self._path, corrupt)
            except OSError:
                log.exception("could not set the unreadable %s aside", self._path)
            log.warning(
                "account states in %s are unreadable (%s); starting fresh, the old file is kept "
                "as %s",
                self._path,
                exc,
                corrupt,
            )
            return {}

    def _save(self) -> None:
        payload = {
            "version": _FILE_VERSION,
            "accounts": {
                account_id: _encode(status) for account_id, status in sorted(self._statuses.items())
            },
        }
        try:
            _write_atomically(self._path, json.dumps(payload, indent=2, ensure_ascii=False))
        except OSError:
            # The states stay right in memory for this session; losing the file must not stop
            # a broadcast half-way.
            log.exception("could not save account states to %s", self._path)


async def _first_of(wait: Coroutine[Any, Any, object], stop: asyncio.Event) -> None:
    """Run the coroutine ``wait`` until it finishes or ``stop`` is set, whichever comes first."""
    tasks = [asyncio.ensure_future(wait), asyncio.ensure_future(stop.wait())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _wait_reason(kind: str, seconds: int) -> str:
    # "FloodWait N s" is the reason people know (and the GUI reads its seconds from).
    name = "FloodWait" if kind == "FLOOD_WAIT" else kind
    return f"{name} {seconds} s"


def _exclusion_reason(kind: str, errors: int) -> str:
    if kind == "PeerFlood":
        return (
            f"PeerFlood ({errors} consecutive errors): Telegram limits messages from this account "
            "to new contacts. Check @SpamBot, then restore the account."
        )
    return (
        f"{errors} consecutive errors, the last a timeout: Telegram does not answer this account. "
        "Check the connection, then restore the account."
    )


def _encode(status: AccountStatus) -> dict[str, Any]:
    return {
        "state": status.state.value,
        "until": status.until.isoformat() if status.until is not None else None,
        "errors": status.errors,
        "reason": status.reason,
    }


def _decode(document: Any) -> dict[str, AccountStatus]:
    if not isinstance(document, dict) or document.get("version") != _FILE_VERSION:
        raise ValueError("not an account-state file of version 1")
    accounts = document["accounts"]
    if not isinstance(accounts, dict):
        raise TypeError("accounts is not an object")
    statuses: dict[str, AccountStatus] = {}
    for account_id, entry in accounts.items():
        state = AccountState(entry["state"])
        until = None if entry["until"] is None else datetime.fromisoformat(entry["until"])
        if until is not None and until.tzinfo is None:
            raise ValueError(f"{account_id}: until has no timezone")
        if (state is AccountState.COOLDOWN) != (until is not None):
            raise ValueError(f"{account_id}: until does not match the state")
        errors = entry["errors"]
        reason = entry["reason"]
        if not isinstance(errors, int) or errors < 0 or not isinstance(reason, str):
            raise ValueError(f"{account_id}: bad errors or reason")
        statuses[account_id] = AccountStatus(account_id, state, until, errors, reason)
    return statuses


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise


_STATE_KEYS = {
    AccountState.ACTIVE: N_("log.account.active"),
    AccountState.COOLDOWN: N_("log.account.cooldown"),
    AccountState.EXCLUDED: N_("log.account.excluded"),
}


def _log_transition(status: AccountStatus) -> None:
    """One session-log line per change of an account's state (the flood story of a session)."""
    level = logging.WARNING if status.state is AccountState.EXCLUDED else logging.INFO
    state = Reason(_STATE_KEYS[status.state])
    line = Reason(N_("log.account_state"), {"account": status.account_id, "state": state})
    if status.until is not None:
        until = f"{status.until:%Y-%m-%d %H:%M:%S}"
        line = Reason(N_("log.account_state_until"), {**line.params, "until": until})
    if status.reason:
        # The reason stays the worker's text; the Logs tab translates it (telegram_text).
        story(log, N_("log.with_reason"), level=level, line=line, reason=status.reason)
    else:
        story(log, line.key, level=level, **line.params)
