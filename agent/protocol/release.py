"""The release manifest (docs/updates.md): what ``build/release.py`` writes, what the operator
publishes with ``tgflow-server release publish`` and what ``GET /releases/latest`` serves signed.

Signed like every other document (DESIGN.md, "Signed documents"): a compact ES256 JWS with the
server's ``license`` key, ``kid`` and its own ``typ`` in the protected header, so that a manifest
can never pass as a license file or a revocation list, nor they as a manifest.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, StringConstraints, model_validator

from .documents import ProductVersion, Seconds

#: Protected-header ``typ`` of a signed release manifest.
RELEASE_MANIFEST_TYP: Final = "release-manifest"
#: The ``format`` member of a manifest of this schema; another value is refused.
RELEASE_MANIFEST_FORMAT: Final = "tgflow.release-manifest/1"
#: Where the server serves the newest signed manifest (a compact JWS, ``application/jose``).
RELEASE_MANIFEST_PATH: Final = "/releases/latest"
#: A platform: the OS and the machine, as in the archives' names (``linux-x86_64``).
RELEASE_PLATFORM_PATTERN: Final = r"^(linux|windows|macos)-[a-z0-9_]{1,16}$"
#: What an archive may be called: ``tgflow-<version>-<platform>.<ext>``.
RELEASE_FILE_PATTERN: Final = r"^tgflow-[0-9.]{1,40}-[a-z0-9_-]{1,40}\.[A-Za-z0-9.]{1,16}$"

ReleasePlatform = Annotated[str, StringConstraints(pattern=RELEASE_PLATFORM_PATTERN)]


class ReleaseDownload(BaseModel):
    """One archive of a release: where to get it and what it must hash to."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    platform: ReleasePlatform
    name: Annotated[str, StringConstraints(pattern=RELEASE_FILE_PATTERN)]
    url: Annotated[str, StringConstraints(max_length=2000, pattern=r"^https?://[^\s<>\"']+$")]
    size: Annotated[int, Strict(), Field(ge=1)]
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class ReleaseManifest(BaseModel):
    """A release as the operator publishes it (``build/release.py``'s output)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    format: Literal["tgflow.release-manifest/1"]
    version: ProductVersion
    #: The day the release was made (``YYYY-MM-DD``).
    released: dt.date
    #: What changed, plain text (the CHANGELOG's section of this version).
    notes: Annotated[str, StringConstraints(max_length=20_000)] = ""
    downloads: Annotated[tuple[ReleaseDownload, ...], Field(min_length=1, max_length=32)]

    @model_validator(mode="after")
    def _names_unique(self) -> ReleaseManifest:
        names = [d.name for d in self.downloads]
        if len(set(names)) != len(names):
            raise ValueError("two downloads have the same name")
        return self


class ReleaseManifestClaims(ReleaseManifest):
    """The signed manifest's payload: the release, who signed it and when."""

    iss: str
    #: When it was signed; of two manifests of one version, the later one wins.
    iat: Seconds
