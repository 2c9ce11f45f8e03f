"""The one translation from failures to HTTP: gRPC status -> HTTP status + problem+json (RFC 9457).

Services report failures as gRPC status codes with a readable message, and that message is shown to the
caller. INTERNAL and every code not in the table become a 500 with a generic message: stack traces and
internal details go to the log only. The same `Problem` feeds REST responses, SSE `error` events and
WebSocket `error` events.
"""

from __future__ import annotations

import http
import logging
import math
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
from starlette.responses import JSONResponse

from pdfchat.common.errors import PAYLOAD_TOO_LARGE_KEY, RETRY_AFTER_KEY, PayloadTooLarge, PdfchatError

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:pdfchat:problem:"

_BY_CODE: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
"""gRPC codes whose message is meant for the caller. Everything else is a 500 with a generic message."""

# Transport failures described by the gRPC library itself name internal addresses: not for callers.
_TRANSPORT_DETAILS = re.compile(r"failed to connect|ipv[46]:|unix:|socket closed|connection (refused|reset)", re.I)
_TOO_LARGE_MESSAGE = re.compile(r"too large|larger than|exceeds .*limit|over the .*limit", re.IGNORECASE)
_ERROR_ID = re.compile(r"error id ([0-9a-f]{6,32})")


@dataclass(frozen=True)
class Problem:
    status: int
    detail: str
    title: str = ""
    retry_after_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def type(self) -> str:
        return TYPE_PREFIX + _slug(self.status)

    @property
    def headline(self) -> str:
        return self.title or _phrase(self.status)

    def body(self, instance: str = "", request_id: str = "") -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.headline,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        if request_id:
            body["request_id"] = request_id
        if self.retry_after_seconds is not None:
            body["retry_after_seconds"] = self.retry_after_seconds
        body.update(self.extra)
        return body

    def headers(self) -> dict[str, str]:
        if self.retry_after_seconds is None:
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after_seconds)))}

    def response(self, instance: str = "", request_id: str = "") -> JSONResponse:
        headers = self.headers()
        if request_id:
            headers["X-Request-ID"] = request_id
        return JSONResponse(
            self.body(instance, request_id), status_code=self.status, headers=headers, media_type=MEDIA_TYPE
        )


def from_status(code: grpc.StatusCode, details: str | None, trailing_metadata: Iterable[Any] | None = None) -> Problem:
    """The problem for a gRPC status as a client saw it."""
    metadata = {key: value.decode() if isinstance(value, bytes) else value for key, value in trailing_metadata or ()}
    message = details or code.name
    status = _BY_CODE.get(code)
    if status is None:
        return internal(message)
    if code == grpc.StatusCode.INVALID_ARGUMENT and (
        PAYLOAD_TOO_LARGE_KEY in metadata or _TOO_LARGE_MESSAGE.search(message)
    ):
        return Problem(413, message)
    if code == grpc.StatusCode.UNAVAILABLE and _TRANSPORT_DETAILS.search(message):
        message = "a backend service is unavailable; try again shortly"
    retry_after = None
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        retry_after = _seconds(metadata.get(RETRY_AFTER_KEY))
        if retry_after is None:
            retry_after = 1.0
    return Problem(status, message, retry_after_seconds=retry_after)


def from_exception(exc: BaseException) -> Problem:
    """The problem for anything a route raised: gRPC errors, domain errors, or a bug (500)."""
    if isinstance(exc, ProblemError):
        return exc.problem
    if isinstance(exc, grpc.aio.AioRpcError):
        return from_status(exc.code(), exc.details(), exc.trailing_metadata())
    if isinstance(exc, PayloadTooLarge):
        return Problem(413, exc.message)
    if isinstance(exc, PdfchatError):
        problem = from_status(exc.code, exc.message)
        retry_after = getattr(exc, "retry_after_seconds", None)
        if retry_after is not None:
            return Problem(problem.status, problem.detail, retry_after_seconds=retry_after)
        return problem
    error_id = uuid.uuid4().hex[:12]
    log.error("unhandled error (error id %s)", error_id, exc_info=exc)
    return Problem(500, f"internal error (error id {error_id})")


def internal(message: str) -> Problem:
    """A 500 that keeps a service's error id (so support can find the log line) and nothing else."""
    found = _ERROR_ID.search(message)
    detail = f"internal error (error id {found.group(1)})" if found else "internal error"
    return Problem(500, detail)


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _slug(status: int) -> str:
    return _phrase(status).lower().replace(" ", "-").replace("'", "")


class ProblemError(Exception):
    """Raised by routes for a failure that has no gRPC status (a stream cut short, a bad gateway)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.detail)
        self.problem = problem


INCOMPLETE_ANSWER = Problem(502, "the answer stream ended before the answer was complete")
