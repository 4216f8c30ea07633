"""Staff's license lifecycle (docs/licensing.md, "Licenses: issue, renew, revoke, four eyes"):
``/staff/licenses...``, ``/staff/approvals...``, ``/staff/settings/four-eyes``, and two seed
paths: ``POST /licenses/revoke`` (staff) and the public ``GET /licenses/revocation-list``.

Included in the app before the product API's ``GET /licenses/{license_key}``, so that
``/licenses/revocation-list`` is not taken for a license key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, Query, Response, status
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from agent.protocol import (
    REVOCATION_LIST_MEDIA_TYPE,
    ErrorCode,
    ModuleName,
    RevokeRequest,
    Rfc3339DateTime,
)

from ..deps import ServicesDep
from ..portal_models import LICENSE_STATUSES, License, LicenseVersion
from ..problems import problem_responses
from ..services.licensing import (
    CURSOR_PATTERN,
    MAX_PAGE,
    FourEyesRule,
    IssueOrder,
    LicenseFilter,
    LicenseView,
    Money,
    Terms,
    version_state,
)
from ..services.staff import Permission
from .portal_licenses_schemas import (
    ChangeIn,
    FourEyesIn,
    FourEyesOut,
    HistoryOut,
    IssueIn,
    LicenseOut,
    LicensePageOut,
    ReasonIn,
    Ref,
    RenewIn,
    RequestOut,
    UpgradeIn,
    VersionOut,
)
from .staff_auth import StaffDep, staff_endpoint

router = APIRouter(tags=["licensing"])

#: Caches may keep the public list this long: far below its 24 h lifetime and the 12 h after
#: which it is re-signed, so a revocation reaches a polling installation within minutes.
REVOCATION_LIST_MAX_AGE: Final = 300
_MONEY_FIELDS: Final = {"amount_minor", "currency", "note"}
LicenseStatus = Literal["pending_approval", "active", "suspended", "revoked"]
assert set(LicenseStatus.__args__) == set(LICENSE_STATUSES)  # type: ignore[attr-defined]


def endpoint(
    method: str, path: str, permission: Permission, *codes: ErrorCode, **kwargs: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return staff_endpoint(
        router, method, path, permission, ErrorCode.VALIDATION_ERROR, *codes, **kwargs
    )


# --- bodies out --------------------------------------------------------------------------------


def _version_out(row: LicenseVersion) -> VersionOut:
    fields = {name: getattr(row, name) for name in VersionOut.model_fields if name != "state"}
    return VersionOut(**fields, state=version_state(row))


def _license_out(lic: License, view: LicenseView | None = None) -> LicenseOut:
    # The output names the license's columns; the view adds what is not a column.
    columns = {name: getattr(lic, name) for name in LicenseOut.model_fields if hasattr(lic, name)}
    if view is None:
        return LicenseOut(**columns)
    return LicenseOut(
        **columns,
        client_name=view.client_name,
        current=_version_out(view.current) if view.current is not None else None,
        pending=_version_out(view.pending) if view.pending is not None else None,
    )


def _out(view: LicenseView) -> LicenseOut:
    return _license_out(view.license, view)


def _money(body: Any) -> Money:
    return Money(amount_minor=body.amount_minor, currency=body.currency, note=body.note)


def _changes(body: BaseModel) -> dict[str, Any]:
    """The ``Terms`` fields the body names (absent ones stay as they are)."""
    changes = body.model_dump(exclude_unset=True, exclude=_MONEY_FIELDS)
    if "limits" in changes:
        changes["limits"] = body.limits.as_dict()  # type: ignore[attr-defined]
    for name in ("modules", "ip_ranges"):
        if name in changes:
            changes[name] = tuple(changes[name])
    if "valid_from" in changes and changes["valid_from"] is None:
        del changes["valid_from"]
    return changes


# --- licenses ----------------------------------------------------------------------------------


def _license_filter(
    client_id: Annotated[str | None, Query(max_length=36)] = None,
    status: LicenseStatus | None = None,
    plan: Literal["basic", "advanced", "enterprise"] | None = None,
    product_id: Annotated[str | None, Query(max_length=64)] = None,
    module: ModuleName | None = None,
    expiring_before: Rfc3339DateTime | None = None,
    expiring_after: Rfc3339DateTime | None = None,
) -> LicenseFilter:
    return LicenseFilter(
        client_id=client_id,
        status=status,
        plan=plan,
        product_id=product_id,
        module=module,
        expiring_before=expiring_before,
        expiring_after=expiring_after,
    )


#: The list's filters, shared by the list and the export (``portal_license_transfer.py``).
LicenseFilterDep = Annotated[LicenseFilter, Depends(_license_filter)]


@endpoint(
    "POST",
    "/staff/licenses",
    Permission.LICENSES_ISSUE,
    ErrorCode.NOT_FOUND,
    status_code=status.HTTP_201_CREATED,
    response_model=LicenseOut,
    summary="Issue a license: version 1, signed at once or pending an Admin's approval",
)
def issue(body: IssueIn, principal: StaffDep, services: ServicesDep) -> LicenseOut:
    terms = Terms(
        plan=body.plan,
        modules=tuple(body.modules),
        limits=body.limits.as_dict(),
        valid_from=body.valid_from,
        valid_until=body.valid_until,
        grace_days=body.grace_days,
        domain=body.domain,
        min_version=body.min_version,
        max_version=body.max_version,
        mandatory_min_version=body.mandatory_min_version,
        encrypted=body.encrypted,
        max_activations=body.max_activations,
        activations_per_hour=body.activations_per_hour,
        checkouts_per_hour=body.checkouts_per_hour,
        ip_ranges=tuple(body.ip_ranges),
        heartbeat_window_s=body.heartbeat_window_s,
    )
    order = IssueOrder(
        client_id=body.client_id,
        contract_id=body.contract_id,
        product_id=body.product_id,
        terms=terms,
        money=_money(body),
    )
    return _out(services.licensing.issue(principal.actor, order))


@endpoint(
    "GET",
    "/staff/licenses",
    Permission.LICENSES_READ,
    response_model=LicensePageOut,
    summary="Licenses, newest first, filtered (cursor pagination)",
)
def search(
    services: ServicesDep,
    filters: LicenseFilterDep,
    cursor: Annotated[
        str | None, Query(pattern=CURSOR_PATTERN, description="next_cursor of the last page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> LicensePageOut:
    page = services.licensing.search(filters, cursor=cursor, limit=limit)
    return LicensePageOut(
        licenses=[_license_out(lic) for lic in page.licenses], next_cursor=page.next_cursor
    )


@endpoint(
    "GET",
    "/staff/licenses/{license_ref}",
    Permission.LICENSES_READ,
    ErrorCode.NOT_FOUND,
    response_model=LicenseOut,
    summary="One license (by id or key): its terms in force and its pending request",
)
def get(license_ref: Ref, services: ServicesDep) -> LicenseOut:
    return _out(services.licensing.get(license_ref))


@endpoint(
    "GET",
    "/staff/licenses/{license_ref}/versions",
    Permission.LICENSES_READ,
    ErrorCode.NOT_FOUND,
    response_model=HistoryOut,
    summary="Every version, newest first, with checksums, requester, approver and key",
)
def history(license_ref: Ref, services: ServicesDep) -> HistoryOut:
    lic, versions = services.licensing.history(license_ref)
    return HistoryOut(
        license_id=lic.id,
        license_key=lic.license_key,
        version=lic.version,
        versions=[_version_out(v) for v in versions],
    )


@endpoint(
    "GET",
    "/staff/licenses/{license_ref}/file",
    Permission.LICENSES_READ,
    ErrorCode.NOT_FOUND,
    ErrorCode.LICENSE_INACTIVE,
    response_model=None,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "The armoured license file",
        }
    },
    summary="Download a version's file (default: the one in force); refused while unpaid",
)
def download(
    license_ref: Ref,
    principal: StaffDep,
    services: ServicesDep,
    version: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
) -> PlainTextResponse:
    file = services.licensing.file(principal.actor, license_ref, version)
    return PlainTextResponse(
        content=file.text,
        media_type="text/plain; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{file.filename}"',
            "Cache-Control": "no-store",
            "X-Checksum-SHA256": file.checksum,
            "X-License-Version": str(file.version),
        },
    )


def _change_route(
    reason: Literal["renew", "upgrade", "change"], body_type: type[BaseModel]
) -> None:
    summaries = {
        "renew": "Renew: new dates (and amount, invoice); version+1",
        "upgrade": "Upgrade: plan, modules, limits; version+1",
        "change": "Change other terms (domain, versions, activation limits, …); version+1",
    }

    def handler(
        license_ref: Ref, body: Any, principal: StaffDep, services: ServicesDep
    ) -> LicenseOut:
        view = services.licensing.change(
            principal.actor, license_ref, reason, _changes(body), _money(body)
        )
        return _out(view)

    handler.__annotations__["body"] = body_type
    handler.__name__ = reason
    endpoint(
        "POST",
        f"/staff/licenses/{{license_ref}}/{reason}",
        Permission.LICENSES_ISSUE,
        ErrorCode.NOT_FOUND,
        ErrorCode.LICENSE_INACTIVE,
        ErrorCode.ALREADY_EXISTS,
        response_model=LicenseOut,
        summary=summaries[reason],
    )(handler)


_change_route("renew", RenewIn)
_change_route("upgrade", UpgradeIn)
_change_route("change", ChangeIn)


def _state_route(action: Literal["suspend", "resume", "revoke"], summary: str) -> None:
    def handler(
        license_ref: Ref, body: ReasonIn, principal: StaffDep, services: ServicesDep
    ) -> LicenseOut:
        change = getattr(services.licensing, action)
        view: LicenseView = change(principal.actor, license_ref, body.reason)
        return _out(view)

    handler.__name__ = action
    endpoint(
        "POST",
        f"/staff/licenses/{{license_ref}}/{action}",
        Permission.LICENSES_REVOKE,
        ErrorCode.NOT_FOUND,
        ErrorCode.LICENSE_INACTIVE,
        response_model=LicenseOut,
        summary=summary,
    )(handler)


_state_route("suspend", "Suspend (reversible): the license stops working online")
_state_route("resume", "Resume a suspended license")
_state_route("revoke", "Revoke for good; the public revocation list is re-signed at once")


# --- four eyes ---------------------------------------------------------------------------------


@endpoint(
    "GET",
    "/staff/approvals",
    Permission.LICENSES_APPROVE,
    response_model=list[RequestOut],
    summary="Requests awaiting an Admin's approval, oldest first",
)
def requests(services: ServicesDep) -> list[RequestOut]:
    return [
        RequestOut(
            request=_version_out(row),
            license_id=lic.id,
            license_key=lic.license_key,
            client_id=lic.client_id,
            status=lic.status,
        )
        for row, lic in services.licensing.requests()
    ]


@endpoint(
    "POST",
    "/staff/approvals/{request_id}/approve",
    Permission.LICENSES_APPROVE,
    ErrorCode.NOT_FOUND,
    ErrorCode.LICENSE_INACTIVE,
    response_model=LicenseOut,
    summary="Approve a request (not one's own): it is signed and takes effect",
)
def approve(request_id: Ref, principal: StaffDep, services: ServicesDep) -> LicenseOut:
    return _out(services.licensing.approve(principal.actor, request_id))


@endpoint(
    "POST",
    "/staff/approvals/{request_id}/reject",
    Permission.LICENSES_APPROVE,
    ErrorCode.NOT_FOUND,
    response_model=LicenseOut,
    summary="Reject a request; a rejected first version closes the license",
)
def reject(
    request_id: Ref, body: ReasonIn, principal: StaffDep, services: ServicesDep
) -> LicenseOut:
    return _out(services.licensing.reject(principal.actor, request_id, body.reason))


def _rule_out(rule: FourEyesRule) -> FourEyesOut:
    return FourEyesOut(**rule.to_json())


@endpoint(
    "GET",
    "/staff/settings/four-eyes",
    Permission.SETTINGS_MANAGE,
    response_model=FourEyesOut,
    summary="The four-eyes rule",
)
def get_four_eyes(services: ServicesDep) -> FourEyesOut:
    return _rule_out(services.licensing.four_eyes.get())


@endpoint(
    "PUT",
    "/staff/settings/four-eyes",
    Permission.SETTINGS_MANAGE,
    response_model=FourEyesOut,
    summary="Set the four-eyes rule: plans and amount thresholds that need an Admin's approval",
)
def set_four_eyes(body: FourEyesIn, principal: StaffDep, services: ServicesDep) -> FourEyesOut:
    rule = FourEyesRule(
        enabled=body.enabled,
        plans=tuple(dict.fromkeys(body.plans)),
        amount_thresholds=dict(body.amount_thresholds),
    )
    return _rule_out(services.licensing.four_eyes.set(principal.actor, rule))


# --- seed paths --------------------------------------------------------------------------------


@endpoint(
    "POST",
    "/licenses/revoke",
    Permission.LICENSES_REVOKE,
    ErrorCode.NOT_FOUND,
    response_model=LicenseOut,
    summary="Revoke a license by its key (seed 003's path; staff)",
)
def revoke_by_key(body: RevokeRequest, principal: StaffDep, services: ServicesDep) -> LicenseOut:
    return _out(services.licensing.revoke(principal.actor, body.license_key, body.reason))


@router.get(
    "/licenses/revocation-list",
    response_class=Response,
    responses={
        200: {
            "content": {REVOCATION_LIST_MEDIA_TYPE: {}},
            "description": "The newest signed revocation list (compact ES256 JWS)",
        },
        **problem_responses(ErrorCode.SERVICE_UNAVAILABLE),
    },
    summary="The signed revocation list (public)",
)
def revocation_list(services: ServicesDep) -> Response:
    return Response(
        content=services.licensing.revocation_list(),
        media_type=REVOCATION_LIST_MEDIA_TYPE,
        headers={"Cache-Control": f"public, max-age={REVOCATION_LIST_MAX_AGE}"},
    )
