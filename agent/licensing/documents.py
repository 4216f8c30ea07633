"""Reading and verifying signed documents: the armour, the ES256 JWS, the pinned key.

Rules (DESIGN.md, "Keys and pinning" and "Signed documents"), the same as for tokens
(:mod:`agent.tokens`): the one algorithm ES256 is named, so ``alg: none``, ``HS*`` and any other
algorithm are refused before a key is looked up; the key is the pinned ``license`` key named by
the header's ``kid``; the header's ``typ`` must be the kind expected, so that a revocation list
(or an audit checkpoint) never passes as a license file; ``crit`` is refused and ``jku``/``x5u``/
``jwk``/``x5c`` are never used.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import jwt
from jwt.api_jws import PyJWS
from pydantic import BaseModel, ValidationError

from agent.errors import TokenInvalid, UntrustedKey
from agent.key_pins import PinnedKey, PinnedKeySet
from agent.protocol import (
    LICENSE_ARMOUR_BEGIN,
    LICENSE_ARMOUR_END,
    REVOCATION_ARMOUR_BEGIN,
    REVOCATION_ARMOUR_END,
    SIGNED_DOCUMENT_ALG,
    SIGNING_KEY_ARMOUR_HEADER,
)

_Claims = TypeVar("_Claims", bound=BaseModel)

#: A larger license file is refused unread (a real one is a few KiB).
MAX_DOCUMENT_CHARS: Final = 64 * 1024
#: Header members a signed document may carry; anything else (``crit``, ``b64``, …) is refused.
_KNOWN_HEADER: Final = frozenset({"alg", "kid", "typ", "cty"})
_JWS_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


@dataclass(frozen=True)
class Armoured:
    """What a license file's text holds, not verified yet."""

    license_jws: str
    #: The signing key's public JWK the file carries (``Signing-Key``), if any; trusted only if
    #: its pin is configured.
    carried_key: Mapping[str, Any] | None
    #: A revocation list that came with the file, if any.
    revocation_jws: str | None


@dataclass(frozen=True)
class VerifiedDocument:
    """A signed document whose signature, key and ``typ`` passed."""

    header: Mapping[str, Any]
    payload: bytes
    key: PinnedKey


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _block(lines: list[str], begin: str, end: str, what: str) -> list[str] | None:
    if begin not in lines:
        return None
    start = lines.index(begin)
    try:
        stop = lines.index(end, start + 1)
    except ValueError:
        raise TokenInvalid(f"the {what} has no '{end}' line") from None
    return lines[start + 1 : stop]


def parse_armour(text: str) -> Armoured:
    """Split a license file's text into its JWS, its carried key and an attached revocation list.

    Raises :class:`TokenInvalid` for text that is not a TGFlow license file.
    """
    if not isinstance(text, str) or len(text) > MAX_DOCUMENT_CHARS:
        raise TokenInvalid("the license file is too large or not text")
    lines = [line.strip() for line in text.lstrip("\ufeff").strip().splitlines()]
    body = _block(lines, LICENSE_ARMOUR_BEGIN, LICENSE_ARMOUR_END, "license file")
    if body is None:
        raise TokenInvalid(f"this is not a TGFlow license file (no '{LICENSE_ARMOUR_BEGIN}' line)")
    headers: dict[str, str] = {}
    if "" in body:
        # PEM-style: "Name: value" lines, a blank line, then the JWS.
        split = body.index("")
        for line in body[:split]:
            name, sep, value = line.partition(":")
            if not sep:
                raise TokenInvalid(f"the license file has a malformed header line {line[:40]!r}")
            headers[name.strip()] = value.strip()
        body = body[split + 1 :]
    jws = "".join(body)
    if not jws or not set(jws) <= _JWS_CHARS:
        raise TokenInvalid("the license file's body is not a compact JWS")
    carried: Mapping[str, Any] | None = None
    if SIGNING_KEY_ARMOUR_HEADER in headers:
        try:
            decoded = json.loads(_b64url_decode(headers[SIGNING_KEY_ARMOUR_HEADER]))
        except (ValueError, binascii.Error):
            decoded = None
        carried = decoded if isinstance(decoded, Mapping) else None
    revocation = _block(lines, REVOCATION_ARMOUR_BEGIN, REVOCATION_ARMOUR_END, "revocation list")
    return Armoured(
        license_jws=jws,
        carried_key=carried,
        revocation_jws="".join(revocation) if revocation else None,
    )


class DocumentVerifier:
    """Verifies signed documents against the pinned ``license`` keys (offline: keys known now)."""

    def __init__(self, keys: PinnedKeySet) -> None:
        """Trust only ``keys`` (the agent's :class:`PinnedKeySet`, pins from settings.ini)."""
        self.keys = keys
        self._jws = PyJWS(algorithms=[SIGNED_DOCUMENT_ALG])

    def verify(
        self,
        jws: str,
        typ: str,
        *,
        what: str,
        carried_key: Mapping[str, Any] | None = None,
        allowed_cty: frozenset[str] = frozenset(),
    ) -> VerifiedDocument:
        """Check ``jws``'s header, key and signature; ``typ`` is the kind expected.

        ``what`` names the document in error messages. ``carried_key`` (a license file's
        ``Signing-Key``) is used only when no known key has the ``kid`` and only if pinned.
        Raises :class:`TokenInvalid` or :class:`UntrustedKey`.
        """
        if not isinstance(jws, str) or len(jws) > MAX_DOCUMENT_CHARS or jws.count(".") != 2:
            raise TokenInvalid(f"the {what} is not a compact JWS")
        try:
            header = jwt.get_unverified_header(jws)
        except jwt.InvalidTokenError as exc:
            raise TokenInvalid(f"the {what} is malformed: {exc}") from exc
        alg = header.get("alg")
        if alg != SIGNED_DOCUMENT_ALG:
            raise TokenInvalid(f"the {what} must be signed with {SIGNED_DOCUMENT_ALG}, not {alg!r}")
        if header.get("typ") != typ:
            raise TokenInvalid(f"this is not a {what} (its typ is {header.get('typ')!r})")
        unknown = set(header) - _KNOWN_HEADER - {"jku", "x5u", "jwk", "x5c"}
        if unknown:
            raise TokenInvalid(f"the {what} carries header members the agent refuses: {unknown}")
        if "cty" in header and header["cty"] not in allowed_cty:
            raise TokenInvalid(f"the {what} has an unexpected content type {header['cty']!r}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenInvalid(f"the {what} names no signing key (kid)")
        key = self._key(kid, carried_key, what)
        if key.alg != SIGNED_DOCUMENT_ALG:
            raise TokenInvalid(f"the {what} names key {kid}, which does not sign ES256")
        try:
            decoded = self._jws.decode_complete(
                jws, key.public_key, algorithms=[SIGNED_DOCUMENT_ALG]
            )
        except jwt.InvalidTokenError as exc:
            raise TokenInvalid(f"the {what}'s signature is invalid: {exc}") from exc
        return VerifiedDocument(header=header, payload=bytes(decoded["payload"]), key=key)

    def verify_claims(
        self,
        jws: str,
        typ: str,
        model: type[_Claims],
        *,
        what: str,
        issuer: str,
        carried_key: Mapping[str, Any] | None = None,
    ) -> _Claims:
        """:meth:`verify`, then the payload as ``model`` (strictly typed) issued by ``issuer``.

        Raises :class:`TokenInvalid` for malformed claims or another issuer, and like
        :meth:`verify`.
        """
        document = self.verify(jws, typ, what=what, carried_key=carried_key)
        try:
            claims = model.model_validate_json(document.payload)
        except ValidationError as exc:
            raise TokenInvalid(f"the {what} has malformed claims: {exc}") from exc
        iss = getattr(claims, "iss", None)
        if iss != issuer:
            raise TokenInvalid(f"the {what} was issued by {iss!r}")
        return claims

    def _key(self, kid: str, carried: Mapping[str, Any] | None, what: str) -> PinnedKey:
        try:
            return self.keys.key(kid)
        except UntrustedKey:
            if carried is None:
                raise
        key = self.keys.carried_key(carried)
        if key.kid != kid:
            raise UntrustedKey(f"the {what} names key {kid}, not the key it carries ({key.kid})")
        return key
