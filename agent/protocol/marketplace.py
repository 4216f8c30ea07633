"""The marketplace wire contract (docs/marketplace.md): token formats, plans and the models."""

from __future__ import annotations

import base64
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import (
    AfterValidator,
    Field,
    Strict,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .core import Jwk, _Request, _Response
from .keys import jwk_thumbprint

# --- marketplace (docs/marketplace.md) ----------------------------------------------------------
#
# The app marketplace of seed 000: tenant backends license and install apps; their users open them
# in an iframe with a User App Access Token that the backend signs with its own key.

#: ``aud`` of each marketplace token type (the User App Access Token's ``aud`` is the app id).
MARKETPLACE_ADMIN_AUDIENCE: Final = "tgflow-marketplace-admin"
MARKETPLACE_USER_AUDIENCE: Final = "tgflow-marketplace-user"
ENTITLEMENTS_AUDIENCE: Final = "tgflow-marketplace-entitlements"
#: ``typ`` claim of each marketplace token type: one never passes as another.
MARKETPLACE_ADMIN_TYP: Final = "marketplace-admin"
MARKETPLACE_USER_TYP: Final = "marketplace-user"
APP_ACCESS_TYP: Final = "app-access"
ENTITLEMENTS_TYP: Final = "entitlements"
#: ``scope`` of the Backend Admin Token and of the Backend User Token.
MARKETPLACE_ADMIN_SCOPE: Final = "marketplace:admin"
MARKETPLACE_USER_SCOPE: Final = "marketplace:read"
#: The one algorithm of each marketplace token type.
MARKETPLACE_ADMIN_ALG: Final = "RS256"
MARKETPLACE_USER_ALG: Final = "RS256"
APP_ACCESS_ALG: Final = "ES256"
ENTITLEMENTS_ALG: Final = "ES256"
#: Token lifetimes, in seconds.
BACKEND_ADMIN_TOKEN_TTL_SECONDS: Final = 365 * 24 * 3600
BACKEND_USER_TOKEN_TTL_SECONDS: Final = 3600
#: The longest a User App Access Token may live; a backend's replaced key stays published as long.
APP_ACCESS_TOKEN_TTL_SECONDS: Final = 30 * 60
ENTITLEMENTS_TTL_SECONDS: Final = 10 * 60
#: ``Cache-Control: max-age`` of a backend's JWKS (apps keep backend keys 24 h).
BACKEND_JWKS_MAX_AGE_SECONDS: Final = 24 * 3600
#: License defaults: a trial's length, and how long a paid license stays usable after it lapses.
MARKETPLACE_TRIAL_DAYS: Final = 14
MARKETPLACE_GRACE_DAYS: Final = 7

#: An app id: lower-case letters, digits and inner hyphens (it is the ``aud`` of app tokens).
APP_ID_PATTERN: Final = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
#: A permission an app asks for and a User App Access Token grants (``chat:read``).
APP_PERMISSION_PATTERN: Final = r"^[a-z][a-z0-9_.:-]{0,63}$"
#: Installation config: at most this many settings, keys like identifiers, short values.
INSTALL_CONFIG_MAX_KEYS: Final = 32
INSTALL_CONFIG_KEY_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"
INSTALL_CONFIG_MAX_STRING: Final = 1024
INSTALL_CONFIG_MAX_LIST: Final = 32
_P256_COORDINATE_PATTERN: Final = r"^[A-Za-z0-9_-]{43}$"


class MarketplacePlan(StrEnum):
    TRIAL = "trial"
    MONTHLY = "monthly"
    YEARLY = "yearly"
    PERPETUAL = "perpetual"


#: The plans a backend pays for (every plan but the trial).
PAID_PLANS: Final = (MarketplacePlan.MONTHLY, MarketplacePlan.YEARLY, MarketplacePlan.PERPETUAL)


class MarketplaceLicenseStatus(StrEnum):
    """A license's state, evaluated from its dates and the clock (docs/marketplace.md)."""

    PENDING = "pending"  # a paid plan ordered and not paid yet
    TRIAL = "trial"  # the trial runs
    ACTIVE = "active"  # paid, within its period (a perpetual license stays so)
    GRACE = "grace"  # the period ended unpaid; still usable for the grace days
    DISABLED = "disabled"  # the grace ended unpaid
    EXPIRED = "expired"  # the trial ended without a paid plan ordered
    REVOKED = "revoked"  # by the operator


#: States in which the app is listed in ``installed`` and in the entitlement snapshot.
USABLE_LICENSE_STATUSES: Final = frozenset(
    {
        MarketplaceLicenseStatus.TRIAL,
        MarketplaceLicenseStatus.ACTIVE,
        MarketplaceLicenseStatus.GRACE,
    }
)
#: States in which an app may be installed (docs/marketplace.md: an active or trial license).
INSTALLABLE_LICENSE_STATUSES: Final = frozenset(
    {MarketplaceLicenseStatus.TRIAL, MarketplaceLicenseStatus.ACTIVE}
)

AppId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=APP_ID_PATTERN)]
AppPermission = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=APP_PERMISSION_PATTERN)
]


def _no_surrogates(value: str) -> str:
    # A lone surrogate cannot be written as UTF-8: it would fail when the answer is encoded.
    if any("\ud800" <= ch <= "\udfff" for ch in value):
        raise ValueError("must be valid Unicode text")
    return value


ConfigString = Annotated[
    str,
    Strict(),
    StringConstraints(max_length=INSTALL_CONFIG_MAX_STRING),
    AfterValidator(_no_surrogates),
]
ConfigScalar = (
    StrictBool | StrictInt | Annotated[StrictFloat, Field(allow_inf_nan=False)] | ConfigString
)


def _one_config_error(value: object, handler: ValidatorFunctionWrapHandler) -> object:
    # One clear message instead of one per member of the union.
    try:
        return handler(value)
    except ValidationError:
        raise PydanticCustomError(
            "install_config_value",
            "must be null, a boolean, a finite number, a string of at most {max} characters, "
            "or a list of at most {items} such values",
            {"max": INSTALL_CONFIG_MAX_STRING, "items": INSTALL_CONFIG_MAX_LIST},
        ) from None


ConfigValue = Annotated[
    ConfigScalar | Annotated[list[ConfigScalar], Field(max_length=INSTALL_CONFIG_MAX_LIST)] | None,
    WrapValidator(_one_config_error),
]
ConfigKey = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=INSTALL_CONFIG_KEY_PATTERN),
]


def _config_schema(schema: dict[str, Any]) -> None:
    # As for telemetry properties: ``propertyNames`` states the key rule exactly, where pydantic's
    # ``patternProperties`` would let a non-matching key through in JSON Schema terms.
    patterns = schema.pop("patternProperties", {})
    (value_schema,) = patterns.values()
    schema["propertyNames"] = {
        "minLength": 1,
        "maxLength": 64,
        "pattern": INSTALL_CONFIG_KEY_PATTERN,
    }
    schema["additionalProperties"] = value_schema


InstallConfig = Annotated[
    dict[ConfigKey, ConfigValue],
    Field(max_length=INSTALL_CONFIG_MAX_KEYS, json_schema_extra=_config_schema),
]


def _b64url_int(value: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


class BackendJwk(_Request):
    """A backend's public EC P-256 key (RFC 7517), as it registers it with the marketplace.

    ``kty``, ``crv``, ``x`` and ``y`` are required and the point must lie on the curve.
    ``kid``, ``alg`` and ``use`` may come along (as ``agent.marketplace.public_jwk`` writes them)
    but must then be the RFC 7638 thumbprint, ``ES256`` and ``sig``. Anything else, above all a
    private member such as ``d``, is refused: the marketplace never takes a private key.
    """

    kty: Literal["EC"]
    crv: Literal["P-256"]
    x: Annotated[str, StringConstraints(pattern=_P256_COORDINATE_PATTERN)]
    y: Annotated[str, StringConstraints(pattern=_P256_COORDINATE_PATTERN)]
    kid: str | None = Field(default=None, max_length=64, description="RFC 7638 thumbprint")
    alg: Literal["ES256"] | None = None
    use: Literal["sig"] | None = None

    @model_validator(mode="after")
    def _a_point_on_p256(self) -> BackendJwk:
        try:
            ec.EllipticCurvePublicNumbers(
                _b64url_int(self.x), _b64url_int(self.y), ec.SECP256R1()
            ).public_key()
        except ValueError:
            raise ValueError("x and y are not a point on P-256") from None
        if self.kid is not None and self.kid != jwk_thumbprint(self.public_members()):
            raise ValueError("kid is not the RFC 7638 thumbprint of the key")
        return self

    def public_members(self) -> dict[str, str]:
        """``kty``, ``crv``, ``x``, ``y``: the key itself, without optional members."""
        return {"kty": self.kty, "crv": self.crv, "x": self.x, "y": self.y}


class BackendKeyRegistration(_Request):
    jwk: BackendJwk


class BackendKeys(_Response):
    backend_id: str
    current_kid: str = Field(description="The key the backend signs User App Access Tokens with")
    keys: list[Jwk] = Field(description="Every key published now, the current one first")


class LicenseRequest(_Request):
    app_id: AppId
    plan: MarketplacePlan


class MarketplaceLicense(_Response):
    app_id: str
    plan: MarketplacePlan = Field(description="The plan held or ordered")
    status: MarketplaceLicenseStatus
    started_at: datetime | None = Field(description="Start of the trial or the paid period")
    expires_at: datetime | None = Field(description="End of the trial or the paid period")
    grace_until: datetime | None = Field(description="A lapsed paid license is usable until then")
    trial_ends_at: datetime | None = Field(description="End of the trial, if one was taken")


class AppPrices(_Response):
    """Prices in integer minor units of ``currency``; ``null``: the plan is not offered."""

    currency: str
    monthly: int | None
    yearly: int | None
    perpetual: int | None


class AppArtifact(_Response):
    """The app's files, on the developer's servers; the backend downloads and checks them."""

    url: str
    sha256: str
    size: int


class CatalogItem(_Response):
    id: str
    name: str
    description: str
    developer: str
    prices: AppPrices
    artifact: AppArtifact
    iframe_url: str
    permissions: list[str]
    license: MarketplaceLicense | None = Field(description="This backend's license, if any")
    installed: bool
    installed_at: datetime | None


class Catalog(_Response):
    apps: list[CatalogItem]


class InstallationRequest(_Request):
    app_id: AppId
    config: InstallConfig = Field(default_factory=dict)


class InstallationOut(_Response):
    backend_id: str
    app_id: str
    installed_at: datetime
    config: InstallConfig
    artifact: AppArtifact


class UserTokenResponse(_Response):
    token: str = Field(description="RS256 Backend User Token, 1 hour")
    token_type: Literal["Bearer"] = "Bearer"
    backend_id: str
    exp: int = Field(description="Expiry, seconds since the epoch")


class InstalledApp(_Response):
    id: str
    name: str
    description: str
    developer: str
    iframe_url: str
    permissions: list[str]
    installed_at: datetime
    license_status: MarketplaceLicenseStatus


class InstalledApps(_Response):
    backend_id: str
    apps: list[InstalledApp]


class EntitlementsResponse(_Response):
    snapshot: str = Field(
        description="ES256 JWS signed by the marketplace's license key: the backends entitled "
        "to the app now"
    )
