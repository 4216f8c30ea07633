"""RuStore's notifications behind the webhook inbox: the inbox has one applier, so this one
hands RuStore's events to the store purchases' service and every other provider's to billing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..billing.contract import ProviderName
from ..webhooks.ports import EventApplier
from .notifications import read_notification
from .purchases import StoreService


class StoreEventApplier:
    """The inbox's :class:`EventApplier` for RuStore: ``False`` for a test event, a stale or
    foreign notification; raising (store unreachable) makes the inbox retry."""

    def __init__(self, store: StoreService) -> None:
        self._store = store

    def apply(self, provider: ProviderName, payload: Mapping[str, Any]) -> bool:
        del provider
        notification = read_notification(dict(payload))
        if notification.invoice_id is None or notification.change_status_time is None:
            return False  # a TEST_EVENT: the console checking that we answer
        return self._store.apply_notification(
            notification.invoice_id,
            notification.change_status_time,
            sandbox=notification.sandbox,
            token=notification.purchase_token,
        )


class ProviderRouter:
    """One applier for the inbox: each provider's events to their own applier."""

    def __init__(self, default: EventApplier, **by_provider: EventApplier) -> None:
        self._default = default
        self._by_provider = {ProviderName(k): v for k, v in by_provider.items()}

    def apply(self, provider: ProviderName, payload: Mapping[str, Any]) -> bool:
        return self._by_provider.get(provider, self._default).apply(provider, payload)
