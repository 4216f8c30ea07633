"""``GET /releases/latest``: the signed release manifest the desktop's update notice reads
(docs/updates.md). Public, like the JWKS it is verified against."""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter, Response

from agent.protocol import RELEASE_MANIFEST_PATH, REVOCATION_LIST_MEDIA_TYPE, ErrorCode

from ..deps import ServicesDep
from ..problems import problem_responses

router = APIRouter(tags=["releases"])

#: Caches may keep the manifest this long: a new release reaches desktops within minutes of the
#: daily check that asks.
RELEASE_MANIFEST_MAX_AGE: Final = 300


@router.get(
    RELEASE_MANIFEST_PATH,
    response_class=Response,
    responses={
        200: {
            "content": {REVOCATION_LIST_MEDIA_TYPE: {}},
            "description": "The newest signed release manifest (compact ES256 JWS)",
        },
        **problem_responses(ErrorCode.NOT_FOUND),
    },
    summary="The signed manifest of the newest release (public)",
)
def latest_release(services: ServicesDep) -> Response:
    return Response(
        content=services.releases.latest(),
        media_type=REVOCATION_LIST_MEDIA_TYPE,
        headers={"Cache-Control": f"public, max-age={RELEASE_MANIFEST_MAX_AGE}"},
    )
