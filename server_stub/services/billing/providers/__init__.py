"""The payment providers billing can use, built from the settings.

A provider is offered only when its credentials are configured (fail closed): an unset Stripe
key or CloudPayments secret leaves that provider out of :func:`build_adapters`, so no checkout,
charge or refund can go to it.
"""

from __future__ import annotations

from ....config import Settings
from ..contract import ProviderAdapter, ProviderName
from .cloudpayments_adapter import CloudPaymentsAdapter


def build_adapters(settings: Settings) -> dict[ProviderName, ProviderAdapter]:
    adapters: dict[ProviderName, ProviderAdapter] = {}
    stripe_key = settings.stripe_api_key.get_secret_value() if settings.stripe_api_key else ""
    if stripe_key:
        # The Stripe SDK is imported only when Stripe is configured: it costs a server process
        # about 11 MB of memory, for nothing when Stripe is not offered.
        from .stripe_adapter import StripeAdapter

        adapters[ProviderName.STRIPE] = StripeAdapter(stripe_key, api_base=settings.stripe_api_base)
    cp_secret = (
        settings.cloudpayments_api_secret.get_secret_value()
        if settings.cloudpayments_api_secret
        else ""
    )
    if settings.cloudpayments_public_id and cp_secret:
        adapters[ProviderName.CLOUDPAYMENTS] = CloudPaymentsAdapter(
            settings.cloudpayments_public_id,
            cp_secret,
            api_base=settings.cloudpayments_api_base,
        )
    return adapters


__all__ = ["CloudPaymentsAdapter", "build_adapters"]
