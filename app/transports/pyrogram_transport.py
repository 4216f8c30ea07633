"""The real Telegram, through kurigram (imported as ``pyrogram``).

Every :class:`pyrogram.Client` is built with ``sleep_threshold=0``, so kurigram never sleeps
through a FloodWait on its own: each one reaches :func:`map_error` and then the anti-spam state
machine, which waits exactly what Telegram asked and shows it. A Client captures the event loop
it is built on, so it is only ever built inside a coroutine running on the engine loop
(:meth:`PyrogramTransportFactory._make_client`), never in a constructor.

Sessions are SQLite files ``<account_id>.session`` in a 0700 directory. A login writes to a
separate ``<account_id>.login.session`` and only replaces the account's session once it has
succeeded, so an abandoned login never damages a working account.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import Awaitable
from pathlib import Path
from typing import NoReturn, TypeVar

import pyrogram
from pyrogram import enums, errors, raw
from pyrogram.types import User

from app.clock import AsyncClock, SystemAsyncClock
from app.transports.base import (
    MAX_USER_ID,
    AccountInfo,
    AccountUnusable,
    LoginEmailRequired,
    LoginError,
    PasswordRequired,
    RecipientUnavailable,
    SendTimeout,
    TransportError,
    login_error,
    normalize_phone,
)
from app.transports.pyrogram_errors import HINT_FAILURES, map_error

log = logging.getLogger("tgflow.transport")

KIND = "telegram"
SPAMBOT = "SpamBot"
#: How often, and how many times, @SpamBot's history is read while waiting for its answer.
SPAMBOT_POLL_INTERVAL = 1.0
SPAMBOT_POLLS = 15

_SESSION_SUFFIXES = (".session", ".session-journal", ".session-wal", ".session-shm")
_LOGIN_INFIX = ".login"

_T = TypeVar("_T")

#: Telegram's answer to auth.sendCode when no code will come until a login email is set up.
_SETUP_EMAIL_REQUIRED = enums.SentCodeType.SETUP_EMAIL_REQUIRED


def display_name(user: User) -> str:
    """``First Last``, else the username, else the id."""
    full = " ".join(part for part in (user.first_name, user.last_name) if part)
    return full or user.username or str(user.id)


def peer(recipient: str) -> int | str:
    """What kurigram should get for a recipient: numeric user ids as ``int``.

    kurigram reads a string of digits as a phone number, so ``"123456"`` must become an int;
    ``"+7999…"`` and ``"@name"`` stay strings. A user id kurigram cannot address (above
    2^40 − 1, where its ``get_peer_type`` raises a bare ValueError) is refused here as this
    recipient's failure.
    """
    text = recipient.strip()
    if text.lstrip("-").isdecimal():
        number = int(text)
        if number > MAX_USER_ID:
            raise RecipientUnavailable(
                recipient, f"PEER_ID_INVALID: a user id is at most {MAX_USER_ID}"
            )
        return number
    return text


class PyrogramTransportFactory:
    """Makes kurigram transports and login flows sharing one session directory."""

    kind = KIND

    def __init__(
        self,
        api_id: int,
        api_hash: str,
        session_dir: Path,
        *,
        timeout: float = 30.0,
        clock: AsyncClock | None = None,
    ) -> None:
        if api_id <= 0 or not api_hash:
            raise ValueError("[telegram] api_id and api_hash are required")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.api_id = api_id
        self.api_hash = api_hash
        self.session_dir = session_dir
        self.timeout = timeout
        self.clock: AsyncClock = clock or SystemAsyncClock()
        session_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkdir's mode is filtered by the umask and ignored for an existing directory.
        os.chmod(session_dir, 0o700)

    def login_flow(self) -> PyrogramLoginFlow:
        return PyrogramLoginFlow(self)

    def transport(self, account: AccountInfo) -> PyrogramTransport:
        return PyrogramTransport(self, account)

    def remove(self, account: AccountInfo) -> None:
        for name in (account.account_id, account.account_id + _LOGIN_INFIX):
            remove_session_files(self.session_dir, name)

    def session_file(self, name: str) -> Path:
        """The SQLite session file of a client called ``name``."""
        return self.session_dir / f"{name}.session"

    def _make_client(self, name: str) -> pyrogram.Client:
        """A new, unstarted Client on the running loop (RuntimeError outside one)."""
        loop = asyncio.get_running_loop()
        return pyrogram.Client(
            name=name,
            api_id=self.api_id,
            api_hash=self.api_hash,
            workdir=str(self.session_dir),
            sleep_threshold=0,
            no_updates=True,
            # Each of these costs extra requests per message; a broadcaster needs none of them.
            fetch_replies=False,
            fetch_topics=False,
            fetch_stories=False,
            fetch_stickers=False,
            loop=loop,
        )

    async def _call(self, awaitable: Awaitable[_T]) -> _T:
        return await asyncio.wait_for(awaitable, self.timeout)


def remove_session_files(session_dir: Path, name: str) -> None:
    """Delete a client's session file and SQLite's side files."""
    for suffix in _SESSION_SUFFIXES:
        with contextlib.suppress(FileNotFoundError):
            (session_dir / f"{name}{suffix}").unlink()


async def _close(client: pyrogram.Client) -> None:
    if client.is_connected:
        # kurigram's disconnect() closes the SQLite session without committing it, and only
        # Client.stop() (which we do not use: it starts the update machinery) saves. Without
        # this, every peer resolved in the run (rate-limited ResolveUsername / ResolvePhone) is
        # lost and resolved again next time.
        try:
            await client.storage.save()
        except Exception as exc:  # losing the cache must not keep the session open
            log.warning("could not save the session of %s: %s", client.name, exc)
        with contextlib.suppress(ConnectionError):
            await client.disconnect()


class PyrogramLoginFlow:
    """Adds an account: phone → code → (cloud password), on a temporary session file."""

    def __init__(self, factory: PyrogramTransportFactory) -> None:
        self._factory = factory
        self._client: pyrogram.Client | None = None
        self._phone: str | None = None
        self._code_hash: str | None = None

    async def send_code(self, phone: str) -> None:
        digits = normalize_phone(phone)
        await self.cancel()
        client = self._factory._make_client(digits + _LOGIN_INFIX)
        self._client = client
        try:
            await self._factory._call(client.connect())
            sent = await self._factory._call(client.send_code(digits))
        except errors.PhoneNumberInvalid as exc:
            await self.cancel()
            raise LoginError("Telegram says this phone number is invalid") from exc
        except errors.PhoneNumberBanned as exc:
            await self.cancel()
            raise LoginError("this phone number is banned by Telegram") from exc
        except errors.PhoneNumberFlood as exc:
            await self.cancel()
            raise LoginError("too many login attempts for this number; try again later") from exc
        except Exception as exc:
            await self.cancel()
            _raise_login_error(exc)
        if sent.type == _SETUP_EMAIL_REQUIRED:
            await self.cancel()
            raise LoginEmailRequired()
        self._phone = digits
        self._code_hash = sent.phone_code_hash

    async def sign_in(self, code: str) -> AccountInfo:
        client, phone, code_hash = self._pending()
        try:
            result = await self._factory._call(client.sign_in(phone, code_hash, code.strip()))
        except errors.PhoneCodeInvalid as exc:
            raise LoginError("wrong code") from exc
        except errors.PhoneCodeExpired as exc:
            raise LoginError("the code has expired; request a new one") from exc
        except errors.SessionPasswordNeeded as exc:
            raise PasswordRequired(await self._password_hint(client)) from exc
        except Exception as exc:
            _raise_login_error(exc)
        if not isinstance(result, User):
            # False or terms of service: the number has no Telegram account yet.
            await self.cancel()
            raise LoginError("this number has no Telegram account; sign up in a Telegram app first")
        return await self._finish(client, phone)

    async def check_password(self, password: str) -> AccountInfo:
        client, phone, _ = self._pending()
        try:
            await self._factory._call(client.check_password(password))
        except errors.PasswordHashInvalid as exc:
            raise LoginError("wrong password") from exc
        except Exception as exc:
            _raise_login_error(exc)
        return await self._finish(client, phone)

    async def cancel(self) -> None:
        client, self._client = self._client, None
        self._phone = self._code_hash = None
        if client is not None:
            await _close(client)
            remove_session_files(self._factory.session_dir, client.name)

    def _pending(self) -> tuple[pyrogram.Client, str, str]:
        if self._client is None or self._phone is None or self._code_hash is None:
            raise LoginError("request a code first")
        return self._client, self._phone, self._code_hash

    async def _password_hint(self, client: pyrogram.Client) -> str | None:
        try:
            return await self._factory._call(client.get_password_hint()) or None
        except HINT_FAILURES:
            # The hint is a nicety; the password prompt works without it.
            return None

    async def _finish(self, client: pyrogram.Client, phone: str) -> AccountInfo:
        try:
            me = await self._factory._call(client.get_me())
        except Exception as exc:
            _raise_login_error(exc)
        await _close(client)
        self._client = None
        self._phone = self._code_hash = None
        factory = self._factory
        remove_session_files(factory.session_dir, phone)
        os.replace(factory.session_file(client.name), factory.session_file(phone))
        remove_session_files(factory.session_dir, client.name)
        return AccountInfo(account_id=phone, display_name=display_name(me), kind=KIND)


def _raise_login_error(exc: Exception) -> NoReturn:
    """Raise the :class:`LoginError` for a failure during a login, or ``exc`` itself."""
    if isinstance(exc, LoginError):
        raise exc
    mapped = exc if isinstance(exc, TransportError) else map_error(exc, None)
    if mapped is None:
        raise exc
    raise login_error(mapped) from exc


class PyrogramTransport:
    """One signed-in account; implements :class:`~app.transports.base.Transport`."""

    def __init__(self, factory: PyrogramTransportFactory, account: AccountInfo) -> None:
        self._factory = factory
        self.account = account
        self._client: pyrogram.Client | None = None
        # Binds to a loop only when first used (Python 3.10+), so safe to make here.
        self._connecting = asyncio.Lock()

    async def connect(self) -> None:
        async with self._connecting:
            if self._client is None:
                self._client = await self._connected_client()

    async def disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await _close(client)

    async def send_message(self, recipient: str, text: str) -> None:
        client = await self._require_client()
        target = peer(recipient)
        try:
            # DISABLED: the text goes exactly as written. kurigram's default parses Markdown
            # and HTML, so "2*3 **today** __init__ <b>x</b>" would arrive as "2*3 today init x",
            # not what the preview showed.
            await self._factory._call(
                client.send_message(target, text, parse_mode=enums.ParseMode.DISABLED)
            )
        except Exception as exc:
            mapped = map_error(exc, recipient)
            if mapped is None:
                raise
            raise mapped from exc

    async def ask_spambot(self) -> str:
        client = await self._require_client()
        try:
            asked = await self._factory._call(
                client.send_message(SPAMBOT, "/start", parse_mode=enums.ParseMode.DISABLED)
            )
            after = asked.id if asked is not None else 0
            for _ in range(SPAMBOT_POLLS):
                await self._factory.clock.sleep(SPAMBOT_POLL_INTERVAL)
                latest = await self._factory._call(_latest_message(client, SPAMBOT))
                if latest is not None and latest.id > after and not latest.out:
                    return latest.message
        except Exception as exc:
            mapped = map_error(exc, "@" + SPAMBOT)
            if mapped is None:
                raise
            raise mapped from exc
        raise SendTimeout(
            f"@{SPAMBOT} did not answer within {SPAMBOT_POLLS * SPAMBOT_POLL_INTERVAL:.0f} s"
        )

    async def _require_client(self) -> pyrogram.Client:
        await self.connect()
        assert self._client is not None
        return self._client

    async def _connected_client(self) -> pyrogram.Client:
        account_id = self.account.account_id
        if not self._factory.session_file(account_id).exists():
            raise AccountUnusable("NO_SESSION: add the account again")
        client = self._factory._make_client(account_id)
        try:
            authorized = await self._factory._call(client.connect())
            if not authorized:
                raise AccountUnusable("AUTH_KEY_UNREGISTERED")
            # As Client.start() does: parsing messages consults client.me.
            client.me = await self._factory._call(client.get_me())
        except sqlite3.DatabaseError as exc:
            await _close(client)
            raise AccountUnusable(f"SESSION_UNREADABLE: add the account again ({exc})") from exc
        except Exception as exc:
            await _close(client)
            mapped = map_error(exc, None)
            if mapped is None:
                raise
            raise mapped from exc
        return client


async def _latest_message(client: pyrogram.Client, chat: str) -> raw.types.Message | None:
    """The chat's newest message, read with the raw messages.getHistory.

    Not ``Client.get_chat_history``: it calls invoke with a hard-coded ``sleep_threshold=60``,
    so a FloodWait under a minute would be slept through inside kurigram (the engine loop's
    task stuck, the wait not shown, the anti-spam state machine never told). Here the Client's
    own threshold, 0, applies: the FloodWait reaches :func:`map_error`.
    """
    input_peer = await client.resolve_peer(chat)
    if input_peer is None:
        return None
    history = await client.invoke(
        raw.functions.messages.GetHistory(
            peer=input_peer,
            offset_id=0,
            offset_date=0,
            add_offset=0,
            limit=1,
            max_id=0,
            min_id=0,
            hash=0,
        )
    )
    for message in getattr(history, "messages", []):
        if isinstance(message, raw.types.Message):
            return message
    return None
