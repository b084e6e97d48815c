"""The rotator's error hierarchy.

Every error the rotator raises on purpose derives from ``RotatorError`` and carries context
(application, step, integration, service) as structured fields, never a secret value::

    RotatorError
    ├── ConfigurationError        a setting is missing or invalid (names the setting, never its value)
    ├── ValidationError           input refused; ``problems`` names each field and its allowed range
    ├── NotFoundError             the application (or another resource) does not exist
    ├── ConflictError             optimistic concurrency lost (stale ETag) or a duplicate create
    ├── PayloadTooLargeError      a request body above the accepted size
    ├── PermissionMissingError    the rotator's identity lacks a permission a feature needs (names it)
    ├── AuthenticationError       an API caller without a valid credential (401)
    ├── AccessDeniedError         an API caller without the app role the API needs (403)
    ├── ExternalServiceError      a dependency (Graph, Key Vault, DevOps, ...) answered with an error
    │   ├── ThrottledError        429 / throttling; ``retry_after`` seconds when the service said so
    │   └── TransientServiceError 5xx, timeouts, connection errors: worth retrying
    └── RotationError             a rotation step failed for a reason retrying will not fix

HTTP status codes are chosen only at the API edge (``shared.api.problems``); the engine and the
adapters never think in HTTP statuses of their own API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class RotatorError(Exception):
    """Base class. ``context`` holds non-secret details for logs and the rotation log."""

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = {key: value for key, value in context.items() if value is not None}

    def __str__(self) -> str:
        if not self.context:
            return self.message
        details = ", ".join(f"{key}={value}" for key, value in sorted(self.context.items()))
        return f"{self.message} ({details})"


class ConfigurationError(RotatorError):
    """A setting is missing or invalid. The message names the setting, never echoes its value."""


@dataclass(frozen=True)
class FieldProblem:
    """One reason input was refused: the JSON path of the field and what is allowed there."""

    field: str
    message: str
    allowed: str | None = None

    def as_dict(self) -> dict[str, str]:
        result = {"field": self.field, "message": self.message}
        if self.allowed is not None:
            result["allowed"] = self.allowed
        return result


class ValidationError(RotatorError):
    """Input was refused. Nothing has been written when this is raised."""

    def __init__(self, message: str, problems: list[FieldProblem] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class NotFoundError(RotatorError):
    """The named resource does not exist."""


class ConflictError(RotatorError):
    """Another writer changed the resource first (stale ETag), or it already exists."""


class PayloadTooLargeError(RotatorError):
    """The request body is larger than the API accepts."""


class PermissionMissingError(RotatorError):
    """The rotator's own identity may not do what a read-only feature needs (a picker, discovery,
    sign-in evidence). ``permission`` names what to grant (a Graph permission such as
    ``AuditLog.Read.All``, or an Azure role and its scope); the API answers 403 with it."""

    def __init__(self, message: str, *, permission: str, service: str, **context: Any) -> None:
        super().__init__(message, permission=permission, service=service, **context)
        self.permission = permission
        self.service = service


class AuthenticationError(RotatorError):
    """An API call without a valid credential. ``error`` is RFC 6750's code for the
    ``WWW-Authenticate`` challenge (``invalid_token``), None when no credential was sent."""

    def __init__(self, message: str, *, error: str | None = None) -> None:
        super().__init__(message)
        self.error = error


class AccessDeniedError(RotatorError):
    """An authenticated API caller without the app role the API needs."""


class ExternalServiceError(RotatorError):
    """A dependency answered with an error.

    ``status`` is the dependency's HTTP status (if any), ``code`` its error code (e.g. Graph's
    ``CredentialInvalidLifetimeAsPerAppPolicy``).
    """

    def __init__(
        self,
        message: str,
        *,
        service: str,
        status: int | None = None,
        code: str | None = None,
        **context: Any,
    ) -> None:
        super().__init__(message, service=service, status=status, code=code, **context)
        self.service = service
        self.status = status
        self.code = code


class ThrottledError(ExternalServiceError):
    """The dependency throttled us. ``retry_after`` is its advice in seconds, if it gave one."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class TransientServiceError(ExternalServiceError):
    """A failure that is likely to pass: 5xx, timeout, connection reset."""


class RotationError(RotatorError):
    """A rotation step failed in a way retrying the same job will not fix."""

    def __init__(self, message: str, *, step: str, code: str | None = None, **context: Any) -> None:
        super().__init__(message, step=step, code=code, **context)
        self.step = step
        self.code = code


def is_retryable(error: BaseException) -> bool:
    """Whether an operation that failed with ``error`` is worth trying again."""
    return isinstance(error, ThrottledError | TransientServiceError)


def outcome_unknown(error: BaseException) -> bool:
    """Whether a write that failed with ``error`` may still have been, or be, applied: a timeout, a
    5xx or an error nothing translated. A refusal (4xx, 429) was not applied."""
    return isinstance(error, TransientServiceError) or not isinstance(error, RotatorError)
