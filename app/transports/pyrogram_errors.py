"""kurigram's errors in the transport seam's terms: the one error-mapping function.

Kept apart from :mod:`app.transports.pyrogram_transport` (the Client's use) because this is the
table that grows with every error Telegram adds; docs/desktop.md, "The kurigram transport", says
why each is mapped as it is.
"""

from __future__ import annotations

import socket

from pyrogram import errors

from app.transports.base import (
    AccountUnusable,
    FloodWait,
    PeerFlood,
    RecipientBlocked,
    RecipientUnavailable,
    SendTimeout,
    TelegramRefused,
    TextRejected,
    TransportError,
)

_FLOOD_WAITS: tuple[type[errors.RPCError], ...] = (
    errors.FloodWait,
    errors.SlowmodeWait,
    errors.FloodPremiumWait,
    # 420 2FA_CONFIRM_WAIT_X: a security wait on the account, honoured like any other.
    errors.TwoFaConfirmWait,
)
_ACCOUNT_FATAL: tuple[type[errors.RPCError], ...] = (
    errors.UserDeactivatedBan,
    errors.UserDeactivated,
    errors.AuthKeyUnregistered,
    errors.AuthKeyInvalid,
    errors.SessionRevoked,
    errors.SessionExpired,
    errors.AuthKeyDuplicated,
    # A frozen account can do nothing but appeal.
    errors.FrozenMethodInvalid,
)
#: Telegram restricts the account itself (spam reports): it stops and is Excluded with why.
#: Matched by id, not class: kurigram has a 403 and a 406 USER_RESTRICTED and (in 2.2.11, the floor)
#: both are exported under the one name ``UserRestricted``, so a class test misses one of them;
#: an older kurigram also reports an error it does not know as its bare code class.
_ACCOUNT_RESTRICTIONS: dict[str, str] = {
    "USER_RESTRICTED": "Telegram restricted this account (spam reports)",
    "USER_BANNED_IN_CHANNEL": "Telegram banned this account from sending messages",
}
_NO_ANSWER: tuple[type[BaseException], ...] = (
    TimeoutError,  # also asyncio.TimeoutError, its alias since Python 3.11
    ConnectionError,
    socket.gaierror,
    # Telegram's own "-503 Timeout": as with ours, nobody knows whether the message went out.
    errors.Timeout,
    errors.Timedout,
)
#: The same by id (kurigram's -503 and 500 timeout classes share a name across versions).
_NO_ANSWER_IDS = frozenset({"Timeout", "TIMEOUT", "Timedout"})
HINT_FAILURES: tuple[type[BaseException], ...] = (errors.RPCError, *_NO_ANSWER)
# The recipient blocked this account: failed, and a candidate for the suppression list.
_BLOCKED: tuple[type[errors.RPCError], ...] = (
    errors.UserIsBlocked,
    errors.YouBlockedUser,
)
# The recipient's problem, not the account's: the 403/406 variants subclass these.
_RECIPIENT: tuple[type[errors.RPCError], ...] = (
    errors.UsernameNotOccupied,
    errors.UsernameInvalid,
    errors.PeerIdInvalid,
    errors.UserIdInvalid,
    errors.PhoneNotOccupied,
    errors.UserIsBot,
    errors.InputUserDeactivated,
    errors.UserPrivacyRestricted,
    errors.PrivacyPremiumRequired,
    errors.AllowPaymentRequired,
    errors.ChatWriteForbidden,
    errors.ChatSendPlainForbidden,
    errors.ChatRestricted,
    errors.ChannelPrivate,
)
# The text itself: every recipient would get the same refusal.
_TEXT: tuple[type[errors.RPCError], ...] = (
    errors.MessageTooLong,
    errors.MessageEmpty,
    errors.EntitiesTooLong,
)


def map_error(exc: BaseException, recipient: str | None) -> TransportError | None:
    """The transport error that ``exc`` (raised by kurigram or the network) stands for.

    The one place where kurigram's errors become this program's. ``recipient`` is ``None`` outside
    a send (connect, get_me), where nothing is any recipient's fault. ``None`` for what is not
    Telegram's at all (a bug: ValueError, KeyError, …): the caller re-raises the original
    exception, and the broadcaster still ends its batch properly.
    """
    if isinstance(exc, _FLOOD_WAITS):
        seconds = int_value(exc.value)
        if seconds is None:
            # Telegram always says how long; without a number there is no exact wait to honour.
            return TelegramRefused(f"{error_id_of(exc)} without a number of seconds")
        return FloodWait(seconds, kind=error_id_of(exc).removesuffix("_X"))
    if isinstance(exc, errors.PeerFlood):
        return PeerFlood()
    if isinstance(exc, _ACCOUNT_FATAL):
        return AccountUnusable(error_id_of(exc))
    error_id = error_id_of(exc)
    if isinstance(exc, errors.RPCError) and error_id in _ACCOUNT_RESTRICTIONS:
        return AccountUnusable(
            f"{error_id}: {_ACCOUNT_RESTRICTIONS[error_id]}; check it with @SpamBot"
        )
    if isinstance(exc, _NO_ANSWER) or (
        isinstance(exc, errors.RPCError) and error_id in _NO_ANSWER_IDS
    ):
        detail = error_id if isinstance(exc, errors.RPCError) else type(exc).__name__
        target = f"{recipient}: " if recipient else ""
        return SendTimeout(f"{target}no answer from Telegram ({detail})")
    if isinstance(exc, _TEXT):
        return TextRejected(f"{error_id}: Telegram refuses this text")
    if recipient is not None and isinstance(exc, _BLOCKED):
        return RecipientBlocked(recipient, error_id)
    if recipient is not None and isinstance(exc, (*_RECIPIENT, errors.BadRequest)):
        # Any other 400 answers this one request: the recipient fails with Telegram's reason
        # and the broadcast goes on.
        return RecipientUnavailable(recipient, error_id)
    if isinstance(exc, errors.RPCError):
        return TelegramRefused(error_id)
    return None


def error_id_of(exc: BaseException) -> str:
    if isinstance(exc, errors.RPCError):
        if exc.ID:
            return exc.ID
        # An error this kurigram does not know carries "[400 NEW_ERROR_ID]" as its value (an
        # older kurigram does not know some that newer ones map, e.g. a 403 variant).
        if isinstance(exc.value, str) and exc.value:
            return exc.value.strip("[]").rpartition(" ")[2]
        return exc.NAME or type(exc).__name__
    return type(exc).__name__


def int_value(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdecimal():
        return int(value)
    return None
