"""A simulated Telegram, for the demo mode and the tests.

Deterministic from its seed: latency, random FloodWait / PeerFlood / unknown recipients all come
from the network's own :class:`random.Random`, and every wait goes through the injected clock, so
a run on :class:`~app.clock.FakeAsyncClock` takes no real time. Tests script exact errors with
:meth:`SimulatedNetwork.script` and :meth:`SimulatedNetwork.ban`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from app.clock import AsyncClock
from app.transports.base import (
    MAX_MESSAGE_LENGTH,
    AccountInfo,
    AccountUnusable,
    FloodWait,
    LoginError,
    PasswordRequired,
    PeerFlood,
    RecipientUnavailable,
    TextRejected,
    TransportError,
    login_error,
    message_length,
    normalize_phone,
)

KIND = "simulated"
LOGIN_CODE = "12345"
PASSWORD = "secret"
PASSWORD_HINT = "the usual one"

SPAMBOT_FREE = "Good news, no limits are currently applied to your account. You’re free as a bird!"
SPAMBOT_LIMITED = (
    "I’m afraid some Telegram users found your messages annoying and forwarded them to our team "
    "of moderators for inspection. The moderators have confirmed the report and your account is "
    "now limited until {until:%d %b %Y, %H:%M} UTC. While the account is limited, you will not "
    "be able to send messages to people who do not have your number in their phone contacts."
)
#: How long the simulated PeerFlood limit lasts, as @SpamBot reports it.
LIMIT_DURATION = timedelta(days=1)


@dataclass(frozen=True)
class SimulatedMessage:
    """A message the simulated network accepted."""

    account_id: str
    recipient: str
    text: str
    at: datetime


@dataclass
class _Script:
    # Any exception: tests also script what no transport should raise (a bug), to prove the
    # broadcaster still ends its batch properly.
    error: Exception
    at: int | None


@dataclass
class _AccountRecord:
    attempts: int = 0
    scripts: list[_Script] = field(default_factory=list)
    banned: str | None = None
    limited_until: datetime | None = None
    connect_errors: list[TransportError] = field(default_factory=list)


class SimulatedNetwork:
    """The shared, simulated Telegram that all simulated transports talk to."""

    def __init__(
        self,
        seed: int = 0,
        *,
        clock: AsyncClock,
        latency: tuple[float, float] = (0.0, 0.0),
        flood_wait_rate: float = 0.0,
        flood_wait_seconds: tuple[int, int] = (5, 30),
        peer_flood_rate: float = 0.0,
        unknown_user_rate: float = 0.0,
    ) -> None:
        for name, rate in (
            ("flood_wait_rate", flood_wait_rate),
            ("peer_flood_rate", peer_flood_rate),
            ("unknown_user_rate", unknown_user_rate),
        ):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if flood_wait_rate + peer_flood_rate > 1.0:
            raise ValueError("flood_wait_rate + peer_flood_rate must not exceed 1")
        if not 0.0 <= latency[0] <= latency[1]:
            raise ValueError("latency must be (low, high) with 0 <= low <= high")
        if not 0 <= flood_wait_seconds[0] <= flood_wait_seconds[1]:
            raise ValueError("flood_wait_seconds must be (low, high) with 0 <= low <= high")
        self.clock = clock
        self.latency = latency
        self.flood_wait_rate = flood_wait_rate
        self.flood_wait_seconds = flood_wait_seconds
        self.peer_flood_rate = peer_flood_rate
        self.unknown_user_rate = unknown_user_rate
        self._random = random.Random(seed)  # noqa: S311 - a simulation, not cryptography
        self._accounts: dict[str, _AccountRecord] = {}
        self._login_errors: list[TransportError] = []
        #: Every message the network accepted, in order.
        self.sent: list[SimulatedMessage] = []
        #: Send attempts over all accounts, failed ones included.
        self.attempts = 0

    # --- scripting -----------------------------------------------------------------------------

    def script(self, account_id: str, error: Exception, *, at: int | None = None) -> None:
        """Raise ``error`` on the account's next send attempt, or on its ``at``-th (1-based)."""
        record = self._record(account_id)
        if at is not None and at <= record.attempts:
            raise ValueError(f"{account_id} has already made {record.attempts} attempts")
        record.scripts.append(_Script(error, at))

    def ban(self, account_id: str, reason: str = "USER_DEACTIVATED_BAN") -> None:
        """From now on every request of the account fails with ``AccountUnusable(reason)``."""
        self._record(account_id).banned = reason

    def script_connect(self, account_id: str, error: TransportError) -> None:
        """Raise ``error`` on the account's next connect (a FloodWait, a SendTimeout, …)."""
        self._record(account_id).connect_errors.append(error)

    def script_login(self, error: TransportError) -> None:
        """Raise ``error`` on the next login step (send_code, sign_in or check_password)."""
        self._login_errors.append(error)

    def restrict(self, account_id: str) -> None:
        """Telegram restricts the account (USER_RESTRICTED), as the kurigram transport maps it."""
        self.ban(
            account_id,
            "USER_RESTRICTED: Telegram restricted this account (spam reports); "
            "check it with @SpamBot",
        )

    def attempts_of(self, account_id: str) -> int:
        """Send attempts made by one account."""
        return self._record(account_id).attempts

    def spambot_reply(self, account_id: str) -> str:
        """What @SpamBot tells the account: free, or limited after a PeerFlood."""
        until = self._record(account_id).limited_until
        if until is None or until <= self.clock.now():
            return SPAMBOT_FREE
        return SPAMBOT_LIMITED.format(until=until)

    # --- what the transports call --------------------------------------------------------------

    async def send(self, account_id: str, recipient: str, text: str) -> None:
        """One send attempt: wait the latency, then accept the message or raise."""
        self.attempts += 1
        record = self._record(account_id)
        record.attempts += 1
        await self.delay()
        self.check_usable(account_id)
        scripted = self._take_script(record)
        if scripted is not None:
            if isinstance(scripted, PeerFlood):
                self._limit(record)
            raise scripted
        if message_length(text) > MAX_MESSAGE_LENGTH:
            raise TextRejected("MESSAGE_TOO_LONG: Telegram refuses this text")
        if "unknown" in recipient.lower():
            raise RecipientUnavailable(recipient, "USERNAME_NOT_OCCUPIED")
        roll = self._random.random()
        if roll < self.flood_wait_rate:
            raise FloodWait(self._random.randint(*self.flood_wait_seconds))
        if roll < self.flood_wait_rate + self.peer_flood_rate:
            self._limit(record)
            raise PeerFlood()
        if self.unknown_user_rate and self._random.random() < self.unknown_user_rate:
            raise RecipientUnavailable(recipient, "USERNAME_NOT_OCCUPIED")
        self.sent.append(SimulatedMessage(account_id, recipient, text, self.clock.now()))

    async def delay(self) -> None:
        """Wait one round trip."""
        low, high = self.latency
        if high > 0:
            await self.clock.sleep(self._random.uniform(low, high))

    async def connect(self, account_id: str) -> None:
        """Open an account's session: the scripted connect error, a ban, or nothing."""
        await self.delay()
        record = self._record(account_id)
        if record.connect_errors:
            raise record.connect_errors.pop(0)
        self.check_usable(account_id)

    async def login_step(self) -> None:
        """One login request: wait the latency, raise the scripted login error if any."""
        await self.delay()
        if self._login_errors:
            # As the kurigram flow reports them: a login has no Cooldown to wait in.
            raise login_error(self._login_errors.pop(0))

    def check_usable(self, account_id: str) -> None:
        """Raise :class:`AccountUnusable` if the account was banned."""
        reason = self._record(account_id).banned
        if reason is not None:
            raise AccountUnusable(reason)

    # --- internals -----------------------------------------------------------------------------

    def _record(self, account_id: str) -> _AccountRecord:
        return self._accounts.setdefault(account_id, _AccountRecord())

    def _limit(self, record: _AccountRecord) -> None:
        record.limited_until = self.clock.now() + LIMIT_DURATION

    @staticmethod
    def _take_script(record: _AccountRecord) -> Exception | None:
        # A script for exactly this attempt wins over one queued for "the next attempt".
        for candidates in (
            [s for s in record.scripts if s.at == record.attempts],
            [s for s in record.scripts if s.at is None],
        ):
            if candidates:
                record.scripts.remove(candidates[0])
                return candidates[0].error
        return None


class SimulatedTransport:
    """One simulated account; implements :class:`~app.transports.base.Transport`."""

    def __init__(self, network: SimulatedNetwork, account: AccountInfo) -> None:
        self.network = network
        self.account = account
        self.connected = False

    async def connect(self) -> None:
        if self.connected:
            return
        await self.network.connect(self.account.account_id)
        self.connected = True

    async def disconnect(self) -> None:
        self.connected = False

    async def send_message(self, recipient: str, text: str) -> None:
        await self.connect()
        await self.network.send(self.account.account_id, recipient, text)

    async def ask_spambot(self) -> str:
        await self.connect()
        await self.network.delay()
        self.network.check_usable(self.account.account_id)
        return self.network.spambot_reply(self.account.account_id)


class SimulatedLoginFlow:
    """Accepts any valid phone, the code ``12345`` and, for phones ending in 2, ``secret``."""

    def __init__(self, network: SimulatedNetwork) -> None:
        self.network = network
        self._phone: str | None = None
        self._password_needed = False

    async def send_code(self, phone: str) -> None:
        digits = normalize_phone(phone)
        await self.network.login_step()
        self._phone = digits
        self._password_needed = False

    async def sign_in(self, code: str) -> AccountInfo:
        phone = self._require_phone()
        await self.network.login_step()
        if code.strip() != LOGIN_CODE:
            raise LoginError("wrong code")
        if phone.endswith("2"):
            self._password_needed = True
            raise PasswordRequired(PASSWORD_HINT)
        return self._finish(phone)

    async def check_password(self, password: str) -> AccountInfo:
        phone = self._require_phone()
        if not self._password_needed:
            raise LoginError("no password was asked for; enter the code first")
        await self.network.login_step()
        if password != PASSWORD:
            raise LoginError("wrong password")
        return self._finish(phone)

    async def cancel(self) -> None:
        self._phone = None
        self._password_needed = False

    def _require_phone(self) -> str:
        if self._phone is None:
            raise LoginError("request a code first")
        return self._phone

    def _finish(self, phone: str) -> AccountInfo:
        self._phone = None
        self._password_needed = False
        return AccountInfo(account_id=phone, display_name=f"Demo {phone[-4:]}", kind=KIND)


class SimulatedTransportFactory:
    """Makes simulated transports and login flows on one :class:`SimulatedNetwork`."""

    kind = KIND

    def __init__(self, network: SimulatedNetwork) -> None:
        self.network = network

    def login_flow(self) -> SimulatedLoginFlow:
        return SimulatedLoginFlow(self.network)

    def transport(self, account: AccountInfo) -> SimulatedTransport:
        return SimulatedTransport(self.network, account)

    def remove(self, account: AccountInfo) -> None:
        # A simulated account has no session files; nothing to forget.
        pass
