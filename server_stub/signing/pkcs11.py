"""The ``license`` key in a PKCS#11 token (an HSM, or SoftHSM2 in tests) via python-pkcs11.

The private key never leaves the token: the digest is computed here (SHA-256) and the token signs
it with ``CKM_ECDSA``, which every PKCS#11 token with EC keys implements and whose output is
already the raw ``r || s`` that JWS wants. The token holds one P-256 key pair under one label
(``CKA_LABEL``) for both halves; the ``kid`` is the RFC 7638 thumbprint of its public half, so a
verifier cannot tell an HSM-signed document from a file-signed one.

The constructor opens the token, finds the key and signs a probe that it verifies with the public
key: a signer that is configured but cannot sign fails at start, not at the first license issued.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from agent.protocol import jwk_thumbprint

from ..keys import KeyStore, public_jwk
from . import Signer, SignerError
from .file import FileSigner

if TYPE_CHECKING:
    from ..config import Settings

_PROBE = b"tgflow pkcs11 signer probe"


def _ec_point(value: bytes) -> bytes:
    """CKA_EC_POINT is a DER OCTET STRING around the point; a few tokens return the bare point."""
    if len(value) == 67 and value[0] == 0x04 and value[1] == 65:
        return value[2:]
    return value


class Pkcs11Signer:
    """Signs in a PKCS#11 token; thread-safe (one signature at a time, one session each)."""

    def __init__(self, module: Path, token_label: str, key_label: str, pin: str) -> None:
        import pkcs11
        from pkcs11 import Attribute, KeyType, ObjectClass

        if not Path(module).is_file():
            raise SignerError(f"PKCS#11 module {module} does not exist")
        self._lock = threading.Lock()
        self._pin = pin
        self._key_label = key_label
        try:
            self._token = pkcs11.lib(os.fspath(module)).get_token(token_label=token_label)
            with self._token.open(user_pin=pin) as session:
                public = session.get_key(
                    object_class=ObjectClass.PUBLIC_KEY, key_type=KeyType.EC, label=key_label
                )
                point = _ec_point(bytes(public[Attribute.EC_POINT]))
                # Finding the private half now makes a missing one a start-up error.
                session.get_key(
                    object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC, label=key_label
                )
        except pkcs11.NoSuchToken as exc:
            raise SignerError(f"no PKCS#11 token labelled {token_label!r} in {module}") from exc
        except pkcs11.PinIncorrect as exc:
            raise SignerError(f"the PIN of PKCS#11 token {token_label!r} is wrong") from exc
        except pkcs11.NoSuchKey as exc:
            raise SignerError(
                f"PKCS#11 token {token_label!r} holds no EC key pair labelled {key_label!r}"
            ) from exc
        except (pkcs11.PKCS11Error, RuntimeError, OSError) as exc:
            raise SignerError(f"cannot use PKCS#11 token {token_label!r}: {exc!r}") from exc
        try:
            self._public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        except ValueError as exc:
            raise SignerError(f"PKCS#11 key {key_label!r} is not a P-256 key") from exc
        self._kid = jwk_thumbprint(public_jwk(self._public))
        probe = self.sign(_PROBE)
        try:
            self._public.verify(_raw_to_der(probe), _PROBE, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature as exc:
            raise SignerError(
                f"PKCS#11 key {key_label!r}: the private half does not match the public one"
            ) from exc

    # --- SigningHandle (the key in a token is fixed, so the signer is its own handle) -----------

    def current(self) -> Pkcs11Signer:
        return self

    @property
    def kid(self) -> str:
        return self._kid

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    def sign(self, data: bytes) -> bytes:
        import pkcs11
        from pkcs11 import KeyType, Mechanism, ObjectClass

        digest = hashlib.sha256(data).digest()
        try:
            with self._lock, self._token.open(user_pin=self._pin) as session:
                private = session.get_key(
                    object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC, label=self._key_label
                )
                if not isinstance(private, pkcs11.SignMixin):
                    raise SignerError(f"PKCS#11 key {self._key_label!r} cannot sign")
                signature = bytes(private.sign(digest, mechanism=Mechanism.ECDSA))
        except pkcs11.PKCS11Error as exc:
            raise SignerError(f"PKCS#11 signing failed: {exc!r}") from exc
        if len(signature) != 64:
            raise SignerError(f"PKCS#11 returned a {len(signature)}-byte ECDSA signature")
        return signature


def _raw_to_der(signature: bytes) -> bytes:
    return encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )


def signer_from_settings(settings: Settings, keys: KeyStore) -> Signer:
    """The signer the settings select: the key file (default) or PKCS#11; never a fallback."""
    if settings.license_signer == "file":
        return FileSigner(keys)
    # The settings validator guarantees all four are set when the signer is pkcs11.
    assert settings.pkcs11_module is not None and settings.pkcs11_token_label is not None
    assert settings.pkcs11_key_label is not None and settings.pkcs11_pin is not None
    return Pkcs11Signer(
        settings.pkcs11_module,
        settings.pkcs11_token_label,
        settings.pkcs11_key_label,
        settings.pkcs11_pin.get_secret_value(),
    )
