"""``/marketplace``: the app marketplace for tenant backends (docs/marketplace.md).

Each route takes exactly one kind of credential: a Backend Admin Token, a Backend User Token, or
none (the public JWKS and entitlement snapshot). A token this server signed but of another type
is refused with 403 ``forbidden``; anything else that is not the expected token with 401.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from agent.protocol import (
    APP_ID_PATTERN,
    BACKEND_JWKS_MAX_AGE_SECONDS,
    AppArtifact,
    AppPrices,
    BackendKeyRegistration,
    BackendKeys,
    Catalog,
    CatalogItem,
    EntitlementsResponse,
    ErrorCode,
    InstallationOut,
    InstallationRequest,
    InstalledApp,
    InstalledApps,
    Jwk,
    Jwks,
    LicenseRequest,
    MarketplaceLicense,
    UserTokenResponse,
)

from ..deps import ServicesDep
from ..errors import TokenInvalid
from ..models import MarketplaceApp
from ..problems import AUTH_ERRORS, problem_responses
from ..services.marketplace import BackendPrincipal, LicenseView

router = APIRouter(prefix="/marketplace", tags=["marketplace"])

_admin_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="BackendAdminToken",
    description="RS256 Backend Admin Token (`tgflow-server marketplace backend create|token`)",
)
_user_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="BackendUserToken",
    description="RS256 Backend User Token from `POST /marketplace/user-tokens`",
)


AppIdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=APP_ID_PATTERN)]
BackendIdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]


# The token checks and the two reads that apps and tenants poll run on the event loop like
# /license (see deps.py): a few indexed reads each, no thread-pool hand-offs. They write only
# when a license's state is due to change with the clock, and then briefly.
async def admin_backend(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_admin_bearer)],
) -> BackendPrincipal:
    if credentials is None:
        raise TokenInvalid("a Backend Admin Token is required")
    return services.marketplace.authenticate_admin(credentials.credentials)


async def user_backend(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_user_bearer)],
) -> BackendPrincipal:
    if credentials is None:
        raise TokenInvalid("a Backend User Token is required")
    return services.marketplace.authenticate_user(credentials.credentials)


AdminDep = Annotated[BackendPrincipal, Depends(admin_backend)]
UserDep = Annotated[BackendPrincipal, Depends(user_backend)]


def _license(view: LicenseView) -> MarketplaceLicense:
    return MarketplaceLicense(
        app_id=view.app_id,
        plan=view.plan,
        status=view.status,
        started_at=view.started_at,
        expires_at=view.expires_at,
        grace_until=view.grace_until,
        trial_ends_at=view.trial_ends_at,
    )


def _artifact(app: MarketplaceApp) -> AppArtifact:
    return AppArtifact(url=app.artifact_url, sha256=app.artifact_sha256, size=app.artifact_size)


# --- Backend Admin Token --------------------------------------------------------------------------


@router.get(
    "/catalog",
    response_model=Catalog,
    responses=problem_responses(*AUTH_ERRORS),
    summary="Every listed app, with this backend's license and installation",
)
async def catalog(backend: AdminDep, services: ServicesDep) -> Catalog:
    return Catalog(
        apps=[
            CatalogItem(
                id=e.app.id,
                name=e.app.name,
                description=e.app.description,
                developer=e.app.developer,
                prices=AppPrices(
                    currency=e.app.currency,
                    monthly=e.app.price_monthly,
                    yearly=e.app.price_yearly,
                    perpetual=e.app.price_perpetual,
                ),
                artifact=_artifact(e.app),
                iframe_url=e.app.iframe_url,
                permissions=list(e.app.permissions),
                license=_license(e.license) if e.license else None,
                installed=e.installation is not None,
                installed_at=e.installation.installed_at if e.installation else None,
            )
            for e in services.marketplace.catalog(backend.backend_id)
        ]
    )


@router.post(
    "/licenses",
    status_code=status.HTTP_201_CREATED,
    response_model=MarketplaceLicense,
    responses={
        200: {
            "description": "The license already was what was asked for (nothing changed)",
            "model": MarketplaceLicense,
        },
        **problem_responses(
            *AUTH_ERRORS,
            ErrorCode.NOT_FOUND,
            ErrorCode.LICENSE_INACTIVE,
            ErrorCode.IDEMPOTENCY_CONFLICT,
            ErrorCode.ALREADY_EXISTS,
        ),
    },
    summary="Start the trial of an app, or order a paid plan",
    description="A trial is usable at once, once per app and backend (a second one is "
    "`idempotency_conflict`; repeating the request while the trial runs answers 200). A paid "
    "plan is `pending` until it is paid; ordered during the trial, the trial keeps running. "
    "201 when the license was created or changed, 200 when it already was as asked. "
    "`already_exists`: a paid license is active or in grace; `license_inactive`: the operator "
    "revoked the license; `validation_error`: the app is not offered on that plan.",
)
def request_license(
    body: LicenseRequest, backend: AdminDep, services: ServicesDep, response: Response
) -> MarketplaceLicense:
    result = services.marketplace.request_license(backend.backend_id, body.app_id, body.plan)
    if not result.changed:
        response.status_code = status.HTTP_200_OK
    return _license(result.license)


@router.post(
    "/installations",
    status_code=status.HTTP_201_CREATED,
    response_model=InstallationOut,
    responses={
        200: {"description": "Installed already (same installation)", "model": InstallationOut},
        **problem_responses(*AUTH_ERRORS, ErrorCode.NOT_FOUND, ErrorCode.LICENSE_INACTIVE),
    },
    summary="Install an app on this backend (needs an active or trial license; idempotent)",
    description="Repeating it answers 200 with the same installation; a different `config` "
    "replaces the stored one. The answer names the artifact the backend downloads and checks.",
)
def install(
    body: InstallationRequest, backend: AdminDep, services: ServicesDep, response: Response
) -> InstallationOut:
    result = services.marketplace.install(backend.backend_id, body.app_id, body.config)
    if not result.created:
        response.status_code = status.HTTP_200_OK
    inst = result.installation
    return InstallationOut(
        backend_id=inst.backend_id,
        app_id=inst.app_id,
        installed_at=inst.installed_at,
        config=inst.config,
        artifact=_artifact(result.app),
    )


@router.delete(
    "/installations/{app_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(*AUTH_ERRORS, ErrorCode.NOT_FOUND),
    summary="Uninstall an app from this backend (idempotent)",
    description="204 whether or not it was installed; `not_found` only for an app that is not "
    "in the catalog at all.",
)
def uninstall(app_id: AppIdPath, backend: AdminDep, services: ServicesDep) -> Response:
    services.marketplace.uninstall(backend.backend_id, app_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/user-tokens",
    response_model=UserTokenResponse,
    responses=problem_responses(*AUTH_ERRORS),
    summary="A Backend User Token (1 hour) for reading this backend's installed apps",
)
def user_token(backend: AdminDep, services: ServicesDep) -> UserTokenResponse:
    issued = services.marketplace.issue_user_token(backend.backend_id)
    return UserTokenResponse(token=issued.token, backend_id=backend.backend_id, exp=issued.exp)


@router.put(
    "/backends/me/keys",
    response_model=BackendKeys,
    responses=problem_responses(*AUTH_ERRORS, ErrorCode.ALREADY_EXISTS),
    summary="Register this backend's new public key (EC P-256)",
    description="The key becomes the current one; the key it replaces stays published for "
    "30 minutes, the longest a User App Access Token it signed may live. Registering the "
    "current key again changes nothing. `already_exists`: another backend registered this key.",
)
def register_key(
    body: BackendKeyRegistration, backend: AdminDep, services: ServicesDep
) -> BackendKeys:
    published = services.marketplace.register_key(backend.backend_id, body.jwk.public_members())
    return BackendKeys(
        backend_id=published.backend_id,
        current_kid=published.current_kid,
        keys=[Jwk.model_validate(k) for k in published.keys],
    )


# --- Backend User Token ---------------------------------------------------------------------------


@router.get(
    "/installed",
    response_model=InstalledApps,
    responses=problem_responses(*AUTH_ERRORS),
    summary="The apps installed on this backend and licensed now",
)
async def installed(backend: UserDep, services: ServicesDep) -> InstalledApps:
    return InstalledApps(
        backend_id=backend.backend_id,
        apps=[
            InstalledApp(
                id=e.app.id,
                name=e.app.name,
                description=e.app.description,
                developer=e.app.developer,
                iframe_url=e.app.iframe_url,
                permissions=list(e.app.permissions),
                installed_at=e.installation.installed_at,
                license_status=e.license.status,
            )
            for e in services.marketplace.installed(backend.backend_id)
        ],
    )


# --- public ---------------------------------------------------------------------------------------


@router.get(
    "/backends/{backend_id}/jwks.json",
    response_model=Jwks,
    responses=problem_responses(ErrorCode.NOT_FOUND),
    summary="A backend's public keys: the current one and those replaced < 30 min ago",
)
def backend_jwks(backend_id: BackendIdPath, services: ServicesDep, response: Response) -> Jwks:
    keys = services.marketplace.backend_jwks(backend_id)
    response.headers["Cache-Control"] = f"public, max-age={BACKEND_JWKS_MAX_AGE_SECONDS}"
    return Jwks(keys=[Jwk.model_validate(k) for k in keys])


@router.get(
    "/apps/{app_id}/entitlements",
    response_model=EntitlementsResponse,
    responses=problem_responses(ErrorCode.NOT_FOUND),
    summary="The signed snapshot of the backends entitled to an app now (10 minutes)",
)
def entitlements(app_id: AppIdPath, services: ServicesDep) -> EntitlementsResponse:
    return EntitlementsResponse(snapshot=services.marketplace.entitlements(app_id))
