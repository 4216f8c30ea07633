"""What the operator may list: an app's specification and the checks on operator input."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from agent.protocol import APP_ID_PATTERN, APP_PERMISSION_PATTERN, PAID_PLANS, MarketplacePlan

from ...models import MarketplaceApp
from .state import Plan

_MAX_PRICE = 2**31 - 1
_MAX_ARTIFACT_SIZE = 2**63 - 1
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class AppSpec:
    """An app as the operator lists it (``tgflow-server marketplace app create``)."""

    id: str
    name: str
    developer: str
    currency: str
    artifact_url: str
    artifact_sha256: str
    artifact_size: int
    iframe_url: str
    callback_url: str
    prices: Mapping[MarketplacePlan, int] = field(default_factory=dict)
    description: str = ""
    permissions: tuple[str, ...] = ()


def text_problem(
    label: str, value: str, max_length: int, *, required: bool = True, multiline: bool = False
) -> str | None:
    if required and not value.strip():
        return f"{label} must not be empty"
    if len(value) > max_length:
        return f"{label} must be at most {max_length} characters"
    if _CONTROL.search(value.replace("\n", "") if multiline else value):
        return f"{label} must not contain control characters"
    return None


def _url_problem(label: str, url: str) -> str | None:
    if len(url) > 2048 or _CONTROL.search(url) or " " in url:
        return f"{label} must be a URL of at most 2048 characters without spaces"
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return f"{label} is not a valid URL"
    if not host:
        return f"{label} must be an absolute http(s) URL"
    if parts.scheme == "https" or (parts.scheme == "http" and host in _LOCAL_HOSTS):
        return None
    return f"{label} must be https:// (http:// only for localhost)"


def spec_problems(spec: AppSpec) -> list[str]:
    problems = [
        p
        for p in (
            text_problem("the name", spec.name, 100),
            text_problem("the developer", spec.developer, 100),
            text_problem("the description", spec.description, 4000, required=False, multiline=True),
            _url_problem("the artifact URL", spec.artifact_url),
            _url_problem("the iframe URL", spec.iframe_url),
            _url_problem("the callback URL", spec.callback_url),
        )
        if p
    ]
    if not re.fullmatch(APP_ID_PATTERN, spec.id):
        problems.append(
            "the app id must be 1-64 lower-case letters, digits and inner hyphens "
            "(it is the audience of the app's tokens)"
        )
    if not re.fullmatch(r"[A-Z]{3}", spec.currency):
        problems.append("the currency must be an ISO 4217 code such as USD")
    if not re.fullmatch(r"[0-9a-f]{64}", spec.artifact_sha256):
        problems.append("the artifact SHA-256 must be 64 lower-case hex digits")
    if not 1 <= spec.artifact_size <= _MAX_ARTIFACT_SIZE:
        problems.append("the artifact size must be a positive number of bytes")
    if not spec.prices:
        problems.append("an app needs a price for at least one of monthly, yearly, perpetual")
    for plan, price in spec.prices.items():
        if plan not in PAID_PLANS:
            problems.append(f"the {plan} plan has no price (only {', '.join(PAID_PLANS)} do)")
        elif not 0 <= price <= _MAX_PRICE:
            problems.append(f"the {plan} price must be between 0 and {_MAX_PRICE} minor units")
    for permission in spec.permissions:
        if not re.fullmatch(APP_PERMISSION_PATTERN, permission):
            problems.append(
                f"the permission {permission!r} must be lower-case letters, digits and _ . : -"
                " starting with a letter (at most 64)"
            )
    return problems


def apply_spec(app: MarketplaceApp, spec: AppSpec) -> None:
    app.name = spec.name.strip()
    app.description = spec.description.strip()
    app.developer = spec.developer.strip()
    app.price_monthly = spec.prices.get(Plan.MONTHLY)
    app.price_yearly = spec.prices.get(Plan.YEARLY)
    app.price_perpetual = spec.prices.get(Plan.PERPETUAL)
    app.currency = spec.currency
    app.artifact_url = spec.artifact_url
    app.artifact_sha256 = spec.artifact_sha256
    app.artifact_size = spec.artifact_size
    app.iframe_url = spec.iframe_url
    app.callback_url = spec.callback_url
    app.permissions = sorted(set(spec.permissions))


def price(app: MarketplaceApp, plan: MarketplacePlan) -> int | None:
    return {
        Plan.MONTHLY: app.price_monthly,
        Plan.YEARLY: app.price_yearly,
        Plan.PERPETUAL: app.price_perpetual,
    }.get(plan)
