"""Portal rows written straight through the ORM (clients, contracts, products, licenses, usage),
for the tests and benchmarks of what reads them (reports, notifications), independent of the
licensing APIs. :func:`seed_scale` builds seed 003's scale: 10,000 licenses of 1,000 clients.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from server_stub.portal_models import (
    Activation,
    Client,
    Contract,
    License,
    LicenseVersion,
    ModuleUsage,
)
from server_stub.services.clients.fields import search_key

from .catalog import PRODUCT, ensure_catalog

#: Modules of the seeded product and their list prices (kopecks a year).
MODULES: dict[str, int] = {"ai": 1_200_000, "multi": 600_000, "api": 300_000}


@dataclass
class Portal:
    """Writes portal rows in its own transactions."""

    write: sessionmaker[Session]
    now: datetime
    _n: int = 0

    def _next(self) -> int:
        self._n += 1
        return self._n

    def product(self, modules: dict[str, int] = MODULES, currency: str = "RUB") -> None:
        """The product with just ``modules`` in force, priced (migration 0009 made the product)."""
        with self.write() as session, session.begin():
            # The reports' figures by module see just these (migration 0009 seeds defaults).
            ensure_catalog(session, self.now, modules, currency=currency, only=True)

    def client(self, name: str | None = None) -> str:
        n = self._next()
        with self.write() as session, session.begin():
            legal_name = name or f"ООО Клиент {n}"
            row = Client(
                legal_name=legal_name,
                search_name=search_key(legal_name),
                inn=f"{n:010d}",
                segment="smb",
                deployment="on_prem",
                created_at=self.now,
                updated_at=self.now,
            )
            session.add(row)
            session.flush()
            return row.id

    def contract(
        self, client_id: str, amount_minor: int, signed_on: date, currency: str = "RUB"
    ) -> str:
        with self.write() as session, session.begin():
            row = Contract(
                client_id=client_id,
                number=f"C-{self._next()}",
                signed_on=signed_on,
                amount_minor=amount_minor,
                currency=currency,
                created_at=self.now,
                updated_at=self.now,
            )
            session.add(row)
            session.flush()
            return row.id

    def license(
        self,
        client_id: str,
        valid_until: datetime,
        *,
        valid_from: datetime | None = None,
        modules: list[str] | None = None,
        contract_id: str | None = None,
        status: str = "active",
        key: str | None = None,
        revoked_at: datetime | None = None,
        license_id: str | None = None,
    ) -> str:
        with self.write() as session, session.begin():
            row = License(
                **license_values(
                    client_id, valid_until, self.now, valid_from, modules, contract_id, status, key
                )
            )
            row.revoked_at = revoked_at
            if license_id is not None:
                row.id = license_id
            session.add(row)
            session.flush()
            return row.id

    def update(self, license_id: str, **values: Any) -> None:
        with self.write() as session, session.begin():
            row = session.get(License, license_id)
            assert row is not None
            for name, value in values.items():
                setattr(row, name, value)

    def pending_version(self, license_id: str) -> None:
        with self.write() as session, session.begin():
            session.add(
                LicenseVersion(
                    license_id=license_id,
                    version=1,
                    reason="issue",
                    terms={},
                    requested_by="staff:x",
                    requested_at=self.now,
                )
            )

    def activation(self, license_id: str, *, live: bool = True) -> None:
        with self.write() as session, session.begin():
            session.add(
                Activation(
                    license_id=license_id,
                    fingerprint=secrets.token_hex(16),
                    server_id="srv",
                    ip="127.0.0.1",
                    product_version="1.0.0",
                    modules=[],
                    file_version=1,
                    activated_at=self.now,
                    last_heartbeat_at=self.now,
                    deactivated_at=None if live else self.now,
                )
            )

    def usage(self, license_id: str, module: str, day: date, heartbeats: int) -> None:
        with self.write() as session, session.begin():
            session.add(
                ModuleUsage(license_id=license_id, module=module, day=day, heartbeats=heartbeats)
            )


def license_values(
    client_id: str,
    valid_until: datetime,
    now: datetime,
    valid_from: datetime | None = None,
    modules: list[str] | None = None,
    contract_id: str | None = None,
    status: str = "active",
    key: str | None = None,
) -> dict[str, Any]:
    return {
        "id": secrets.token_hex(8) + "-" + secrets.token_hex(4),
        "license_key": key or "TGF-" + secrets.token_hex(12).upper(),
        "client_id": client_id,
        "contract_id": contract_id,
        "product_id": PRODUCT,
        "plan": "basic",
        "modules": list(modules or []),
        "limits": {},
        "valid_from": valid_from or now - timedelta(days=365),
        "valid_until": valid_until,
        "grace_days": 0,
        "domain": "example.ru",
        "min_version": "1.0.0",
        "encrypted": False,
        "status": status,
        "version": 1 if status != "pending_approval" else 0,
        "ip_ranges": [],
        "heartbeat_window_s": 600,
        "created_by": "seed",
        "created_at": now,
        "updated_at": now,
    }


_SEED_KINDS = {"client": "a", "contract": "b", "license": "c"}


def _seed_id(kind: str, i: int) -> str:
    # UUID-shaped like the ids the services make: list cursors carry the id and their pattern
    # admits only that shape.
    return f"00000000-0000-4000-{_SEED_KINDS[kind]}000-{i:012d}"


def seed_scale(
    write: sessionmaker[Session], now: datetime, *, clients: int = 1_000, licenses: int = 10_000
) -> None:
    """Seed 003's scale in bulk: ``clients`` clients with a contract each, ``licenses`` licenses
    spread over them, ending over the two years around ``now``, with a day of module usage."""
    codes = list(MODULES)
    portal = Portal(write, now)
    portal.product()
    client_rows: list[dict[str, Any]] = [
        {
            "id": _seed_id("client", i),
            "legal_name": f"ООО Клиент {i}",
            "search_name": search_key(f"ООО Клиент {i}"),
            "inn": f"{i + 1:010d}",
            "segment": ("smb", "enterprise", "gov")[i % 3],
            "status": "active",
            "deployment": "on_prem",
            "contacts": [],
            "created_at": now,
            "updated_at": now,
        }
        for i in range(clients)
    ]
    contract_rows = [
        {
            "id": _seed_id("contract", i),
            "client_id": _seed_id("client", i),
            "number": f"C-{i:06d}",
            "signed_on": (now - timedelta(days=i % 365)).date(),
            "amount_minor": 1_000_000 + i,
            "currency": "RUB",
            "documents": [],
            "status": "signed",
            "created_at": now,
            "updated_at": now,
        }
        for i in range(clients)
    ]
    license_rows = []
    usage_rows = []
    for i in range(licenses):
        client = i % clients
        values = license_values(
            _seed_id("client", client),
            now + timedelta(days=(i % 730) - 365, hours=i % 24),
            now,
            modules=codes[: 1 + i % len(codes)],
            contract_id=_seed_id("contract", client),
        )
        values["id"] = _seed_id("license", i)
        license_rows.append(values)
        if i % 2 == 0:
            usage_rows.append(
                {
                    "license_id": values["id"],
                    "module": codes[0],
                    "day": now.date(),
                    "heartbeats": 1 + i % 144,
                }
            )
    with write() as session, session.begin():
        for model, rows in (
            (Client, client_rows),
            (Contract, contract_rows),
            (License, license_rows),
            (ModuleUsage, usage_rows),
        ):
            for start in range(0, len(rows), 2_000):
                session.execute(insert(model), rows[start : start + 2_000])
