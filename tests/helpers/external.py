"""The integration API as a billing system calls it (signed requests), and portal rows seeded
straight through the ORM (clients, contracts, products, licenses, activations) so these tests do
not depend on the portal's own APIs."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import insert, select

from server_stub.db import transaction
from server_stub.portal_models import Activation, Client, Contract, License, Payment
from server_stub.services.integrations import PaymentReport
from server_stub.services.integrations.signatures import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
)
from server_stub.wiring import Services
from tests.helpers.backend import Backend

from .catalog import PRODUCT, ensure_catalog

SECRET = "billing-secret-0123456789abcdef-0123456789"
OLD_SECRET = "previous-secret-fedcba9876543210-fedcba98"


def signed_headers(
    backend: Backend,
    method: str,
    target: str,
    body: bytes = b"",
    *,
    secret: str = SECRET,
    skew: int = 0,
) -> dict[str, str]:
    """The signature headers of a request, timestamped by the backend's clock (+ ``skew`` s)."""
    timestamp = str(int(backend.clock.now().timestamp()) + skew)
    signature = sign(secret.encode(), timestamp, method, target.encode(), body)
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature}


def signed(
    backend: Backend,
    method: str,
    target: str,
    body: bytes = b"",
    *,
    client: httpx.Client | None = None,
    **sign_options: Any,
) -> httpx.Response:
    """Send a signed request; ``target`` is the path with its query, exactly as sent."""
    headers = {
        "Content-Type": "application/json",
        **signed_headers(backend, method, target, body, **sign_options),
    }
    return (client or backend.client).request(method, target, content=body, headers=headers)


def payment_body(contract_number: str, amount_minor: int, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source": "1c",
        "external_id": "pay-" + secrets.token_hex(4),
        "contract_number": contract_number,
        "amount_minor": amount_minor,
        "currency": "RUB",
        "paid_at": "2026-01-15T09:30:00+03:00",
    }
    body.update(overrides)
    return body


def record_payment(services: Services, body: dict[str, Any]) -> None:
    """Record a payment through the service the API calls (without the HTTP signature)."""
    report = PaymentReport(**{**body, "paid_at": datetime.fromisoformat(body["paid_at"])})
    services.integrations.record_payment(report)


def valid_inn() -> str:
    """A random 10-digit INN with a correct check digit (as the portal validates them)."""
    digits = [secrets.randbelow(10) for _ in range(9)]
    weights = (2, 4, 10, 3, 5, 9, 4, 6, 8)
    check = sum(d * w for d, w in zip(digits, weights, strict=True)) % 11 % 10
    return "".join(map(str, digits)) + str(check)


def seed_client(services: Services, legal_name: str = "ООО Ромашка") -> str:
    now = services.ctx.clock.now()
    with transaction(services.ctx.write) as session:
        client = Client(
            legal_name=legal_name,
            inn=valid_inn(),
            segment="smb",
            deployment="on_prem",
            created_at=now,
            updated_at=now,
        )
        session.add(client)
        session.flush()
        return client.id


def seed_contract(
    services: Services,
    client_id: str,
    amount_minor: int = 100_000,
    currency: str = "RUB",
    *,
    status: str = "signed",
) -> Contract:
    now = services.ctx.clock.now()
    with transaction(services.ctx.write) as session:
        contract = Contract(
            client_id=client_id,
            number="Д-" + secrets.token_hex(4).upper(),
            signed_on=now.date(),
            amount_minor=amount_minor,
            currency=currency,
            status=status,
            created_at=now,
            updated_at=now,
        )
        session.add(contract)
        return contract


def _ensure_product(services: Services) -> None:
    with transaction(services.ctx.write) as session:
        ensure_catalog(session, services.ctx.clock.now())


def license_row(
    client_id: str,
    now: datetime,
    *,
    contract_id: str | None = None,
    status: str = "active",
    plan: str = "advanced",
    **overrides: Any,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "license_key": "TGF-" + secrets.token_hex(12).upper(),
        "client_id": client_id,
        "contract_id": contract_id,
        "product_id": PRODUCT,
        "plan": plan,
        "modules": ["ai_forecast", "multi_department"],
        "limits": {"users": 50},
        "valid_from": now - timedelta(days=1),
        "valid_until": now + timedelta(days=365),
        "grace_days": 14,
        "domain": "crm.example.com",
        "min_version": "2.0",
        "status": status,
        "version": 1,
        "heartbeat_window_s": 600,
        "created_by": "test",
        "created_at": now,
        "updated_at": now,
    }
    row.update(overrides)
    return row


def seed_licenses(services: Services, rows: Sequence[dict[str, Any]]) -> list[str]:
    """Insert license rows (from :func:`license_row`) in one statement; their ids."""
    _ensure_product(services)
    with transaction(services.ctx.write) as session:
        session.execute(insert(License), list(rows))
    return [row["id"] for row in rows]


def seed_license(services: Services, client_id: str, **options: Any) -> dict[str, Any]:
    row = license_row(client_id, services.ctx.clock.now(), **options)
    seed_licenses(services, [row])
    return row


def seed_activation(
    services: Services,
    license_id: str,
    last_heartbeat_at: datetime,
    *,
    deactivated: bool = False,
) -> None:
    with transaction(services.ctx.write) as session:
        session.add(
            Activation(
                license_id=license_id,
                fingerprint="fp-" + secrets.token_hex(16),
                server_id="srv-1",
                ip="10.0.0.1",
                product_version="2.4",
                modules=["ai_forecast"],
                file_version=1,
                activated_at=last_heartbeat_at,
                last_heartbeat_at=last_heartbeat_at,
                deactivated_at=last_heartbeat_at if deactivated else None,
                deactivated_reason="manual" if deactivated else None,
            )
        )


def contract_state(services: Services, contract_id: str) -> Contract:
    with transaction(services.ctx.read) as session:
        contract = session.get(Contract, contract_id)
        assert contract is not None
        return contract


def payments_of(services: Services, contract_id: str) -> list[Payment]:
    with transaction(services.ctx.read) as session:
        return list(
            session.scalars(
                select(Payment).where(Payment.contract_id == contract_id).order_by(Payment.paid_at)
            )
        )
