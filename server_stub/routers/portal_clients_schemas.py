"""Request and response models of the portal's clients, contracts, products and notes.

The edge bounds the shape and sizes; the service owns the rules (INN check digits, e-mail
syntax, https links, status moves) and answers 422 naming each field, so the HTTP API and the
CSV/XLSX import refuse the same values.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from ..portal_models import (
    CLIENT_STATUSES,
    CONTRACT_STATUSES,
    DEPLOYMENTS,
    Client,
    ClientNote,
    Contract,
    ProductModule,
)
from ..services.clients import Contact, Document, Price, ProductView, is_paid
from ..services.clients import fields as f
from ..services.clients.notes import NOTE_MAX
from ..services.clients.products import CODE_PATTERN, NAME_MAX
from .wire_numbers import json_integer

ClientStatus = Literal[CLIENT_STATUSES]  # type: ignore[valid-type]
Deployment = Literal[DEPLOYMENTS]  # type: ignore[valid-type]
ContractStatus = Literal[CONTRACT_STATUSES]  # type: ignore[valid-type]
StaffContractStatus = Literal[f.STAFF_CONTRACT_STATUSES]  # type: ignore[valid-type]
#: The ids of rows (UUIDs); anything else cannot name one (and never reaches the database: a NUL
#: there is an error PostgreSQL raises, not a miss).
ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Code = Annotated[str, StringConstraints(pattern=CODE_PATTERN)]
Segment = Annotated[str, StringConstraints(pattern=f.SEGMENT_PATTERN)]
Inn = Annotated[str, StringConstraints(pattern=r"^[0-9]{10}([0-9]{2})?$")]
Currency = Annotated[str, StringConstraints(pattern=f.CURRENCY_PATTERN)]
#: A JSON integer (``5`` or ``5.0``, as JSON Schema has it), never ``true``, ``"5"`` or ``5.5``.
AmountMinor = Annotated[int, Field(ge=0, le=f.MAX_AMOUNT_MINOR), BeforeValidator(json_integer)]
LegalName = Annotated[str, StringConstraints(max_length=f.LEGAL_NAME_MAX, pattern=f.NAME_PATTERN)]
PersonName = Annotated[
    str, StringConstraints(max_length=f.CONTACT_NAME_MAX, pattern=f.NAME_PATTERN)
]
Position = Annotated[
    str, StringConstraints(max_length=f.CONTACT_POSITION_MAX, pattern=f.LINE_PATTERN)
]
ContractNumber = Annotated[
    str, StringConstraints(max_length=f.CONTRACT_NUMBER_MAX, pattern=f.NAME_PATTERN)
]
Sla = Annotated[str, StringConstraints(max_length=f.SLA_MAX, pattern=f.LINE_PATTERN)]
Name = Annotated[str, StringConstraints(max_length=NAME_MAX, pattern=f.NAME_PATTERN)]
HttpsUrl = Annotated[
    str, StringConstraints(max_length=f.DOCUMENT_URL_MAX, pattern=f.HTTPS_URL_PATTERN)
]


def _iso_date(value: Any) -> Any:
    # pydantic would also take a number (seconds since 1970) for a date; the schema says text.
    if isinstance(value, str) and not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise ValueError("a date is YYYY-MM-DD")
    if not isinstance(value, str | date):
        raise ValueError("a date is YYYY-MM-DD")
    return value


IsoDate = Annotated[date, BeforeValidator(_iso_date)]
#: A field a PATCH may leave out but not set to null: ``null`` is refused (by the service) and
#: left out of the schema.
NoNull = SkipJsonSchema[None]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- clients ------------------------------------------------------------------------------------


class ContactIn(_In):
    name: PersonName
    email: EmailStr | None = None
    phone: Annotated[str, StringConstraints(pattern=f.PHONE_PATTERN)] | None = None
    position: Position | None = None


Contacts = Annotated[list[ContactIn], Field(max_length=f.MAX_CONTACTS)]


class ClientCreate(_In):
    legal_name: LegalName
    inn: Inn = Field(description="10 digits (legal entity) or 12 (entrepreneur), check digits")
    segment: Segment
    deployment: Deployment
    status: ClientStatus = "active"
    manager_id: Id | None = Field(default=None, description="an enabled staff member")
    contacts: Contacts = []


class ClientPatch(_In):
    """Only the fields sent change; ``manager_id: null`` unassigns the manager."""

    legal_name: LegalName | NoNull = None
    inn: Inn | NoNull = None
    segment: Segment | NoNull = None
    deployment: Deployment | NoNull = None
    status: ClientStatus | NoNull = None
    manager_id: Id | None = None
    contacts: Contacts | NoNull = None


class ContactOut(BaseModel):
    name: str
    email: str | None = None
    phone: str | None = None
    position: str | None = None


class ClientOut(BaseModel):
    id: str
    legal_name: str
    inn: str
    segment: str
    deployment: str
    status: str
    manager_id: str | None
    contacts: list[ContactOut]
    created_at: datetime
    updated_at: datetime


class ClientPageOut(BaseModel):
    items: list[ClientOut]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null: the end")


class ImportOut(BaseModel):
    imported: int
    ids: list[str]


# --- contracts ----------------------------------------------------------------------------------


class DocumentIn(_In):
    title: Annotated[
        str, StringConstraints(max_length=f.DOCUMENT_TITLE_MAX, pattern=f.NAME_PATTERN)
    ]
    url: HttpsUrl = Field(description="https:// only")


Documents = Annotated[list[DocumentIn], Field(max_length=f.MAX_DOCUMENTS)]


class ContractCreate(_In):
    number: ContractNumber
    signed_on: IsoDate
    amount_minor: AmountMinor = Field(description="integer minor units (kopecks, cents)")
    currency: Currency = Field(description="ISO 4217")
    sla: Sla | None = None
    documents: Documents = []
    status: StaffContractStatus = "signed"


class ContractPatch(_In):
    """Only the fields sent change; ``sla: null`` clears the SLA."""

    number: ContractNumber | NoNull = None
    signed_on: IsoDate | NoNull = None
    amount_minor: AmountMinor | NoNull = None
    currency: Currency | NoNull = None
    sla: Sla | None = None
    documents: Documents | NoNull = None
    status: StaffContractStatus | NoNull = None


class DocumentOut(BaseModel):
    title: str
    url: str


class ContractOut(BaseModel):
    id: str
    client_id: str
    number: str
    signed_on: date
    amount_minor: int
    currency: str
    sla: str | None
    documents: list[DocumentOut]
    status: ContractStatus
    paid: bool
    paid_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ContractPageOut(BaseModel):
    items: list[ContractOut]
    next_cursor: str | None


# --- products -----------------------------------------------------------------------------------


class PriceIn(_In):
    amount_minor: AmountMinor
    currency: Currency


class ProductCreate(_In):
    id: Code = Field(description="what license files carry as product, e.g. tgflow")
    name: Name


class ProductPatch(_In):
    name: Name


class ModuleCreate(_In):
    code: Code = Field(description="what license files carry in modules, e.g. ai_forecast")
    name: Name
    list_price: PriceIn | None = Field(default=None, description="per year, for plan vs fact")


class ModulePatch(_In):
    """``list_price: null`` clears the price; absent fields stay."""

    name: Name | NoNull = None
    list_price: PriceIn | None = None

    @model_validator(mode="after")
    def _name_not_null(self) -> ModulePatch:
        if "name" in self.model_fields_set and self.name is None:
            raise ValueError("name may be left out, not set to null")
        return self


class PriceOut(BaseModel):
    amount_minor: int
    currency: str


class ModuleOut(BaseModel):
    code: str
    name: str
    list_price: PriceOut | None
    retired: bool
    retired_at: datetime | None


class ProductOut(BaseModel):
    id: str
    name: str
    created_at: datetime
    modules: list[ModuleOut]


# --- notes --------------------------------------------------------------------------------------


class NoteCreate(_In):
    body: Annotated[str, StringConstraints(max_length=NOTE_MAX, pattern=f.TEXT_PATTERN)]
    license_id: Id | None = Field(default=None, description="a license of this client")


class NoteOut(BaseModel):
    id: str
    client_id: str
    license_id: str | None
    author: str
    body: str
    created_at: datetime


class NotePageOut(BaseModel):
    items: list[NoteOut]
    next_cursor: str | None


# --- from the service's rows to the answers ------------------------------------------------------


def client_out(client: Client) -> ClientOut:
    return ClientOut(
        id=client.id,
        legal_name=client.legal_name,
        inn=client.inn,
        segment=client.segment,
        deployment=client.deployment,
        status=client.status,
        manager_id=client.manager_id,
        contacts=[ContactOut(**c) for c in client.contacts],
        created_at=client.created_at,
        updated_at=client.updated_at,
    )


def contacts_of(items: list[ContactIn]) -> tuple[Contact, ...]:
    return tuple(Contact(c.name, c.email, c.phone, c.position) for c in items)


def documents_of(items: list[DocumentIn]) -> tuple[Document, ...]:
    return tuple(Document(d.title, d.url) for d in items)


def contract_out(contract: Contract) -> ContractOut:
    return ContractOut(
        id=contract.id,
        client_id=contract.client_id,
        number=contract.number,
        signed_on=contract.signed_on,
        amount_minor=contract.amount_minor,
        currency=contract.currency,
        sla=contract.sla,
        documents=[DocumentOut(**d) for d in contract.documents],
        status=contract.status,
        paid=is_paid(contract),
        paid_at=contract.paid_at,
        created_at=contract.created_at,
        updated_at=contract.updated_at,
    )


def module_out(module: ProductModule) -> ModuleOut:
    price = (
        PriceOut(amount_minor=module.list_price_minor, currency=module.currency)
        if module.list_price_minor is not None and module.currency is not None
        else None
    )
    return ModuleOut(
        code=module.code,
        name=module.name,
        list_price=price,
        retired=module.retired_at is not None,
        retired_at=module.retired_at,
    )


def product_out(view: ProductView) -> ProductOut:
    return ProductOut(
        id=view.product.id,
        name=view.product.name,
        created_at=view.product.created_at,
        modules=[module_out(m) for m in view.modules],
    )


def price_of(price: PriceIn | None) -> Price | None:
    return Price(price.amount_minor, price.currency) if price is not None else None


def note_out(note: ClientNote) -> NoteOut:
    return NoteOut(
        id=note.id,
        client_id=note.client_id,
        license_id=note.license_id,
        author=note.author,
        body=note.body,
        created_at=note.created_at,
    )
