"""The published release manifest (docs/updates.md): the newest release, signed with the
``license`` key, kept in ``portal_settings`` so every server process serves the same text.

The operator publishes ``build/release.py``'s manifest with ``tgflow-server release publish``;
the server signs it then (the key never leaves the server or its HSM) and serves the JWS as is
at ``GET /releases/latest``. ``iat`` always moves forward, so a re-publication (fixed notes)
supersedes the previous one on every desktop; a version older than the one published is refused,
since every desktop that saw the newer one would ignore it.
"""

from __future__ import annotations

import base64
from typing import Final

from agent.protocol import (
    RELEASE_MANIFEST_TYP,
    ReleaseManifest,
    ReleaseManifestClaims,
    product_version_tuple,
)

from ..db import transaction
from ..errors import NotFound, ValidationFailed
from ..portal_models import PortalSetting
from ..signing import Signer, sign_claims
from .audit import record
from .context import ServiceContext
from .revocations import locked_setting, next_iat

#: ``portal_settings`` key holding ``{"jws": ..., "iat": <epoch seconds>, "version": ...}``.
SETTING_KEY: Final = "release_manifest"


class ReleaseService:
    """Publishes and serves the signed release manifest."""

    def __init__(self, ctx: ServiceContext, signer: Signer) -> None:
        self._ctx = ctx
        self._signer = signer

    def publish(self, actor: str, manifest: ReleaseManifest) -> ReleaseManifestClaims:
        """Sign ``manifest`` and make it the one served; audited. Returns the signed claims.

        Raises :class:`ValidationFailed` for a version older than the one published.
        """
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            row = locked_setting(session, now, SETTING_KEY)
            kept = row.value if isinstance(row.value, dict) else {}
            kept_version = kept.get("version")
            if isinstance(kept_version, str) and product_version_tuple(
                manifest.version
            ) < product_version_tuple(kept_version):
                raise ValidationFailed(
                    f"version {manifest.version} is older than the published {kept_version}"
                )
            iat = next_iat(row, now)
            claims = ReleaseManifestClaims(
                **manifest.model_dump(), iss=self._ctx.settings.issuer, iat=iat
            )
            jws = sign_claims(self._signer, RELEASE_MANIFEST_TYP, claims.model_dump(mode="json"))
            row.value = {"jws": jws, "iat": iat, "version": claims.version}
            row.updated_by = actor
            row.updated_at = now
            record(
                session,
                now,
                actor,
                "release.publish",
                f"release/{claims.version}",
                {"iat": iat, "downloads": [d.name for d in claims.downloads]},
            )
        return claims

    def latest(self) -> str:
        """The published manifest's compact JWS; :class:`NotFound` before the first."""
        with transaction(self._ctx.read) as session:
            row = session.get(PortalSetting, SETTING_KEY)
            jws = row.value.get("jws") if row is not None and isinstance(row.value, dict) else None
        if not isinstance(jws, str):
            raise NotFound("no release has been published")
        return jws

    def latest_claims(self) -> ReleaseManifestClaims:
        """What the published manifest says (the server's own, signed by it: not re-verified)."""
        payload = self.latest().split(".")[1]
        return ReleaseManifestClaims.model_validate_json(
            base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        )
