"""The grpc.aio server bootstrap every service starts with.

`serve()` gives each service the same behaviour: the identity, deadline, logging and error interceptor;
grpc.health.v1 reporting SERVING only while the service's dependencies answer; reflection (so grpcurl can
list and call it); Prometheus metrics; background tasks (JetStream consumers); and a graceful drain on
SIGTERM: health goes NOT_SERVING, new calls are refused, in-flight calls get the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from prometheus_client import Counter, Histogram, start_http_server

from pdfchat.common import deadlines, identity
from pdfchat.common.errors import PAYLOAD_TOO_LARGE_KEY, RETRY_AFTER_KEY, PayloadTooLarge, PdfchatError
from pdfchat.common.settings import CommonSettings

log = logging.getLogger(__name__)

RPC_TOTAL = Counter("pdfchat_rpc_total", "gRPC calls handled", ["service", "method", "code"])
RPC_SECONDS = Histogram("pdfchat_rpc_seconds", "gRPC handling time", ["service", "method"])

# Downstream statuses passed through unchanged: the caller should see why the chain failed.
_PROPAGATED_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.CANCELLED,
}

DependencyCheck = Callable[[], Awaitable[object]]
BackgroundTask = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


@dataclass
class ServiceSpec:
    """What a service plugs into the bootstrap."""

    name: str
    port: int
    register: Callable[[grpc.aio.Server], None]
    service_names: Sequence[str] = ()
    """Full gRPC service names (`pdfchat.v1.IngestionService`), for health and reflection."""
    dependency_checks: Sequence[DependencyCheck] = ()
    """Each raises (or times out) while a dependency is down; all pass means SERVING."""
    background: Sequence[BackgroundTask] = ()
    """Long-running tasks; each gets the stop event and must return soon after it is set."""
    on_stop: Callable[[], Awaitable[None]] | None = None
    metrics_port: int | None = None
    unauthenticated_methods: frozenset[str] = field(default_factory=frozenset)


class ServerInterceptor(grpc.aio.ServerInterceptor):
    """Binds identity and deadline, logs each call, and translates errors to status codes."""

    def __init__(self, service: str, unauthenticated_methods: frozenset[str] = frozenset()) -> None:
        self._service = service
        self._open = unauthenticated_methods

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or not method.startswith("/pdfchat."):
            return handler
        needs_identity = method not in self._open
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(method, needs_identity, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(method, needs_identity, cast(Any, handler.unary_stream)),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._wrap_unary(method, needs_identity, handler.stream_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            self._wrap_stream(method, needs_identity, cast(Any, handler.stream_stream)),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _bind(self, context: grpc.aio.ServicerContext, needs_identity: bool) -> None:
        # Each RPC runs in its own task, so these context variables are scoped to the call.
        caller = identity.Identity.from_metadata(context.invocation_metadata())
        if caller is None and needs_identity:
            raise _MissingIdentity()
        identity.bind(caller)
        deadlines.bind(context.time_remaining())

    def _wrap_unary(
        self, method: str, needs_identity: bool, behavior: Callable[..., Awaitable[Any]]
    ) -> Callable[..., Awaitable[Any]]:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                self._bind(context, needs_identity)
                return await behavior(request, context)
            except BaseException as exc:
                code = await self._abort(context, method, exc)
                raise
            finally:
                self._record(method, code, started)

        return wrapped

    def _wrap_stream(
        self, method: str, needs_identity: bool, behavior: Callable[..., AsyncIterator[Any]]
    ) -> Callable[..., AsyncIterator[Any]]:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                self._bind(context, needs_identity)
                async for item in behavior(request, context):
                    yield item
            except BaseException as exc:
                code = await self._abort(context, method, exc)
                raise
            finally:
                self._record(method, code, started)

        return wrapped

    async def _abort(self, context: grpc.aio.ServicerContext, method: str, exc: BaseException) -> grpc.StatusCode:
        """Turns an exception into the call's status; re-raises what must propagate."""
        if isinstance(exc, asyncio.CancelledError | grpc.aio.AbortError | GeneratorExit):
            return grpc.StatusCode.CANCELLED
        if isinstance(exc, _MissingIdentity):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "call carries no tenant identity")
        if isinstance(exc, PdfchatError):
            retry_after = getattr(exc, "retry_after_seconds", None)
            if retry_after is not None:
                context.set_trailing_metadata(((RETRY_AFTER_KEY, f"{retry_after:.3f}"),))
            if isinstance(exc, PayloadTooLarge):
                context.set_trailing_metadata(((PAYLOAD_TOO_LARGE_KEY, "1"),))
            if exc.code == grpc.StatusCode.INTERNAL:
                log.error("internal error in %s: %s", method, exc.message)
            await context.abort(exc.code, exc.message)
        if isinstance(exc, grpc.aio.AioRpcError) and exc.code() in _PROPAGATED_CODES:
            log.warning("downstream call failed in %s: %s %s", method, exc.code().name, exc.details())
            await context.abort(exc.code(), exc.details() or exc.code().name)
        error_id = uuid.uuid4().hex[:12]
        log.exception("unhandled error in %s (error id %s)", method, error_id, exc_info=exc)
        await context.abort(grpc.StatusCode.INTERNAL, f"internal error (error id {error_id})")
        return grpc.StatusCode.INTERNAL  # pragma: no cover - abort always raises

    def _record(self, method: str, code: grpc.StatusCode, started: float) -> None:
        elapsed = time.perf_counter() - started
        short = method.rsplit("/", 1)[-1]
        RPC_TOTAL.labels(self._service, short, code.name).inc()
        RPC_SECONDS.labels(self._service, short).observe(elapsed)
        log.debug("rpc", extra={"method": method, "code": code.name, "ms": round(elapsed * 1000, 1)})


class _MissingIdentity(Exception):
    pass


async def _watch_dependencies(
    spec: ServiceSpec, servicer: HealthServicer, interval: float, stop: asyncio.Event
) -> None:
    names = ["", *spec.service_names]
    last: bool | None = None
    while not stop.is_set():
        healthy = True
        for check in spec.dependency_checks:
            try:
                await asyncio.wait_for(check(), timeout=max(interval, 1.0))
            except Exception as exc:
                healthy = False
                if last is not False:
                    log.warning("dependency check failed: %r", exc)
                break
        if healthy != last:
            status = health_pb2.HealthCheckResponse.SERVING if healthy else health_pb2.HealthCheckResponse.NOT_SERVING
            for name in names:
                await servicer.set(name, status)
            log.info("health %s", "SERVING" if healthy else "NOT_SERVING")
            last = healthy
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


async def serve(spec: ServiceSpec, settings: CommonSettings, stop: asyncio.Event | None = None) -> None:
    """Runs the service until SIGTERM or SIGINT (or until `stop` is set), then drains and stops."""
    server = grpc.aio.server(
        interceptors=[ServerInterceptor(spec.name, spec.unauthenticated_methods)],
        options=[
            ("grpc.max_receive_message_length", 32 * 1024 * 1024),
            ("grpc.max_send_message_length", 32 * 1024 * 1024),
            # Without these, a burst of more than ~1,000 new calls has some cancelled before any handler runs.
            ("grpc.server.max_pending_requests", settings.grpc_max_pending_calls),
            ("grpc.server.max_pending_requests_hard_limit", 2 * settings.grpc_max_pending_calls),
        ],
    )
    spec.register(server)
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ["", *spec.service_names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    reflection.enable_server_reflection(
        [*spec.service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
    )
    address = f"{settings.grpc_host}:{spec.port}"
    if server.add_insecure_port(address) == 0:
        raise RuntimeError(f"cannot bind gRPC port {address}")
    if spec.metrics_port:
        start_http_server(spec.metrics_port, addr=settings.grpc_host)
    await server.start()
    log.info("serving %s on %s", spec.name, address)

    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    tasks = [
        asyncio.create_task(_watch_dependencies(spec, health_servicer, settings.health_check_interval_seconds, stop))
    ]
    tasks += [asyncio.create_task(task(stop)) for task in spec.background]

    await stop.wait()
    log.info("draining %s (grace %.1fs)", spec.name, settings.shutdown_grace_seconds)
    await health_servicer.enter_graceful_shutdown()
    await server.stop(settings.shutdown_grace_seconds)
    done, pending = await asyncio.wait(tasks, timeout=settings.shutdown_grace_seconds)
    for task in pending:
        task.cancel()
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())
    if spec.on_stop is not None:
        await spec.on_stop()
    log.info("stopped %s", spec.name)
