"""map_error: every kurigram error in the seam's terms, raised as kurigram raises it from the
``rpc_error`` Telegram sends (``RPCError.raise_it``), so the class is whatever this kurigram makes
of it. Also run against the kurigram floor (scripts/test-kurigram-floor)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from pyrogram import errors, raw

from app.transports.base import (
    AccountUnusable,
    FloodWait,
    PeerFlood,
    RecipientBlocked,
    RecipientUnavailable,
    SendTimeout,
    TelegramRefused,
)
from app.transports.pyrogram_errors import map_error


@pytest.fixture(autouse=True)
def _unknown_errors_log_in_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # kurigram appends every error it does not know (an older kurigram knows fewer) to
    # ./unknown_errors.txt; keep it out of the checkout.
    monkeypatch.chdir(tmp_path)


# --- map_error ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (errors.FloodWait(value=42), "FLOOD_WAIT"),
        (errors.SlowmodeWait(value=42), "SLOWMODE_WAIT"),
        (errors.FloodPremiumWait(value=42), "FLOOD_PREMIUM_WAIT"),
        (errors.FloodWait(value="42"), "FLOOD_WAIT"),
    ],
)
def test_flood_waits_keep_the_exact_seconds(exc: BaseException, kind: str) -> None:
    mapped = map_error(exc, "@bob")
    assert isinstance(mapped, FloodWait)
    assert mapped.seconds == 42
    assert mapped.kind == kind


def test_a_flood_wait_as_kurigram_raises_it_from_the_wire() -> None:
    flood = raised(420, "FLOOD_WAIT_1234")
    assert isinstance(flood, errors.FloodWait)
    mapped = map_error(flood, "@bob")
    assert isinstance(mapped, FloodWait)
    assert mapped.seconds == 1234


def test_a_flood_wait_without_seconds_is_not_guessed() -> None:
    mapped = map_error(errors.FloodWait(value=None), "@bob")
    assert isinstance(mapped, TelegramRefused)
    assert "FLOOD_WAIT" in mapped.reason


def test_peer_flood() -> None:
    assert isinstance(map_error(errors.PeerFlood(), "@bob"), PeerFlood)


@pytest.mark.parametrize(
    "cls",
    [
        errors.UserDeactivatedBan,
        errors.UserDeactivated,
        errors.AuthKeyUnregistered,
        errors.SessionRevoked,
        errors.AuthKeyDuplicated,
        errors.SessionExpired,
        errors.AuthKeyInvalid,
        errors.FrozenMethodInvalid,
    ],
)
def test_account_fatal_errors(cls: type[errors.RPCError]) -> None:
    mapped = map_error(cls(), "@bob")
    assert isinstance(mapped, AccountUnusable)
    assert mapped.reason == cls.ID


@pytest.mark.parametrize(
    "exc",
    [
        TimeoutError(),
        ConnectionError("reset"),
        ConnectionResetError(),
        socket.gaierror(-2, "Name or service not known"),
        errors.Timedout(),
    ],
)
def test_no_answer_is_a_send_timeout(exc: BaseException) -> None:
    mapped = map_error(exc, "@bob")
    assert isinstance(mapped, SendTimeout)
    assert "@bob" in str(mapped)


def raised(code: int, message: str) -> errors.RPCError:
    """The exception kurigram raises when Telegram answers a sendMessage with this error."""
    try:
        errors.RPCError.raise_it(
            raw.types.RpcError(error_code=code, error_message=message),
            raw.functions.messages.SendMessage,
        )
    except errors.RPCError as exc:
        return exc
    raise AssertionError("raise_it did not raise")


@pytest.mark.parametrize(
    ("code", "error_id"),
    [
        (400, "USERNAME_NOT_OCCUPIED"),
        (400, "USERNAME_INVALID"),
        (400, "PEER_ID_INVALID"),
        (403, "PEER_ID_INVALID"),
        (400, "INPUT_USER_DEACTIVATED"),
        (403, "USER_PRIVACY_RESTRICTED"),
        (400, "CHAT_WRITE_FORBIDDEN"),
        (403, "CHAT_WRITE_FORBIDDEN"),
        (400, "USER_ID_INVALID"),
        (400, "PHONE_NOT_OCCUPIED"),
        (400, "USER_IS_BOT"),
        (403, "PRIVACY_PREMIUM_REQUIRED"),
        (403, "CHAT_SEND_PLAIN_FORBIDDEN"),
        (400, "CHANNEL_PRIVATE"),
    ],
)
def test_recipient_errors(code: int, error_id: str) -> None:
    mapped = map_error(raised(code, error_id), "@bob")
    assert type(mapped) is RecipientUnavailable
    assert mapped.recipient == "@bob"
    assert mapped.reason == error_id


@pytest.mark.parametrize(
    ("code", "error_id"),
    [(400, "USER_IS_BLOCKED"), (403, "USER_IS_BLOCKED"), (400, "YOU_BLOCKED_USER")],
)
def test_blocked_recipients_are_their_own_kind(code: int, error_id: str) -> None:
    mapped = map_error(raised(code, error_id), "@bob")
    assert isinstance(mapped, RecipientBlocked)
    assert isinstance(mapped, RecipientUnavailable)  # still a per-recipient failure
    assert mapped.reason == error_id


def test_unknown_400_is_the_recipients_failure_with_telegrams_reason() -> None:
    unknown = raised(400, "BRAND_NEW_THING")
    assert type(unknown) is errors.BadRequest
    mapped = map_error(unknown, "@bob")
    assert isinstance(mapped, RecipientUnavailable)
    assert mapped.reason == "BRAND_NEW_THING"
    # Outside a send nothing is a recipient's fault: it stops the run with the reason.
    refused = map_error(unknown, None)
    assert isinstance(refused, TelegramRefused)
    assert refused.reason == "BRAND_NEW_THING"


@pytest.mark.parametrize("exc", [ValueError("boom"), KeyError("peer"), asyncio.CancelledError()])
def test_what_is_not_telegrams_is_not_mapped(exc: BaseException) -> None:
    assert map_error(exc, "@bob") is None
