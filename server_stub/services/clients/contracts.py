"""Contracts of a client: number, date, amount in minor units, SLA, links to the documents.

Staff move a contract through ``draft`` → ``signed`` → ``closed`` (never back). Whether it is
paid is a payment's business (``/external/payments`` sets ``paid_at``, and may set the status
``paid``); staff cannot set it, and once paid its amount and currency are fixed.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any, Final

from sqlalchemy import Select, or_, select
from sqlalchemy.exc import IntegrityError

from ...db import transaction
from ...errors import AlreadyExists, NotFound
from ...portal_models import CONTRACT_STATUSES, Contract
from ..audit import record
from ..context import ServiceContext
from .fields import (
    CONTRACT_NUMBER_MAX,
    CURRENCY_PATTERN,
    DOCUMENT_TITLE_MAX,
    DOCUMENT_URL_MAX,
    HTTPS_URL_PATTERN,
    MAX_AMOUNT_MINOR,
    MAX_DOCUMENTS,
    SLA_MAX,
    STAFF_CONTRACT_STATUSES,
    clean_text,
    has_control_characters,
)
from .paging import Page, keyset_page
from .records import changes_of, contract_object, get_client, raise_problems

_NUMBER_TAKEN: Final = "a contract with this number already exists"
_RANK: Final = {"draft": 0, "signed": 1, "paid": 1, "closed": 2}
EDITABLE: Final = frozenset(
    {"number", "signed_on", "amount_minor", "currency", "sla", "documents", "status"}
)
_CURRENCY = re.compile(CURRENCY_PATTERN)
_HTTPS_URL = re.compile(HTTPS_URL_PATTERN)


@dataclass(frozen=True)
class Document:
    """A link to a document kept in the cloud (contract, act, specification)."""

    title: str
    url: str


@dataclass(frozen=True)
class ContractDraft:
    number: str
    signed_on: date
    amount_minor: int
    currency: str
    sla: str | None = None
    documents: tuple[Document, ...] = ()
    status: str = "signed"


@dataclass(frozen=True)
class ContractFilter:
    status: str | None = None
    client_id: str | None = None
    #: ``True``: paid contracts only; ``False``: unpaid only.
    paid: bool | None = None
    signed_from: date | None = None
    signed_to: date | None = None

    def apply(self, query: Select[Any]) -> Select[Any]:
        if self.status is not None:
            query = query.where(Contract.status == self.status)
        if self.client_id is not None:
            query = query.where(Contract.client_id == self.client_id)
        paid = or_(Contract.paid_at.is_not(None), Contract.status == "paid")
        if self.paid is True:
            query = query.where(paid)
        elif self.paid is False:
            query = query.where(~paid)
        if self.signed_from is not None:
            query = query.where(Contract.signed_on >= self.signed_from)
        if self.signed_to is not None:
            query = query.where(Contract.signed_on <= self.signed_to)
        return query

    def problems(self) -> list[tuple[str, str]]:
        problems = []
        if self.status is not None and self.status not in CONTRACT_STATUSES:
            problems.append(("status", f"one of {', '.join(CONTRACT_STATUSES)}"))
        if self.signed_from and self.signed_to and self.signed_from > self.signed_to:
            problems.append(("signed_from", "after signed_to"))
        return problems


def is_paid(contract: Contract) -> bool:
    return contract.paid_at is not None or contract.status == "paid"


def document_problems(documents: tuple[Document, ...]) -> list[tuple[str, str]]:
    if len(documents) > MAX_DOCUMENTS:
        return [("documents", f"at most {MAX_DOCUMENTS} document links")]
    problems = []
    for i, doc in enumerate(documents):
        if not doc.title or len(doc.title) > DOCUMENT_TITLE_MAX:
            problems.append((f"documents.{i}.title", f"1 to {DOCUMENT_TITLE_MAX} characters"))
        if not _is_https_url(doc.url):
            problems.append((f"documents.{i}.url", "an https:// URL with a host"))
    return problems


def _is_https_url(url: str) -> bool:
    return len(url) <= DOCUMENT_URL_MAX and _HTTPS_URL.fullmatch(url) is not None


def draft_problems(draft: ContractDraft) -> list[tuple[str, str]]:
    problems = []
    if not draft.number or len(draft.number) > CONTRACT_NUMBER_MAX:
        problems.append(("number", f"1 to {CONTRACT_NUMBER_MAX} characters"))
    elif has_control_characters(draft.number):
        problems.append(("number", "contains control characters"))
    if not 0 <= draft.amount_minor <= MAX_AMOUNT_MINOR:
        problems.append(("amount_minor", "an integer amount in minor units, 0 or more"))
    if not _CURRENCY.fullmatch(draft.currency):
        problems.append(("currency", "an ISO 4217 code: three capital letters"))
    if draft.sla is not None and (len(draft.sla) > SLA_MAX or has_control_characters(draft.sla)):
        problems.append(("sla", f"at most {SLA_MAX} characters"))
    if draft.status not in STAFF_CONTRACT_STATUSES:
        problems.append(("status", f"staff set one of {', '.join(STAFF_CONTRACT_STATUSES)}"))
    return problems + document_problems(draft.documents)


def contract_state(contract: Contract) -> dict[str, Any]:
    return {
        "client_id": contract.client_id,
        "number": contract.number,
        "signed_on": contract.signed_on.isoformat(),
        "amount_minor": contract.amount_minor,
        "currency": contract.currency,
        "sla": contract.sla,
        "documents": contract.documents,
        "status": contract.status,
    }


class ContractBook:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def create(self, actor: str, client_id: str, draft: ContractDraft) -> Contract:
        draft = _cleaned(draft)
        raise_problems(draft_problems(draft))
        now = self._ctx.clock.now()
        try:
            with transaction(self._ctx.write) as session:
                client = get_client(session, client_id, lock=True)
                if client.status == "archived":
                    raise_problems([("client_id", "the client is archived")])
                if session.scalar(select(Contract.id).where(Contract.number == draft.number)):
                    raise AlreadyExists(_NUMBER_TAKEN)
                contract = Contract(
                    client_id=client.id,
                    number=draft.number,
                    signed_on=draft.signed_on,
                    amount_minor=draft.amount_minor,
                    currency=draft.currency,
                    sla=draft.sla,
                    documents=[asdict(d) for d in draft.documents],
                    status=draft.status,
                    created_at=now,
                    updated_at=now,
                )
                session.add(contract)
                session.flush()
                record(
                    session,
                    now,
                    actor,
                    "contract.create",
                    contract_object(contract.id),
                    contract_state(contract),
                )
                return contract
        except IntegrityError as exc:  # a concurrent creation of the same number won
            raise AlreadyExists(_NUMBER_TAKEN) from exc

    def get(self, contract_id: str) -> Contract:
        with transaction(self._ctx.read) as session:
            contract = session.get(Contract, contract_id)
        if contract is None:
            raise NotFound("no such contract")
        return contract

    def update(self, actor: str, contract_id: str, changes: dict[str, Any]) -> Contract:
        raise_problems(
            [(k, "may not be null") for k, v in changes.items() if v is None and k != "sla"]
            + [(k, "not a field staff may change") for k in changes if k not in EDITABLE]
        )
        now = self._ctx.clock.now()
        try:
            with transaction(self._ctx.write) as session:
                contract = session.get(Contract, contract_id, with_for_update=True)
                if contract is None:
                    raise NotFound("no such contract")
                before = contract_state(contract)
                merged = _merged(contract, changes)
                raise_problems(
                    [(f, p) for f, p in draft_problems(merged) if f.split(".")[0] in changes]
                )
                raise_problems(_transition_problems(contract, merged, changes))
                if merged.number != contract.number and session.scalar(
                    select(Contract.id).where(Contract.number == merged.number)
                ):
                    raise AlreadyExists(_NUMBER_TAKEN)
                contract.number = merged.number
                contract.signed_on = merged.signed_on
                contract.amount_minor = merged.amount_minor
                contract.currency = merged.currency
                contract.sla = merged.sla
                contract.documents = [asdict(d) for d in merged.documents]
                if not (contract.status == "paid" and merged.status == "signed"):
                    contract.status = merged.status
                diff = changes_of(before, contract_state(contract))
                if diff:
                    contract.updated_at = now
                    record(
                        session, now, actor, "contract.update", contract_object(contract.id), diff
                    )
                return contract
        except IntegrityError as exc:
            raise AlreadyExists(_NUMBER_TAKEN) from exc

    def list(self, filters: ContractFilter, *, cursor: str | None, limit: int) -> Page[Contract]:
        raise_problems(filters.problems())
        with transaction(self._ctx.read) as session:
            if filters.client_id is not None:
                get_client(session, filters.client_id)
            return keyset_page(
                filters.apply(select(Contract)),
                Contract.signed_on,
                Contract.id,
                cursor=cursor,
                limit=limit,
                filters=asdict(filters),
                fetch=lambda query: list(session.scalars(query)),
                key_of=lambda c: c.signed_on,
                id_of=lambda c: c.id,
                by_date=True,
            )


def _transition_problems(
    contract: Contract, merged: ContractDraft, changes: dict[str, Any]
) -> list[tuple[str, str]]:
    problems = []
    if "status" in changes and _RANK[merged.status] < _RANK.get(contract.status, 0):
        problems.append(
            ("status", f"a contract does not go back from {contract.status} to {merged.status}")
        )
    if is_paid(contract) and (
        merged.amount_minor != contract.amount_minor or merged.currency != contract.currency
    ):
        problems.append(("amount_minor", "the contract is paid: its amount is fixed"))
    return problems


def _cleaned(draft: ContractDraft) -> ContractDraft:
    return ContractDraft(
        number=clean_text(draft.number),
        signed_on=draft.signed_on,
        amount_minor=draft.amount_minor,
        currency=draft.currency,
        sla=clean_text(draft.sla) if draft.sla is not None else None,
        documents=tuple(Document(clean_text(d.title), d.url.strip()) for d in draft.documents),
        status=draft.status,
    )


def _merged(contract: Contract, changes: dict[str, Any]) -> ContractDraft:
    documents = changes.get("documents")
    status = contract.status if contract.status in STAFF_CONTRACT_STATUSES else "signed"
    return _cleaned(
        ContractDraft(
            number=changes.get("number", contract.number),
            signed_on=changes.get("signed_on", contract.signed_on),
            amount_minor=changes.get("amount_minor", contract.amount_minor),
            currency=changes.get("currency", contract.currency),
            sla=changes.get("sla", contract.sla),
            documents=tuple(documents)
            if documents is not None
            else tuple(Document(**d) for d in contract.documents),
            status=changes.get("status", status),
        )
    )
