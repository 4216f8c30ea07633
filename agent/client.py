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

Retries live in one place, :class:`RetryingTransport`, below every request: connection errors,
5xx and 429 are retried with exponential backoff and jitter (``Retry-After`` honoured), and the
very same request (same body, so the same ``correlation_id``) is sent again. Requests that are not
idempotent (login, register, refresh) are retried only when they cannot have reached the server
(connection refused) or the server says it did not handle them (429, 503).

:class:`LicenseClient` is a thin synchronous facade for scripts.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from agent.clock import Clock, SystemClock
from agent.config_checks import InsecureApiUrl, check_api_url
from agent.errors import LicenseError, Offline, TokenExpired, TokenInvalid, UnexpectedResponse
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
from agent.usage_http import HttpUsageBackend, problem_error

logger = logging.getLogger("tgflow.agent.client")

_Model = TypeVar("_Model", bound=BaseModel)
_T = TypeVar("_T")

#: Request extension naming a request that must not be repeated once it may have reached the server.
NOT_IDEMPOTENT: Final = "tgflow_not_idempotent"

_RETRY_STATUSES_UNSENT: Final = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a request that failed for a transient reason.

    Attempt ``n`` (0-based) that failed waits ``min(max_delay, base_delay * 2**n)`` scaled by a
    random factor in ``[0.5, 1)`` (jitter, so that many agents do not retry in step). A 429 or 503
    with ``Retry-After`` waits what the server asked, up to ``max_retry_after``; a longer wait is
    not attempted (the answer is returned as it is).
    """

    max_attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0

    def backoff(self, attempt: int, rand: float) -> float:
        """The delay after failed attempt ``attempt`` (0-based), ``rand`` drawn from [0, 1)."""
        delay: float = min(self.max_delay, self.base_delay * 2.0**attempt)
        return delay * (0.5 + rand / 2)


def retry_after_seconds(response: httpx.Response, now: datetime) -> float | None:
    """The wait a ``Retry-After`` header asks for (seconds or an HTTP date), or ``None``."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


class RetryingTransport(httpx.AsyncBaseTransport):
    """Wraps a transport and re-sends the same request on connection errors, 5xx and 429.

    ``sleep`` and ``rand`` are injectable so that tests neither wait nor depend on chance. A
    request carrying the :data:`NOT_IDEMPOTENT` extension is retried only after a connection
    failure that happened before anything was sent, or a 429/503.
    """

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        policy: RetryPolicy,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        clock: Clock | None = None,
    ) -> None:
        """Send through ``inner`` following ``policy``."""
        self._inner = inner
        self._policy = policy
        self._sleep = sleep
        self._rand = rand
        self._clock: Clock = clock or SystemClock()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``, retrying transient failures; the last failure is returned/raised."""
        not_idempotent = bool(request.extensions.get(NOT_IDEMPOTENT))
        await request.aread()  # the body is replayed as it is: same bytes, same correlation_id
        attempt = 0
        while True:
            last = attempt + 1 >= self._policy.max_attempts
            try:
                response = await self._inner.handle_async_request(request)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                if last:
                    raise
                delay = self._policy.backoff(attempt, self._rand())
                reason = f"{type(exc).__name__}: {exc}"
            except httpx.TransportError as exc:
                if last or not_idempotent:
                    raise
                delay = self._policy.backoff(attempt, self._rand())
                reason = f"{type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                retryable = status in _RETRY_STATUSES_UNSENT or (
                    status >= 500 and not not_idempotent
                )
                if not retryable or last:
                    return response
                delay = self._policy.backoff(attempt, self._rand())
                asked = retry_after_seconds(response, self._clock.now())
                if asked is not None:
                    if asked > self._policy.max_retry_after:
                        return response
                    delay = asked
                reason = f"HTTP {status}"
                await response.aclose()
            logger.info(
                "%s %s failed (%s); retry %d in %.2f s",
                request.method,
                request.url.path,
                reason,
                attempt + 1,
                delay,
            )
            await self._sleep(delay)
            attempt += 1

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self._inner.aclose()


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
        devices = await self._authed("GET", "/devices", None, DeviceList)
        assert devices is not None
        return devices

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
        return await self._with_refresh(lambda: self._call(method, path, body, model, bearer=True))

    async def _call(
        self,
        method: str,
        path: str,
        body: BaseModel | None,
        model: type[_Model] | None,
        *,
        bearer: bool = False,
        not_idempotent: bool = False,
    ) -> _Model | None:
        headers = {"Authorization": f"Bearer {self._current_token()}"} if bearer else {}
        try:
            response = await self._http.request(
                method,
                path,
                json=None if body is None else body.model_dump(mode="json", exclude_none=True),
                headers=headers,
                extensions={NOT_IDEMPOTENT: True} if not_idempotent else None,
            )
        except httpx.TransportError as exc:
            raise Offline(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            raise problem_error(path, response)
        if model is None:
            return None
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise UnexpectedResponse(
                f"{method} {path}: the answer is not a {model.__name__}", response.status_code
            ) from exc


class LicenseClient:
    """A synchronous facade over :class:`AsyncLicenseClient` for scripts.

    It runs the async client on a private event loop in this thread; do not use it from inside a
    running event loop. Takes the same arguments as :class:`AsyncLicenseClient`.
    """

    def __init__(self, api_base_url: str, **kwargs: Any) -> None:
        """Build the async client on a private loop (same arguments)."""
        self._loop = asyncio.new_event_loop()
        self._lock = threading.Lock()

        async def build() -> AsyncLicenseClient:
            return AsyncLicenseClient(api_base_url, **kwargs)

        self.client = self._loop.run_until_complete(build())

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        with self._lock:
            return self._loop.run_until_complete(coro)

    def __enter__(self) -> LicenseClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the client and its private loop."""
        if not self._loop.is_closed():
            self._run(self.client.aclose())
            self._loop.close()

    def register(self, email: str, password: str) -> TokenResponse:
        """See :meth:`AsyncLicenseClient.register`."""
        return self._run(self.client.register(email, password))

    def login(self, email: str, password: str) -> TokenResponse:
        """See :meth:`AsyncLicenseClient.login`."""
        return self._run(self.client.login(email, password))

    def refresh(self) -> TokenResponse:
        """See :meth:`AsyncLicenseClient.refresh`."""
        return self._run(self.client.refresh())

    def logout(self) -> None:
        """See :meth:`AsyncLicenseClient.logout`."""
        self._run(self.client.logout())

    def license(self) -> License:
        """See :meth:`AsyncLicenseClient.license`."""
        return self._run(self.client.license())

    def offline_license(self) -> LeaseClaims:
        """See :meth:`AsyncLicenseClient.offline_license`."""
        return self.client.offline_license()

    def devices(self) -> DeviceList:
        """See :meth:`AsyncLicenseClient.devices`."""
        return self._run(self.client.devices())

    def deactivate_device(self, device_id: str) -> None:
        """See :meth:`AsyncLicenseClient.deactivate_device`."""
        self._run(self.client.deactivate_device(device_id))

    def reserve(self, messages: int, correlation_id: str) -> ReservationResponse:
        """See :meth:`AsyncLicenseClient.reserve`."""
        return self._run(self.client.reserve(messages, correlation_id))

    def commit(self, reservation_id: str, used: int) -> SettleResponse:
        """See :meth:`AsyncLicenseClient.commit`."""
        return self._run(self.client.commit(reservation_id, used))

    def rollback(self, reservation_id: str) -> SettleResponse:
        """See :meth:`AsyncLicenseClient.rollback`."""
        return self._run(self.client.rollback(reservation_id))


__all__ = [
    "NOT_IDEMPOTENT",
    "AsyncLicenseClient",
    "InsecureApiUrl",
    "License",
    "LicenseClient",
    "LicenseError",
    "RetryPolicy",
    "RetryingTransport",
    "check_api_url",
    "retry_after_seconds",
]
