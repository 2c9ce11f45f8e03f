"""The suite as real processes (as `make up` runs it, on free ports), fed through the gateway's REST API.

`SuiteRun` starts the seven services with their own database, JetStream namespace and object store, plus
any extra worker_pdf / embedding replicas (same durable consumers, own health ports), samples every
service process's resident memory (with its children: worker_pdf reads pages in forked children) while
it runs, and stops everything at the end.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.ingest.baseline import Throughput
from bench.ingest.corpus import CorpusPdf
from pdfchat_tools import devstack, infra

UPLOAD_CONCURRENCY = 4
POLL_SECONDS = 0.5


class MemorySampler:
    """Peak RSS per labelled process tree, sampled on a thread every `interval` seconds."""

    def __init__(self, interval: float = 0.25) -> None:
        self._interval = interval
        self._pids: dict[str, int] = {}
        self.peak_bytes: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def watch(self, label: str, pid: int) -> None:
        self._pids[label] = pid
        self.peak_bytes.setdefault(label, 0)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            for label, pid in list(self._pids.items()):
                rss = _tree_rss(pid)
                if rss > self.peak_bytes[label]:
                    self.peak_bytes[label] = rss
            self._stop.wait(self._interval)


def _tree_rss(pid: int) -> int:
    try:
        process = psutil.Process(pid)
        members = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            continue
    return total


@dataclass
class SuiteRun:
    label: str
    infrastructure: infra.Infrastructure
    work_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    replicas: dict[str, int] = field(default_factory=dict)
    """Extra replicas beyond the first, by service name (worker_pdf, embedding)."""
    stack: devstack.Stack | None = None
    extra: list[tuple[str, devstack.ServiceProcess]] = field(default_factory=list)
    memory: MemorySampler = field(default_factory=MemorySampler)

    def start(self) -> None:
        ports = {name: infra.free_port() for name in devstack.DEFAULT_PORTS}
        data_dir = self.work_dir / self.label
        env = devstack.stack_env(
            self.infrastructure,
            ports=ports,
            data_dir=data_dir,
            jobs_namespace=f"bench{uuid.uuid4().hex[:8]}",
            extra={"PDFCHAT_ENV": "test", "PDFCHAT_LOG_LEVEL": "WARNING", **self.extra_env},
        )
        self.stack = devstack.Stack(devstack.StackConfig(env, data_dir / "logs", ports["gateway"]))
        self.stack.start(devstack.SERVICES, timeout=240)
        for name, count in self.replicas.items():
            for index in range(2, count + 2):
                address = f"127.0.0.1:{infra.free_port()}"
                process = devstack.ServiceProcess(
                    name, {**env, f"PDFCHAT_{name.upper()}_ADDR": address}, data_dir / "logs" / f"{name}-{index}.log"
                )
                process.start()
                self.extra.append((f"{name}#{index}", process))
                _wait_serving(address, process)
        for name, service in self.stack.processes.items():
            if service.process is not None:
                self.memory.watch(name if not self.replicas.get(name) else f"{name}#1", service.process.pid)
        for label, process in self.extra:
            if process.process is not None:
                self.memory.watch(label, process.process.pid)
        self.memory.start()

    async def stop(self) -> None:
        self.memory.stop()
        for _, process in self.extra:
            process.stop()
        if self.stack is not None:
            self.stack.stop()
            env = self.stack.config.env
            await infra.delete_streams(env["PDFCHAT_NATS_URL"], env["PDFCHAT_JOBS_NAMESPACE"])

    @property
    def gateway_url(self) -> str:
        assert self.stack is not None
        return self.stack.config.gateway_url

    async def ingest(self, corpus: Sequence[CorpusPdf], tenant: str) -> Throughput:
        """Uploads the corpus (a few at a time) and waits until every document is READY."""
        async with httpx.AsyncClient(base_url=self.gateway_url, timeout=120) as client:
            headers = await _token(client, tenant)
            slots = asyncio.Semaphore(UPLOAD_CONCURRENCY)

            async def upload(pdf: CorpusPdf) -> str:
                async with slots:
                    return await _upload(client, headers, pdf)

            started = time.perf_counter()
            document_ids = await asyncio.gather(*(upload(pdf) for pdf in corpus))
            documents = await _wait_ready(client, headers, set(document_ids), POLL_SECONDS)
            seconds = time.perf_counter() - started
        pages = sum(int(document["pages"]) for document in documents.values())
        chunks = sum(int(document["progress"]["chunks_total"]) for document in documents.values())
        return Throughput(self.label, pages, chunks, seconds)

    async def upload_to_ready_seconds(self, pdfs: Sequence[bytes], tenant: str) -> list[float]:
        """One PDF at a time on the idle suite: seconds from the upload request to READY."""
        timings = []
        async with httpx.AsyncClient(base_url=self.gateway_url, timeout=120) as client:
            headers = await _token(client, tenant)
            for index, data in enumerate(pdfs):
                started = time.perf_counter()
                document_id = await _upload(client, headers, CorpusPdf(f"latency-{index}.pdf", data, 0))
                await _wait_ready(client, headers, {document_id}, 0.05)
                timings.append(time.perf_counter() - started)
        return timings


def _wait_serving(address: str, process: devstack.ServiceProcess, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not devstack.grpc_serving(address):
        if process.exited() is not None or time.monotonic() > deadline:
            raise infra.InfrastructureError(f"{process.name} replica did not start:\n{devstack.tail(process.log_file)}")
        time.sleep(0.3)


async def _token(client: httpx.AsyncClient, tenant: str) -> dict[str, str]:
    reply = await client.post("/v1/auth/dev-token", json={"tenant": tenant, "user": "bench"})
    reply.raise_for_status()
    return {"Authorization": f"Bearer {reply.json()['token']}"}


async def _upload(client: httpx.AsyncClient, headers: dict[str, str], pdf: CorpusPdf) -> str:
    reply = await client.post("/v1/documents", headers=headers, files={"file": (pdf.name, pdf.data, "application/pdf")})
    if reply.status_code not in (200, 202):
        raise RuntimeError(f"upload of {pdf.name} answered {reply.status_code}: {reply.text}")
    return str(reply.json()["id"])


async def _wait_ready(
    client: httpx.AsyncClient, headers: dict[str, str], document_ids: set[str], poll: float, limit: float = 1800
) -> dict[str, dict[str, Any]]:
    """Polls the list (one request for all documents) until each is READY; a FAILED one stops the run."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        reply = await client.get("/v1/documents", headers=headers, params={"page_size": 1000})
        reply.raise_for_status()
        documents = {d["id"]: d for d in reply.json()["documents"] if d["id"] in document_ids}
        failed = {key: d["error"] for key, d in documents.items() if d["status"] == "FAILED"}
        if failed:
            raise RuntimeError(f"documents FAILED during the benchmark: {failed}")
        if len(documents) == len(document_ids) and all(d["status"] == "READY" for d in documents.values()):
            return documents
        await asyncio.sleep(poll)
    raise TimeoutError(f"documents not READY after {limit:.0f}s")
