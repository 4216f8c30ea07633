"""The agent's typed errors.

Every error the agent raises on purpose derives from :class:`LicenseError`, so a caller can catch
the whole family at once and still tell the cases apart. A class whose ``code`` is set stands for
the problem-details ``code`` of the same name on the wire; ``error_class_for`` maps a code back to
its class (``ERROR_BY_CODE``). :class:`InvalidPin` is a configuration error and derives from
``ValueError`` instead.
"""

from __future__ import annotations

from typing import ClassVar

# InvalidPin lives with the other configuration checks; it is re-exported here, its old home.
from agent.config_checks import InvalidPin as InvalidPin
from agent.protocol import ErrorCode


class LicenseError(Exception):
    """Base of every licensing failure the agent reports."""

    #: The problem-details code this error stands for, where there is one.
    code: ClassVar[ErrorCode | None] = None

    def __init__(self, reason: str) -> None:
        """Carry a human-readable ``reason`` (also the exception's message)."""
        super().__init__(reason)
        self.reason = reason


# --- tokens -------------------------------------------------------------------------------------


class TokenRejected(LicenseError):
    """A token (access token or lease) failed verification; subclasses say why."""

    code = ErrorCode.TOKEN_INVALID


class TokenInvalid(TokenRejected):
    """Malformed, badly signed, of the wrong algorithm, issuer or audience, or not valid yet."""


class TokenExpired(TokenRejected):
    """Correctly signed, but past its ``exp`` (beyond the leeway)."""

    code = ErrorCode.TOKEN_EXPIRED


class UntrustedKey(TokenRejected):
    """Signed (or claimed to be signed) by a key that is not pinned, or not known at all."""


class UnpinnedKey(UntrustedKey):
    """The server published the signing key, but its pin is not configured: a settings problem
    (``jwt_public_key_fingerprint``), not a session one. ``pin`` is what the key's pin would be,
    for comparison with ``tgflow-server keys pins``; it is never trusted from here."""

    def __init__(self, kid: str, pin: str, alg: str) -> None:
        """Name the published key (``kid``, ``alg``) and the pin it would need."""
        super().__init__(
            f"the server's {alg} signing key {kid} (pin {pin}) is not among the configured pins"
        )
        self.kid = kid
        self.pin = pin
        self.alg = alg


class DeviceMismatch(TokenRejected):
    """A genuine lease, but issued for another device."""


# --- server answers and local conditions --------------------------------------------------------


class InvalidCredentials(LicenseError):
    """The e-mail and password do not match an account."""

    code = ErrorCode.INVALID_CREDENTIALS


class DeviceLimit(LicenseError):
    """The account already uses every device its plan allows."""

    code = ErrorCode.DEVICE_LIMIT


class QuotaExceeded(LicenseError):
    """Not enough quota left for the reservation; nothing was held."""

    code = ErrorCode.QUOTA_EXCEEDED


class LicenseInactive(LicenseError):
    """The account has no active license."""

    code = ErrorCode.LICENSE_INACTIVE


class NotFound(LicenseError):
    """The server does not know the object named (for example a reservation of another account)."""

    code = ErrorCode.NOT_FOUND


class IdempotencyConflict(LicenseError):
    """A ``correlation_id`` was reused with a different request body; nothing was reserved."""

    code = ErrorCode.IDEMPOTENCY_CONFLICT


class ReservationConflict(LicenseError):
    """The reservation was already settled otherwise (committed, or rolled back)."""

    code = ErrorCode.RESERVATION_CONFLICT


class ReservationExpired(LicenseError):
    """The reservation outlived its TTL before it was committed; the server released its hold."""

    code = ErrorCode.RESERVATION_EXPIRED


class UnexpectedResponse(LicenseError):
    """The server answered with something the agent cannot act on (5xx, unknown code, bad body)."""

    def __init__(
        self,
        reason: str,
        status: int | None = None,
        *,
        problem_code: str | None = None,
        problem_reason: str | None = None,
    ) -> None:
        """Carry the ``reason`` and, where there were one, the HTTP ``status``, the
        problem-details ``problem_code`` (a code without a class of its own) and the problem's
        ``reason`` extension (which of the code's causes: ``purchase_not_paid``, …)."""
        super().__init__(reason)
        self.status = status
        self.problem_code = problem_code
        self.problem_reason = problem_reason


class Offline(LicenseError):
    """The server cannot be reached and no valid offline lease covers the request."""


class TamperDetected(LicenseError):
    """The local state cannot be trusted (for example the clock ran back too far)."""


# --- license files (agent.licensing) -------------------------------------------------------------


class LicenseFileRejected(LicenseError):
    """A genuine license file that does not let this installation work; subclasses say why.

    A file that is not genuine (bad signature, unpinned key, wrong ``typ``) raises a
    :class:`TokenRejected` instead, like any other signed document.
    """


class WrongLicenseKey(LicenseFileRejected):
    """The file is encrypted and the license key given does not open it (or is not its key)."""


class LicenseFileExpired(LicenseFileRejected):
    """Past the license's validity and its grace (or not valid yet)."""


class LicenseFileNotYetValid(LicenseFileExpired):
    """Before the license's ``nbf`` (its validity has not started)."""


class LicenseFileOutdated(LicenseFileRejected):
    """An older ``file_version`` of the license already active: an upgrade is never undone."""


class DomainMismatch(LicenseFileRejected):
    """The license is for another install domain."""


class VersionNotCovered(LicenseFileRejected):
    """The license does not cover this version of the product."""


class LicenseRevoked(LicenseFileRejected):
    """The license (or this version of its file) is on the newest revocation list seen."""


class ActivationRequired(LicenseFileRejected):
    """The server freed this machine's activation (dead, replaced or deactivated by staff):
    activate again (online) before the license is used here."""


class NoOfflineLease(Offline):
    """No usable lease is stored locally (never fetched, cleared, or the file is unreadable)."""


class SecretStoreError(LicenseError):
    """The refresh token could not be read, written or removed (keyring or file)."""


# --- configuration ------------------------------------------------------------------------------


#: The error class standing for each problem-details ``code`` the agent knows how to report.
ERROR_BY_CODE: dict[ErrorCode, type[LicenseError]] = {
    ErrorCode.TOKEN_INVALID: TokenInvalid,
    ErrorCode.TOKEN_EXPIRED: TokenExpired,
    ErrorCode.INVALID_CREDENTIALS: InvalidCredentials,
    ErrorCode.DEVICE_LIMIT: DeviceLimit,
    ErrorCode.QUOTA_EXCEEDED: QuotaExceeded,
    ErrorCode.LICENSE_INACTIVE: LicenseInactive,
    ErrorCode.NOT_FOUND: NotFound,
    ErrorCode.IDEMPOTENCY_CONFLICT: IdempotencyConflict,
    ErrorCode.RESERVATION_CONFLICT: ReservationConflict,
    ErrorCode.RESERVATION_EXPIRED: ReservationExpired,
}


def error_class_for(code: ErrorCode | str) -> type[LicenseError] | None:
    """The error class standing for a problem-details ``code``, or ``None`` for other codes."""
    try:
        return ERROR_BY_CODE.get(ErrorCode(code))
    except ValueError:
        return None
