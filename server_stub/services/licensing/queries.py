"""Reading licenses: the filtered list (cursor pagination), one license, its history, a
version's file (refused while its contract is unpaid), and the public revocation list."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

from sqlalchemy import Select, String, and_, cast, or_, select
from sqlalchemy.orm import Session

from ...db import transaction
from ...errors import LicenseInactive, NotFound, ValidationFailed
from ...portal_models import Contract, License, LicenseVersion
from ...signing import Signer
from .. import revocations
from ..audit import record
from ..context import ServiceContext
from .common import LicenseView, find_license, license_object, version_details, view

MAX_PAGE: Final = 500
_Query = TypeVar("_Query", bound="Select[*tuple[Any, ...]]")


@dataclass(frozen=True)
class LicenseFilter:
    client_id: str | None = None
    status: str | None = None
    plan: str | None = None
    product_id: str | None = None
    module: str | None = None
    #: ``valid_until`` before this (expiring soon) …
    expiring_before: datetime | None = None
    #: … and at or after this.
    expiring_after: datetime | None = None

    def apply(self, query: _Query) -> _Query:
        """``query`` (over ``License``) narrowed to what this filter selects."""
        for column, value in (
            (License.client_id, self.client_id),
            (License.status, self.status),
            (License.plan, self.plan),
            (License.product_id, self.product_id),
        ):
            if value is not None:
                query = query.where(column == value)
        if self.module is not None:
            query = query.where(
                cast(License.modules, String).like(_module_pattern(self.module), escape="\\")
            )
        if self.expiring_before is not None:
            query = query.where(License.valid_until < self.expiring_before)
        if self.expiring_after is not None:
            query = query.where(License.valid_until >= self.expiring_after)
        return query


@dataclass(frozen=True)
class LicensePage:
    licenses: list[License]
    next_cursor: str | None


@dataclass(frozen=True)
class LicenseFile:
    filename: str
    text: str
    version: int
    checksum: str


#: ``<created_at in µs since the epoch>.<license id>``: opaque to clients, and shaped so that the
#: API's schema refuses (422) anything that is not one; stable under concurrent inserts.
CURSOR_PATTERN: Final = r"^[0-9]{1,16}\.[0-9a-f-]{36}$"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def encode_cursor(lic: License) -> str:
    micros = (lic.created_at - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}.{lic.id}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    if not re.fullmatch(CURSOR_PATTERN, cursor):
        raise ValidationFailed("the cursor is not one this list gave")
    micros, license_id = cursor.split(".")
    return _EPOCH + timedelta(microseconds=int(micros)), license_id


def _module_pattern(module: str) -> str:
    # Module codes hold no quotes, so '"code"' matches exactly one element of the JSON array;
    # LIKE's own wildcards are escaped.
    escaped = module.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f'%"{escaped}"%'


class LicenseQueries:
    def __init__(self, ctx: ServiceContext, signer: Signer) -> None:
        self._ctx = ctx
        self._signer = signer

    def search(
        self, where: LicenseFilter, *, cursor: str | None = None, limit: int = 100
    ) -> LicensePage:
        """Newest first."""
        limit = max(1, min(limit, MAX_PAGE))
        query = where.apply(select(License))
        if cursor is not None:
            created, license_id = decode_cursor(cursor)
            query = query.where(
                or_(
                    License.created_at < created,
                    and_(License.created_at == created, License.id < license_id),
                )
            )
        query = query.order_by(License.created_at.desc(), License.id.desc()).limit(limit + 1)
        with transaction(self._ctx.read) as session:
            rows = list(session.scalars(query))
        more = len(rows) > limit
        rows = rows[:limit]
        return LicensePage(rows, encode_cursor(rows[-1]) if more and rows else None)

    def get(self, ref: str) -> LicenseView:
        with transaction(self._ctx.read) as session:
            return view(session, find_license(session, ref))

    def history(self, ref: str) -> tuple[License, list[LicenseVersion]]:
        """The license and every version it had, newest first (rejected requests too)."""
        with transaction(self._ctx.read) as session:
            lic = find_license(session, ref)
            versions = session.scalars(
                select(LicenseVersion)
                .where(LicenseVersion.license_id == lic.id)
                .order_by(LicenseVersion.version.desc())
            )
            return lic, list(versions)

    def file(self, actor: str, ref: str, version: int | None = None) -> LicenseFile:
        """A signed version's file (the in-force one by default), audited as a download.

        Refused (``license_inactive``) before its first version is approved, while the license
        is suspended or revoked, and while its contract is unpaid.
        """
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            lic = find_license(session, ref)
            if lic.version == 0:
                raise LicenseInactive("the license awaits approval: no file is signed yet")
            if lic.status in ("suspended", "revoked"):
                raise LicenseInactive(f"the license is {lic.status}: its files are not handed out")
            self._check_paid(session, lic)
            row = session.scalar(
                select(LicenseVersion).where(
                    LicenseVersion.license_id == lic.id,
                    LicenseVersion.version == (version if version is not None else lic.version),
                )
            )
            if row is None or row.file_text is None or row.checksum is None:
                raise NotFound("no signed file of that version")
            record(
                session,
                now,
                actor,
                "license.download",
                license_object(lic.id),
                version_details(row),
            )
            return LicenseFile(
                filename=f"{lic.license_key}.v{row.version}.lic",
                text=row.file_text,
                version=row.version,
                checksum=row.checksum,
            )

    @staticmethod
    def _check_paid(session: Session, lic: License) -> None:
        if lic.contract_id is None:
            return
        contract = session.get(Contract, lic.contract_id)
        if contract is not None and contract.paid_at is None:
            raise LicenseInactive(
                f"awaiting payment: contract {contract.number} is not paid, "
                "so the license file is not handed out yet"
            )

    def revocation_list(self) -> str:
        """The current signed revocation list (re-signed first when half its life is gone)."""
        now = self._ctx.clock.now()
        issuer = self._ctx.settings.issuer
        with transaction(self._ctx.read) as session:
            kept = revocations.stored(session)
        if kept is not None and revocations.fresh(kept[1], now):
            return kept[0]
        with transaction(self._ctx.write) as session:
            return revocations.current(session, self._signer, issuer=issuer, now=now)
