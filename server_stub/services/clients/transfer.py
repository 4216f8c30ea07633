"""Clients in and out as CSV or XLSX (seed 003, 3.5).

An import creates new clients only. Every row is checked — the cells (INN check digits,
segment, deployment, status, contact), duplicates inside the file and against the database,
that the manager's e-mail is an enabled staff member's — and when any row is bad nothing is
imported: the 422 names each row and column. A good file is imported in one transaction, each
client audited as a ``client.create``, the whole import as one ``clients.import``.

An export honours the list's filters and has the columns an import reads, so an export imported
into another portal recreates the clients (with their first contact: further contacts stay in the
portal). Exports are audited (the file carries personal data); reading a list is not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from ...db import transaction
from ...errors import ValidationFailed
from ...models import Staff
from ...portal_models import Client
from ..audit import record
from ..context import ServiceContext
from ..tabular import Format, RowIssues, SheetRow, read_table, write_table
from .clients import ClientBook, ClientDraft, ClientFilter, draft_problems
from .fields import Contact

REQUIRED: Final = ("legal_name", "inn", "segment", "deployment")
COLUMNS: Final = (
    "id",
    "legal_name",
    "inn",
    "segment",
    "deployment",
    "status",
    "manager_email",
    "contact_name",
    "contact_email",
    "contact_phone",
    "contact_position",
    "created_at",
)
#: The column that holds each field a row's draft may get wrong.
_FIELD_COLUMN: Final = {
    "legal_name": "legal_name",
    "inn": "inn",
    "segment": "segment",
    "deployment": "deployment",
    "status": "status",
    "name": "contact_name",
    "email": "contact_email",
    "phone": "contact_phone",
    "position": "contact_position",
}
_CHUNK: Final = 500


@dataclass(frozen=True)
class ImportResult:
    created: list[str]


def _cell(row: SheetRow, column: str) -> str:
    return row.unquoted(column)


def inn_cell(row: SheetRow, fmt: Format, column: str = "inn") -> str:
    """An INN cell, with the leading zero a spreadsheet may have dropped put back."""
    inn = _cell(row, column)
    # A spreadsheet that took the INN for a number dropped its leading zero (region 01–09).
    if fmt == "xlsx" and inn.isascii() and inn.isdigit() and len(inn) in (9, 11):
        return "0" + inn
    return inn


def _draft(row: SheetRow, fmt: Format, manager_id: str | None) -> ClientDraft:
    contact_cells = [_cell(row, f"contact_{f}") for f in ("name", "email", "phone", "position")]
    contacts: tuple[Contact, ...] = ()
    if any(contact_cells):
        name, email, phone, position = contact_cells
        contacts = (Contact(name, email or None, phone or None, position or None),)
    return ClientDraft(
        legal_name=" ".join(_cell(row, "legal_name").split()),
        inn=inn_cell(row, fmt),
        segment=_cell(row, "segment"),
        deployment=_cell(row, "deployment"),
        status=_cell(row, "status") or "active",
        manager_id=manager_id,
        contacts=contacts,
    )


def _chunks(values: Sequence[str]) -> list[Sequence[str]]:
    return [values[i : i + _CHUNK] for i in range(0, len(values), _CHUNK)]


class ClientTransfer:
    def __init__(self, ctx: ServiceContext, book: ClientBook) -> None:
        self._ctx = ctx
        self._book = book

    def import_clients(self, actor: str, data: bytes, fmt: Format) -> ImportResult:
        rows = read_table(data, fmt, required=REQUIRED)
        if not rows:
            raise ValidationFailed("the file has no data rows: nothing to import")
        issues = RowIssues()
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            managers = self._managers(session, rows)
            drafts: list[ClientDraft] = []
            seen: dict[str, int] = {}
            for row in rows:
                email = _cell(row, "manager_email").lower()
                if email and email not in managers:
                    issues.add(row.number, "manager_email", "no enabled staff member has it")
                draft = _draft(row, fmt, managers.get(email))
                for field, problem in draft_problems(draft):
                    issues.add(row.number, _FIELD_COLUMN.get(field.split(".")[-1]), problem)
                if draft.inn in seen:
                    issues.add(row.number, "inn", f"the same INN as row {seen[draft.inn]}")
                seen.setdefault(draft.inn, row.number)
                drafts.append(draft)
            taken = self._existing_inns(session, list(seen))
            for row, draft in zip(rows, drafts, strict=True):
                if draft.inn in taken:
                    issues.add(row.number, "inn", "a client with this INN already exists")
            issues.raise_if_any("the import was refused")
            created = [self._book.add(session, actor, draft, now).id for draft in drafts]
            record(
                session,
                now,
                actor,
                "clients.import",
                "clients",
                {"format": fmt, "rows": len(rows), "created": len(created)},
            )
        return ImportResult(created)

    def export_clients(self, actor: str, filters: ClientFilter, fmt: Format) -> bytes:
        query = filters.apply(
            select(Client, Staff.email).outerjoin(Staff, Staff.id == Client.manager_id)
        ).order_by(Client.created_at.desc(), Client.id.desc())
        with transaction(self._ctx.read) as session:
            found = session.execute(query).all()
        rows = []
        for client, manager_email in found:
            contact = client.contacts[0] if client.contacts else {}
            rows.append(
                [
                    client.id,
                    client.legal_name,
                    client.inn,
                    client.segment,
                    client.deployment,
                    client.status,
                    manager_email,
                    contact.get("name"),
                    contact.get("email"),
                    contact.get("phone"),
                    contact.get("position"),
                    client.created_at.isoformat(),
                ]
            )
        with transaction(self._ctx.write) as session:
            record(
                session,
                self._ctx.clock.now(),
                actor,
                "clients.export",
                "clients",
                {"format": fmt, "filters": filters.as_dict(), "rows": len(rows)},
            )
        return write_table(fmt, COLUMNS, rows)

    @staticmethod
    def _managers(session: Session, rows: list[SheetRow]) -> dict[str, str]:
        """E-mail → id of the enabled staff members the file names as managers."""
        emails = sorted({e for row in rows if (e := _cell(row, "manager_email").lower())})
        found: dict[str, str] = {}
        for chunk in _chunks(emails):
            for staff_id, email in session.execute(
                select(Staff.id, Staff.email).where(
                    Staff.email.in_(chunk), Staff.disabled_at.is_(None)
                )
            ):
                found[email] = staff_id
        return found

    @staticmethod
    def _existing_inns(session: Session, inns: list[str]) -> set[str]:
        taken: set[str] = set()
        for chunk in _chunks(inns):
            taken.update(session.scalars(select(Client.inn).where(Client.inn.in_(chunk))))
        return taken
