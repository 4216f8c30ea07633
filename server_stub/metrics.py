"""Prometheus metrics, one registry per app so that several apps can live in one process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "tgflow_http_requests_total",
            "HTTP requests by route template, method and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tgflow_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.reservations_open = Gauge(
            "tgflow_reservations_open",
            "Reservations currently holding quota",
            registry=self.registry,
        )
        self.quota_refusals = Counter(
            "tgflow_quota_refusals_total",
            "Reservations refused for lack of quota",
            registry=self.registry,
        )
        self.reservations_expired = Counter(
            "tgflow_reservations_expired_total",
            "Reservations released because their TTL passed",
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "tgflow_rate_limited_total",
            "Requests refused by the rate limiter",
            ["scope"],
            registry=self.registry,
        )
        self.session_lookups = Counter(
            "tgflow_session_lookups_total",
            "Authentications answered from the session cache (hit) or the database (miss)",
            ["result"],
            registry=self.registry,
        )
        # Bound once: the hit path is counted on every authenticated request.
        self.session_hits = self.session_lookups.labels("hit")
        self.session_misses = self.session_lookups.labels("miss")
        # The webhook inbox (docs/billing.md, "Webhooks: one inbox").
        self.webhooks_received = Counter(
            "tgflow_webhooks_received_total",
            "Verified provider webhooks stored in the inbox (duplicates not counted)",
            ["provider"],
            registry=self.registry,
        )
        self.webhooks_duplicates = Counter(
            "tgflow_webhooks_duplicates_total",
            "Verified provider webhooks whose event id the inbox already held",
            ["provider"],
            registry=self.registry,
        )
        self.webhooks_rejected = Counter(
            "tgflow_webhooks_rejected_total",
            "Provider webhooks refused: unconfigured (no secret), signature, malformed",
            ["provider", "reason"],
            registry=self.registry,
        )
        self.webhooks_applied = Counter(
            "tgflow_webhooks_applied_total",
            "Inbox events applied (outcome applied) or of no interest to billing (ignored)",
            ["provider", "outcome"],
            registry=self.registry,
        )
        self.webhooks_failed = Counter(
            "tgflow_webhooks_failed_total",
            "Failed attempts to apply an inbox event (each is retried or dead-lettered)",
            ["provider"],
            registry=self.registry,
        )
        self.webhooks_dead = Counter(
            "tgflow_webhooks_dead_total",
            "Inbox events dead-lettered after their last attempt",
            ["provider"],
            registry=self.registry,
        )
        self.webhooks_queue_depth = Gauge(
            "tgflow_webhooks_queue_depth",
            "Inbox events waiting to be applied (queued or failed), or dead-lettered",
            ["provider", "state"],
            registry=self.registry,
        )
        # Renewals and dunning (docs/billing.md, "Renewals and dunning").
        self.billing_dunning = Counter(
            "tgflow_billing_dunning_total",
            "Renewal attempts and ends: renewed, retry_scheduled, hard_declined, retries_spent, "
            "ended",
            ["provider", "outcome"],
            registry=self.registry,
        )
        self.billing_mrr = Gauge(
            "tgflow_billing_mrr_minor",
            "Monthly recurring revenue of active subscriptions, minor units (yearly // 12)",
            ["currency"],
            registry=self.registry,
        )
        self.webhooks_oldest_age = Gauge(
            "tgflow_webhooks_oldest_pending_age_seconds",
            "Age of the oldest inbox event still waiting to be applied (0 when none waits)",
            ["provider"],
            registry=self.registry,
        )
