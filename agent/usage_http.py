"""``/usage`` over HTTP: reserve, commit and rollback with a bearer token.

:class:`HttpUsageBackend` is the concrete backend that :class:`agent.journal.UsageJournal` talks
to. It makes exactly one request per call (no retries: the journal's replay is what makes a retry
safe) and turns every failure into a typed :class:`agent.errors.LicenseError`:

* a problem-details answer whose ``code`` the agent knows → that code's class
  (``ERROR_BY_CODE``: ``quota_exceeded`` → :class:`QuotaExceeded`, ``reservation_expired`` →
  :class:`ReservationExpired`, ``reservation_conflict`` → :class:`ReservationConflict`, …);
* a connection failure or a timeout → :class:`Offline` (the request may or may not have reached
  the server);
* anything else (5xx, an unknown code, a body that is not the expected model) →
  :class:`UnexpectedResponse`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from agent.errors import Offline, UnexpectedResponse, error_class_for
from agent.protocol import (
    CommitRequest,
    Problem,
    ReservationResponse,
    ReserveRequest,
    RollbackRequest,
    SettleResponse,
)

_Model = TypeVar("_Model", bound=BaseModel)


class HttpUsageBackend:
    """The ``/usage`` endpoints of one server, called with one account's access token."""

    def __init__(self, client: httpx.AsyncClient, token: str | Callable[[], str]) -> None:
        """Use ``client`` (its ``base_url`` is the API root) and ``token``.

        ``token`` is the access token, or a function returning the current one (so a caller
        that refreshes tokens can hand over the newest without building a new backend).
        """
        self._client = client
        self._token = token

    def _bearer(self) -> dict[str, str]:
        token = self._token() if callable(self._token) else self._token
        return {"Authorization": f"Bearer {token}"}

    async def reserve(self, messages: int, correlation_id: str) -> ReservationResponse:
        """``POST /usage/reserve``: hold quota for ``messages`` (idempotent by correlation id)."""
        body = ReserveRequest(messages=messages, correlation_id=correlation_id)
        return await self._post("/usage/reserve", body, ReservationResponse)

    async def commit(self, reservation_id: str, used: int) -> SettleResponse:
        """``POST /usage/commit``: count ``used`` messages and release the rest (idempotent)."""
        body = CommitRequest(reservation_id=reservation_id, used=used)
        return await self._post("/usage/commit", body, SettleResponse)

    async def rollback(self, reservation_id: str) -> SettleResponse:
        """``POST /usage/rollback``: release the whole hold (idempotent)."""
        body = RollbackRequest(reservation_id=reservation_id)
        return await self._post("/usage/rollback", body, SettleResponse)

    async def _post(self, path: str, body: BaseModel, model: type[_Model]) -> _Model:
        try:
            response = await self._client.post(
                path, json=body.model_dump(mode="json"), headers=self._bearer()
            )
        except httpx.TransportError as exc:
            raise Offline(f"POST {path}: {type(exc).__name__}: {exc}") from exc
        if response.is_success:
            return parse_answer(response, model, unexpected_answer(f"POST {path}"))
        raise problem_error(path, response)


def parse_answer(
    response: httpx.Response, model: type[_Model], invalid: Callable[[str, int], Exception]
) -> _Model:
    """A successful ``response``'s body as ``model``; where it is not one, the error
    ``invalid(model's name, HTTP status)`` makes is raised. The usage backend, the license client
    (so billing and points) and the marketplace client parse their answers here, each keeping
    its own error type and wording."""
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise invalid(model.__name__, response.status_code) from exc


def unexpected_answer(call: str) -> Callable[[str, int], UnexpectedResponse]:
    """The license server's clients' :class:`UnexpectedResponse` for a body that is not the
    model (``call`` is ``"METHOD /path"``)."""
    return lambda name, status: UnexpectedResponse(f"{call}: the answer is not a {name}", status)


def problem_error(path: str, response: httpx.Response) -> Exception:
    """The typed error standing for a failed ``response`` (problem details, RFC 9457)."""
    try:
        method = response.request.method
    except RuntimeError:  # a response built by hand has no request
        method = "POST"
    try:
        problem = Problem.model_validate_json(response.content)
    except ValidationError:
        return UnexpectedResponse(
            f"{method} {path}: HTTP {response.status_code} without problem details",
            response.status_code,
        )
    cls = error_class_for(problem.code)
    if cls is None:
        return UnexpectedResponse(
            f"{method} {path}: {problem.code.value}: {problem.detail}",
            response.status_code,
            problem_code=problem.code.value,
            problem_reason=problem.reason,
        )
    return cls(problem.detail)
