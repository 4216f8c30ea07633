"""The product API's work inside one transaction: activate, heartbeat and the status read
(docs/licensing.md, "Product API"). :class:`.ActivationService` owns the transactions.

The license key is the installation's credential: an unknown key is a plain 404, whatever the
rest of the request says. A heartbeat is the hot path (every installation, every few minutes):
its common case is :mod:`.hot`'s, in Core statements; :func:`heartbeat` here answers the rest.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, TypeVar, cast

from sqlalchemy import Table, and_, bindparam, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from agent.protocol import (
    MACHINE_ACTIVATION_FORMAT,
    MACHINE_ACTIVATION_TYP,
    REVOCATION_ARMOUR_BEGIN,
    REVOCATION_ARMOUR_END,
    ActivateRequest,
    HeartbeatRequest,
    LicenseState,
    MachineActivationClaims,
)

from ...errors import DeviceLimit, DomainError, Forbidden, LicenseInactive, NotFound, RateLimited
from ...models import new_id
from ...portal_models import (
    Activation,
    Contract,
    License,
    LicenseVersion,
    ModuleUsage,
    PortalSetting,
)
from ...signing import Signer, sign_jws
from .. import revocations
from ..audit import record
from ..license_files import armour
from .limits import (
    CHECKOUT,
    INSTALLATION_ACTOR,
    activation_object,
    add_event,
    add_events,
    check_per_hour,
    free_dead,
    live_count,
    record_refusal,
)
from .rules import check_installation, grace_until, ip_allowed, license_state, require_usable

UNKNOWN_KEY = "no license has this key"
#: How many reported errors an activation keeps (the latest heartbeat's).
MAX_KEPT_ERRORS = 20


class Refused(Exception):
    """A refusal by a limit: recorded (``refused`` event, notification) and committed before
    ``error`` reaches the caller."""

    def __init__(self, license_row: License, error: DomainError) -> None:
        super().__init__(error.detail)
        self.license_row = license_row
        self.error = error


@dataclass(frozen=True)
class Activated:
    activation_id: str
    activation: str
    license_file: str
    file_version: int
    state: LicenseState
    modules: tuple[str, ...]
    limits: dict[str, Any]
    heartbeat_interval_s: int
    heartbeat_window_s: int
    mandatory_min_version: str | None


@dataclass(frozen=True)
class HeartbeatReply:
    state: LicenseState
    activation_live: bool
    file_version: int
    license_file: str | None
    revocation_list: str
    next_heartbeat_s: int
    mandatory_min_version: str | None


@dataclass(frozen=True)
class LicenseStatus:
    license_key: str
    state: LicenseState
    file_version: int
    product: str
    plan: str
    modules: tuple[str, ...]
    limits: dict[str, Any]
    valid_until: int
    grace_until: int
    mandatory_min_version: str | None


def heartbeat_interval(window_s: int) -> int:
    """Half the window: one lost heartbeat never kills a live machine."""
    return max(30, window_s // 2)


def _file_text(session: Session, license_row: License) -> str | None:
    """The signed file of the license's current version (None before the first is signed)."""
    return session.scalar(
        select(LicenseVersion.file_text).where(
            LicenseVersion.license_id == license_row.id,
            LicenseVersion.version == license_row.version,
        )
    )


def _with_revocation_list(text: str, revocation_list: str) -> str:
    # The file as stored is what was signed and checksummed; the list rides in its own armour.
    if REVOCATION_ARMOUR_BEGIN in text:
        return text
    return text + armour(REVOCATION_ARMOUR_BEGIN, REVOCATION_ARMOUR_END, revocation_list)


def _check_ip(license_row: License, ip: str) -> None:
    if not ip_allowed(ip, license_row.ip_ranges):
        raise Refused(license_row, Forbidden(f"the license may not be used from {ip}"))


def machine_activation(
    signer: Signer, issuer: str, license_row: License, row: Activation, now: datetime
) -> str:
    """The signed machine activation of ``row`` (compact JWS, ``typ`` machine-activation)."""
    claims = MachineActivationClaims(
        format=MACHINE_ACTIVATION_FORMAT,
        iss=issuer,
        jti=secrets.token_hex(16),
        iat=int(now.timestamp()),
        exp=int(grace_until(license_row).timestamp()),
        license_key=license_row.license_key,
        file_version=row.file_version,
        activation_id=row.id,
        fingerprint=row.fingerprint,
        server_id=row.server_id,
        modules=tuple(sorted(row.modules)),
    )
    return sign_jws(signer, MACHINE_ACTIVATION_TYP, claims.model_dump_json().encode("utf-8"))


#: The license, locked, with whether it is paid, its current file and the stored revocation
#: list's value as scalar subqueries: one statement. Built once (as are the two below): building a
#: statement costs more than running it.
_LICENSE_FOR_UPDATE: Final = (
    select(
        License,
        select(Contract.paid_at).where(Contract.id == License.contract_id).scalar_subquery(),
        select(LicenseVersion.file_text)
        .where(LicenseVersion.license_id == License.id, LicenseVersion.version == License.version)
        .scalar_subquery(),
        select(PortalSetting.value)
        .where(PortalSetting.key == revocations.SETTING_KEY)
        .scalar_subquery(),
    )
    .where(License.license_key == bindparam("license_key"))
    .with_for_update(of=License)
)
_LIVE_OF_MACHINE: Final = select(Activation).where(
    Activation.license_id == bindparam("license_id"),
    Activation.fingerprint == bindparam("fingerprint"),
    Activation.deactivated_at.is_(None),
)
_INSERT_ACTIVATION: Final = insert(cast(Table, Activation.__table__))


def activate(
    session: Session, signer: Signer, issuer: str, body: ActivateRequest, ip: str, now: datetime
) -> Activated:
    """Activate ``body``'s machine; raises a domain error, or :class:`Refused` for a limit."""
    found = session.execute(_LICENSE_FOR_UPDATE, {"license_key": body.license_key}).one_or_none()
    if found is None:
        raise NotFound(UNKNOWN_KEY)
    license_row, paid_at, file_text, stored = found
    paid = license_row.contract_id is None or paid_at is not None
    state = require_usable(license_row, paid, now)
    _check_ip(license_row, ip)
    check_installation(license_row, body.domain, body.product_version, body.modules)
    window = license_row.heartbeat_window_s
    free_dead(session, now, [license_row.id], window)
    if file_text is None:
        # Read again: on PostgreSQL a version approved while this request waited for the lock is
        # in the locked row, but its file was not yet in the statement's snapshot.
        file_text = _file_text(session, license_row)
    if file_text is None:
        raise LicenseInactive("the license has no signed license file yet")
    try:
        check_per_hour(session, license_row, "checkouts", now)
    except RateLimited as exc:
        raise Refused(license_row, exc) from None
    modules = sorted(set(body.modules) or set(license_row.modules))
    row = session.execute(
        _LIVE_OF_MACHINE, {"license_id": license_row.id, "fingerprint": body.fingerprint}
    ).scalar_one_or_none()
    events = [CHECKOUT]
    if row is None:
        row, kind = _new_machine(session, license_row, body, modules, ip, now)
        events.insert(0, kind)
    else:
        # The same machine again (a reinstall, a lost reply): its live activation, no new slot.
        row.server_id = body.server_id
        row.ip = ip
        row.product_version = body.product_version
        row.modules = modules
        row.file_version = license_row.version
        row.last_heartbeat_at = now
    add_events(session, license_row.id, events, ip, now)
    session.flush()
    kept = revocations.value_of(stored)  # read with the license, no round trip of its own
    listed = revocations.current_of(kept, session, signer, issuer=issuer, now=now)
    return Activated(
        activation_id=row.id,
        activation=machine_activation(signer, issuer, license_row, row, now),
        license_file=_with_revocation_list(file_text, listed),
        file_version=license_row.version,
        state=state,
        modules=tuple(sorted(license_row.modules)),
        limits=dict(license_row.limits),
        heartbeat_interval_s=heartbeat_interval(window),
        heartbeat_window_s=window,
        mandatory_min_version=license_row.mandatory_min_version,
    )


def _new_machine(
    session: Session,
    license_row: License,
    body: ActivateRequest,
    modules: list[str],
    ip: str,
    now: datetime,
) -> tuple[Activation, str]:
    """The new machine's activation (inserted) and its event's kind, which the caller writes."""
    replaced: Activation | None = None
    if body.replace_activation_id is not None:
        replaced = session.get(Activation, body.replace_activation_id, with_for_update=True)
        if (
            replaced is None
            or replaced.license_id != license_row.id
            or replaced.deactivated_at is not None
        ):
            raise NotFound("the license has no live activation with that id to replace")
    try:
        check_per_hour(session, license_row, "new_machines", now)
    except RateLimited as exc:
        raise Refused(license_row, exc) from None
    if replaced is not None:
        replaced.deactivated_at = now
        replaced.deactivated_reason = "replaced"
    elif license_row.max_activations is not None and (
        live_count(session, license_row.id) >= license_row.max_activations
    ):
        raise Refused(
            license_row,
            DeviceLimit(
                f"the license allows {license_row.max_activations} live activations; "
                "deactivate or replace one"
            ),
        )
    row = Activation(
        id=new_id(),
        license_id=license_row.id,
        fingerprint=body.fingerprint,
        server_id=body.server_id,
        ip=ip,
        product_version=body.product_version,
        modules=modules,
        file_version=license_row.version,
        activated_at=now,
        last_heartbeat_at=now,
        heartbeats=0,
        errors=[],
    )
    # A Core insert: the unit of work would cost more than the statement. ``row`` stays out of
    # the session, holding what was inserted.
    session.execute(_INSERT_ACTIVATION, [_columns(row)])
    kind = "activate" if replaced is None else "replace"
    details: dict[str, Any] = {
        "server_id": body.server_id,
        "ip": ip,
        "product_version": body.product_version,
        "modules": modules,
    }
    if replaced is not None:
        details["replaced"] = replaced.id
        record(
            session,
            now,
            INSTALLATION_ACTOR,
            "activation.replaced",
            activation_object(license_row.id, replaced.id),
            {"by": row.id},
        )
    record(
        session,
        now,
        INSTALLATION_ACTOR,
        f"activation.{kind}",
        activation_object(license_row.id, row.id),
        details,
    )
    return row, kind


def _columns(row: Activation) -> dict[str, Any]:
    return {c.key: getattr(row, c.key) for c in Activation.__table__.columns}


_UpsertT = TypeVar("_UpsertT", sqlite.Insert, postgresql.Insert)


def count_upsert(insert: _UpsertT) -> _UpsertT:
    """``insert`` into the day's module counters, one more heartbeat where the row is there
    (both dialects spell the upsert alike: ON CONFLICT DO UPDATE)."""
    return insert.on_conflict_do_update(
        index_elements=["license_id", "module", "day"],
        set_={"heartbeats": ModuleUsage.heartbeats + 1},
    )


#: Built once per dialect (a multi-row VALUES would be compiled anew on every call).
COUNT_MODULES: Final = {
    "sqlite": count_upsert(sqlite.insert(ModuleUsage)),
    "postgresql": count_upsert(postgresql.insert(ModuleUsage)),
}


def counted_rows(license_id: str, modules: set[str], now: datetime) -> list[dict[str, Any]]:
    """The counter rows of a heartbeat's ``modules`` (licensed and reported) on ``now``'s day."""
    day = now.date()
    return [
        {"license_id": license_id, "module": m, "day": day, "heartbeats": 1}
        for m in sorted(modules)
    ]


def reported(body: HeartbeatRequest, ip: str) -> dict[str, Any]:
    """What a live activation's heartbeat stores of what the installation reported, by column."""
    return {
        "ip": ip,
        "product_version": body.product_version,
        "modules": sorted(set(body.modules)),
        "errors": [e.model_dump() for e in body.errors[:MAX_KEPT_ERRORS]],
    }


def _count_modules(session: Session, license_id: str, modules: set[str], now: datetime) -> None:
    if modules:
        dialect = session.get_bind().dialect.name
        session.execute(COUNT_MODULES[dialect], counted_rows(license_id, modules, now))


def heartbeat(
    session: Session, signer: Signer, issuer: str, body: HeartbeatRequest, ip: str, now: datetime
) -> HeartbeatReply:
    """Record a live machine's heartbeat and tell it what changed."""
    found = session.execute(
        select(License, Activation, Contract.paid_at)
        .outerjoin(
            Activation,
            and_(Activation.id == body.activation_id, Activation.license_id == License.id),
        )
        .outerjoin(Contract, Contract.id == License.contract_id)
        .where(License.license_key == body.license_key)
    ).one_or_none()
    if found is None:
        raise NotFound(UNKNOWN_KEY)
    license_row, row, paid_at = found
    _check_ip(license_row, ip)
    state = license_state(license_row, license_row.contract_id is None or paid_at is not None, now)
    window = license_row.heartbeat_window_s
    live = (
        row is not None
        and row.deactivated_at is None
        and hmac.compare_digest(row.fingerprint.encode(), body.fingerprint.encode())
    )
    file_text: str | None = None
    if live and row is not None and (now - row.last_heartbeat_at).total_seconds() > window:
        # Dead before the sweeper got to it: freed now, as the sweeper would have.
        free_dead(session, now, [license_row.id], window)
        live = False
    if live and row is not None:
        if license_row.version > body.file_version:
            file_text = _checkout(session, license_row, ip, now)
        row.last_heartbeat_at = now
        row.heartbeats = Activation.heartbeats + 1
        for column, value in reported(body, ip).items():
            setattr(row, column, value)
        if file_text is not None:
            row.file_version = license_row.version
        _count_modules(session, license_row.id, set(body.modules) & set(license_row.modules), now)
    return HeartbeatReply(
        state=state,
        activation_live=live,
        file_version=license_row.version,
        license_file=file_text,
        revocation_list=revocations.current(session, signer, issuer=issuer, now=now),
        next_heartbeat_s=heartbeat_interval(window),
        mandatory_min_version=license_row.mandatory_min_version,
    )


def _checkout(session: Session, license_row: License, ip: str, now: datetime) -> str | None:
    """The newer file for a heartbeat, unless the checkout limit is reached (then the
    installation keeps its file and gets the new one at a later heartbeat)."""
    try:
        check_per_hour(session, license_row, "checkouts", now)
    except RateLimited as exc:
        record_refusal(session, license_row, exc, ip, now)
        return None
    text = _file_text(session, license_row)
    if text is not None:
        add_event(session, license_row.id, CHECKOUT, ip, now)
    return text


def status(session: Session, license_key: str, now: datetime) -> LicenseStatus:
    """``GET /licenses/{license_key}``."""
    found = session.execute(
        select(License, Contract.paid_at)
        .outerjoin(Contract, Contract.id == License.contract_id)
        .where(License.license_key == license_key)
    ).one_or_none()
    if found is None:
        raise NotFound(UNKNOWN_KEY)
    license_row, paid_at = found
    return LicenseStatus(
        license_key=license_row.license_key,
        state=license_state(
            license_row, license_row.contract_id is None or paid_at is not None, now
        ),
        file_version=license_row.version,
        product=license_row.product_id,
        plan=license_row.plan,
        modules=tuple(sorted(license_row.modules)),
        limits=dict(license_row.limits),
        valid_until=int(license_row.valid_until.timestamp()),
        grace_until=int(grace_until(license_row).timestamp()),
        mandatory_min_version=license_row.mandatory_min_version,
    )
