"""Checks of configuration values (API URL, key pins), light enough for settings validation.

No network, no cryptography: the desktop validates ``settings.ini`` with these before anything
heavy is imported. :mod:`agent.client` and :mod:`agent.key_pins` re-export them.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from typing import Final
from urllib.parse import urlsplit

#: Prefix of a public-key pin (the same as ``agent.protocol.PIN_PREFIX``; a test holds them equal).
PIN_PREFIX: Final = "sha256/"
_PIN_DIGEST_BYTES: Final = 32
_LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost."})


class InsecureApiUrl(ValueError):
    """The API URL would send credentials in clear (``http://`` to a host that is not loopback)."""


class InvalidPin(ValueError):
    """A configured public-key pin is not of the form ``sha256/<base64url, 32 bytes>``."""

    def __init__(self, value: str, reason: str) -> None:
        """Name the offending ``value`` and why it was refused."""
        super().__init__(f"invalid public-key pin {value!r}: {reason}")
        self.value = value
        self.reason = reason


def check_api_url(api_base_url: str) -> str:
    """Return ``api_base_url`` without a trailing slash, or raise :class:`InsecureApiUrl`.

    ``https://`` is accepted; ``http://`` only for a loopback host (``localhost``, 127.0.0.0/8,
    ``::1``), so that credentials and tokens never cross a network in clear.
    """
    parts = urlsplit(api_base_url)
    host = (parts.hostname or "").lower()
    if not host:
        raise InsecureApiUrl(f"the API URL {api_base_url!r} names no host")
    if parts.scheme == "https":
        return api_base_url.rstrip("/")
    if parts.scheme != "http":
        raise InsecureApiUrl(f"the API URL {api_base_url!r} must use https://")
    loopback = host in _LOOPBACK_NAMES
    if not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if not loopback:
        raise InsecureApiUrl(
            f"refusing the plain http:// API URL {api_base_url!r}: credentials would cross the "
            "network in clear; use https:// (http:// is allowed for a loopback host only)"
        )
    return api_base_url.rstrip("/")


def validate_pin(value: str) -> str:
    """Return ``value`` if it is a well-formed pin; raise :class:`InvalidPin` otherwise."""
    if not value.startswith(PIN_PREFIX):
        raise InvalidPin(value, f"a pin starts with {PIN_PREFIX!r}")
    encoded = value[len(PIN_PREFIX) :]
    if "=" in encoded:
        raise InvalidPin(value, "base64url without padding expected ('=' found)")
    if not encoded or any(not (c.isascii() and (c.isalnum() or c in "-_")) for c in encoded):
        raise InvalidPin(value, "the digest must be base64url (A-Z, a-z, 0-9, '-', '_')")
    try:
        digest = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidPin(value, "the digest is not valid base64url") from exc
    if len(digest) != _PIN_DIGEST_BYTES:
        raise InvalidPin(
            value, f"a SHA-256 digest has {_PIN_DIGEST_BYTES} bytes, this one has {len(digest)}"
        )
    if base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii") != encoded:
        # Non-canonical trailing bits: the same digest would have two spellings.
        raise InvalidPin(value, "the digest is not canonical base64url")
    return value
