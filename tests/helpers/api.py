"""Small HTTP helpers shared by the server tests."""

from __future__ import annotations

import secrets
from typing import Any

import httpx

PASSWORD = "correct horse battery"


def fingerprint() -> str:
    return "fp-" + secrets.token_hex(16)


def register(
    client: httpx.Client, email: str | None = None, fp: str | None = None, password: str = PASSWORD
) -> dict[str, Any]:
    email = email or f"user-{secrets.token_hex(4)}@example.com"
    r = client.post(
        "/auth/register",
        json={"email": email, "password": password, "device_fingerprint": fp or fingerprint()},
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body: dict[str, Any] = r.json()
    assert body["code"] == code, body
    assert body["status"] == status
    assert body["title"] and body["detail"]
    return body


class LosingTransport(httpx.HTTPTransport):
    """Delivers the request, then loses the response on its way back (once, when armed)."""

    def __init__(self) -> None:
        super().__init__()
        self.lose_next = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if self.lose_next:
            self.lose_next = False
            response.read()
            response.close()
            raise httpx.ReadError("connection reset after the server answered")
        return response
