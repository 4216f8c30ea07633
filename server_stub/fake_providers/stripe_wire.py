"""Stripe's wire as the fake speaks it: nested form keys, error bodies, the search language
billing uses, and the HTTP app (the API under ``/v1`` and the hosted checkout page)."""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from .delivery import pay_page

if TYPE_CHECKING:
    from .stripe_fake import FakeStripe

Obj = dict[str, Any]
#: What the fake says it speaks (the SDK's pinned version).
API_VERSION = "2026-10-28.endive"


class StripeError(Exception):
    def __init__(self, status: int, error: Obj) -> None:
        super().__init__(error.get("message"))
        self.status = status
        self.error = error


def invalid(message: str, *, status: int = 400, param: str | None = None) -> StripeError:
    error: Obj = {"type": "invalid_request_error", "message": message}
    if param:
        error["param"] = param
    if status == 404:
        error["code"] = "resource_missing"
    return StripeError(status, error)


def decode_form(pairs: list[tuple[str, str]]) -> Obj:
    """Stripe's nested form keys into objects; all-digit keys make lists."""
    root: Obj = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        if not parts:
            continue
        node = root
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise invalid(f"Invalid parameter {key}", param=key)
            node = child
        node[parts[-1]] = value
    return _listify(root)


def _listify(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    items = {k: _listify(v) for k, v in value.items()}
    if items and all(k.isdigit() for k in items):
        return [items[k] for k in sorted(items, key=int)]
    return items


def to_int(params: Obj, name: str) -> int:
    value = params.get(name)
    if not isinstance(value, str) or not value.isdigit():
        raise invalid(f"Invalid integer: {value}", param=name)
    return int(value)


def search(query: str, objects: list[Obj]) -> list[Obj]:
    """The part of Stripe's search language billing uses: ``metadata['k']:'v'`` clauses joined
    by AND."""
    wanted = []
    for clause in re.split(r"\s+AND\s+", query.strip()):
        match = re.fullmatch(r"metadata\['([^']+)'\]:'((?:[^'\\]|\\.)*)'", clause.strip())
        if not match:
            raise invalid(f"Unsupported search query: {clause}", param="query")
        wanted.append((match[1], re.sub(r"\\(.)", r"\1", match[2])))
    return [o for o in objects if all(o["metadata"].get(k) == v for k, v in wanted)]


def build_app(fake: FakeStripe) -> FastAPI:
    app = FastAPI(title="fake Stripe", openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/c/pay/{session_id}", response_class=HTMLResponse)
    def checkout_page(session_id: str) -> str:
        session = fake.session(session_id)
        if session is None:
            return "<!doctype html><title>Not found</title><p>No such checkout.</p>"
        amount = session["amount_total"] or 0
        what = (
            f"{amount // 100}.{amount % 100:02d} {str(session['currency']).upper()}"
            if amount
            else "Save your card (nothing is charged now)"
        )
        return pay_page("Fake Stripe Checkout", what, session["status"])

    @app.post("/c/pay/{session_id}")
    async def checkout_submit(session_id: str, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        session = fake.session(session_id)
        if session is None:
            return HTMLResponse("No such checkout.", status_code=404)
        if form.get("outcome") != "pay":
            return RedirectResponse(session["cancel_url"] or "/", status_code=303)
        try:
            fake.complete_checkout(session_id)
        except StripeError as exc:
            return HTMLResponse(html.escape(str(exc)), status_code=400)
        target = str(session["success_url"]).replace("{CHECKOUT_SESSION_ID}", session_id)
        return RedirectResponse(target, status_code=303)

    @app.api_route("/v1/{path:path}", methods=["GET", "POST"])
    async def api(path: str, request: Request) -> Response:
        raw = (await request.body()).decode() if request.method == "POST" else request.url.query
        try:
            params = decode_form(parse_qsl(raw, keep_blank_values=True))
        except StripeError as exc:
            return JSONResponse({"error": exc.error}, status_code=exc.status)
        headers = {k.lower(): v for k, v in request.headers.items()}
        return fake.api(request.method, f"/v1/{path}", headers, params)

    return app
