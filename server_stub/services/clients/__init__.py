"""The license portal's clients, contracts, products with their modules, and notes
(docs/licensing.md, "Clients, contracts and products").

:class:`ClientService` builds one manager per area and is what the routers hold; every write is
audited in its own transaction, with the staff member's actor string.
"""

from __future__ import annotations

from ..context import ServiceContext
from .clients import ClientBook, ClientDraft, ClientFilter
from .contracts import ContractBook, ContractDraft, ContractFilter, Document, is_paid
from .fields import Contact
from .inn import inn_problem, is_valid_inn
from .notes import NoteBook
from .paging import DEFAULT_LIMIT, MAX_LIMIT, Page
from .products import Price, ProductCatalog, ProductView
from .transfer import ClientTransfer, ImportResult

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "ClientDraft",
    "ClientFilter",
    "ClientService",
    "Contact",
    "ContractDraft",
    "ContractFilter",
    "Document",
    "ImportResult",
    "Page",
    "Price",
    "ProductView",
    "inn_problem",
    "is_paid",
    "is_valid_inn",
]


class ClientService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.clients = ClientBook(ctx)
        self.contracts = ContractBook(ctx)
        self.products = ProductCatalog(ctx)
        self.notes = NoteBook(ctx)
        self.transfer = ClientTransfer(ctx, self.clients)

        self.create = self.clients.create
        self.get = self.clients.get
        self.update = self.clients.update
        self.list = self.clients.list
        self.import_clients = self.transfer.import_clients
        self.export_clients = self.transfer.export_clients
