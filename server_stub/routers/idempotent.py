"""The ``Idempotency-Key`` header for routers: one parameter and one call (docs/billing.md,
"Idempotency-Key")::

    async def refund(body: RefundIn, principal: StaffDep, services: ServicesDep,
                     idem: StaffIdempotent) -> Response:
        return await idem.run(lambda: RefundOut.of(services.billing.refund(...)))

The dependency declares the header (so the OpenAPI document and the fuzzer know it: 1..255
printable ASCII, else 422), names the caller the key belongs to, and fingerprints the request
(method, path, query, canonical body) by itself: a router cannot forget a parameter. Without the
header :meth:`Idempotent.run` just runs the call. The storage and its rules are
``services/idempotency.py``.

Not ``from __future__ import annotations``: :func:`idempotency` builds its dependency's
signature from its arguments, which FastAPI must see as objects, not strings.
"""

import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from ..deps import ServicesDep, current_principal, run_service
from ..errors import DomainError
from ..problems import domain_problem
from ..services.auth import Principal
from ..services.idempotency import Claim, StoredResponse, request_fingerprint
from ..services.staff import StaffPrincipal
from ..wiring import Services
from .staff_auth import current_staff

log = logging.getLogger("tgflow.server.idempotency")

IDEMPOTENCY_HEADER = "Idempotency-Key"
#: Set (``true``) on a replayed response, as Stripe does.
REPLAYED_HEADER = "Idempotent-Replayed"
#: 1..255 printable ASCII, not starting or ending with a space (HTTP strips those).
KEY_PATTERN = r"^[!-~]([ -~]{0,253}[!-~])?$"
#: Headers of a first response that are not stored: recomputed on the replay.
_NOT_STORED = frozenset({"content-length"})

KeyHeader = Annotated[
    str | None,
    Header(
        alias=IDEMPOTENCY_HEADER,
        max_length=255,
        pattern=KEY_PATTERN,
        description="Makes the request safe to retry: the first response to this key is stored "
        "and replayed for 24 h (errors too, except 5xx), marked `Idempotent-Replayed: true`; "
        "the same key with other parameters, or while its first request still runs, is "
        "409 `idempotency_conflict`. Keys are the caller's own (a UUID v4 is a good key).",
    ),
]


class Idempotent:
    """One request's ``Idempotency-Key`` (or none); see :meth:`run`."""

    def __init__(
        self, services: Services, request: Request, scope: str, key: str | None, body: bytes
    ) -> None:
        self._services = services
        self._request = request
        self._scope = scope
        self._key = key
        self._body = body

    async def run(self, call: Callable[[], BaseModel | Response]) -> Response:
        """Run ``call`` (in the thread pool) at most once per key, or replay the answer the key
        got first.

        ``call`` does the work through a service and returns the response model (answered with
        the route's status code) or a non-streaming :class:`Response`. A domain error it raises
        is answered as problem details and, as a 4xx, stored like any answer; a 5xx or another
        exception is not stored and lets the key go, so a retry executes again.
        """
        if self._key is None:
            return self._render(await run_in_threadpool(call))
        request = self._request
        fingerprint = request_fingerprint(
            request.method, request.url.path, request.url.query, self._body
        )
        services = self._services
        store = services.idempotency
        claimed = await run_service(services, store.claim, self._scope, self._key, fingerprint)
        if isinstance(claimed, StoredResponse):
            return Response(
                claimed.body,
                status_code=claimed.status_code,
                headers={**claimed.headers, REPLAYED_HEADER: "true"},
            )
        try:
            response = self._render(await run_in_threadpool(call))
        except DomainError as exc:
            response = domain_problem(exc, request.url.path)
        except BaseException:
            await self._release(claimed)
            raise
        if response.status_code >= 500:
            await self._release(claimed)
            return response
        headers = {k: v for k, v in response.headers.items() if k.lower() not in _NOT_STORED}
        outcome = StoredResponse(response.status_code, headers, bytes(response.body))
        await run_service(services, store.complete, claimed, outcome)
        return response

    def _render(self, outcome: BaseModel | Response) -> Response:
        if isinstance(outcome, Response):
            return outcome
        status: int = getattr(self._request.scope.get("route"), "status_code", None) or 200
        return JSONResponse(outcome.model_dump(mode="json", by_alias=True), status_code=status)

    async def _release(self, claim: Claim) -> None:
        try:
            await run_service(self._services, self._services.idempotency.release, claim)
        except Exception:  # the lease frees the key anyway; the original error matters more
            log.warning("could not release an idempotency key", exc_info=True)


def idempotency(caller: Callable[..., Any], scope_of: Callable[[Any], str]) -> Any:
    """A ``Depends`` giving the request's :class:`Idempotent`, its keys scoped to the caller
    that the dependency ``caller`` authenticates (``scope_of`` names it)."""

    async def dependency(
        request: Request,
        services: ServicesDep,
        who: Annotated[Any, Depends(caller)],
        key: KeyHeader = None,
    ) -> Idempotent:
        return Idempotent(services, request, scope_of(who), key, await request.body())

    return Depends(dependency)


def _staff_scope(principal: StaffPrincipal) -> str:
    return f"staff:{principal.staff.id}"


def _user_scope(principal: Principal) -> str:
    return f"user:{principal.user.id}"


#: For staff routes (``staff_endpoint``): keys are the staff member's own.
StaffIdempotent = Annotated[Idempotent, idempotency(current_staff, _staff_scope)]
#: For end-user routes (bearer access token): keys are the user's own.
UserIdempotent = Annotated[Idempotent, idempotency(current_principal, _user_scope)]
