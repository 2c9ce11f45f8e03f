from __future__ import annotations

import json

import grpc
import pytest

from pdfchat.common.errors import (
    PAYLOAD_TOO_LARGE_KEY,
    RETRY_AFTER_KEY,
    NotFound,
    PayloadTooLarge,
    ResourceExhausted,
)
from pdfchat.gateway import problems


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.UNAUTHENTICATED, 401),
        (grpc.StatusCode.PERMISSION_DENIED, 403),
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.FAILED_PRECONDITION, 409),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
        (grpc.StatusCode.INTERNAL, 500),
        (grpc.StatusCode.UNKNOWN, 500),
        (grpc.StatusCode.DATA_LOSS, 500),
    ],
)
def test_grpc_status_maps_to_http_status(code: grpc.StatusCode, status: int) -> None:
    assert problems.from_status(code, "message").status == status


def test_readable_message_is_the_detail() -> None:
    problem = problems.from_status(grpc.StatusCode.NOT_FOUND, "document d1 not found")
    assert problem.body("/v1/documents/d1", "rid") == {
        "type": "urn:pdfchat:problem:not-found",
        "title": "Not Found",
        "status": 404,
        "detail": "document d1 not found",
        "instance": "/v1/documents/d1",
        "request_id": "rid",
    }


def test_internal_errors_never_show_their_message() -> None:
    problem = problems.from_status(grpc.StatusCode.INTERNAL, 'Traceback (most recent call last): File "x.py"')
    assert problem.status == 500
    assert problem.detail == "internal error"


def test_internal_error_keeps_the_services_error_id() -> None:
    problem = problems.from_status(grpc.StatusCode.INTERNAL, "internal error (error id 0123456789ab)")
    assert problem.detail == "internal error (error id 0123456789ab)"


def test_resource_exhausted_carries_retry_after_from_trailing_metadata() -> None:
    problem = problems.from_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down", ((RETRY_AFTER_KEY, "2.2"),))
    assert problem.status == 429
    assert problem.headers() == {"Retry-After": "3"}
    assert problem.body()["retry_after_seconds"] == 2.2


def test_resource_exhausted_without_hint_still_says_when_to_retry() -> None:
    assert problems.from_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "busy").headers() == {"Retry-After": "1"}


def test_too_large_flag_in_trailing_metadata_is_413() -> None:
    problem = problems.from_status(grpc.StatusCode.INVALID_ARGUMENT, "no", ((PAYLOAD_TOO_LARGE_KEY, "1"),))
    assert problem.status == 413


@pytest.mark.parametrize("message", ["file is too large (max 10 MiB)", "file is larger than the limit of 1000 bytes"])
def test_too_large_message_is_413(message: str) -> None:
    assert problems.from_status(grpc.StatusCode.INVALID_ARGUMENT, message).status == 413


def test_transport_details_do_not_leak_addresses() -> None:
    problem = problems.from_status(
        grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses; last error: ipv4:10.0.0.7:50061"
    )
    assert problem.status == 503
    assert "10.0.0.7" not in problem.detail


def test_domain_errors_map_like_their_status() -> None:
    assert problems.from_exception(NotFound("gone")).status == 404
    assert problems.from_exception(PayloadTooLarge("big")).status == 413
    limited = problems.from_exception(ResourceExhausted("limit", retry_after_seconds=30))
    assert (limited.status, limited.headers()) == (429, {"Retry-After": "30"})


def test_unexpected_exception_is_a_generic_500() -> None:
    problem = problems.from_exception(RuntimeError("secret connection string postgres://u:p@h"))
    assert problem.status == 500
    assert "postgres" not in problem.detail
    assert problem.detail.startswith("internal error (error id ")


def test_response_is_problem_json_with_headers() -> None:
    response = problems.Problem(429, "slow down", retry_after_seconds=1.5).response("/v1/x", "rid")
    assert response.media_type == "application/problem+json"
    assert response.headers["retry-after"] == "2"
    assert response.headers["x-request-id"] == "rid"
    assert json.loads(bytes(response.body))["status"] == 429
