"""Domain errors: each class maps to one problem-details ``code`` (RFC 9457)."""

from __future__ import annotations

from typing import Any, ClassVar

from agent.protocol import ERROR_STATUS, ErrorCode


class DomainError(Exception):
    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL_ERROR
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra

    @property
    def status(self) -> int:
        return ERROR_STATUS[self.code]


class ValidationFailed(DomainError):
    code = ErrorCode.VALIDATION_ERROR
    title = "Invalid request"


class InvalidCredentials(DomainError):
    code = ErrorCode.INVALID_CREDENTIALS
    title = "Invalid credentials"


class TotpRequired(DomainError):
    code = ErrorCode.TOTP_REQUIRED
    title = "One-time code required"


class TokenInvalid(DomainError):
    code = ErrorCode.TOKEN_INVALID
    title = "Invalid token"


class TokenExpired(DomainError):
    code = ErrorCode.TOKEN_EXPIRED
    title = "Token expired"


class Forbidden(DomainError):
    code = ErrorCode.FORBIDDEN
    title = "Forbidden"


class DeviceLimit(DomainError):
    code = ErrorCode.DEVICE_LIMIT
    title = "Device limit reached"


class LicenseInactive(DomainError):
    code = ErrorCode.LICENSE_INACTIVE
    title = "License inactive"


class NotFound(DomainError):
    code = ErrorCode.NOT_FOUND
    title = "Not found"


class AlreadyExists(DomainError):
    code = ErrorCode.ALREADY_EXISTS
    title = "Already exists"


class IdempotencyConflict(DomainError):
    code = ErrorCode.IDEMPOTENCY_CONFLICT
    title = "Idempotency conflict"


class ReservationConflict(DomainError):
    code = ErrorCode.RESERVATION_CONFLICT
    title = "Reservation already settled otherwise"


class ReservationExpired(DomainError):
    code = ErrorCode.RESERVATION_EXPIRED
    title = "Reservation expired"


class QuotaExceeded(DomainError):
    code = ErrorCode.QUOTA_EXCEEDED
    title = "Quota exceeded"


class InsufficientPoints(DomainError):
    code = ErrorCode.INSUFFICIENT_POINTS
    title = "Not enough points"


class RateLimited(DomainError):
    code = ErrorCode.RATE_LIMITED
    title = "Too many requests"


class ServiceUnavailable(DomainError):
    code = ErrorCode.SERVICE_UNAVAILABLE
    title = "Service unavailable"
