"""A minimal billing client on the license client's session, until the agent's
``agent.billing_client.AsyncBillingClient`` lands (same method names, so the core switches by
changing one import)."""

from __future__ import annotations

import uuid
from typing import TypeVar

import httpx
from pydantic import BaseModel

from agent.client import AsyncLicenseClient
from agent.errors import Offline, TokenExpired
from agent.protocol import (
    CancelWhen,
    ChangeWhen,
    CustomerInvoiceList,
    PlanChangeDone,
    PlanChangeOut,
    PlanList,
    ProviderName,
    SubscriptionCreated,
    SubscriptionStatus,
)
from agent.usage_http import problem_error

_Model = TypeVar("_Model", bound=BaseModel)


class AsyncBillingClient:
    def __init__(self, client: AsyncLicenseClient) -> None:
        self._client = client

    async def plans(self) -> PlanList:
        return await self._call("GET", "/plans", None, PlanList)

    async def status(self) -> SubscriptionStatus:
        return await self._call("GET", "/subscriptions/status", None, SubscriptionStatus)

    async def create(self, plan: str, provider: ProviderName) -> SubscriptionCreated:
        body = {"plan": plan, "provider": provider.value}
        return await self._call("POST", "/subscriptions/create", body, SubscriptionCreated)

    async def cancel(self, when: CancelWhen) -> SubscriptionStatus:
        body = {"when": when.value}
        return await self._call("POST", "/subscriptions/cancel", body, SubscriptionStatus)

    async def resume(self) -> SubscriptionStatus:
        return await self._call("POST", "/subscriptions/resume", {}, SubscriptionStatus)

    async def preview_change(self, plan: str, when: ChangeWhen) -> PlanChangeOut:
        body = {"plan": plan, "when": when.value}
        return await self._call("POST", "/subscriptions/change-plan/preview", body, PlanChangeOut)

    async def change_plan(self, plan: str, when: ChangeWhen) -> PlanChangeDone:
        body = {"plan": plan, "when": when.value}
        return await self._call("POST", "/subscriptions/change-plan", body, PlanChangeDone)

    async def invoices(self, limit: int = 20, before: str | None = None) -> CustomerInvoiceList:
        params = {"limit": str(limit)} | ({"before": before} if before else {})
        return await self._call(
            "GET", "/subscriptions/invoices", None, CustomerInvoiceList, params=params
        )

    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, str] | None,
        model: type[_Model],
        *,
        params: dict[str, str] | None = None,
    ) -> _Model:
        # One key per call: the transport's retries of it are the same request to the server.
        headers = {"Idempotency-Key": str(uuid.uuid4())} if method == "POST" else {}
        for attempt in (1, 2):
            headers["Authorization"] = f"Bearer {self._client.access_token or ''}"
            try:
                response = await self._client.http.request(
                    method,
                    path,
                    json=body,
                    params=params,
                    headers=headers,
                )
            except httpx.TransportError as exc:
                raise Offline(f"{method} {path}: {type(exc).__name__}") from exc
            if response.is_success:
                return model.model_validate_json(response.content)
            error = problem_error(path, response)
            if isinstance(error, TokenExpired) and attempt == 1:
                await self._client.refresh()
                continue
            raise error
        raise AssertionError("unreachable")
