"""Offline verification of an audit-log export (docs/licensing.md, "Verifying an export").

A third party holds the export (JSON lines from ``GET /staff/audit/export`` or
``tgflow-server audit export``) and the server's public ``license`` key, pinned by its
``sha256/`` pin. Nothing else is trusted: the export's checkpoints must be ES256 JWS by a pinned
key, each checkpoint must match the chain, and the chain must hash and link from the first entry
to the last. Usage::

    python -m agent.audit_verify export.jsonl --jwks jwks.json --pin sha256/...

Exit status 0 when the export holds, 1 when it is broken (the first broken entry is named), 2
when the input cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from agent.protocol import (
    AUDIT_CHECKPOINT_ALG,
    AUDIT_CHECKPOINT_TYP,
    AUDIT_EXPORT_FORMAT,
    AuditVerdict,
    audit_chain_verdict,
    audit_time,
    jwk_thumbprint,
    public_key_pin,
)


class ExportUnreadable(Exception):
    """The export or the keys cannot be read at all (not a verdict on the log)."""


def pinned_keys(
    jwks: Mapping[str, Any], pins: Iterable[str]
) -> dict[str, ec.EllipticCurvePublicKey]:
    """The P-256 keys of ``jwks`` whose pin is in ``pins``, by ``kid``; any other key is ignored."""
    wanted = set(pins)
    keys: dict[str, ec.EllipticCurvePublicKey] = {}
    for entry in jwks.get("keys", []):
        if not isinstance(entry, Mapping) or entry.get("kty") != "EC" or "d" in entry:
            continue
        try:
            key = ECAlgorithm.from_jwk(json.dumps(dict(entry)))
            kid = jwk_thumbprint(entry)
        except (jwt.InvalidKeyError, KeyError, TypeError, ValueError):
            continue
        if (
            isinstance(key, ec.EllipticCurvePublicKey)
            and isinstance(key.curve, ec.SECP256R1)
            and entry.get("kid") == kid
            and public_key_pin(key) in wanted
        ):
            keys[kid] = key
    return keys


@dataclass(frozen=True)
class SignedHead:
    """What a checkpoint signed: "entry ``seq`` has this ``hash``", at ``signed_at`` (``iat``)."""

    seq: int
    hash: str
    signed_at: datetime


def checkpoint_claims(
    token: str, keys: Mapping[str, ec.EllipticCurvePublicKey], issuer: str
) -> SignedHead:
    """What an audit checkpoint signed, checked against ``keys`` (by ``kid``).

    Raises :class:`jwt.InvalidTokenError` (or ``TypeError``/``ValueError`` for odd claims) when
    the header is not ES256 with the checkpoint ``typ``, the ``kid`` is not one of ``keys``, or
    the signature, the issuer or the claims do not hold. The server's ``audit verify`` uses it
    too, so both judge a checkpoint by the same rules.
    """
    header = jwt.get_unverified_header(token)
    if header.get("alg") != AUDIT_CHECKPOINT_ALG or header.get("typ") != AUDIT_CHECKPOINT_TYP:
        raise jwt.InvalidTokenError("not an ES256 audit checkpoint")
    key = keys.get(str(header.get("kid")))
    if key is None:
        raise jwt.InvalidTokenError(f"signed by a key that is not trusted ({header.get('kid')})")
    claims = jwt.decode(
        token,
        key,
        algorithms=[AUDIT_CHECKPOINT_ALG],
        issuer=issuer,
        options={"require": ["iss", "iat", "seq", "hash"], "verify_iat": False},
    )
    seq, entry_hash, iat = claims["seq"], claims["hash"], claims["iat"]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (seq, iat)) or not (
        isinstance(entry_hash, str)
    ):
        raise jwt.InvalidTokenError("the checkpoint's seq, hash or iat has the wrong type")
    return SignedHead(seq, entry_hash, datetime.fromtimestamp(iat, UTC))


def verify_export(
    lines: Iterable[str], keys: Mapping[str, ec.EllipticCurvePublicKey]
) -> AuditVerdict:
    """Check an export against pinned ``keys`` (see :func:`pinned_keys`).

    An export with no valid checkpoint is refused: without a signature, a rewritten log whose
    hashes were all recomputed would pass.
    """
    records = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError as exc:
                raise ExportUnreadable(f"line {number} is not JSON: {exc}") from exc
    if not records or records[0].get("type") != "header":
        raise ExportUnreadable("the export has no header line")
    header = records[0]
    if header.get("format") != AUDIT_EXPORT_FORMAT:
        raise ExportUnreadable(f"unknown export format {header.get('format')!r}")
    entries = [r for r in records[1:] if r.get("type") == "entry"]
    signed: dict[int, str] = {}
    signed_at: dict[int, datetime] = {}
    for record in records[1:]:
        if record.get("type") != "checkpoint":
            continue
        try:
            head = checkpoint_claims(str(record.get("jws")), keys, str(header.get("issuer")))
        except (jwt.InvalidTokenError, TypeError, ValueError, OverflowError, OSError) as exc:
            return AuditVerdict(
                0,
                None,
                None,
                0,
                broken_seq=record.get("seq"),
                reason=f"checkpoint {record.get('seq')}: {exc}",
            )
        signed[head.seq] = head.hash
        signed_at[head.seq] = head.signed_at
    if not signed:
        return AuditVerdict(0, None, None, 0, reason="no checkpoint signed by a pinned key")
    from_seq = int(header.get("from_seq", 1))
    verdict = audit_chain_verdict(
        entries,
        signed,
        first_seq=1 if from_seq == 1 else None,
    ).with_last_checkpoint(signed_at)
    if verdict.ok and verdict.unanchored:
        return replace(
            verdict,
            broken_seq=verdict.head_seq,
            reason=f"the last {verdict.unanchored} entries are not covered by a checkpoint",
        )
    return verdict


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.audit_verify", description=__doc__)
    parser.add_argument("export", type=Path, help="the JSON-lines export")
    parser.add_argument("--jwks", type=Path, required=True, help="the server's JWKS (a file)")
    parser.add_argument(
        "--pin", action="append", required=True, help="sha256/ pin of a trusted license key"
    )
    args = parser.parse_args(argv)
    try:
        jwks = json.loads(args.jwks.read_text(encoding="utf-8"))
        keys = pinned_keys(jwks, args.pin)
        with args.export.open(encoding="utf-8") as lines:
            verdict = verify_export(lines, keys)
    except (OSError, ValueError, ExportUnreadable) as exc:
        print(f"cannot verify: {exc}", file=sys.stderr)
        return 2
    if not verdict.ok:
        print(f"BROKEN at entry {verdict.broken_seq}: {verdict.reason}", file=sys.stderr)
        return 1
    print(f"intact: {verdict.entries} entries, head {verdict.head_seq} {verdict.head_hash}")
    if verdict.last_checkpoint_at is not None:
        print(
            f"last checkpoint: entry {verdict.last_checkpoint_seq}, signed "
            f"{audit_time(verdict.last_checkpoint_at)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
