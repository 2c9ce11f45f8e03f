from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
import pytest
from fastapi.testclient import TestClient
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from pdfchat.gateway.app import create_app
from pdfchat.gateway.settings import GatewaySettings


@pytest.fixture
def health_server() -> Iterator[tuple[str, health.HealthServicer]]:
    from concurrent import futures

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(None)


def test_readyz_is_200_when_every_service_serves(
    settings_factory: Callable[..., GatewaySettings], health_server: tuple[str, health.HealthServicer]
) -> None:
    address, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    names = ("ingestion", "worker_pdf", "embedding", "vector_index", "orchestrator", "chat")
    settings = settings_factory(**{f"{name}_addr": address for name in names})
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ready"


def test_readyz_is_503_when_one_service_is_not_serving(
    settings_factory: Callable[..., GatewaySettings], health_server: tuple[str, health.HealthServicer]
) -> None:
    address, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    settings = settings_factory(chat_addr=address)
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert "chat" in response.json()["not_ready"]
