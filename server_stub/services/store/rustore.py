"""RuStore's Public API, as the store purchases' service uses it (docs/points.md, "Store
purchases (RuStore)").

- ``GET /public/v2/purchase/{invoiceId}`` (sandbox: ``/public/sandbox/v2/purchase/{invoiceId}``)
  with the ``Public-Token`` header: a purchase's status and what it is;
- ``PUT /public/applications/{appId}/purchases/{purchaseId}:confirm`` (sandbox under
  ``/public/sandbox``): take the money held for a consumable (``PAID`` → ``CONFIRMED``);
- ``GET /public/subscription/{subscriptionToken}/state``: ``{"is_active": bool}``;
- ``POST /public/glike/subscription/{packageName}/{subscriptionId}/{token}:acknowledge``: the
  subscription's content was delivered (an empty body on success).

Every answer is RuStore's envelope ``{code, message, body, timestamp}``; ``code`` other than
``OK`` is a refusal. Unreachable or 5xx: :class:`ProviderUnavailable` (nothing changed, retry).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from ..billing.contract import ProviderRefused, ProviderUnavailable
from .statuses import InvoiceStatus, parse_status

PUBLIC_TOKEN_HEADER = "Public-Token"


@dataclass(frozen=True)
class RuStorePurchase:
    """A purchase as RuStore's v2 payment check tells it."""

    invoice_id: str
    status: InvoiceStatus
    #: The purchase's id (UUID): what a confirmation names.
    purchase_id: str | None
    order_id: str | None
    product_id: str | None
    #: What the app set at purchase: our user id (docs/points.md).
    developer_payload: str | None
    amount_minor: int | None
    currency: str | None
    #: When the status last changed, as far as the answer says (the refund's or the payment's
    #: date), else ``None``.
    status_at: datetime | None


class RuStoreClient:
    def __init__(
        self,
        token: str,
        *,
        api_base: str,
        app_id: str,
        sandbox: bool = False,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=api_base.rstrip("/"),
            headers={PUBLIC_TOKEN_HEADER: token},
            timeout=timeout_s,
            transport=transport,
        )
        self._prefix = "/public/sandbox" if sandbox else "/public"
        self._app_id = app_id

    def close(self) -> None:
        self._http.close()

    def purchase(self, invoice_id: str) -> RuStorePurchase | None:
        """The purchase, or ``None`` when RuStore knows no such invoice."""
        body = self._call("GET", f"{self._prefix}/v2/purchase/{quote(invoice_id, safe='')}")
        if body is None:
            return None
        return read_purchase(body)

    def confirm(self, purchase_id: str) -> None:
        """Take the money RuStore holds for a consumable (its status must be ``PAID``)."""
        path = (
            f"{self._prefix}/applications/{quote(self._app_id, safe='')}"
            f"/purchases/{quote(purchase_id, safe='')}:confirm"
        )
        self._call("PUT", path, allow_missing=False)

    def subscription_active(self, token: str) -> bool | None:
        """RuStore's ``is_active`` of a subscription; ``None``: no such subscription."""
        body = self._call("GET", f"/public/subscription/{quote(token, safe='')}/state")
        if body is None:
            return None
        active = body.get("is_active")
        if not isinstance(active, bool):
            raise ProviderRefused("RuStore's subscription state has no is_active")
        return active

    def acknowledge_subscription(self, package: str, subscription_id: str, token: str) -> None:
        """Tell RuStore the subscription's content was delivered (optional for RuStore: a
        subscription works unacknowledged)."""
        path = "/public/glike/subscription/" + "/".join(
            quote(part, safe="") for part in (package, subscription_id, token)
        )
        response = self._send("POST", path + ":acknowledge")
        if response.status_code >= 400:
            raise ProviderRefused(f"RuStore refused the acknowledgement: {response.status_code}")

    def _send(self, method: str, path: str) -> httpx.Response:
        """The request; RuStore unreachable or failing (5xx) is ``ProviderUnavailable``."""
        try:
            response = self._http.request(method, path)
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"RuStore unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 500:
            raise ProviderUnavailable(f"RuStore answered {response.status_code}")
        return response

    def _call(self, method: str, path: str, *, allow_missing: bool = True) -> dict[str, Any] | None:
        response = self._send(method, path)
        try:
            envelope = response.json()
        except ValueError:
            raise ProviderUnavailable("RuStore answered without JSON") from None
        if not isinstance(envelope, dict):
            raise ProviderUnavailable("RuStore answered something other than its envelope")
        code = envelope.get("code")
        if code == "NOT_FOUND" or response.status_code == 404:
            if allow_missing:
                return None
            raise ProviderRefused(f"RuStore: {envelope.get('message') or 'not found'}")
        if code != "OK" or response.status_code >= 400:
            raise ProviderRefused(f"RuStore refused: {code} {envelope.get('message') or ''}")
        body = envelope.get("body")
        return body if isinstance(body, dict) else {}


def read_purchase(body: dict[str, Any]) -> RuStorePurchase:
    status = parse_status(body.get("invoiceStatus"))
    invoice_id = body.get("invoiceId")
    if status is None or not isinstance(invoice_id, (str, int)) or isinstance(invoice_id, bool):
        raise ProviderRefused("RuStore's purchase has no invoiceId or a status we do not know")
    amount = body.get("amount")
    info = body.get("paymentInfo")
    paid_at = info.get("paymentDate") if isinstance(info, dict) else None
    return RuStorePurchase(
        invoice_id=str(invoice_id),
        status=status,
        purchase_id=_text(body.get("purchaseId")),
        order_id=_text(body.get("orderId")),
        product_id=_text(body.get("productCode")),
        developer_payload=_text(body.get("developerPayload")),
        amount_minor=amount if isinstance(amount, int) and not isinstance(amount, bool) else None,
        currency=_text(body.get("currency")),
        status_at=parse_time(body.get("refundDate")) or parse_time(paid_at),
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= 500 else None


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time with an offset, as UTC; ``None`` when unreadable."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)
