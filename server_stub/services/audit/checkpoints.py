"""Signed checkpoints of the audit log: an ES256 JWS of the head's ``seq`` and ``hash``.

Signed through the :class:`~server_stub.signing.Signer` like every other signed document
(DESIGN.md, "Signed documents"): the ``license`` key file, or the PKCS#11 token when one is
configured, with ``kid`` and the checkpoint's own ``typ`` in the protected header. A third party
holding the public key can check an export offline, and an edit of the database cannot be hidden
by recomputing every hash: the signature covers the chain up to its ``seq``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from agent.audit_verify import SignedHead, checkpoint_claims
from agent.protocol import AUDIT_CHECKPOINT_TYP, KEY_PURPOSE_LICENSE

from ...keys import KeyStore
from ...signing import Signer, SignerError, sign_claims


class CheckpointInvalid(Exception):
    """A checkpoint whose signature, header or claims do not hold."""


@dataclass(frozen=True)
class SignedCheckpoint:
    seq: int
    hash: str
    jws: str


def sign_checkpoint(
    signer: Signer, issuer: str, seq: int, entry_hash: str, now: datetime
) -> SignedCheckpoint:
    claims = {"iss": issuer, "iat": int(now.timestamp()), "seq": seq, "hash": entry_hash}
    return SignedCheckpoint(seq, entry_hash, sign_claims(signer, AUDIT_CHECKPOINT_TYP, claims))


def trusted_keys(keys: KeyStore, signer: Signer) -> dict[str, ec.EllipticCurvePublicKey]:
    """Every key a checkpoint of this server may carry, by ``kid``.

    The key store's ``license`` keys, retired ones included (a checkpoint stays valid after its
    key was rotated), and the signer's own key: with PKCS#11 it lives in the token, which the key
    store does not know of. Never a key read from the database, which is what is being checked.
    """
    trusted = {
        key.kid: key.public_key
        for key in keys.all_keys()
        if key.purpose == KEY_PURPOSE_LICENSE
        and isinstance(key.public_key, ec.EllipticCurvePublicKey)
    }
    try:
        handle = signer.current()
    except SignerError:
        # A token that cannot be reached now: its checkpoints then fail as signed by an unknown
        # key, which `audit verify` reports; never an exception out of a verification.
        return trusted
    trusted[handle.kid] = handle.public_key
    return trusted


def verify_checkpoint(
    trusted: Mapping[str, ec.EllipticCurvePublicKey], issuer: str, token: str
) -> SignedHead:
    """What a checkpoint signed, checked against the ``trusted`` keys."""
    try:
        return checkpoint_claims(token, trusted, issuer)
    except (jwt.InvalidTokenError, TypeError, ValueError, OverflowError, OSError) as exc:
        raise CheckpointInvalid(str(exc)) from exc
