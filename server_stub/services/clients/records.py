"""What the client service's managers share: audit objects, problems as 422s, staff lookups."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ...errors import NotFound, ValidationFailed
from ...models import Staff
from ...portal_models import Client


def client_object(client_id: str) -> str:
    return f"client/{client_id}"


def contract_object(contract_id: str) -> str:
    return f"contract/{contract_id}"


def product_object(product_id: str, module: str | None = None) -> str:
    return f"product/{product_id}" + (f"/module/{module}" if module else "")


def invalid(problems: Iterable[tuple[str, str]], where: str = "body") -> ValidationFailed:
    """A 422 naming each (field, problem), as the edge's own validation does."""
    issues = [
        {"loc": [where, *field.split(".")], "msg": message, "type": "value_error"}
        for field, message in problems
    ]
    shown = "; ".join(f"{'.'.join(i['loc'][1:])}: {i['msg']}" for i in issues[:5])
    return ValidationFailed(f"the request is not valid: {shown}", errors=issues)


def raise_problems(problems: list[tuple[str, str]]) -> None:
    if problems:
        raise invalid(problems)


def enabled_staff(session: Session, staff_id: str) -> Staff | None:
    staff = session.get(Staff, staff_id)
    return staff if staff is not None and staff.disabled_at is None else None


def staff_by_email(session: Session, email: str) -> Staff | None:
    return session.scalar(
        select(Staff).where(Staff.email == email.strip().lower(), Staff.disabled_at.is_(None))
    )


def get_client(session: Session, client_id: str, *, lock: bool = False) -> Client:
    client = session.get(Client, client_id, with_for_update=lock)
    if client is None:
        raise NotFound("no such client")
    return client


def changes_of(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """``{field: [before, after]}`` for the fields that changed (the audit's record of a PATCH)."""
    return {k: [before[k], after[k]] for k in after if before.get(k) != after[k]}
