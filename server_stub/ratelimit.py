"""Rate limits: 20 requests/s per token, 100 requests/min per IP without one; and on the points
wallet's and the stores' endpoints (seed 001) 100 requests/min per IP whatever the token.

A token is an access token or a marketplace Backend Admin or User Token, each counted by its
``jti``; a token that fails its signature check counts against the IP.

In-process (moving window in memory) by default; shared through Redis when ``TGFLOW_REDIS_URL``
is set, so that several workers count together.
"""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Receive, Scope, Send

from agent.protocol import ErrorCode

from .errors import DomainError
from .metrics import Metrics
from .middleware import client_address
from .problems import problem_response
from .services.auth import AuthService
from .services.marketplace import MarketplaceService

log = logging.getLogger("tgflow.server.ratelimit")

#: Probes, and the providers' webhooks: those are authenticated by their signature (refused in
#: constant time when forged) and come in bursts from a few provider addresses, which a per-IP
#: limit meant for unauthenticated callers would turn into 429s and redelivery storms.
_EXEMPT = ("/healthz", "/metrics", "/webhooks/")
#: Seed 001's endpoints, limited per IP even for signed-in callers (docs/points.md).
WALLET_PREFIXES = (
    "/points/",
    "/payments/",
    "/products",
    "/user/",
    "/usage/topup",
    "/subscriptions/verify",
)
ACCESS_CLAIMS_STATE = "tgflow_access_claims"


def make_storage(redis_url: str | None, key_prefix: str) -> Storage:
    if redis_url:
        uri = redis_url if redis_url.startswith("async+") else "async+" + redis_url
        return RedisStorage(uri, implementation="redispy", key_prefix=key_prefix)
    return MemoryStorage()


class RateLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        storage: Storage,
        per_token: str,
        per_ip: str,
        auth: AuthService,
        wallet_per_ip: str | None = None,
        marketplace: MarketplaceService,
        metrics: Metrics,
        trust_forwarded_for: bool,
    ) -> None:
        self.app = app
        self.limiter = MovingWindowRateLimiter(storage)
        self.per_token: RateLimitItem = parse(per_token)
        self.per_ip: RateLimitItem = parse(per_ip)
        self.wallet_per_ip: RateLimitItem | None = parse(wallet_per_ip) if wallet_per_ip else None
        self.auth = auth
        self.marketplace = marketplace
        self.metrics = metrics
        self.trust_forwarded_for = trust_forwarded_for

    def _bearer(self, scope: Scope) -> str | None:
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and token.strip():
                    return token.strip()
        return None

    def _marketplace_key(self, token: str) -> str:
        try:
            return "mkt:" + self.marketplace.verify_token(token).jti
        except DomainError:
            return ""

    def _wallet(self, scope: Scope) -> bool:
        return self.wallet_per_ip is not None and str(scope.get("path", "")).startswith(
            WALLET_PREFIXES
        )

    async def _hit(self, item: RateLimitItem, key: str) -> bool:
        try:
            return await self.limiter.hit(item, key)
        except Exception:  # the shared store is down: serve rather than lock everyone out
            log.warning("rate-limit store unavailable; request allowed", exc_info=True)
            return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "").startswith(_EXEMPT):
            await self.app(scope, receive, send)
            return
        item, key, kind = self.per_ip, "", "ip"
        token = self._bearer(scope)
        if token is not None:
            try:
                # Signature and times only (no database): a forged or expired token does not
                # buy its bearer a bucket of its own; it counts against the IP.
                claims = self.auth.verify_signature(token)
            except DomainError:
                claims = None
            if claims is not None:
                item, key, kind = self.per_token, f"tok:{claims.jti}", "token"
                scope.setdefault("state", {})[ACCESS_CLAIMS_STATE] = (token, claims)
            else:
                key = self._marketplace_key(token)
                if key:
                    item, kind = self.per_token, "token"
        address = client_address(scope, trust_forwarded_for=self.trust_forwarded_for)
        if not key:
            key = "ip:" + address
        allowed = await self._hit(item, key)
        if allowed and kind == "token" and self._wallet(scope):
            assert self.wallet_per_ip is not None
            item, key, kind = self.wallet_per_ip, "wallet-ip:" + address, "ip"
            allowed = await self._hit(item, key)
        if allowed:
            await self.app(scope, receive, send)
            return
        self.metrics.rate_limited.labels(kind).inc()
        try:
            stats = await self.limiter.get_window_stats(item, key)
            retry = max(1, math.ceil(stats.reset_time - time.time()))
        except Exception:
            retry = item.get_expiry()
        await problem_response(
            ErrorCode.RATE_LIMITED,
            f"too many requests; limit {item} per {kind}",
            headers={"Retry-After": str(retry)},
        )(scope, receive, send)
