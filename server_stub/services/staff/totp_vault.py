"""Staff TOTP secrets at rest: AES-256-GCM under the server's TOTP key, bound to the staff id.

The key is 32 random bytes: ``TGFLOW_TOTP_KEY`` (base64) when set — for machines that share no
data dir — else ``<data dir>/keys/totp.key`` (base64, 0600) beside the signing keys, made at the
first start. Every process of one deployment must hold the same key (docs/licensing.md).

A stored secret (``staff.totp_secret_sealed``) is ``v1:`` + base64url(nonce ‖ ciphertext ‖ tag),
the associated data naming the staff id: a secret copied onto another account does not open.
The vault fails closed: with no usable key, or a key that does not open a secret,
:meth:`TotpVault.open` and :meth:`TotpVault.seal` raise :class:`TotpKeyUnavailable` (503
``service_unavailable``) and the server log says why; a code is never judged against anything
but the decrypted secret.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ...config import Settings
from ...errors import ServiceUnavailable
from ...models import Staff

log = logging.getLogger("tgflow.server.staff")

#: Prefix of an encrypted secret; a base32 TOTP secret never holds a ``:``.
SEALED_PREFIX = "v1:"
KEY_FILE = "totp.key"
_NONCE_BYTES = 12
_AAD = b"tgflow staff totp secret v1\x00"
_REFUSED = (
    "two-factor authentication is unavailable: the server cannot read its TOTP key; "
    "an Admin must restore it (see the server log)"
)


class TotpKeyUnavailable(ServiceUnavailable):
    """No TOTP key, or not the one the secrets were sealed with: TOTP is refused, not skipped."""

    title = "Two-factor authentication unavailable"


def decode_key(text: str) -> bytes | None:
    """A 32-byte key from its base64 text (standard or URL-safe, padded or not); else ``None``."""
    raw = text.strip().replace("-", "+").replace("_", "/")
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return key if len(key) == 32 else None


class TotpVault:
    """Seals and opens TOTP secrets; holds the key, or why there is none (``problem``)."""

    def __init__(self, key: bytes | None, source: str, problem: str | None = None) -> None:
        self._aead = AESGCM(key) if key is not None else None
        #: Where the key comes from (for messages): the variable's name or the file's path.
        self.source = source
        self.problem = problem if key is None else None

    @property
    def usable(self) -> bool:
        return self._aead is not None

    def _cipher(self) -> AESGCM:
        if self._aead is None:
            log.error("TOTP refused: %s", self.problem)
            raise TotpKeyUnavailable(_REFUSED)
        return self._aead

    def seal(self, staff_id: str, secret: str) -> str:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._cipher().encrypt(nonce, secret.encode("ascii"), _aad(staff_id))
        return SEALED_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii").rstrip("=")

    def secret_of(self, staff: Staff) -> str | None:
        """The plain secret of ``staff``'s enrolment (``None``: none); fails closed."""
        if staff.totp_secret is not None:
            # The start-up step sealed every plain secret; one now was written behind the
            # server's back (or by an older process still running, or with no key at start).
            log.error("TOTP refused: staff %s has an unencrypted TOTP secret", staff.id)
            raise TotpKeyUnavailable(_REFUSED)
        if staff.totp_secret_sealed is None:
            return None
        return self.open(staff.id, staff.totp_secret_sealed)

    def open(self, staff_id: str, stored: str) -> str:
        """The plain secret of ``staff_id``; :class:`TotpKeyUnavailable` when it cannot be."""
        cipher = self._cipher()
        if not stored.startswith(SEALED_PREFIX):
            log.error("TOTP refused: the TOTP secret of staff %s has an unknown form", staff_id)
            raise TotpKeyUnavailable(_REFUSED)
        body = stored[len(SEALED_PREFIX) :]
        try:
            blob = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            plain = cipher.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], _aad(staff_id))
            return plain.decode("ascii")
        except (InvalidTag, binascii.Error, ValueError) as exc:
            log.error(
                "TOTP refused: the TOTP secret of staff %s does not open with the key from %s "
                "(a different key, or the secret was edited or moved from another account)",
                staff_id,
                self.source,
            )
            raise TotpKeyUnavailable(_REFUSED) from exc


def _aad(staff_id: str) -> bytes:
    return _AAD + staff_id.encode("utf-8")


def open_vault(settings: Settings, *, create: bool, sealed_secrets: Callable[[], int]) -> TotpVault:
    """The vault of these settings: the variable's key, else the key file's.

    The file is made only with ``create`` and only while no sealed secret exists: a key made
    anew would not open the secrets of the lost one, so a missing file then refuses TOTP (and
    says so) instead of hiding the loss behind a fresh key.
    """
    if settings.totp_key is not None:
        key = decode_key(settings.totp_key.get_secret_value())
        if key is None:
            return _unusable("TGFLOW_TOTP_KEY", "TGFLOW_TOTP_KEY is not base64 of 32 bytes")
        return TotpVault(key, "TGFLOW_TOTP_KEY")
    path = settings.data_dir / "keys" / KEY_FILE
    source = str(path)
    try:
        if not path.exists():
            if not create:
                # A read-only command on a data dir no server of this version has run on: said
                # only if someone asks for TOTP, not at every command.
                return TotpVault(None, source, f"{path} does not exist (no server has made it)")
            count = sealed_secrets()
            if count:
                return _unusable(
                    source,
                    f"{path} is missing but {count} TOTP secrets are encrypted: restore the "
                    "file from a backup (or set TGFLOW_TOTP_KEY), or reset those accounts' 2FA",
                )
            _create_key_file(path)
        key = decode_key(path.read_text(encoding="ascii"))
    except (OSError, UnicodeDecodeError) as exc:
        return _unusable(source, f"cannot read {path}: {exc.__class__.__name__}")
    if key is None:
        return _unusable(source, f"{path} does not hold base64 of 32 bytes")
    return TotpVault(key, source)


def _unusable(source: str, problem: str) -> TotpVault:
    log.error("staff TOTP is unavailable: %s", problem)
    return TotpVault(None, source, problem)


def _create_key_file(path: Path) -> None:
    """Write a new key atomically: several processes starting at once end with one key."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = base64.b64encode(secrets.token_bytes(32)).decode("ascii") + "\n"
    temporary = path.with_name(f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(temporary, path)  # fails if another process made it first: theirs wins
            log.info("staff TOTP key created", extra={"path": str(path)})
        except FileExistsError:
            pass
    finally:
        temporary.unlink(missing_ok=True)
