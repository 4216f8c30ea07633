"""The fake providers (Stripe, CloudPayments, RuStore) for the demo and end-to-end tests: served
before the backend so their URLs can go into its settings, then aimed at the backend's webhook
routes once it is up."""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

from ..clock import Clock
from .cloudpayments_fake import FakeCloudPayments
from .delivery import serving
from .rustore_fake import FakeRuStore
from .stripe_fake import FakeStripe

#: Where the fakes post, below the backend's public URL (``{type}``: check, pay, fail, refund).
STRIPE_WEBHOOK_PATH = "/webhooks/stripe"
CLOUDPAYMENTS_WEBHOOK_PATH = "/webhooks/cloudpayments/{type}"
RUSTORE_WEBHOOK_PATH = "/webhooks/rustore"


@dataclass
class DemoProviders:
    stripe: FakeStripe
    cloudpayments: FakeCloudPayments
    #: The Stripe endpoint's signing secret the backend must verify with.
    stripe_webhook_secret: str
    #: ``Settings`` fields that point billing at the fakes.
    settings: dict[str, str] = field(default_factory=dict)
    #: The fake store the app's points and subscriptions are bought in.
    rustore: FakeRuStore | None = None

    def deliver_to(self, public_url: str) -> None:
        """Aim both fakes' webhooks at the backend serving ``public_url``."""
        base = public_url.rstrip("/")
        self.stripe.webhook_url = base + STRIPE_WEBHOOK_PATH
        self.cloudpayments.notify_url = base + CLOUDPAYMENTS_WEBHOOK_PATH
        if self.rustore is not None:
            self.rustore.notify_url = base + RUSTORE_WEBHOOK_PATH


@contextmanager
def demo_providers(clock: Clock | None = None) -> Iterator[DemoProviders]:
    """``with demo_providers() as fakes: Settings(**fakes.settings, …)``, then
    ``fakes.deliver_to(backend_url)``. Fresh random credentials each run."""
    stripe_key = "sk_test_demo_" + secrets.token_hex(12)
    webhook_secret = "whsec_demo_" + secrets.token_hex(16)
    public_id = "pk_demo_" + secrets.token_hex(8)
    api_secret = secrets.token_hex(16)
    stripe = FakeStripe(api_key=stripe_key, webhook_secret=webhook_secret, clock=clock)
    cloudpayments = FakeCloudPayments(public_id=public_id, api_secret=api_secret, clock=clock)
    store_token = "rustore_demo_" + secrets.token_hex(12)
    console_key = os.urandom(32)
    rustore = FakeRuStore(public_token=store_token, console_key=console_key, clock=clock)
    with ExitStack() as stack:
        stripe_url = stack.enter_context(serving(stripe))
        cloudpayments_url = stack.enter_context(serving(cloudpayments))
        rustore_url = stack.enter_context(serving(rustore))
        yield DemoProviders(
            stripe,
            cloudpayments,
            webhook_secret,
            {
                "stripe_api_key": stripe_key,
                "stripe_api_base": stripe_url,
                "cloudpayments_public_id": public_id,
                "cloudpayments_api_secret": api_secret,
                "cloudpayments_api_base": cloudpayments_url,
                "rustore_api_base": rustore_url,
                "rustore_public_token": store_token,
                "rustore_app_id": rustore.app_id,
                "rustore_console_key": base64.b64encode(console_key).decode("ascii"),
            },
            rustore,
        )
