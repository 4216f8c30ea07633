"""TOTP codes (RFC 6238 via pyotp) judged against the injected clock, and recovery codes.

A code is accepted in the current 30-second step or the one before or after it (clock drift),
and only for a step later than the last one accepted for the account, so a code, once used, is
refused however soon it is replayed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

import pyotp

#: Steps either side of now that a code may belong to.
VALID_WINDOW = 1
RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
_RECOVERY_LENGTH = 16  # about 79 bits


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, email: str, issuer: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer)


def matching_step(secret: str, code: str, now: datetime, after_step: int | None) -> int | None:
    """The time step ``code`` belongs to, if it is valid now and later than ``after_step``."""
    code = code.strip().replace(" ", "")
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        if after_step is not None and step <= after_step:
            continue
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def new_recovery_codes() -> list[str]:
    def one() -> str:
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH))
        return f"{raw[:4]}-{raw[4:8]}-{raw[8:12]}-{raw[12:]}"

    return [one() for _ in range(RECOVERY_CODES)]


def recovery_digest(code: str) -> str:
    """How a recovery code is stored: SHA-256 of its letters, case and dashes ignored."""
    normal = code.strip().lower().replace("-", "").replace(" ", "")
    return hashlib.sha256(normal.encode("utf-8")).hexdigest()
