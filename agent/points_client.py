"""The customer's side of the points wallet (issue #13, docs/points.md): the balance, its
history, converting points into messages of the current period, and the profile.

:class:`AsyncPointsClient` rides on an :class:`agent.license_client.AsyncLicenseClient` as
:class:`agent.billing_client.AsyncBillingClient` does: its session (access token, refresh on
``token_expired``), its retries and its problem-details mapping. Errors are the license
client's; a refusal with no class of its own keeps the server's code in
:attr:`agent.errors.UnexpectedResponse.problem_code` (``insufficient_points`` 409: too few
points, or a shortfall after a store refund; ``validation_error`` 422: the plan sells no
messages, or a store purchase that ended unpaid — its ``reason`` in
:attr:`agent.errors.UnexpectedResponse.problem_reason`).

A top-up's ``idempotency_key`` goes in the request's body (the wallet's API keys each booking
there). It is made once per call: the transport's retries and the repeat after a token refresh
send the same body, so the points are converted once and the repeats answer the first outcome.
"""

from __future__ import annotations

from collections.abc import Iterable

from agent.billing_client import new_idempotency_key
from agent.license_client import AsyncLicenseClient, QueryValue
from agent.protocol import (
    PointsBalance,
    PointsBuyRequest,
    PointsHistory,
    PointsKind,
    ProductList,
    ProfileOut,
    PurchaseVerified,
    StoreName,
    TopupOut,
    TopupRequest,
)

#: A history page's size when none is asked for (the server's default).
HISTORY_PAGE_DEFAULT = 50


class AsyncPointsClient:
    """Points calls of the account logged in on ``session`` (no state of its own: log in
    through the license client first; closing it ends this one too)."""

    def __init__(self, session: AsyncLicenseClient) -> None:
        """Use ``session``'s connection, tokens and retries."""
        self._session = session

    async def balance(self) -> PointsBalance:
        """``GET /points/balance``: what can be spent, what is held, what is owed."""
        return await self._session.authed_get("/points/balance", PointsBalance)

    async def history(
        self,
        *,
        limit: int = HISTORY_PAGE_DEFAULT,
        cursor: str | None = None,
        kinds: Iterable[PointsKind] = (),
    ) -> PointsHistory:
        """``GET /points/history``: one page of the balance's changes, newest first, only of
        ``kinds`` when some are named. Pass a page's ``next_cursor`` as ``cursor`` for the next
        (older) one; it is ``None`` on the last page."""
        params: dict[str, QueryValue] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        named = [kind.value for kind in kinds]
        if named:
            params["kind"] = named  # repeated: kind=a&kind=b
        return await self._session.authed_get("/points/history", PointsHistory, params=params)

    async def topup(self, points: int) -> TopupOut:
        """``POST /usage/topup``: convert ``points`` into extra messages of the current period
        at the plan's rate; answers the messages bought, the new balance and the quota."""
        # One key for the whole call: every retry below and the refresh's repeat reuse it.
        body = TopupRequest(points=points, idempotency_key=new_idempotency_key())
        answer = await self._session.authed("POST", "/usage/topup", body, TopupOut)
        assert answer is not None
        return answer

    async def products(self) -> ProductList:
        """``GET /products``: what the app sells through its store (points and plans)."""
        return await self._session.authed_get("/products", ProductList)

    async def buy(self, store: StoreName, purchase_id: str, product_id: str) -> PurchaseVerified:
        """``POST /points/buy``: have the server verify the store's purchase ``purchase_id``
        of ``product_id`` and credit its points, once. ``pending`` in the answer: the buyer has
        not paid yet (ask again later). A purchase that ended unpaid is refused
        (:class:`agent.errors.UnexpectedResponse`, ``validation_error``, ``problem_reason``
        ``purchase_not_paid``). Safe to repeat: the purchase id is the key."""
        body = PointsBuyRequest(provider=store, purchase_id=purchase_id, product_id=product_id)
        answer = await self._session.authed("POST", "/points/buy", body, PurchaseVerified)
        assert answer is not None
        return answer

    async def profile(self) -> ProfileOut:
        """``GET /user/profile``: the account, its plan, its subscription and its points."""
        return await self._session.authed_get("/user/profile", ProfileOut)
