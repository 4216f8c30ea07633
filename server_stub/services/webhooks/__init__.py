"""The webhook inbox (issue #12, part 5): one table for every provider's webhooks, verified,
deduplicated, stored raw, and applied by a worker from it as from a durable queue.

Callers use the facade :class:`WebhookInbox`; billing plugs in through the two Protocols of
:mod:`.ports` (:class:`EventApplier`, :class:`InvoiceChecker`).
"""

from __future__ import annotations

from .inbox import BATCH_SIZE, CloudPaymentsReply, Received, WebhookInbox
from .intake import CLOUDPAYMENTS_HMAC_HEADERS, STRIPE_SIGNATURE_HEADER
from .ports import (
    CLOUDPAYMENTS_KIND_FIELD,
    CheckCode,
    CloudPaymentsKind,
    EventApplier,
    InvoiceChecker,
    NoChecker,
)
from .queue import Claim, Outcome, retry_delay

__all__ = [
    "BATCH_SIZE",
    "CLOUDPAYMENTS_HMAC_HEADERS",
    "CLOUDPAYMENTS_KIND_FIELD",
    "STRIPE_SIGNATURE_HEADER",
    "CheckCode",
    "Claim",
    "CloudPaymentsKind",
    "CloudPaymentsReply",
    "EventApplier",
    "InvoiceChecker",
    "NoChecker",
    "Outcome",
    "Received",
    "WebhookInbox",
    "retry_delay",
]
