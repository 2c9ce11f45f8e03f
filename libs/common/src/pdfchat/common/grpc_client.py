"""gRPC channels to the other services, with identity and deadline attached to every call.

The client interceptors put the current caller's identity in the metadata and bound each call's
timeout by the remaining deadline of the call being handled (see `deadlines`), so service code just
calls `stub.Method(request)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from pdfchat.common import deadlines, identity

DEFAULT_TIMEOUT_SECONDS = 30.0


def _details(details: grpc.aio.ClientCallDetails, default_timeout: float) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    caller = identity.current()
    if caller is not None:
        present = {key for key, _ in metadata}
        for key, value in caller.to_metadata():
            if key not in present:
                metadata.add(key, value)
    timeout = details.timeout if details.timeout is not None else deadlines.timeout(default_timeout)
    if details.timeout is not None and (left := deadlines.remaining()) is not None:
        timeout = min(timeout, max(left, 0.001))
    return grpc.aio.ClientCallDetails(
        method=details.method,
        timeout=timeout,
        metadata=metadata,
        credentials=details.credentials,
        wait_for_ready=details.wait_for_ready,
    )


class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, default_timeout: float) -> None:
        self._default = default_timeout

    async def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return await continuation(_details(details, self._default), request)


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, default_timeout: float) -> None:
        self._default = default_timeout

    async def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return await continuation(_details(details, self._default), request)


class _StreamUnary(grpc.aio.StreamUnaryClientInterceptor):
    def __init__(self, default_timeout: float) -> None:
        self._default = default_timeout

    async def intercept_stream_unary(
        self, continuation: Callable[..., Any], details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(_details(details, self._default), request_iterator)


_channels: dict[tuple[str, float], grpc.aio.Channel] = {}


def channel(address: str, default_timeout: float = DEFAULT_TIMEOUT_SECONDS) -> grpc.aio.Channel:
    """A shared channel to `address` (host:port); created on first use."""
    key = (address, default_timeout)
    found = _channels.get(key)
    if found is None:
        interceptors: list[Any] = [
            _UnaryUnary(default_timeout),
            _UnaryStream(default_timeout),
            _StreamUnary(default_timeout),
        ]
        found = grpc.aio.insecure_channel(
            address,
            interceptors=interceptors,
        )
        _channels[key] = found
    return found


async def close_all() -> None:
    for open_channel in list(_channels.values()):
        await open_channel.close(None)
    _channels.clear()


async def check_serving(address: str, service: str = "") -> None:
    """Raises unless the service at `address` reports SERVING on grpc.health.v1."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stub = health_pb2_grpc.HealthStub(channel(address))
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2.0)
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        raise ConnectionError(f"{address} is not serving")
