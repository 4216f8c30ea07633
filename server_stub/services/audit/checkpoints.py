"""Signed checkpoints of the audit log: an ES256 JWS of the head's ``seq`` and ``hash``.

Signed with the ``license`` key, ``kid`` and the checkpoint's own ``typ`` in the protected header
(DESIGN.md, "Signed documents"), so a third party holding the public key can check an export
offline, and an edit of the database cannot be hidden by recomputing every hash: the signature
covers the chain up to its ``seq``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt

from agent.protocol import AUDIT_CHECKPOINT_ALG, AUDIT_CHECKPOINT_TYP, KEY_PURPOSE_LICENSE

from ...keys import KeyStore


class CheckpointInvalid(Exception):
    """A checkpoint whose signature, header or claims do not hold."""


@dataclass(frozen=True)
class SignedCheckpoint:
    seq: int
    hash: str
    jws: str


def sign_checkpoint(
    keys: KeyStore, issuer: str, seq: int, entry_hash: str, now: datetime
) -> SignedCheckpoint:
    # Straight from the key store; when the signer interface (file or PKCS#11) lands, the
    # checkpoint is signed through it like every other signed document.
    key = keys.signing_key(KEY_PURPOSE_LICENSE)
    claims = {"iss": issuer, "iat": int(now.timestamp()), "seq": seq, "hash": entry_hash}
    token = jwt.encode(
        claims,
        key.private_key,
        algorithm=AUDIT_CHECKPOINT_ALG,
        headers={"kid": key.kid, "typ": AUDIT_CHECKPOINT_TYP},
    )
    return SignedCheckpoint(seq, entry_hash, token)


def verify_checkpoint(keys: KeyStore, issuer: str, token: str) -> tuple[int, str]:
    """The ``seq`` and ``hash`` a checkpoint signed, checked against every license key ever held.

    Retired keys count: a checkpoint stays valid after the key that signed it was rotated.
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise CheckpointInvalid("malformed JWS") from exc
    if header.get("alg") != AUDIT_CHECKPOINT_ALG or header.get("typ") != AUDIT_CHECKPOINT_TYP:
        raise CheckpointInvalid("not an ES256 audit checkpoint")
    key = next(
        (
            k
            for k in keys.all_keys()
            if k.kid == header.get("kid") and k.purpose == KEY_PURPOSE_LICENSE
        ),
        None,
    )
    if key is None:
        raise CheckpointInvalid(f"signed by an unknown key {header.get('kid')!r}")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.public_key,
            algorithms=[AUDIT_CHECKPOINT_ALG],
            issuer=issuer,
            options={"require": ["iss", "iat", "seq", "hash"], "verify_iat": False},
        )
        return int(claims["seq"]), str(claims["hash"])
    except (jwt.InvalidTokenError, TypeError, ValueError) as exc:
        raise CheckpointInvalid(f"bad signature or claims: {exc}") from exc
