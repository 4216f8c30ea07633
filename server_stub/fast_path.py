"""Hot routes answered without FastAPI's per-request dependency solving and re-validation.

FastAPI spends about a third of a ``/license`` request solving the dependency graph (it rebuilds
the cache keys of every dependency on each call) and validating and re-encoding the returned
model. A route built with :class:`FastPathRoute` whose endpoint is marked with :func:`fast_path`
is first offered to the marked handler, which reads the request itself and returns the finished
response; when it returns ``None`` (a body it does not take as plainly valid), the route's usual
FastAPI handler answers, so every error reply (422 details, problem codes) stays FastAPI's own.
The route is still declared as usual: the OpenAPI schema (security, body and response models)
comes from the endpoint's signature, and the endpoint itself still serves as the slow path.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

FastHandler = Callable[[Request], Awaitable[Response | None]]
E = TypeVar("E", bound=Callable[..., Any])
M = TypeVar("M", bound=BaseModel)

_ATTR = "_tgflow_fast_path"


def fast_path(handler: FastHandler) -> Callable[[E], E]:
    """Mark an endpoint so that a :class:`FastPathRoute` offers its requests to ``handler``."""

    def mark(endpoint: E) -> E:
        setattr(endpoint, _ATTR, handler)
        return endpoint

    return mark


class FastPathRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        default = super().get_route_handler()
        fast: FastHandler | None = getattr(self.endpoint, _ATTR, None)
        if fast is None:
            return default

        async def handler(request: Request) -> Response:
            response = await fast(request)
            return response if response is not None else await default(request)

        return handler


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    """The bytes FastAPI would send for ``model`` as the route's ``response_model``."""
    return Response(
        model.__pydantic_serializer__.to_json(model),
        status_code=status_code,
        media_type="application/json",
    )


async def json_body(request: Request, model: type[M]) -> M | None:
    """The body as ``model`` when it is plainly valid JSON of that model, else ``None``.

    ``None`` sends the request to FastAPI's handler, which answers the 422 (or reads the
    body as it would for any other content type) in its own words.
    """
    content_type = request.headers.get("content-type", "")
    if content_type.partition(";")[0].strip().lower() != "application/json":
        return None
    try:
        return model.model_validate(json.loads(await request.body()))
    except (ValueError, ValidationError):  # JSONDecodeError and UnicodeDecodeError too
        return None
