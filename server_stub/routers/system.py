"""Health, metrics and the published keys."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from agent.protocol import ErrorCode, Health, Jwks

from .. import __version__, db
from ..deps import ServicesDep
from ..problems import problem_responses
from ..signing import published_keys

router = APIRouter(tags=["system"])


@router.get(
    "/healthz",
    response_model=Health,
    responses={
        503: {"model": Health, "description": "Degraded: the database is unreachable"},
        **problem_responses(ErrorCode.PAYLOAD_TOO_LARGE, common=False),
    },
    summary="Liveness and database reachability",
)
async def healthz(services: ServicesDep, response: Response) -> Health:
    try:
        await run_in_threadpool(db.check_connection, services.ctx.engine)
        database = "ok"
    except SQLAlchemyError:
        database = "unavailable"
        response.status_code = 503
    return Health(
        status="ok" if database == "ok" else "degraded",
        version=__version__,
        database=database,
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **problem_responses(
            ErrorCode.PAYLOAD_TOO_LARGE, ErrorCode.SERVICE_UNAVAILABLE, common=False
        ),
    },
    summary="Prometheus metrics",
)
async def metrics(services: ServicesDep) -> Response:
    m = services.ctx.metrics
    m.reservations_open.set(await run_in_threadpool(services.reservations.count_open))
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/.well-known/jwks.json",
    response_model=Jwks,
    response_model_exclude_none=True,
    responses=problem_responses(ErrorCode.RATE_LIMITED, ErrorCode.PAYLOAD_TOO_LARGE, common=False),
    summary="Public keys of every signing key not yet retired",
)
async def jwks(services: ServicesDep, response: Response) -> Jwks:
    response.headers["Cache-Control"] = "public, max-age=300"
    # A PKCS#11 license key lives outside the key store; verifiers find it here all the same.
    keys = [*services.ctx.keys.jwks()["keys"], *published_keys(services.signer)]
    return Jwks.model_validate({"keys": keys})
