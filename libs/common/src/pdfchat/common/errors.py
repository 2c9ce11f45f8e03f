"""Domain errors and their one translation to gRPC status codes.

Domain modules raise these; the server interceptor turns them into a status with the readable message.
Anything else becomes INTERNAL with a generic message (the details go to the log, never to the caller).
"""

from __future__ import annotations

import grpc


class PdfchatError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(PdfchatError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(PdfchatError):
    """Missing, and also another tenant's: the two must be indistinguishable."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(PdfchatError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(PdfchatError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(PdfchatError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(PdfchatError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unavailable(PdfchatError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(PdfchatError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class ResourceExhausted(PdfchatError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class PayloadTooLarge(InvalidArgument):
    """Input over a configured size limit (the gateway answers 413)."""


RETRY_AFTER_KEY = "retry-after-seconds"
PAYLOAD_TOO_LARGE_KEY = "x-pdfchat-too-large"
