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
