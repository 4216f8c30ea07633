"""The default signer: the ``license`` key pair in the server's 0600 key files."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from agent.protocol import KEY_PURPOSE_LICENSE

from ..keys import KeyStore
from . import SignerError


def der_to_raw(signature: bytes) -> bytes:
    """An ECDSA P-256 signature in DER (what ``cryptography`` returns) as JWS's ``r || s``."""
    r, s = decode_dss_signature(signature)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@dataclass(frozen=True)
class FileKeyHandle:
    kid: str
    private_key: ec.EllipticCurvePrivateKey

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.private_key.public_key()

    def sign(self, data: bytes) -> bytes:
        return der_to_raw(self.private_key.sign(data, ec.ECDSA(hashes.SHA256())))


class FileSigner:
    """Signs with the active ``license`` key of a :class:`KeyStore` (reused, not a second copy),
    so that ``tgflow-server keys rotate`` applies to license files at once."""

    def __init__(self, keys: KeyStore) -> None:
        self._keys = keys

    def current(self) -> FileKeyHandle:
        key = self._keys.signing_key(KEY_PURPOSE_LICENSE)
        if not isinstance(key.private_key, ec.EllipticCurvePrivateKey):
            raise SignerError(f"the license key {key.kid} is not an EC key")
        return FileKeyHandle(kid=key.kid, private_key=key.private_key)
