"""The Telegram seam: what the broadcaster needs from an account, and the errors it can meet.

Two implementations: :mod:`app.transports.pyrogram_transport` (kurigram, the real network) and
:mod:`app.transports.simulated` (deterministic, for the demo and the tests). The broadcaster and
the anti-spam state machine only ever see the types in this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class TransportError(Exception):
    """Base class of everything a transport raises."""


class FloodWait(TransportError):
    """Telegram asked this account to wait ``seconds`` before the next request.

    FLOOD_WAIT_X, SLOWMODE_WAIT_X and FLOOD_PREMIUM_WAIT_X all arrive here; the caller waits
    exactly ``seconds`` and then goes on.
    """

    def __init__(self, seconds: int, kind: str = "FLOOD_WAIT") -> None:
        super().__init__(f"{kind}: wait {seconds} s")
        self.seconds = int(seconds)
        self.kind = kind


class PeerFlood(TransportError):
    """Telegram refuses messages to new contacts from this account (PEER_FLOOD)."""

    def __init__(self, message: str = "PEER_FLOOD: Telegram limits this account") -> None:
        super().__init__(message)


class AccountUnusable(TransportError):
    """The account cannot be used at all (banned, deactivated, session revoked). Fatal.

    Also the account-level restrictions (USER_RESTRICTED, USER_BANNED_IN_CHANNEL): Telegram says
    this account may not send, so it stops and is Excluded with ``reason`` until the user, after
    checking @SpamBot, restores it.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SendTimeout(TransportError):
    """No answer from Telegram in time; whether the message went out is unknown."""


class RecipientOutcome(StrEnum):
    """The kind of a per-recipient failure, which decides what the broadcaster does next."""

    #: Not deliverable now (no such user, privacy settings, …): marked failed, nothing more.
    UNAVAILABLE = "unavailable"
    #: The recipient blocked the account, or can never be written to again (USER_IS_BLOCKED,
    #: YOU_BLOCKED_USER, INPUT_USER_DEACTIVATED): marked failed AND put on the suppression list,
    #: so no later broadcast of any list sends to them.
    BLOCKED = "blocked"


class RecipientUnavailable(TransportError):
    """This recipient cannot receive the message (no such user, privacy, blocked, …).

    Not the account's fault: the recipient is marked failed and the broadcast goes on. ``kind``
    says whether the recipient is also never to be sent to again (:class:`RecipientBlocked`).
    """

    kind: RecipientOutcome = RecipientOutcome.UNAVAILABLE

    def __init__(self, recipient: str, reason: str) -> None:
        super().__init__(f"{recipient}: {reason}")
        self.recipient = recipient
        self.reason = reason


class RecipientBlocked(RecipientUnavailable):
    """The recipient blocked this account (USER_IS_BLOCKED and kin).

    A :class:`RecipientUnavailable` like the others (marked failed, the broadcast goes on), kept
    apart so that the caller can also put the recipient on the suppression list: sending again
    would only be refused again, and it was the person's own choice.
    """

    kind = RecipientOutcome.BLOCKED


class TextRejected(TransportError):
    """Telegram refuses the message's text itself (too long, empty): no recipient can get it.

    The broadcast stops with ``reason``; sending it to the next recipient would fail the same way.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TelegramRefused(TransportError):
    """Telegram answered with an error this program has no rule for (not a recipient's 400).

    The broadcast stops with ``reason`` (Telegram's error id) and can be resumed; the account's
    state is left alone, because nothing says the account is at fault.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LoginError(TransportError):
    """Adding an account failed (bad phone, bad or expired code, bad password, …)."""


class InvalidPhone(LoginError):
    """The phone number is not one (checked here, before Telegram is asked)."""


class LoginEmailRequired(LoginError):
    """Telegram will not send a login code until the account sets up a login email.

    (auth.sentCodeTypeSetUpEmailRequired.) TGFlow cannot do that step; without this error the
    user would wait for a code that never comes.
    """

    def __init__(self) -> None:
        super().__init__(
            "SETUP_EMAIL_REQUIRED: Telegram asks this account to set up a login email first; "
            "sign in once in an official Telegram app, add the email there, then try again"
        )


class PasswordRequired(TransportError):
    """The account has two-step verification; ask for the cloud password next."""

    def __init__(self, hint: str | None = None) -> None:
        super().__init__("two-step verification password required")
        self.hint = hint


def login_error(exc: TransportError) -> LoginError:
    """What a transport error means while adding an account (a login has no Cooldown to wait
    in: the user is told how long to wait, or what else went wrong)."""
    if isinstance(exc, LoginError):
        return exc
    if isinstance(exc, FloodWait):
        return LoginError(f"Telegram asks to wait {exc.seconds} s before the next login attempt")
    if isinstance(exc, SendTimeout):
        return LoginError("no answer from Telegram; check the connection and try again")
    reason = getattr(exc, "reason", None) or str(exc)
    return LoginError(f"Telegram refused the login: {reason}")


#: Telegram's limit on one text message, in UTF-16 code units (see :func:`message_length`).
MAX_MESSAGE_LENGTH = 4096
#: The largest user id kurigram can address (``pyrogram.utils.MAX_USER_ID``, 2^40 − 1).
MAX_USER_ID = (1 << 40) - 1


def message_length(text: str) -> int:
    """The length Telegram holds against :data:`MAX_MESSAGE_LENGTH`: UTF-16 code units.

    Telegram measures message text (and entity offsets) in UTF-16 code units, so an emoji outside
    the Basic Multilingual Plane counts 2. Counting code points would let such a text through our
    check only for Telegram to refuse it with MESSAGE_TOO_LONG mid-run.
    """
    return len(text.encode("utf-16-le")) // 2


def check_text(text: str) -> None:
    """Raise :class:`TextRejected` for a text Telegram would refuse for every recipient."""
    if not text.strip():
        raise TextRejected("MESSAGE_EMPTY: the message has no text")
    length = message_length(text)
    if length > MAX_MESSAGE_LENGTH:
        raise TextRejected(
            f"MESSAGE_TOO_LONG: the text has {length} characters, Telegram allows "
            f"{MAX_MESSAGE_LENGTH}"
        )


_PHONE = re.compile(r"\+?(\d{7,15})")
_PHONE_PUNCTUATION = re.compile(r"[\s()\-]")


def normalize_phone(phone: str) -> str:
    """The digits of a phone number written ``+7 (999) 123-45-67``; raises :class:`LoginError`."""
    match = _PHONE.fullmatch(_PHONE_PUNCTUATION.sub("", phone))
    if match is None:
        raise InvalidPhone("invalid phone number: expected + and 7 to 15 digits")
    return match.group(1)


@dataclass(frozen=True)
class AccountInfo:
    """A Telegram account added to TGFlow."""

    #: Stable id inside TGFlow: the phone number's digits.
    account_id: str
    display_name: str
    #: ``telegram`` (kurigram) or ``simulated``.
    kind: str


class Transport(Protocol):
    """One connected Telegram account."""

    account: AccountInfo

    async def connect(self) -> None:
        """Open the session (idempotent)."""
        ...

    async def disconnect(self) -> None:
        """Close the session (idempotent)."""
        ...

    async def send_message(self, recipient: str, text: str) -> None:
        """Send ``text`` to ``recipient`` (``@username``, ``+phone`` or a numeric user id).

        Returns when Telegram has accepted the message; raises one of this module's errors.
        """
        ...

    async def ask_spambot(self) -> str:
        """Send ``/start`` to @SpamBot and return its answer (the account's limits, if any)."""
        ...


class LoginFlow(Protocol):
    """Adding an account: phone → code → (password)."""

    async def send_code(self, phone: str) -> None:
        """Ask Telegram to send a login code to ``phone``. Raises :class:`LoginError`."""
        ...

    async def sign_in(self, code: str) -> AccountInfo:
        """Finish with the code; raises :class:`PasswordRequired` or :class:`LoginError`."""
        ...

    async def check_password(self, password: str) -> AccountInfo:
        """Finish with the two-step verification password; raises :class:`LoginError`."""
        ...

    async def cancel(self) -> None:
        """Abandon the flow and drop any half-made session."""
        ...


class TransportFactory(Protocol):
    """Makes transports and login flows of one kind (real or simulated)."""

    kind: str

    def login_flow(self) -> LoginFlow:
        """A new login flow."""
        ...

    def transport(self, account: AccountInfo) -> Transport:
        """The transport of an account added earlier."""
        ...

    def remove(self, account: AccountInfo) -> None:
        """Forget the account's session (its files)."""
        ...
