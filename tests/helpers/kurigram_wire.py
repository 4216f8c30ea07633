"""Telegram's side of the wire, for kurigram's real :class:`pyrogram.Client`.

Everything above the wire is kurigram's own code: the Client, its methods, its SQLite session
storage, ``Session.invoke`` (with its FloodWait sleep threshold and its retries) and the error
classes, raised by ``RPCError.raise_it`` from the ``rpc_error`` Telegram would send. Only
``Session.send`` (the encrypted round trip), ``Session.start``/``stop`` (the TCP connection) and
``Auth.create`` (the key exchange) are replaced; the sleeps of kurigram's session module are
recorded instead of slept. The wire answers each raw function like Telegram does, from a small
directory of users, and keeps every query it received so that tests assert on what would really
have been sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from io import BytesIO
from types import ModuleType
from typing import Any

import pytest
from pyrogram import raw, utils
from pyrogram.crypto.prime import CURRENT_DH_PRIME
from pyrogram.errors import RPCError
from pyrogram.raw.core import TLObject
from pyrogram.session import Auth, Session
from pyrogram.session import session as session_module

SELF_ID = 1
SPAMBOT_ID = 178220800
LOGIN_CODE = "11111"

Answer = Callable[[Any], Any]


def user(
    user_id: int,
    *,
    first_name: str | None = None,
    last_name: str | None = None,
    username: str | None = None,
    phone: str | None = None,
    bot: bool = False,
    is_self: bool = False,
) -> raw.types.User:
    """A raw user as Telegram describes one."""
    return raw.types.User(
        id=user_id,
        access_hash=user_id * 7919,
        first_name=first_name,
        last_name=last_name,
        username=username,
        phone=phone,
        bot=bot,
        is_self=is_self,
        bot_info_version=1 if bot else None,
    )


class _SleepRecorder(ModuleType):
    """kurigram's session module's ``asyncio``, with ``sleep`` recorded instead of slept."""

    def __init__(self, sleeps: list[float]) -> None:
        super().__init__("asyncio")
        self._sleeps = sleeps

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def sleep(self, delay: float, result: Any = None) -> Any:
        self._sleeps.append(delay)
        await asyncio.sleep(0)
        return result


@dataclass
class Wire:
    """Telegram, as far as the tests need it."""

    users: list[raw.types.User] = field(
        default_factory=lambda: [
            user(SELF_ID, first_name="Alice", last_name="Liddell", phone="15550000001"),
            user(SPAMBOT_ID, first_name="Spam Info Bot", username="SpamBot", bot=True),
            user(1001, first_name="Bob", username="bob_smith", phone="15550001001"),
            user(1002, first_name="Carol", username="carol_jones", phone="15550001002"),
            user(4242, first_name="Dave"),
        ]
    )
    #: Every raw function received, unwrapped from InvokeWithoutUpdates, in order.
    queries: list[TLObject] = field(default_factory=list)
    #: What kurigram's session slept (seconds), instead of sleeping.
    sleeps: list[float] = field(default_factory=list)
    #: The account's two-step verification password (``None``: none set).
    password: str | None = None
    password_hint: str = "cat's name"
    #: What auth.sendCode answers with (its ``type``).
    sent_code_type: TLObject = field(
        default_factory=lambda: raw.types.auth.SentCodeTypeApp(length=5)
    )
    #: What @SpamBot answers to the next messages sent to it, in order.
    spambot_answers: list[str] = field(default_factory=list)
    _failures: dict[type[TLObject], list[tuple[int | None, object]]] = field(default_factory=dict)
    _history: list[raw.types.Message] = field(default_factory=list)
    _srp: tuple[int, int, bytes, bytes] | None = None
    _sent: list[tuple[int, str, Any]] = field(default_factory=list)

    # --- scripting -----------------------------------------------------------------------------

    def fail(
        self,
        function: type[TLObject],
        error: str | BaseException,
        code: int = 400,
        *,
        at: int | None = None,
    ) -> None:
        """Answer the next ``function`` (or its ``at``-th call, 1-based, counting all calls of
        it so far) with Telegram's ``rpc_error`` ``code``/``error``, or raise ``error``."""
        item: object = (
            raw.types.RpcError(error_code=code, error_message=error)
            if isinstance(error, str)
            else error
        )
        self._failures.setdefault(function, []).append((at, item))

    def calls(self, function: type[TLObject]) -> list[Any]:
        """The queries of one raw function received so far."""
        return [query for query in self.queries if isinstance(query, function)]

    def sent(self) -> list[tuple[int, str, Any]]:
        """``(user id, text, entities)`` of every message Telegram accepted, in order."""
        return list(self._sent)

    # --- the wire ------------------------------------------------------------------------------

    async def send(self, data: TLObject) -> Any:
        inner = data
        wrappers = (raw.functions.InvokeWithoutUpdates, raw.functions.InvokeWithTakeout)
        while isinstance(inner, wrappers):
            inner = inner.query
        self.queries.append(inner)
        await asyncio.sleep(0)
        item = self._take_failure(inner)
        if item is not None:
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, raw.types.RpcError)
            RPCError.raise_it(item, type(inner))
        answer = getattr(self, "_" + type(inner).__name__, None)
        if answer is None:
            raise AssertionError(f"the fake wire has no answer for {inner.QUALNAME}")
        return _through_the_wire(answer(inner))

    def _take_failure(self, inner: TLObject) -> object | None:
        queued = self._failures.get(type(inner), [])
        count = len(self.calls(type(inner)))
        for candidates in (
            [f for f in queued if f[0] == count],
            [f for f in queued if f[0] is None],
        ):
            if candidates:
                queued.remove(candidates[0])
                return candidates[0][1]
        return None

    def _error(self, query: TLObject, code: int, message: str) -> Any:
        RPCError.raise_it(raw.types.RpcError(error_code=code, error_message=message), type(query))

    def _user(self, **match: object) -> raw.types.User | None:
        for candidate in self.users:
            if all(getattr(candidate, key) == value for key, value in match.items()):
                return candidate
        return None

    def _resolved(self, found: raw.types.User) -> raw.types.contacts.ResolvedPeer:
        return raw.types.contacts.ResolvedPeer(
            peer=raw.types.PeerUser(user_id=found.id), chats=[], users=[found]
        )

    # Answers, named after the raw function's class.

    def _SendCode(self, query: Any) -> Any:
        return raw.types.auth.SentCode(type=self.sent_code_type, phone_code_hash="hash-1")

    def _SignIn(self, query: Any) -> Any:
        if query.phone_code != LOGIN_CODE:
            return self._error(query, 400, "PHONE_CODE_INVALID")
        if self.password is not None:
            return self._error(query, 401, "SESSION_PASSWORD_NEEDED")
        return raw.types.auth.Authorization(user=self._me())

    def _GetPassword(self, query: Any) -> Any:
        # Two-step verification is SRP: the check below is the server's half of it, so a wrong
        # password really fails and a right one really passes kurigram's own computation.
        salt1, salt2 = os.urandom(8), os.urandom(16)
        algo = raw.types.PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow(
            salt1=salt1, salt2=salt2, g=3, p=utils.itob(CURRENT_DH_PRIME)
        )
        x = utils.btoi(utils.compute_password_hash(algo, self.password or ""))
        p, g = CURRENT_DH_PRIME, 3
        v = pow(g, x, p)
        b = utils.btoi(os.urandom(256))
        k = utils.btoi(utils.sha256(utils.itob(p) + utils.itob(g)))
        big_b = (k * v + pow(g, b, p)) % p
        self._srp = (b, v, salt1, salt2)
        return raw.types.account.Password(
            new_algo=raw.types.PasswordKdfAlgoUnknown(),
            new_secure_algo=raw.types.SecurePasswordKdfAlgoUnknown(),
            secure_random=os.urandom(32),
            has_password=True,
            current_algo=algo,
            srp_B=utils.itob(big_b),
            srp_id=7,
            hint=self.password_hint,
        )

    def _CheckPassword(self, query: Any) -> Any:
        assert self._srp is not None, "account.getPassword comes first"
        b, v, salt1, salt2 = self._srp
        p, g = CURRENT_DH_PRIME, 3
        k = utils.btoi(utils.sha256(utils.itob(p) + utils.itob(g)))
        big_b = (k * v + pow(g, b, p)) % p
        a_bytes = query.password.A
        u = utils.btoi(utils.sha256(a_bytes + utils.itob(big_b)))
        s = pow(utils.btoi(a_bytes) * pow(v, u, p), b, p)
        expected = utils.sha256(
            utils.xor(utils.sha256(utils.itob(p)), utils.sha256(utils.itob(g)))
            + utils.sha256(salt1)
            + utils.sha256(salt2)
            + a_bytes
            + utils.itob(big_b)
            + utils.sha256(utils.itob(s))
        )
        if expected != query.password.M1:
            return self._error(query, 400, "PASSWORD_HASH_INVALID")
        return raw.types.auth.Authorization(user=self._me())

    def _GetFullUser(self, query: Any) -> Any:
        me = self._me()
        return raw.types.users.UserFull(
            full_user=raw.types.UserFull(
                id=me.id,
                settings=raw.types.PeerSettings(),
                notify_settings=raw.types.PeerNotifySettings(),
                common_chats_count=0,
            ),
            chats=[],
            users=[me],
        )

    def _ResolveUsername(self, query: Any) -> Any:
        found = None
        for candidate in self.users:
            if candidate.username and candidate.username.lower() == query.username.lower():
                found = candidate
        if found is None:
            return self._error(query, 400, "USERNAME_NOT_OCCUPIED")
        return self._resolved(found)

    def _ResolvePhone(self, query: Any) -> Any:
        found = self._user(phone=query.phone)
        if found is None:
            return self._error(query, 400, "PHONE_NOT_OCCUPIED")
        return self._resolved(found)

    def _GetUsers(self, query: Any) -> Any:
        return [
            found
            for wanted in query.id
            if (found := self._user(id=getattr(wanted, "user_id", None))) is not None
        ]

    def _SendMessage(self, query: Any) -> Any:
        peer_id = query.peer.user_id
        message_id = len(self._history) + 1
        self._sent.append((peer_id, query.message, query.entities))
        now = int(time.time())
        self._history.append(
            raw.types.Message(
                id=message_id,
                peer_id=raw.types.PeerUser(user_id=peer_id),
                date=now,
                message=query.message,
                out=True,
            )
        )
        if peer_id == SPAMBOT_ID and self.spambot_answers:
            self._history.append(
                raw.types.Message(
                    id=message_id + 1,
                    peer_id=raw.types.PeerUser(user_id=SPAMBOT_ID),
                    from_id=raw.types.PeerUser(user_id=SPAMBOT_ID),
                    date=now,
                    message=self.spambot_answers.pop(0),
                    out=False,
                )
            )
        return raw.types.UpdateShortSentMessage(
            id=message_id, pts=message_id, pts_count=1, date=now, out=True
        )

    def _GetHistory(self, query: Any) -> Any:
        peer_id = query.peer.user_id
        chat = [m for m in self._history if m.peer_id.user_id == peer_id]
        newest = list(reversed(chat))[: query.limit]
        # Newer layers add required vectors (``topics``); fill any we do not know as empty.
        required = inspect.signature(raw.types.messages.Messages.__init__).parameters
        extra = {
            name: []
            for name, param in required.items()
            if param.kind is param.KEYWORD_ONLY
            and param.default is param.empty
            and name not in {"messages", "chats", "users"}
        }
        return raw.types.messages.Messages(
            messages=newest, chats=[], users=[self._user(id=peer_id)], **extra
        )

    def _me(self) -> raw.types.User:
        me = self._user(id=SELF_ID)
        assert me is not None
        me.is_self = True
        return me


def _through_the_wire(result: Any) -> Any:
    """``result`` serialised and read back, as kurigram gets it from Telegram (absent optional
    vectors become ``[]``, and so on)."""
    if isinstance(result, list):
        return [_through_the_wire(item) for item in result]
    return TLObject.read(BytesIO(result.write()))


def install(monkeypatch: pytest.MonkeyPatch, wire: Wire) -> None:
    """Route every kurigram Client's requests in this test to ``wire``."""

    async def start(self: Session) -> None:
        self.is_started.set()

    async def stop(self: Session, *args: Any, **kwargs: Any) -> None:
        self.is_started.clear()

    async def send(self: Session, data: TLObject, *args: Any, **kwargs: Any) -> Any:
        return await wire.send(data)

    async def create(self: Auth) -> bytes:
        return hashlib.sha256(b"auth key").digest() * 8  # 256 bytes, as a real key

    monkeypatch.setattr(Session, "start", start)
    monkeypatch.setattr(Session, "stop", stop)
    monkeypatch.setattr(Session, "send", send)
    monkeypatch.setattr(Auth, "create", create)
    monkeypatch.setattr(session_module, "asyncio", _SleepRecorder(wire.sleeps))
