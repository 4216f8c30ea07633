"""The license client: login, token refresh, license and lease, devices, usage, with retries.

:class:`AsyncLicenseClient` composes the agent's pieces around one ``httpx.AsyncClient``:

* :class:`agent.secrets.RefreshTokenStore` keeps the refresh token. Refresh tokens rotate on every
  use, so the new one is saved (durably) before the client uses anything the refresh returned.
* :class:`agent.key_pins.PinnedKeySet` / :class:`agent.tokens.TokenVerifier` verify every token
  the server hands out (access token and lease) against the pinned keys, for this device.
* :class:`agent.lease.LeaseStore` keeps the verified lease and the latest time seen, so that
  :meth:`AsyncLicenseClient.offline_license` works while the server is unreachable.
* ``/usage`` goes through :class:`agent.usage_http.HttpUsageBackend` (its problem-code mapping);
  the client has the same three methods and therefore is a :class:`agent.journal.UsageBackend`.

Retries live in one place, :class:`agent.http_retry.RetryingTransport`, below every request
(see :mod:`agent.http_retry`). :class:`agent.license_client_sync.LicenseClient` is a thin
synchronous facade for scripts. :mod:`agent.client` re-exports the names of all three modules.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from agent.clock import Clock, SystemClock
from agent.config_checks import check_api_url
from agent.errors import Offline, TokenExpired, TokenInvalid
from agent.http_retry import NOT_IDEMPOTENT, RetryingTransport, RetryPolicy
from agent.key_pins import PinnedKeySet
from agent.lease import LeaseStore
from agent.private_files import default_data_dir
from agent.protocol import (
    DeviceList,
    LicenseResponse,
    LoginRequest,
    LogoutRequest,
    RefreshRequest,
    RegisterRequest,
    ReservationResponse,
    SettleResponse,
    TokenResponse,
)
from agent.secrets import RefreshTokenStore
from agent.tokens import AccessTokenClaims, LeaseClaims, TokenVerifier, device_claim
from agent.usage_http import HttpUsageBackend, parse_answer, problem_error, unexpected_answer

logger = logging.getLogger("tgflow.agent.client")

#: A query parameter's value; a sequence repeats the parameter (``kind=a&kind=b``).
QueryValue = str | int | Sequence[str]

_Model = TypeVar("_Model", bound=BaseModel)
_T = TypeVar("_T")


@dataclass(frozen=True)
class License:
    """``GET /license`` as answered, and the lease's verified claims."""

    info: LicenseResponse
    lease: LeaseClaims


class AsyncLicenseClient:
    """The license agent's client of one TGFlow server, for one device.

    Use it as an async context manager (or call :meth:`aclose`). Every method raises a
    :class:`agent.errors.LicenseError` subclass: :class:`Offline` when the server could not be
    reached after the retries, the class of the problem-details ``code`` otherwise
    (:class:`InvalidCredentials`, :class:`DeviceLimit`, :class:`QuotaExceeded`,
    :class:`LicenseInactive`, …), :class:`UnexpectedResponse` for anything else.
    """

    def __init__(
        self,
        api_base_url: str,
        *,
        fingerprint: str,
        pins: Iterable[str] | str | None = None,
        data_dir: Path | None = None,
        keys: PinnedKeySet | None = None,
        verifier: TokenVerifier | None = None,
        leases: LeaseStore | None = None,
        secrets: RefreshTokenStore | None = None,
        clock: Clock | None = None,
        device_name: str | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
        observe_server_date: bool = True,
    ) -> None:
        """Configure the client; nothing is sent yet.

        ``pins`` (settings.ini ``jwt_public_key_fingerprint``) builds the key set unless ``keys``
        or ``verifier`` is given. ``data_dir`` (default: platformdirs' ``TGFlow/``) holds the JWKS
        cache, ``license.json`` and, without a keyring, the refresh token. ``transport`` is the
        HTTP transport under the retry layer (tests wrap the real one to inject faults).
        ``observe_server_date`` feeds each response's ``Date`` header to the lease store as a
        time seen. Raises :class:`InsecureApiUrl` for a plain ``http://`` URL to a remote host.
        """
        self.api_base_url = check_api_url(api_base_url)
        self.fingerprint = fingerprint
        self.device = device_claim(fingerprint)
        self.device_name = device_name
        self._clock: Clock = clock or SystemClock()
        directory = Path(data_dir) if data_dir is not None else default_data_dir()
        if verifier is None:
            if keys is None:
                if pins is None:
                    raise ValueError("give the public-key pins (or a key set or verifier)")
                keys = PinnedKeySet(self.api_base_url, pins, directory, clock=self._clock)
            verifier = TokenVerifier(keys, clock=self._clock)
        self.verifier = verifier
        self.leases = leases if leases is not None else LeaseStore(directory, clock=self._clock)
        self.secrets = secrets if secrets is not None else RefreshTokenStore(directory)
        self._observe_date = observe_server_date
        self._http = httpx.AsyncClient(
            base_url=self.api_base_url,
            transport=RetryingTransport(
                transport or httpx.AsyncHTTPTransport(),
                retry or RetryPolicy(),
                sleep=sleep,
                rand=rand,
                clock=self._clock,
            ),
            timeout=timeout,
            event_hooks={"response": [self._on_response]},
        )
        self._usage = HttpUsageBackend(self._http, self._current_token)
        self._access_token: str | None = None
        self._refresh_lock = asyncio.Lock()

    # --- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> AsyncLicenseClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections and write the latest time seen."""
        await self._http.aclose()
        self.leases.flush()

    @property
    def access_token(self) -> str | None:
        """The current access token (``None`` before login or after logout)."""
        return self._access_token

    @property
    def http(self) -> httpx.AsyncClient:
        """The underlying HTTP client (base URL = API root, retries included)."""
        return self._http

    # --- authentication -------------------------------------------------------------------------

    async def register(self, email: str, password: str) -> TokenResponse:
        """``POST /auth/register``: create an account and log in on this device."""
        body = RegisterRequest.model_validate(
            {
                "email": email,
                "password": password,
                "device_fingerprint": self.fingerprint,
                "device_name": self.device_name,
            }
        )
        return await self._sign_in("/auth/register", body)

    async def login(self, email: str, password: str) -> TokenResponse:
        """``POST /auth/login``: log in and bind this device (:class:`DeviceLimit` if full)."""
        body = LoginRequest.model_validate(
            {
                "email": email,
                "password": password,
                "device_fingerprint": self.fingerprint,
                "device_name": self.device_name,
            }
        )
        return await self._sign_in("/auth/login", body)

    async def refresh(self) -> TokenResponse:
        """``POST /auth/refresh`` with the stored refresh token; the new one is saved first.

        Raises :class:`agent.errors.TokenInvalid` when no refresh token is stored.
        """
        async with self._refresh_lock:
            return await self._refresh_locked()

    async def logout(self) -> None:
        """``POST /auth/logout``, then forget the tokens and the lease locally.

        The local state is cleared even when the server cannot be reached (the session then
        simply expires on the server).
        """
        refresh_token = self.secrets.load()
        try:
            if self._access_token is not None or refresh_token is not None:
                payload = LogoutRequest(refresh_token=refresh_token)
                await self._authed("POST", "/auth/logout", payload, None)
        except Offline as exc:
            logger.warning("logout: the server was not told (%s); signed out locally", exc)
        finally:
            self._access_token = None
            self.secrets.clear()
            self.leases.clear_lease()

    # --- license and devices --------------------------------------------------------------------

    async def license(self) -> License:
        """``GET /license``; the lease is verified for this device and saved for offline use."""
        info = await self._authed("GET", "/license", None, LicenseResponse)
        assert info is not None
        claims = await self.verifier.verify_lease_async(info.lease, self._http, device=self.device)
        self.leases.save_lease(info.lease)
        self.leases.observe_time(claims.issued_at)
        return License(info, claims)

    def offline_license(self) -> LeaseClaims:
        """The stored lease, checked without the network (see ``LeaseStore.check_offline``)."""
        return self.leases.check_offline(self.verifier, self.device)

    async def devices(self) -> DeviceList:
        """``GET /devices``: the account's bound devices and the plan's maximum."""
        return await self.authed_get("/devices", DeviceList)

    async def deactivate_device(self, device_id: str) -> None:
        """``DELETE /devices/{id}``: free a device slot of this account."""
        await self._authed("DELETE", f"/devices/{device_id}", None, None)

    # --- usage (agent.journal.UsageBackend) -----------------------------------------------------

    async def reserve(self, messages: int, correlation_id: str) -> ReservationResponse:
        """``POST /usage/reserve`` (idempotent by ``correlation_id``; retried with the same one)."""
        return await self._with_refresh(lambda: self._usage.reserve(messages, correlation_id))

    async def commit(self, reservation_id: str, used: int) -> SettleResponse:
        """``POST /usage/commit``: count ``used`` messages, release the rest (idempotent)."""
        return await self._with_refresh(lambda: self._usage.commit(reservation_id, used))

    async def rollback(self, reservation_id: str) -> SettleResponse:
        """``POST /usage/rollback``: release the whole hold (idempotent)."""
        return await self._with_refresh(lambda: self._usage.rollback(reservation_id))

    # --- other authenticated calls --------------------------------------------------------------

    async def authed(
        self,
        method: str,
        path: str,
        body: BaseModel | None,
        model: type[_Model] | None,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, QueryValue] | None = None,
    ) -> _Model | None:
        """One call with this session's access token, for the agent's other clients (billing).

        The token is refreshed once on ``token_expired`` and the call made again, with the same
        ``headers`` (an ``Idempotency-Key`` in them stays the same). Transient failures are retried
        below (:mod:`agent.http_retry`). Answers ``model`` parsed from the body (``None`` when
        ``model`` is ``None``); raises the :class:`agent.errors.LicenseError` of the problem.
        """
        return await self._with_refresh(
            lambda: self._call(
                method, path, body, model, bearer=True, headers=headers, params=params
            )
        )

    async def authed_get(
        self, path: str, model: type[_Model], *, params: Mapping[str, QueryValue] | None = None
    ) -> _Model:
        """``GET path`` through :meth:`authed`: the answer as ``model`` (the agent's other
        clients' reading calls: billing's, the points wallet's)."""
        answer = await self.authed("GET", path, None, model, params=params)
        assert answer is not None  # a model was asked for
        return answer

    # --- internals ------------------------------------------------------------------------------

    def _current_token(self) -> str:
        return self._access_token or ""

    async def _on_response(self, response: httpx.Response) -> None:
        if not self._observe_date:
            return
        date = response.headers.get("Date")
        if date is None:
            return
        try:
            when = parsedate_to_datetime(date)
        except (TypeError, ValueError):
            return
        self.leases.observe_time(when if when.tzinfo else when.replace(tzinfo=UTC))

    async def _sign_in(self, path: str, body: BaseModel) -> TokenResponse:
        tokens = await self._call("POST", path, body, TokenResponse, not_idempotent=True)
        assert tokens is not None
        await self._accept_tokens(tokens)
        return tokens

    async def _accept_tokens(self, tokens: TokenResponse) -> AccessTokenClaims:
        # Durable before anything else: the old refresh token is spent on the server already.
        self.secrets.save(tokens.refresh_token)
        claims = await self.verifier.verify_access_token_async(
            tokens.token, self._http, device=self.device
        )
        self._access_token = tokens.token
        self.leases.observe_time(claims.issued_at)
        return claims

    async def _refresh_locked(self) -> TokenResponse:
        refresh_token = self.secrets.load()
        if refresh_token is None:
            raise TokenInvalid("no refresh token is stored; log in again")
        body = RefreshRequest(refresh_token=refresh_token, device_fingerprint=self.fingerprint)
        tokens = await self._call("POST", "/auth/refresh", body, TokenResponse, not_idempotent=True)
        assert tokens is not None
        await self._accept_tokens(tokens)
        # Routine (every quarter hour or so): not a line for the user's session log.
        logger.debug("access token refreshed")
        return tokens

    async def _with_refresh(self, call: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
        token = self._access_token
        try:
            return await call()
        except TokenExpired:
            async with self._refresh_lock:
                if self._access_token == token:  # nobody refreshed meanwhile
                    await self._refresh_locked()
            return await call()

    async def _authed(
        self, method: str, path: str, body: BaseModel | None, model: type[_Model] | None
    ) -> _Model | None:
        return await self.authed(method, path, body, model)

    async def _call(
        self,
        method: str,
        path: str,
        body: BaseModel | None,
        model: type[_Model] | None,
        *,
        bearer: bool = False,
        not_idempotent: bool = False,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, QueryValue] | None = None,
    ) -> _Model | None:
        sent = dict(headers or {})
        if bearer:
            sent["Authorization"] = f"Bearer {self._current_token()}"
        try:
            response = await self._http.request(
                method,
                path,
                json=None if body is None else body.model_dump(mode="json", exclude_none=True),
                headers=sent,
                params=params,
                extensions={NOT_IDEMPOTENT: True} if not_idempotent else None,
            )
        except httpx.TransportError as exc:
            raise Offline(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            raise problem_error(path, response)
        if model is None:
            return None
        return parse_answer(response, model, unexpected_answer(f"{method} {path}"))
