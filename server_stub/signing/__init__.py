"""The ``license`` key's signer and the compact ES256 JWS every signed document is made of.

DESIGN.md ("Signed documents"): license files, machine activations, revocation lists and audit
checkpoints are ES256 JWS with ``kid`` and ``typ`` in the protected header. Who holds the private
key is behind :class:`Signer`: the 0600 key file of :class:`server_stub.keys.KeyStore`
(:class:`FileSigner`, the default) or a PKCS#11 token (:class:`Pkcs11Signer`, an HSM).
:func:`signer_from_settings` picks one from the settings and fails closed: a PKCS#11 signer that
is configured but cannot sign stops the server from starting rather than falling back to the file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric import ec

from agent.protocol import SIGNED_DOCUMENT_ALG, b64url

from ..keys import public_jwk


class SignerError(Exception):
    """The signer cannot sign: misconfigured, token absent, wrong PIN, key missing."""


class SigningHandle(Protocol):
    """One key, fixed: its ``kid`` and a way to sign with it."""

    @property
    def kid(self) -> str:
        """RFC 7638 thumbprint of the public key."""
        ...

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The public key (what verifiers pin)."""
        ...

    def sign(self, data: bytes) -> bytes:
        """ECDSA P-256 with SHA-256 over ``data``: 64 bytes, ``r`` then ``s`` (RFC 7518 §3.4)."""
        ...


class Signer(Protocol):
    """Holds the current ``license`` key, wherever it lives."""

    def current(self) -> SigningHandle:
        """The key to sign with now; one document is signed with one handle (rotation-safe)."""
        ...


def sign_jws(
    signer: Signer, typ: str, payload: bytes, *, extra_header: Mapping[str, Any] | None = None
) -> str:
    """A compact ES256 JWS of ``payload`` with ``kid`` and ``typ`` in the protected header."""
    # One handle for header and signature: a rotation in between would name the wrong key.
    return sign_jws_with(signer.current(), typ, payload, extra_header=extra_header)


def sign_jws_with(
    handle: SigningHandle,
    typ: str,
    payload: bytes,
    *,
    extra_header: Mapping[str, Any] | None = None,
) -> str:
    """:func:`sign_jws` with one given key (when the caller also names that key elsewhere)."""
    header = {"alg": SIGNED_DOCUMENT_ALG, "kid": handle.kid, "typ": typ, **(extra_header or {})}
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":")).encode("utf-8")) + "." + b64url(payload)
    )
    signature = handle.sign(signing_input.encode("ascii"))
    if len(signature) != 64:
        raise SignerError(f"the signer returned {len(signature)} bytes, not a raw P-256 r||s")
    return signing_input + "." + b64url(signature)


def published_keys(signer: Signer) -> list[dict[str, Any]]:
    """JWKS entries for a signer whose key the key store does not already publish (PKCS#11)."""
    if isinstance(signer, FileSigner):
        return []
    handle = signer.current()
    jwk = public_jwk(handle.public_key)
    return [{**jwk, "kid": handle.kid, "alg": SIGNED_DOCUMENT_ALG, "use": "sig"}]


def sign_claims(signer: Signer, typ: str, claims: Mapping[str, Any]) -> str:
    """:func:`sign_jws` of ``claims`` as compact JSON."""
    return sign_jws(signer, typ, json.dumps(claims, separators=(",", ":")).encode("utf-8"))


from .file import FileSigner  # noqa: E402  (the implementations import the names above)
from .pkcs11 import Pkcs11Signer, signer_from_settings  # noqa: E402

__all__ = [
    "FileSigner",
    "Pkcs11Signer",
    "Signer",
    "SignerError",
    "SigningHandle",
    "published_keys",
    "sign_claims",
    "sign_jws",
    "sign_jws_with",
    "signer_from_settings",
]
