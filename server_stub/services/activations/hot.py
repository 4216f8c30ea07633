"""The heartbeat's common case in Core statements (docs/licensing.md, "Product API").

Every installation heartbeats every few minutes, and nearly always nothing has changed: the
activation is live, the installation has the newest file and the stored revocation list is fresh.
That case costs one read (license, contract, activation and the revocation list's row, joined),
one update of the activation and one upsert of the module counters (on PostgreSQL these two are
one statement, in autocommit), on a Core connection: the ORM's identity map and unit of work and
the building of the statements were most of the request's time.

Anything else (an IP outside the license's ranges, an activation past its window, a newer file to
hand out, a revocation list to re-sign) is answered by :func:`.product.heartbeat` in a fresh
transaction: :func:`heartbeat` returns ``None`` before it has written anything, so the slow path
sees the database as if the fast one had never run.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Final, cast

from sqlalchemy import (
    Connection,
    Date,
    String,
    Table,
    and_,
    bindparam,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import postgresql

from agent.protocol import HeartbeatRequest

from ...errors import NotFound
from ...portal_models import Activation, Contract, License, ModuleUsage, PortalSetting
from .. import revocations
from .product import (
    COUNT_MODULES,
    UNKNOWN_KEY,
    HeartbeatReply,
    count_upsert,
    counted_rows,
    heartbeat_interval,
    reported,
)
from .rules import ip_allowed, license_state

_LICENSES: Final = cast(Table, License.__table__)
_ACTIVATIONS: Final = cast(Table, Activation.__table__)
_CONTRACTS: Final = cast(Table, Contract.__table__)
_SETTINGS: Final = cast(Table, PortalSetting.__table__)
_USAGE: Final = cast(Table, ModuleUsage.__table__)

#: The revocation list's stored row, read with the license (no round trip of its own).
_REVOCATION_VALUE: Final = (
    select(_SETTINGS.c.value)
    .where(_SETTINGS.c.key == revocations.SETTING_KEY)
    .scalar_subquery()
    .label("revocation_list")
)

_READ: Final = (
    select(
        _LICENSES.c.id,
        _LICENSES.c.contract_id,
        _LICENSES.c.status,
        _LICENSES.c.version,
        _LICENSES.c.valid_until,
        _LICENSES.c.grace_days,
        _LICENSES.c.modules,
        _LICENSES.c.ip_ranges,
        _LICENSES.c.heartbeat_window_s,
        _LICENSES.c.mandatory_min_version,
        _CONTRACTS.c.paid_at,
        _ACTIVATIONS.c.id.label("activation_id"),
        _ACTIVATIONS.c.fingerprint,
        _ACTIVATIONS.c.deactivated_at,
        _ACTIVATIONS.c.last_heartbeat_at,
        _REVOCATION_VALUE,
    )
    .select_from(_LICENSES)
    .outerjoin(
        _ACTIVATIONS,
        and_(
            _ACTIVATIONS.c.id == bindparam("activation_id"),
            _ACTIVATIONS.c.license_id == _LICENSES.c.id,
        ),
    )
    .outerjoin(_CONTRACTS, _CONTRACTS.c.id == _LICENSES.c.contract_id)
    .where(_LICENSES.c.license_key == bindparam("license_key"))
)

_TOUCH: Final = (
    update(_ACTIVATIONS)
    .where(_ACTIVATIONS.c.id == bindparam("activation_id"))
    .values(
        last_heartbeat_at=bindparam("now", type_=_ACTIVATIONS.c.last_heartbeat_at.type),
        heartbeats=_ACTIVATIONS.c.heartbeats + 1,
        ip=bindparam("new_ip", type_=_ACTIVATIONS.c.ip.type),
        product_version=bindparam("new_product_version", type_=_ACTIVATIONS.c.product_version.type),
        modules=bindparam("new_modules", type_=_ACTIVATIONS.c.modules.type),
        errors=bindparam("new_errors", type_=_ACTIVATIONS.c.errors.type),
    )
)


#: PostgreSQL: the update and the upsert as ONE statement (the update a data-modifying CTE, the
#: counted modules an array), so that it commits on its own without BEGIN and COMMIT round trips.
_COUNTED: Final = (
    func.unnest(bindparam("counted", type_=postgresql.ARRAY(String)))
    .table_valued("module")
    .render_derived()
    .alias("counted")
)
_PG_TOUCH_AND_COUNT: Final = count_upsert(
    postgresql.insert(_USAGE).from_select(
        ["license_id", "module", "day", "heartbeats"],
        select(
            bindparam("usage_license_id", type_=String),
            _COUNTED.c.module,
            bindparam("count_day", type_=Date),
            literal(1),
        ),
    )
).add_cte(_TOUCH.cte("touched"))


def heartbeat(
    conn: Connection, body: HeartbeatRequest, ip: str, now: datetime
) -> HeartbeatReply | None:
    """The heartbeat's reply when nothing but the activation's row and counters changes, or
    ``None`` (nothing written) for :func:`.product.heartbeat` to answer."""
    found = conn.execute(
        _READ, {"license_key": body.license_key, "activation_id": body.activation_id}
    ).one_or_none()
    if found is None:
        raise NotFound(UNKNOWN_KEY)
    stored = revocations.value_of(found.revocation_list)
    if stored is None or not revocations.fresh(stored[1], now):
        return None  # re-signed by the slow path
    if not ip_allowed(ip, found.ip_ranges):
        return None  # a refusal: recorded and announced by the slow path
    terms = License(
        status=found.status,
        version=found.version,
        valid_until=found.valid_until,
        grace_days=found.grace_days,
    )
    state = license_state(terms, found.contract_id is None or found.paid_at is not None, now)
    window: int = found.heartbeat_window_s
    live = (
        found.activation_id is not None
        and found.deactivated_at is None
        and hmac.compare_digest(found.fingerprint.encode(), body.fingerprint.encode())
    )
    if live:
        if (now - found.last_heartbeat_at).total_seconds() > window:
            return None  # dead: freed (and audited) by the slow path
        if found.version > body.file_version:
            return None  # a newer file to hand out, under the checkout limit
        _touch(conn, found.id, found.activation_id, body, set(found.modules), ip, now)
    return HeartbeatReply(
        state=state,
        activation_live=live,
        file_version=found.version,
        license_file=None,
        revocation_list=stored[0],
        next_heartbeat_s=heartbeat_interval(window),
        mandatory_min_version=found.mandatory_min_version,
    )


def _touch(
    conn: Connection,
    license_id: str,
    activation_id: str,
    body: HeartbeatRequest,
    licensed: set[str],
    ip: str,
    now: datetime,
) -> None:
    """The live activation's heartbeat and the day's counters of its licensed modules."""
    # Bound as new_<column>: an UPDATE's parameters may not be named like its columns.
    new = {f"new_{column}": value for column, value in reported(body, ip).items()}
    touch = {"activation_id": activation_id, "now": now, **new}
    counted = set(body.modules) & licensed
    if conn.dialect.name == "postgresql":
        day = now.date()
        usage = {"usage_license_id": license_id, "count_day": day, "counted": sorted(counted)}
        conn.execute(_PG_TOUCH_AND_COUNT, {**touch, **usage})
        return
    conn.execute(_TOUCH, touch)
    if counted:
        conn.execute(COUNT_MODULES["sqlite"], counted_rows(license_id, counted, now))
