"""The customer's side of subscription billing (issue #12, docs/billing.md "The agent's billing
client"): plans, the subscription and its moves, plan changes, renewal and invoices.

:class:`AsyncBillingClient` rides on an :class:`agent.license_client.AsyncLicenseClient`: its
session (access token, refresh on ``token_expired``), its retries (:mod:`agent.http_retry`) and
its problem-details mapping. Errors are the license client's: :class:`agent.errors.NotFound` (no
subscription, no such plan), :class:`agent.errors.IdempotencyConflict`, :class:`Offline`; a
refusal with no class of its own (``validation_error`` 422: the state refuses, a card declined a
change; ``already_exists`` 409; ``service_unavailable`` 503) is an
:class:`agent.errors.UnexpectedResponse` whose ``problem_code`` names it.

Every call that may move money or change the subscription sends an ``Idempotency-Key``, made
once per call: the transport's retries and the one retry after a token refresh send the same
key, so the server does the thing once and answers the repeats with its first answer.
"""

from __future__ import annotations

import uuid
from typing import TypeVar

from pydantic import BaseModel

from agent.license_client import AsyncLicenseClient
from agent.protocol import (
    INVOICES_PAGE_DEFAULT,
    CancelWhen,
    ChangeWhen,
    CustomerInvoiceList,
    PlanChangeDone,
    PlanChangeOut,
    PlanChangeRequest,
    PlanList,
    ProviderName,
    SubscriptionCancel,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionOut,
    SubscriptionRenewed,
    SubscriptionStatus,
)

_Model = TypeVar("_Model", bound=BaseModel)

#: The header the server's idempotency layer reads (docs/billing.md, "Idempotency-Key").
IDEMPOTENCY_HEADER = "Idempotency-Key"


def new_idempotency_key() -> str:
    """A fresh key for one logical call (a random UUID: unguessable, never reused)."""
    return str(uuid.uuid4())


class AsyncBillingClient:
    """Billing calls of the account logged in on ``session``.

    It holds no state of its own: log in (or refresh) through the license client first; closing
    the license client ends this one too.
    """

    def __init__(self, session: AsyncLicenseClient) -> None:
        """Use ``session``'s connection, tokens and retries."""
        self._session = session

    # --- reading ---------------------------------------------------------------------------------

    async def plans(self) -> PlanList:
        """``GET /plans``: the plans on offer with their prices (integer minor units)."""
        return await self._session.authed_get("/plans", PlanList)

    async def status(self) -> SubscriptionOut | None:
        """``GET /subscriptions/status``: the account's subscription (``None``: it never had
        one)."""
        return (
            await self._session.authed_get("/subscriptions/status", SubscriptionStatus)
        ).subscription

    async def invoices(
        self, *, limit: int = INVOICES_PAGE_DEFAULT, before: str | None = None
    ) -> CustomerInvoiceList:
        """``GET /subscriptions/invoices``: one page of the account's invoices, newest first,
        with lines, credit notes and payments. Pass ``next_before`` of a page as ``before`` for
        the next (older) one; it is ``None`` on the last page."""
        params: dict[str, str | int] = {"limit": limit}
        if before is not None:
            params["before"] = before
        return await self._session.authed_get(
            "/subscriptions/invoices", CustomerInvoiceList, params=params
        )

    async def preview_change(self, plan: str, when: ChangeWhen = ChangeWhen.NOW) -> PlanChangeOut:
        """``POST /subscriptions/change-plan/preview``: what :meth:`change_plan` would bill
        (direction, credit, charge, net and lines), without side effects."""
        body = PlanChangeRequest(plan=plan, when=when)
        return await self._post(
            "/subscriptions/change-plan/preview", body, PlanChangeOut, key=False
        )

    # --- moves (each with its own Idempotency-Key) ----------------------------------------------

    async def create(self, plan: str, provider: ProviderName) -> SubscriptionCreated:
        """``POST /subscriptions/create``: subscribe; open ``checkout_url`` in the browser to pay.
        The subscription is ``incomplete`` until the provider reports the payment."""
        body = SubscriptionCreate(plan=plan, provider=provider)
        return await self._post("/subscriptions/create", body, SubscriptionCreated)

    async def cancel(self, when: CancelWhen = CancelWhen.PERIOD_END) -> SubscriptionOut:
        """``POST /subscriptions/cancel``: at the period's end (default) or now; what was paid
        stays in force."""
        body = SubscriptionCancel(when=when)
        return await self._move("/subscriptions/cancel", body)

    async def pause(self) -> SubscriptionOut:
        """``POST /subscriptions/pause``: no renewals; what was paid stays in force."""
        return await self._move("/subscriptions/pause", None)

    async def resume(self) -> SubscriptionOut:
        """``POST /subscriptions/resume``: renew again (or undo a cancel at the period's end)."""
        return await self._move("/subscriptions/resume", None)

    async def renew(self) -> SubscriptionRenewed:
        """``POST /subscriptions/renew``: pay the renewal that is due now. ``paid`` true: the
        kept card paid it; false: open ``checkout_url`` to pay with another card."""
        return await self._post("/subscriptions/renew", None, SubscriptionRenewed)

    async def change_plan(self, plan: str, when: ChangeWhen = ChangeWhen.NOW) -> PlanChangeDone:
        """``POST /subscriptions/change-plan``: now (prorated; a net to pay is charged on the kept
        card first) or at the period's end (scheduled)."""
        body = PlanChangeRequest(plan=plan, when=when)
        return await self._post("/subscriptions/change-plan", body, PlanChangeDone)

    # --- internals -------------------------------------------------------------------------------

    async def _post(
        self, path: str, body: BaseModel | None, model: type[_Model], *, key: bool = True
    ) -> _Model:
        # One key for the whole call: every retry below and the refresh's repeat reuse it.
        headers = {IDEMPOTENCY_HEADER: new_idempotency_key()} if key else None
        answer = await self._session.authed("POST", path, body, model, headers=headers)
        assert answer is not None
        return answer

    async def _move(self, path: str, body: BaseModel | None) -> SubscriptionOut:
        answer = await self._post(path, body, SubscriptionStatus)
        assert answer.subscription is not None  # a move answers the subscription it moved
        return answer.subscription
