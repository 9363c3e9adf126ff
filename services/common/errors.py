"""Domain errors shared by every service, and their mapping to gRPC status.

Domain code raises these; the call guard (services.common.guard) turns them into a
gRPC status with `google.rpc.Status` details: an `ErrorInfo` with an UPPER_SNAKE reason always, and a
`BadRequest` with one `FieldViolation` per bad field for invalid input. Messages are written for the
caller and must never contain personal data. The `message` (and each violation's `description`) is
English for developers; given the caller's language, the status also carries a `LocalizedMessage` with
the catalogue's text for the reason (services.common.catalogue; the generic text of the gRPC code for a
reason outside the contract), and each violation with a reason its own `localized_message`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from services.common import i18n

ERROR_DOMAIN = "covidtest.bluezone.vn"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: `field` is a path such as `samples[3].person.phone`."""

    field: str
    description: str
    reason: str = ""  # a covidtest.type.v1.ErrorReason name without prefix, e.g. FIELD_FORMAT_INVALID


class DomainError(Exception):
    """Base of every error a client is meant to see. Subclasses fix the gRPC code."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    rpc_code: int = code_pb2.UNKNOWN
    default_reason: str = "ERROR"

    def __init__(self, message: str, *, reason: str | None = None, metadata: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata = dict(metadata or {})

    def details(self) -> list:
        """The google.rpc detail messages carried in the status."""
        return [error_details_pb2.ErrorInfo(reason=self.reason, domain=ERROR_DOMAIN, metadata=self.metadata)]

    def to_rpc_status(self, language: str | None = None) -> status_pb2.Status:
        """The status the client is sent; with `language` ("vi" or "en") its texts in that language too."""
        status = status_pb2.Status(code=self.rpc_code, message=self.message)
        details = self.details()
        if language is not None:
            details = self._localized(details, language)
        for detail in details:
            packed = any_pb2.Any()
            packed.Pack(detail)
            status.details.append(packed)
        return status

    def _localized(self, details: list, language: str) -> list:
        """`details` with a LocalizedMessage for the error added, and one in each reasoned field violation."""
        locale = i18n.LOCALES[language]
        for detail in details:
            if isinstance(detail, error_details_pb2.BadRequest):
                for violation in detail.field_violations:
                    if violation.reason:
                        violation.localized_message.locale = locale
                        violation.localized_message.message = i18n.error_message(
                            violation.reason, self.grpc_code.name, language
                        )
        text = i18n.error_message(self.reason, self.grpc_code.name, language)
        return [*details, error_details_pb2.LocalizedMessage(locale=locale, message=text)]


class InvalidArgument(DomainError):
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    rpc_code = code_pb2.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"

    def __init__(self, message: str, violations: list[FieldViolation] | None = None, **kw):
        super().__init__(message, **kw)
        self.violations = list(violations or [])

    def details(self) -> list:
        out = super().details()
        if self.violations:
            out.append(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description, reason=v.reason
                        )
                        for v in self.violations
                    ]
                )
            )
        return out


class NotFound(DomainError):
    grpc_code = grpc.StatusCode.NOT_FOUND
    rpc_code = code_pb2.NOT_FOUND
    default_reason = "NOT_FOUND"


class AlreadyExists(DomainError):
    grpc_code = grpc.StatusCode.ALREADY_EXISTS
    rpc_code = code_pb2.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    rpc_code = code_pb2.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class PermissionDenied(DomainError):
    grpc_code = grpc.StatusCode.PERMISSION_DENIED
    rpc_code = code_pb2.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


class Unauthenticated(DomainError):
    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    rpc_code = code_pb2.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class OutOfRange(DomainError):
    grpc_code = grpc.StatusCode.OUT_OF_RANGE
    rpc_code = code_pb2.OUT_OF_RANGE
    default_reason = "OUT_OF_RANGE"


class ResourceExhausted(DomainError):
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    rpc_code = code_pb2.RESOURCE_EXHAUSTED
    default_reason = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, *, retry_after_s: float | None = None, **kw):
        super().__init__(message, **kw)
        self.retry_after_s = retry_after_s

    def details(self) -> list:
        out = super().details()
        if self.retry_after_s is not None:
            delay = duration_pb2.Duration()
            # Rounded up, at least 1 ms: a zero delay would tell the client to retry at once (and be refused).
            delay.FromMilliseconds(max(1, math.ceil(self.retry_after_s * 1000)))
            out.append(error_details_pb2.RetryInfo(retry_delay=delay))
        return out


class Unavailable(DomainError):
    grpc_code = grpc.StatusCode.UNAVAILABLE
    rpc_code = code_pb2.UNAVAILABLE
    default_reason = "STORAGE_UNAVAILABLE"


class Unimplemented(DomainError):
    grpc_code = grpc.StatusCode.UNIMPLEMENTED
    rpc_code = code_pb2.UNIMPLEMENTED
    default_reason = "NOT_IMPLEMENTED_YET"


class Internal(DomainError):
    """Never raised by domain code: what the call guard answers for an unexpected exception."""

    grpc_code = grpc.StatusCode.INTERNAL
    rpc_code = code_pb2.INTERNAL
    default_reason = "INTERNAL"

    def __init__(self, message: str, request_id: str):
        super().__init__(message, metadata={"request_id": request_id})
        self.request_id = request_id

    def details(self) -> list:
        return super().details() + [error_details_pb2.RequestInfo(request_id=self.request_id)]


def require(violations: list[FieldViolation], message: str = "the request has invalid fields") -> None:
    """Raise InvalidArgument carrying every collected violation, if there is any."""
    if violations:
        raise InvalidArgument(message, violations)
