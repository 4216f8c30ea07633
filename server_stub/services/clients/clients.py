"""Clients: create, read, change, list with filters, search and cursor pagination."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Final, TypeVar

from sqlalchemy import Select, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ...db import transaction
from ...errors import AlreadyExists
from ...portal_models import Client
from ..audit import escape_like, record
from ..context import ServiceContext
from .fields import (
    MAX_CONTACTS,
    Contact,
    clean_text,
    contact_problems,
    deployment_problem,
    inn_problem,
    legal_name_problem,
    normal_contact,
    search_key,
    segment_problem,
    status_problem,
)
from .paging import Page, keyset_page
from .records import changes_of, client_object, enabled_staff, get_client, raise_problems

#: Any select of clients (a list's, or the export's with the manager joined).
Q = TypeVar("Q", bound="Select[*tuple[Any, ...]]")
_INN_TAKEN: Final = "a client with this INN already exists"
#: The fields a PATCH may change.
EDITABLE: Final = frozenset(
    {"legal_name", "inn", "segment", "deployment", "status", "manager_id", "contacts"}
)


@dataclass(frozen=True)
class ClientDraft:
    legal_name: str
    inn: str
    segment: str
    deployment: str
    status: str = "active"
    manager_id: str | None = None
    contacts: tuple[Contact, ...] = ()


@dataclass(frozen=True)
class ClientFilter:
    """The list's filters; ``q`` is a substring of the legal name (any case, Cyrillic too) or,
    when it is digits, also a prefix of the INN."""

    segment: str | None = None
    status: str | None = None
    manager_id: str | None = None
    deployment: str | None = None
    q: str | None = None

    def apply(self, query: Q) -> Q:
        for column, value in (
            (Client.segment, self.segment),
            (Client.status, self.status),
            (Client.manager_id, self.manager_id),
            (Client.deployment, self.deployment),
        ):
            if value is not None:
                query = query.where(column == value)
        q = clean_text(self.q or "")
        if q:
            by_name = Client.search_name.like(f"%{escape_like(search_key(q))}%", escape="\\")
            if q.isascii() and q.isdigit():
                query = query.where(or_(by_name, Client.inn.like(f"{q}%")))
            else:
                query = query.where(by_name)
        return query

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def draft_problems(draft: ClientDraft) -> list[tuple[str, str]]:
    """(field, problem) for every field of ``draft`` that is not valid (no database needed)."""
    checks = (
        ("legal_name", legal_name_problem(draft.legal_name)),
        ("inn", inn_problem(draft.inn)),
        ("segment", segment_problem(draft.segment)),
        ("deployment", deployment_problem(draft.deployment)),
        ("status", status_problem(draft.status)),
    )
    problems = [(name, problem) for name, problem in checks if problem is not None]
    if len(draft.contacts) > MAX_CONTACTS:
        problems.append(("contacts", f"at most {MAX_CONTACTS} contacts"))
    for i, contact in enumerate(draft.contacts[:MAX_CONTACTS]):
        problems += [(f"contacts.{i}.{f}", p) for f, p in contact_problems(contact)]
    return problems


def client_state(client: Client) -> dict[str, Any]:
    """The audit's view of a client: contacts are personal data (152-FZ) and the log keeps
    everything for good, so it records how many there are, not who they are."""
    return {
        "legal_name": client.legal_name,
        "inn": client.inn,
        "segment": client.segment,
        "deployment": client.deployment,
        "status": client.status,
        "manager_id": client.manager_id,
        "contacts": len(client.contacts),
    }


class ClientBook:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def create(self, actor: str, draft: ClientDraft) -> Client:
        draft = _cleaned(draft)
        raise_problems(draft_problems(draft))
        now = self._ctx.clock.now()
        try:
            with transaction(self._ctx.write) as session:
                client = self.add(session, actor, draft, now)
                return client
        except IntegrityError as exc:  # a concurrent creation of the same INN won
            raise AlreadyExists(_INN_TAKEN) from exc

    def add(self, session: Session, actor: str, draft: ClientDraft, now: Any) -> Client:
        """Insert a checked ``draft`` in ``session`` and audit it (the import's step too)."""
        if session.scalar(select(Client.id).where(Client.inn == draft.inn)) is not None:
            raise AlreadyExists(_INN_TAKEN)
        if draft.manager_id is not None and enabled_staff(session, draft.manager_id) is None:
            raise_problems([("manager_id", "no enabled staff member has this id")])
        client = Client(
            legal_name=draft.legal_name,
            search_name=search_key(draft.legal_name),
            inn=draft.inn,
            segment=draft.segment,
            deployment=draft.deployment,
            status=draft.status,
            manager_id=draft.manager_id,
            contacts=[normal_contact(c).as_json() for c in draft.contacts],
            created_at=now,
            updated_at=now,
        )
        session.add(client)
        session.flush()
        record(session, now, actor, "client.create", client_object(client.id), client_state(client))
        return client

    def get(self, client_id: str) -> Client:
        with transaction(self._ctx.read) as session:
            return get_client(session, client_id)

    def update(self, actor: str, client_id: str, changes: dict[str, Any]) -> Client:
        """Change the fields named in ``changes`` (a PATCH: absent fields stay as they are)."""
        raise_problems(
            [(k, "may not be null") for k, v in changes.items() if v is None and k != "manager_id"]
            + [(k, "not a field of a client") for k in changes if k not in EDITABLE]
        )
        now = self._ctx.clock.now()
        try:
            with transaction(self._ctx.write) as session:
                client = get_client(session, client_id, lock=True)
                before = client_state(client)
                merged = _merge(client, changes)
                problems = draft_problems(merged)
                raise_problems([(f, p) for f, p in problems if f.split(".")[0] in changes])
                if merged.inn != client.inn and session.scalar(
                    select(Client.id).where(Client.inn == merged.inn)
                ):
                    raise AlreadyExists(_INN_TAKEN)
                if (
                    "manager_id" in changes
                    and merged.manager_id is not None
                    and merged.manager_id != client.manager_id
                    and enabled_staff(session, merged.manager_id) is None
                ):
                    raise_problems([("manager_id", "no enabled staff member has this id")])
                client.legal_name = merged.legal_name
                client.search_name = search_key(merged.legal_name)
                client.inn = merged.inn
                client.segment = merged.segment
                client.deployment = merged.deployment
                client.status = merged.status
                client.manager_id = merged.manager_id
                if "contacts" in changes:
                    client.contacts = [normal_contact(c).as_json() for c in merged.contacts]
                diff = changes_of(before, client_state(client))
                if diff or "contacts" in changes:
                    client.updated_at = now
                    action = (
                        "client.archive"
                        if diff.get("status", [None, None])[1] == "archived"
                        else "client.update"
                    )
                    record(session, now, actor, action, client_object(client.id), diff)
                return client
        except IntegrityError as exc:
            raise AlreadyExists(_INN_TAKEN) from exc

    def list(self, filters: ClientFilter, *, cursor: str | None, limit: int) -> Page[Client]:
        with transaction(self._ctx.read) as session:
            return keyset_page(
                filters.apply(select(Client)),
                Client.created_at,
                Client.id,
                cursor=cursor,
                limit=limit,
                filters=filters.as_dict(),
                fetch=lambda query: list(session.scalars(query)),
                key_of=lambda c: c.created_at,
                id_of=lambda c: c.id,
            )


def _cleaned(draft: ClientDraft) -> ClientDraft:
    return ClientDraft(
        legal_name=clean_text(draft.legal_name),
        inn=draft.inn.strip(),
        segment=draft.segment.strip(),
        deployment=draft.deployment.strip(),
        status=draft.status.strip(),
        manager_id=draft.manager_id,
        contacts=tuple(
            Contact(
                clean_text(c.name),
                c.email.strip() if c.email else None,
                c.phone.strip() if c.phone else None,
                clean_text(c.position) if c.position else None,
            )
            for c in draft.contacts
        ),
    )


def _merge(client: Client, changes: dict[str, Any]) -> ClientDraft:
    contacts = changes.get("contacts")
    return _cleaned(
        ClientDraft(
            legal_name=changes.get("legal_name", client.legal_name),
            inn=changes.get("inn", client.inn),
            segment=changes.get("segment", client.segment),
            deployment=changes.get("deployment", client.deployment),
            status=changes.get("status", client.status),
            manager_id=changes.get("manager_id", client.manager_id),
            contacts=tuple(contacts)
            if contacts is not None
            else tuple(Contact(**c) for c in client.contacts),
        )
    )
