"""The bootstrap through a real grpc.aio server: identity, error mapping, deadlines, health."""

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pdfchat.common import deadlines, grpc_client, identity
from pdfchat.common.errors import NotFound, ResourceExhausted
from pdfchat.common.grpc_server import ServiceSpec, serve
from pdfchat.common.identity import Identity
from pdfchat.common.settings import CommonSettings
from pdfchat.v1 import embedding_pb2, embedding_pb2_grpc
from pdfchat_tools.infra import free_port

pytestmark = pytest.mark.integration


class ProbeEmbeddingService(embedding_pb2_grpc.EmbeddingServiceServicer):
    """Answers with what the bootstrap bound for the call, or raises what the text asks for."""

    async def Embed(
        self, request: embedding_pb2.EmbedRequest, context: grpc.aio.ServicerContext
    ) -> embedding_pb2.EmbedResponse:
        command = request.texts[0] if request.texts else ""
        if command == "missing":
            raise NotFound("document d1 not found")
        if command == "limited":
            raise ResourceExhausted("slow down", retry_after_seconds=2.5)
        if command == "crash":
            raise RuntimeError("secret internal detail")
        caller = identity.require()
        left = deadlines.remaining() or 0.0
        return embedding_pb2.EmbedResponse(model=f"{caller.tenant_id}/{caller.user_id}", dimensions=int(left))


@pytest.fixture
async def probe_server() -> AsyncIterator[tuple[str, asyncio.Event]]:
    port = free_port()
    healthy = asyncio.Event()
    healthy.set()
    stop = asyncio.Event()

    async def dependency() -> None:
        if not healthy.is_set():
            raise ConnectionError("dependency down")

    spec = ServiceSpec(
        name="probe",
        port=port,
        register=lambda server: embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server(
            ProbeEmbeddingService(), server
        ),
        service_names=["pdfchat.v1.EmbeddingService"],
        dependency_checks=[dependency],
    )
    settings = CommonSettings(health_check_interval_seconds=0.1, shutdown_grace_seconds=1)
    task = asyncio.create_task(serve(spec, settings, stop))
    address = f"127.0.0.1:{port}"
    for _ in range(100):
        try:
            await grpc_client.check_serving(address)
            break
        except Exception:
            await asyncio.sleep(0.05)
    try:
        yield address, healthy
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)


def _stub(address: str) -> embedding_pb2_grpc.EmbeddingServiceStub:
    return embedding_pb2_grpc.EmbeddingServiceStub(grpc.aio.insecure_channel(address))


async def test_identity_and_deadline_reach_the_handler(probe_server: tuple[str, asyncio.Event]) -> None:
    address, _ = probe_server
    caller = Identity(tenant_id="acme", user_id="ann")
    reply = await _stub(address).Embed(embedding_pb2.EmbedRequest(), metadata=caller.to_metadata(), timeout=7)
    assert reply.model == "acme/ann"
    assert 5 <= reply.dimensions <= 7


async def test_call_without_tenant_is_unauthenticated(probe_server: tuple[str, asyncio.Event]) -> None:
    address, _ = probe_server
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await _stub(address).Embed(embedding_pb2.EmbedRequest(), timeout=5)
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_domain_errors_become_their_status_codes(probe_server: tuple[str, asyncio.Event]) -> None:
    address, _ = probe_server
    metadata = Identity(tenant_id="acme").to_metadata()
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await _stub(address).Embed(embedding_pb2.EmbedRequest(texts=["missing"]), metadata=metadata, timeout=5)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert missing.value.details() == "document d1 not found"

    with pytest.raises(grpc.aio.AioRpcError) as limited:
        await _stub(address).Embed(embedding_pb2.EmbedRequest(texts=["limited"]), metadata=metadata, timeout=5)
    assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert dict(limited.value.trailing_metadata() or ())["retry-after-seconds"] == "2.500"


async def test_unexpected_errors_hide_their_details(probe_server: tuple[str, asyncio.Event]) -> None:
    address, _ = probe_server
    metadata = Identity(tenant_id="acme").to_metadata()
    with pytest.raises(grpc.aio.AioRpcError) as crashed:
        await _stub(address).Embed(embedding_pb2.EmbedRequest(texts=["crash"]), metadata=metadata, timeout=5)
    assert crashed.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in (crashed.value.details() or "")
    assert "error id" in (crashed.value.details() or "")


async def test_health_follows_the_dependencies(probe_server: tuple[str, asyncio.Event]) -> None:
    address, healthy = probe_server
    health = health_pb2_grpc.HealthStub(grpc.aio.insecure_channel(address))
    request = health_pb2.HealthCheckRequest(service="pdfchat.v1.EmbeddingService")
    assert (await health.Check(request, timeout=2)).status == health_pb2.HealthCheckResponse.SERVING
    healthy.clear()
    await asyncio.sleep(0.5)
    assert (await health.Check(request, timeout=2)).status == health_pb2.HealthCheckResponse.NOT_SERVING
    healthy.set()
    await asyncio.sleep(0.5)
    assert (await health.Check(request, timeout=2)).status == health_pb2.HealthCheckResponse.SERVING


async def test_a_burst_of_two_thousand_calls_all_reach_the_handler(probe_server: tuple[str, asyncio.Event]) -> None:
    address, _ = probe_server
    metadata = Identity(tenant_id="acme").to_metadata()
    async with grpc.aio.insecure_channel(address) as burst_channel:
        stub = embedding_pb2_grpc.EmbeddingServiceStub(burst_channel)

        async def one() -> str:
            try:
                await stub.Embed(embedding_pb2.EmbedRequest(), metadata=metadata, timeout=60)
            except grpc.aio.AioRpcError as error:
                return error.code().name
            return "OK"

        outcomes = await asyncio.gather(*(one() for _ in range(2000)))
    assert outcomes.count("OK") == 2000, {code: outcomes.count(code) for code in set(outcomes)}


async def test_client_channel_carries_the_bound_identity(probe_server: tuple[str, asyncio.Event]) -> None:
    address, _ = probe_server
    token = identity.bind(Identity(tenant_id="bound", user_id="bob"))
    try:
        stub = embedding_pb2_grpc.EmbeddingServiceStub(grpc_client.channel(address))
        reply = await stub.Embed(embedding_pb2.EmbedRequest())
    finally:
        identity.reset(token)
    assert reply.model == "bound/bob"
