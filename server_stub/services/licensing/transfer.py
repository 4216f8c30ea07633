"""Licenses in and out as CSV or XLSX (issue #11 item 8; docs/licensing.md, "Licenses in and out
as CSV or XLSX").

An import issues NEW licenses only, each row through :meth:`LicenseChanges.issue_in` — the code
path of ``POST /staff/licenses`` — so the checks, the four-eyes rule, signing and the audit are
the same. Every row is checked first (client by INN, contract by number and of that client,
product, modules, dates, version range, CIDRs, limits, flags, rows repeated in the file) and
when any row is bad nothing is imported: the 422 names each row and column. A good file is
issued in one transaction, audited as one ``license.issue`` per row and one
``licenses.import``.

An export honours the list's filters; its columns are what an import reads plus a few read-only
ones an import ignores (id, status, version, the key's last four characters, the client's name).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any, Final, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent.protocol import DEFAULT_HEARTBEAT_WINDOW_S, INSTALL_DOMAIN_PATTERN
from agent.protocol import PRODUCT_VERSION_PATTERN as _VERSION

from ...db import transaction
from ...errors import ValidationFailed
from ...portal_models import LICENSE_PLANS, Client, Contract, License, Product, ProductModule
from ..audit import record
from ..clients.transfer import inn_cell
from ..context import ServiceContext
from ..tabular import Format, RowIssues, SheetRow, read_table, write_table
from .changes import IssueOrder, LicenseChanges
from .queries import LicenseFilter
from .terms import MAX_IP_RANGES, Terms, check

LIMITS: Final = ("users", "departments", "integrations", "api_rate", "messages")
#: What an import reads (and an export writes), in the file's order.
EDITABLE: Final = (
    "client_inn",
    "contract_number",
    "product",
    "plan",
    "modules",
    *LIMITS,
    "valid_from",
    "valid_until",
    "grace_days",
    "domain",
    "min_version",
    "max_version",
    "mandatory_min_version",
    "encrypted",
    "max_activations",
    "activations_per_hour",
    "checkouts_per_hour",
    "ip_ranges",
    "heartbeat_window_s",
)
#: Written by an export for people to read; an import ignores them (it issues new licenses).
READ_ONLY: Final = ("id", "status", "version", "key_last4", "client_name")
COLUMNS: Final = (*READ_ONLY, *EDITABLE)
REQUIRED: Final = (
    "client_inn",
    "product",
    "plan",
    "valid_from",
    "valid_until",
    "domain",
    "min_version",
)
#: Each row is signed inside one request and one transaction: about 10 ms a row with a software
#: key (docs/licensing.md, "Licenses in and out as CSV or XLSX"), so 500 rows stay well within a
#: request's time even on an HSM at tens of milliseconds a signature; more go in more files.
MAX_ROWS: Final = 500
#: The bounds of the integer columns (those of ``POST /staff/licenses``).
_MAX_COUNT: Final = 2**31 - 1
_BOUNDS: Final = {
    **dict.fromkeys(LIMITS, (0, _MAX_COUNT)),
    "grace_days": (0, 3650),
    "max_activations": (1, 1_000_000),
    "activations_per_hour": (1, 1_000_000),
    "checkouts_per_hour": (1, 1_000_000),
    "heartbeat_window_s": (60, 30 * 86400),
}
_MODULE: Final = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_DOMAIN: Final = re.compile(INSTALL_DOMAIN_PATTERN.replace("a-z0-9", "a-zA-Z0-9"))
_INTEGER: Final = re.compile(r"-?[0-9]{1,19}")
_LIST_SEPARATORS: Final = re.compile(r"[\s;,]+")
_TRUE: Final = {"true", "yes", "1", "y", "да"}
_FALSE: Final = {"false", "no", "0", "n", "нет", ""}
_CHUNK: Final = 500
_Found = TypeVar("_Found")


@dataclass(frozen=True)
class ImportedLicense:
    row: int
    id: str
    status: str
    pending_approval: bool


class _Cells:
    """One row's cells read as the license's fields; each problem noted with its column."""

    def __init__(self, row: SheetRow, issues: RowIssues) -> None:
        self.row = row
        self._issues = issues
        self.bad = False

    def problem(self, column: str | None, message: str) -> None:
        self.bad = True
        self._issues.add(self.row.number, column, message)

    def text(self, column: str) -> str:
        return self.row.unquoted(column)

    def integer(self, column: str, default: int | None = None) -> int | None:
        value = self.text(column)
        if not value:
            return default
        low, high = _BOUNDS[column]
        if not _INTEGER.fullmatch(value) or not low <= int(value) <= high:
            self.problem(column, f"must be a whole number from {low} to {high}")
            return default
        return int(value)

    def when(self, column: str) -> datetime | None:
        """A date-time with a zone, a date-time without one (UTC: a spreadsheet's date cells
        carry no zone) or a date (its midnight, UTC)."""
        value = self.text(column)
        try:
            parsed = (
                datetime.combine(date.fromisoformat(value), datetime.min.time())
                if len(value) == 10
                else datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
            )
        except ValueError:
            self.problem(column, "must be a date (YYYY-MM-DD) or an ISO 8601 date-time")
            return None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)

    def matching(self, column: str, pattern: str | re.Pattern[str], what: str) -> str | None:
        value = self.text(column)
        if not value:
            return None
        if len(value) > 253 or not re.fullmatch(pattern, value):
            self.problem(column, f"is not {what}")
            return None
        return value

    def words(self, column: str, limit: int) -> tuple[str, ...]:
        items = tuple(w for w in _LIST_SEPARATORS.split(self.text(column)) if w)
        if len(items) > limit:
            self.problem(column, f"at most {limit} items")
        return items

    def flag(self, column: str) -> bool:
        value = self.text(column).lower()
        if value not in _TRUE | _FALSE:
            self.problem(column, "must be true or false")
        return value in _TRUE


def _column_of(message: str) -> str | None:
    """The column a message of :func:`check` is about (it names the field first)."""
    if "IP range" in message:
        return "ip_ranges"
    found = [(message.find(c), c) for c in EDITABLE if c in message]
    return min(found)[1] if found else None


def _by_chunks(
    values: Sequence[str], lookup: Callable[[Sequence[str]], list[_Found]]
) -> list[_Found]:
    unique = sorted(set(values))
    return [r for i in range(0, len(unique), _CHUNK) for r in lookup(unique[i : i + _CHUNK])]


@dataclass(frozen=True)
class _Catalogue:
    """What the file refers to, looked up once: clients by INN, contracts by number, modules."""

    clients: dict[str, Client]
    contracts: dict[str, Contract]
    #: Product id → module code → retired.
    modules: dict[str, dict[str, bool]]

    @classmethod
    def load(cls, session: Session, inns: list[str], numbers: list[str]) -> _Catalogue:
        clients = _by_chunks(
            inns, lambda c: list(session.scalars(select(Client).where(Client.inn.in_(c))))
        )
        contracts = _by_chunks(
            numbers,
            lambda c: list(session.scalars(select(Contract).where(Contract.number.in_(c)))),
        )
        modules: dict[str, dict[str, bool]] = {p: {} for p in session.scalars(select(Product.id))}
        for product_id, code, retired_at in session.execute(
            select(ProductModule.product_id, ProductModule.code, ProductModule.retired_at)
        ):
            modules.setdefault(product_id, {})[code] = retired_at is not None
        return cls({c.inn: c for c in clients}, {c.number: c for c in contracts}, modules)


def _filter_details(filters: LicenseFilter) -> dict[str, Any]:
    return {
        k: v.isoformat() if isinstance(v, datetime) else v
        for k, v in asdict(filters).items()
        if v is not None
    }


class LicenseTransfer:
    def __init__(self, ctx: ServiceContext, changes: LicenseChanges) -> None:
        self._ctx = ctx
        self._changes = changes

    def import_licenses(self, actor: str, data: bytes, fmt: Format) -> list[ImportedLicense]:
        rows = read_table(data, fmt, required=REQUIRED)
        if not rows:
            raise ValidationFailed("the file has no data rows: nothing to import")
        if len(rows) > MAX_ROWS:
            raise ValidationFailed(
                f"at most {MAX_ROWS} licenses per import (each is signed): split the file"
            )
        now = self._ctx.clock.now()
        issues = RowIssues()
        with transaction(self._ctx.write) as session:
            catalogue = _Catalogue.load(
                session,
                [inn_cell(r, fmt, "client_inn") for r in rows],
                [n for r in rows if (n := r.unquoted("contract_number"))],
            )
            orders: list[tuple[int, IssueOrder]] = []
            seen: dict[str, int] = {}
            for row in rows:
                order = self._order(_Cells(row, issues), catalogue, fmt, now)
                if order is None:
                    continue
                same = repr((order.client_id, order.contract_id, order.product_id, order.terms))
                if same in seen:
                    issues.add(row.number, None, f"the same license as row {seen[same]}")
                seen.setdefault(same, row.number)
                orders.append((row.number, order))
            issues.raise_if_any("the import was refused")
            created = []
            for number, order in orders:
                lic = self._changes.issue_in(session, actor, order).license
                created.append(ImportedLicense(number, lic.id, lic.status, lic.version == 0))
            record(
                session,
                now,
                actor,
                "licenses.import",
                "licenses",
                {
                    "format": fmt,
                    "rows": len(rows),
                    "created": len(created),
                    "pending_approval": sum(c.pending_approval for c in created),
                },
            )
        return created

    @staticmethod
    def _order(
        cells: _Cells, catalogue: _Catalogue, fmt: Format, now: datetime
    ) -> IssueOrder | None:
        """The row as an order, or None when it has a problem (each one noted)."""
        inn = inn_cell(cells.row, fmt, "client_inn")
        client = catalogue.clients.get(inn)
        if client is None:
            cells.problem("client_inn", "no client has this INN")
        elif client.status == "archived":
            cells.problem("client_inn", "the client is archived")
        number = cells.text("contract_number")
        contract = catalogue.contracts.get(number) if number else None
        if number and contract is None:
            cells.problem("contract_number", "no contract has this number")
        elif contract is not None and client is not None and contract.client_id != client.id:
            cells.problem("contract_number", "the contract is another client's")
        product = cells.text("product")
        modules = catalogue.modules.get(product)
        if modules is None:
            cells.problem("product", "no such product")
        plan = cells.text("plan").lower()
        if plan not in LICENSE_PLANS:
            cells.problem("plan", f"must be one of {', '.join(LICENSE_PLANS)}")
        codes = cells.words("modules", 64)
        for code in codes:
            if not _MODULE.fullmatch(code):
                cells.problem("modules", f"{code[:64]!r} is not a module code")
            elif modules is not None and code not in modules:
                cells.problem("modules", f"the product has no module {code!r}")
            elif modules is not None and modules[code]:
                cells.problem("modules", f"module {code!r} is retired")
        limits = {name: cells.integer(name) for name in LIMITS}
        valid_from, valid_until = cells.when("valid_from"), cells.when("valid_until")
        domain = cells.matching("domain", _DOMAIN, "an install domain")
        if domain is None and not cells.text("domain"):
            cells.problem("domain", "is required")
        min_version = cells.matching("min_version", _VERSION, "a version (2.1.0)")
        if min_version is None and not cells.text("min_version"):
            cells.problem("min_version", "is required")
        terms = Terms(
            plan=plan,
            modules=codes,
            limits=limits,
            valid_from=valid_from or now,
            valid_until=valid_until or now,
            grace_days=cells.integer("grace_days", 0) or 0,
            domain=(domain or "").lower(),
            min_version=min_version or "0",
            max_version=cells.matching("max_version", _VERSION, "a version (3.0)"),
            mandatory_min_version=cells.matching(
                "mandatory_min_version", _VERSION, "a version (2.1)"
            ),
            encrypted=cells.flag("encrypted"),
            max_activations=cells.integer("max_activations"),
            activations_per_hour=cells.integer("activations_per_hour"),
            checkouts_per_hour=cells.integer("checkouts_per_hour"),
            ip_ranges=cells.words("ip_ranges", MAX_IP_RANGES),
            heartbeat_window_s=cells.integer("heartbeat_window_s", DEFAULT_HEARTBEAT_WINDOW_S)
            or DEFAULT_HEARTBEAT_WINDOW_S,
        )
        if cells.bad or client is None:
            return None
        try:
            terms = check(terms, now=now)
        except ValidationFailed as exc:
            cells.problem(_column_of(exc.detail), exc.detail)
            return None
        return IssueOrder(
            client_id=client.id,
            contract_id=contract.id if contract is not None else None,
            product_id=product,
            terms=terms,
        )

    def export_licenses(self, actor: str, filters: LicenseFilter, fmt: Format) -> bytes:
        query = filters.apply(
            select(License, Client.inn, Client.legal_name, Contract.number)
            .join(Client, Client.id == License.client_id)
            .outerjoin(Contract, Contract.id == License.contract_id)
        ).order_by(License.created_at.desc(), License.id.desc())
        with transaction(self._ctx.read) as session:
            found = session.execute(query).all()
        rows = [_export_row(lic, inn, name, number) for lic, inn, name, number in found]
        with transaction(self._ctx.write) as session:
            record(
                session,
                self._ctx.clock.now(),
                actor,
                "licenses.export",
                "licenses",
                {"format": fmt, "filters": _filter_details(filters), "rows": len(rows)},
            )
        return write_table(fmt, COLUMNS, rows)


def _export_row(
    lic: License, inn: str, client_name: str, contract_number: str | None
) -> list[str | int | None]:
    limits: dict[str, int | None] = lic.limits or {}
    return [
        lic.id,
        lic.status,
        lic.version,
        # Never the whole key: an export travels by e-mail; the key's file is downloaded apart.
        lic.license_key[-4:],
        client_name,
        inn,
        contract_number,
        lic.product_id,
        lic.plan,
        " ".join(lic.modules),
        *(limits.get(name) for name in LIMITS),
        lic.valid_from.isoformat(),
        lic.valid_until.isoformat(),
        lic.grace_days,
        lic.domain,
        lic.min_version,
        lic.max_version,
        lic.mandatory_min_version,
        "true" if lic.encrypted else "false",
        lic.max_activations,
        lic.activations_per_hour,
        lic.checkouts_per_hour,
        " ".join(lic.ip_ranges),
        lic.heartbeat_window_s,
    ]
