"""The portal's catalogue and customers for license tests, seeded straight through the ORM (not
through the clients API), and the bodies of license requests."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from server_stub.db import transaction
from server_stub.portal_models import Client, Contract, PortalSetting
from server_stub.wiring import Services

from .catalog import PRODUCT, ensure_catalog

MODULES = ("ai_forecast", "multi_department", "sso")
RETIRED = "legacy_export"
#: What the agent's test installation (tests/helpers/license_files.py) runs.
DOMAIN = "crm.example.com"


@dataclass(frozen=True)
class Customer:
    client_id: str
    contract_id: str | None
    name: str


def _inn() -> str:
    """A random 10-digit INN with a valid check digit."""
    digits = [secrets.randbelow(10) for _ in range(9)]
    weights = (2, 4, 10, 3, 5, 9, 4, 6, 8)
    check = sum(d * w for d, w in zip(digits, weights, strict=True)) % 11 % 10
    return "".join(map(str, digits)) + str(check)


def seed_catalog(services: Services) -> None:
    """The product ``tgflow`` with its modules (one of them retired), once per database."""
    now = services.ctx.clock.now()
    with transaction(services.ctx.write) as session:
        ensure_catalog(session, now, MODULES, retired=[RETIRED])


def seed_customer(
    services: Services,
    *,
    name: str = "ООО Ромашка",
    contract_amount: int | None = None,
    currency: str = "RUB",
    paid: bool = False,
    status: str = "active",
) -> Customer:
    """A client (and a contract when ``contract_amount`` is given, paid if ``paid``)."""
    seed_catalog(services)
    now = services.ctx.clock.now()
    with transaction(services.ctx.write) as session:
        client = Client(
            legal_name=name,
            inn=_inn(),
            segment="smb",
            status=status,
            deployment="on_prem",
            contacts=[],
            created_at=now,
            updated_at=now,
        )
        session.add(client)
        session.flush()
        contract_id = None
        if contract_amount is not None:
            contract = Contract(
                client_id=client.id,
                number=f"C-{secrets.token_hex(4)}",
                signed_on=now.date(),
                amount_minor=contract_amount,
                currency=currency,
                documents=[],
                status="signed",
                paid_at=now if paid else None,
                created_at=now,
                updated_at=now,
            )
            session.add(contract)
            session.flush()
            contract_id = contract.id
        return Customer(client.id, contract_id, name)


def mark_paid(services: Services, contract_id: str, when: datetime) -> None:
    """What ``/external/payments`` does to a contract, done directly."""
    with transaction(services.ctx.write) as session:
        contract = session.get(Contract, contract_id)
        assert contract is not None
        contract.paid_at = when
        contract.status = "paid"


def enable_notifications(services: Services, *channels: str) -> None:
    now = services.ctx.clock.now()
    with transaction(services.ctx.write) as session:
        session.merge(
            PortalSetting(
                key="notifications",
                value={"channels": list(channels)},
                updated_by="test",
                updated_at=now,
            )
        )


def issue_body(customer: Customer, now: datetime, **changes: Any) -> dict[str, Any]:
    """A valid ``POST /staff/licenses`` body for ``customer`` (``changes`` override fields)."""
    body: dict[str, Any] = {
        "client_id": customer.client_id,
        "contract_id": customer.contract_id,
        "product_id": PRODUCT,
        "plan": "advanced",
        "modules": ["ai_forecast", "multi_department"],
        "limits": {"users": 50, "departments": 5, "api_rate": 600},
        "valid_from": (now - timedelta(days=1)).isoformat(),
        "valid_until": (now + timedelta(days=365)).isoformat(),
        "grace_days": 14,
        "domain": DOMAIN,
        "min_version": "2.0",
        "max_version": "3.0",
        "mandatory_min_version": "2.1",
        "max_activations": 3,
        "activations_per_hour": 10,
        "checkouts_per_hour": 20,
        "ip_ranges": ["10.0.0.0/8", "2001:db8::/32"],
    }
    body.update(changes)
    return body
