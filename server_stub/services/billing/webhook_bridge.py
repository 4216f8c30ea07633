"""Billing behind the webhook inbox (services/webhooks/ports.py): a stored provider event is read
by its provider's adapter into a :class:`ProviderEvent` and applied; CloudPayments' Check is
answered from our invoices.

The inbox verifies, stores and queues; this module only translates. What cannot be read yet
(a provider not configured here, Stripe unreachable while a checkout's card is fetched) raises,
so the inbox retries it with backoff and dead-letters it at the end for an operator's redrive.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ..webhooks.ports import CheckCode
from .contract import ProviderAdapter, ProviderName, ProviderUnavailable
from .events import ApplyOutcome, CheckVerdict
from .providers.cloudpayments_events import read_check
from .service import BillingService

log = logging.getLogger("tgflow.server.billing")

_CHECK_CODES = {
    CheckVerdict.OK: CheckCode.OK,
    CheckVerdict.UNKNOWN_INVOICE: CheckCode.UNKNOWN_ORDER,
    CheckVerdict.WRONG_AMOUNT: CheckCode.WRONG_AMOUNT,
    CheckVerdict.REJECTED: CheckCode.REJECTED,
}


class BillingEventApplier:
    """The inbox's :class:`EventApplier`: ``True`` when billing acted on the event."""

    def __init__(
        self, billing: BillingService, adapters: Mapping[ProviderName, ProviderAdapter]
    ) -> None:
        self._billing = billing
        self._adapters = adapters

    def apply(self, provider: ProviderName, payload: Mapping[str, Any]) -> bool:
        adapter = self._adapters.get(provider)
        if adapter is None:
            # Verified with a secret but no API credentials: kept until the provider is set up.
            raise ProviderUnavailable(f"{provider.value} is not configured on this server")
        event = adapter.parse_event(payload)
        if event is None:
            return False
        outcome = self._billing.apply_event(event)
        return outcome is not ApplyOutcome.IGNORED


class CloudPaymentsCheck:
    """The inbox's :class:`InvoiceChecker`: may CloudPayments take this payment?"""

    def __init__(self, billing: BillingService, *, configured: bool) -> None:
        self._billing = billing
        self._configured = configured

    def check(self, payload: Mapping[str, Any]) -> CheckCode:
        if not self._configured:
            return CheckCode.REJECTED  # no API credentials here: take no money (fail closed)
        try:
            request = read_check(payload)
        except ValueError as exc:
            log.warning("CloudPayments Check unreadable: %s", exc)
            return CheckCode.REJECTED
        if request.invoice_id is None:
            return CheckCode.UNKNOWN_ORDER
        verdict = self._billing.check_invoice(
            request.invoice_id, request.amount_minor, request.currency
        )
        return _CHECK_CODES[verdict]
