"""Orchestrator benchmark: ours beside LiteLLM's proxy, against the same LLM simulator, in one run.

    .venv/bin/python bench/orchestrator/run.py [--quick] [--skip-litellm] [--json PATH]

(a) Added latency. The same streamed completions (distinct prompts, so the cache is on but misses) at a
    fixed concurrency: directly against the simulator, through our orchestrator (gRPC GenerateStream,
    limiter, cache and metrics on) and through LiteLLM's proxy (OpenAI API, its router limits, Redis
    cache on), both configured with the same generous RPM/TPM so nothing is throttled. Added latency is
    each system's p50 (p99) minus the direct p50 (p99), whole answer received.
(b) Burst. 2,000 batch-priority requests with 10-minute deadlines from 4 tenants (submitted tenant after
    tenant, all at once) at a simulator limited to 600 RPM and 100k TPM, both systems configured with
    those limits. Reported: requests that succeeded, the share of the provider's quota used over the
    run, the share of upstream calls answered 429, and Jain's fairness index over the tenants' completed
    requests at the moment half of all successes were in.

Quota used: what the provider admitted over the run divided by what its limits allow over the same wall
time, for requests (admitted calls / (RPM x run minutes)) and for tokens (tokens / (TPM x run minutes));
the table shows both and names the larger (the binding limit) as "provider quota used". The run lasts
from the first request sent to the last answer received. A system that fills the 60 s sliding window at
once can pass 100% on a short run; one that leaves capacity unused stays under it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
import httpx
import openai
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import litellm_proxy

from pdfchat.common.identity import Identity
from pdfchat.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from pdfchat_tools import devstack, infra
from pdfchat_tools.llm_sim import SimClient, start_subprocess

MODEL = "sim-model"
TENANTS = ("tenant-a", "tenant-b", "tenant-c", "tenant-d")
FILLER = (
    "The report describes the maintenance schedule of the northern bridge, the inspection results of each "
    "pier, the cost of the repairs planned for next year and the traffic restrictions during the works."
)


@dataclass(frozen=True)
class Scale:
    latency_requests: int
    concurrency: int
    burst_requests: int
    rpm: int
    tpm: int
    deadline_seconds: float = 600.0


FULL = Scale(latency_requests=400, concurrency=16, burst_requests=2000, rpm=600, tpm=100_000)
QUICK = Scale(latency_requests=100, concurrency=8, burst_requests=160, rpm=120, tpm=20_000)


@dataclass
class Outcome:
    ok: bool
    seconds: float
    tenant: str = ""
    finished_at: float = 0.0
    error: str = ""


@dataclass
class BurstFigures:
    system: str
    requests: int
    succeeded: int
    duration_seconds: float
    upstream_calls: int
    upstream_429: int
    quota_used: float
    quota_basis: str
    """Which limit `quota_used` is measured against: "requests" (RPM) or "tokens" (TPM), the larger share."""
    request_share: float
    token_share: float
    jain: float
    per_tenant_at_half: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)


def prompt(n: int) -> str:
    return f"Request {n} {uuid.uuid4().hex[:8]}: {FILLER} What does the report say about pier {n % 40}?"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    index = min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[index]


def jain(values: list[float]) -> float:
    total = sum(values)
    squares = sum(v * v for v in values)
    return 0.0 if squares == 0 else total * total / (len(values) * squares)


# --- clients --------------------------------------------------------------------------------------------

Call = Callable[[int, str], Awaitable[Outcome]]


def openai_caller(base_url: str, api_key: str, timeout: float) -> tuple[Call, openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(
        base_url=base_url,
        api_key=api_key,
        max_retries=0,
        timeout=timeout,
        http_client=httpx.AsyncClient(limits=httpx.Limits(max_connections=4000, max_keepalive_connections=4000)),
    )

    async def call(n: int, tenant: str) -> Outcome:
        started = time.monotonic()
        try:
            stream = await client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": prompt(n)}],
                stream=True,
                user=tenant,
            )
            finished = False
            async for chunk in stream:
                if any(choice.finish_reason for choice in chunk.choices):
                    finished = True
            ok, error = finished, "" if finished else "cut"
        except openai.APIStatusError as exc:
            ok, error = False, f"HTTP {exc.status_code}"
        except openai.APIError as exc:
            ok, error = False, type(exc).__name__
        now = time.monotonic()
        return Outcome(ok, now - started, tenant, now, error)

    return call, client


def orchestrator_caller(channel: grpc.aio.Channel, timeout: float, priority: int) -> Call:
    stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)

    async def call(n: int, tenant: str) -> Outcome:
        started = time.monotonic()
        spec = orchestrator_pb2.GenerationSpec(
            messages=[orchestrator_pb2.ChatMessage(role="user", content=prompt(n))], model=MODEL, priority=priority
        )
        metadata = Identity(tenant_id=tenant, request_id=uuid.uuid4().hex).to_metadata()
        ok, error = False, "no end"
        try:
            async for response in stub.GenerateStream(
                orchestrator_pb2.GenerateStreamRequest(spec=spec), metadata=metadata, timeout=timeout
            ):
                if response.WhichOneof("event") == "end":
                    ok = response.end.model == MODEL
                    error = "" if ok else f"answered by {response.end.model}"
        except grpc.aio.AioRpcError as exc:
            ok, error = False, f"{exc.code().name}: {(exc.details() or '')[:60]}"
        now = time.monotonic()
        return Outcome(ok, now - started, tenant, now, error)

    return call


async def run_fixed_concurrency(call: Call, requests: int, concurrency: int) -> list[Outcome]:
    queue = iter(range(requests))
    outcomes: list[Outcome] = []

    async def worker() -> None:
        for n in queue:
            outcomes.append(await call(n, TENANTS[n % len(TENANTS)]))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return outcomes


# --- systems under test ---------------------------------------------------------------------------------


class Systems:
    """Starts and stops the simulator, our orchestrator and LiteLLM's proxy for one phase."""

    def __init__(self, work: Path, infrastructure: infra.Infrastructure, litellm: Path | None) -> None:
        self.work = work
        self.infrastructure = infrastructure
        self.litellm_executable = litellm
        self.processes: list[subprocess.Popen[bytes]] = []
        self.stacks: list[devstack.Stack] = []

    def simulator(self, args: list[str]) -> SimClient:
        process, client = start_subprocess(args=args, log_file=self.work / "sim.log")
        self.processes.append(process)
        return client

    def orchestrator(self, sim: SimClient, rpm: int, tpm: int, name: str) -> str:
        config = self.work / f"llm-{name}.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "providers": [
                        {
                            "name": "sim",
                            "base_url": sim.openai_base_url,
                            "request_timeout_seconds": 600,
                            "models": [{"name": MODEL, "rpm": rpm, "tpm": tpm, "quality_tier": "standard"}],
                        }
                    ]
                }
            ),
            encoding="utf-8",
        )
        ports = {service: infra.free_port() for service in devstack.DEFAULT_PORTS}
        data_dir = self.work / f"stack-{name}"
        env = devstack.stack_env(
            self.infrastructure,
            ports=ports,
            data_dir=data_dir,
            jobs_namespace=f"bench{uuid.uuid4().hex[:6]}",
            extra={
                "PDFCHAT_ENV": "test",
                "PDFCHAT_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
                "PDFCHAT_LLM_CONFIG": str(config),
                "PDFCHAT_LLM_BASE_URL": sim.openai_base_url,
                "PDFCHAT_LLM_MODEL": MODEL,
                "PDFCHAT_LLM_REQUEST_TIMEOUT_SECONDS": "600",
                "PDFCHAT_LLM_FIRST_TOKEN_TIMEOUT_SECONDS": "600",
            },
        )
        stack = devstack.Stack(devstack.StackConfig(env=env, log_dir=data_dir / "logs", gateway_port=ports["gateway"]))
        stack.start(("orchestrator",))
        self.stacks.append(stack)
        return env["PDFCHAT_ORCHESTRATOR_ADDR"]

    def litellm(self, sim: SimClient, rpm: int, tpm: int, name: str) -> str | None:
        if self.litellm_executable is None:
            return None
        config = litellm_proxy.write_config(
            self.work / f"litellm-{name}.yaml",
            sim_base_url=sim.openai_base_url,
            model=MODEL,
            rpm=rpm,
            tpm=tpm,
            redis_url=self.infrastructure.redis_url,
            timeout_seconds=600,
        )
        port = infra.free_port()
        self.processes.append(litellm_proxy.start(self.litellm_executable, config, port, self.work / "litellm.log"))
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        for stack in self.stacks:
            stack.stop()
            env = stack.config.env
            await infra.delete_streams(env["PDFCHAT_NATS_URL"], env["PDFCHAT_JOBS_NAMESPACE"])
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        self.stacks.clear()
        self.processes.clear()


# --- the two phases -------------------------------------------------------------------------------------


async def latency_phase(systems: Systems, scale: Scale) -> dict[str, dict[str, float]]:
    # A provider that answers in ~0.1 s: fast enough that the middleman's own cost shows.
    sim = systems.simulator(["--ttft", "0.05", "--itl", "0.002", "--completion-tokens", "24"])
    ours = systems.orchestrator(sim, rpm=1_000_000, tpm=1_000_000_000, name="latency")
    litellm_url = systems.litellm(sim, rpm=1_000_000, tpm=1_000_000_000, name="latency")
    callers: dict[str, Call] = {}
    clients: list[openai.AsyncOpenAI] = []
    direct, client = openai_caller(sim.openai_base_url, "sk-sim", 60)
    clients.append(client)
    callers["direct"] = direct
    channel = grpc.aio.insecure_channel(ours)
    callers["pdfchat"] = orchestrator_caller(channel, 60, orchestrator_pb2.PRIORITY_INTERACTIVE)
    if litellm_url is not None:
        proxied, client = openai_caller(litellm_url, litellm_proxy.MASTER_KEY, 60)
        clients.append(client)
        callers["litellm"] = proxied
    results: dict[str, dict[str, float]] = {}
    try:
        for name, call in callers.items():
            await run_fixed_concurrency(call, 20, scale.concurrency)  # warm-up: connections, first imports
            outcomes = await run_fixed_concurrency(call, scale.latency_requests, scale.concurrency)
            seconds = [o.seconds for o in outcomes if o.ok]
            results[name] = {
                "ok": len(seconds),
                "requests": len(outcomes),
                "p50_ms": percentile(seconds, 50) * 1000,
                "p99_ms": percentile(seconds, 99) * 1000,
            }
            print(
                f"  latency {name:8s} p50 {results[name]['p50_ms']:.1f} ms  p99 {results[name]['p99_ms']:.1f} ms"
                f"  ({len(seconds)}/{len(outcomes)} ok)",
                flush=True,
            )
    finally:
        await channel.close()
        for client in clients:
            await client.close()
        await systems.stop()
    base = results["direct"]
    for figures in results.values():
        figures["added_p50_ms"] = figures["p50_ms"] - base["p50_ms"]
        figures["added_p99_ms"] = figures["p99_ms"] - base["p99_ms"]
    return results


async def burst(name: str, call: Call, sim: SimClient, scale: Scale) -> BurstFigures:
    sim.reset(config=False)
    per_tenant = scale.burst_requests // len(TENANTS)
    started = time.monotonic()
    tasks = []
    n = 0
    for tenant in TENANTS:  # tenant after tenant: a system serving in arrival order starves the last ones
        for _ in range(per_tenant):
            tasks.append(asyncio.ensure_future(call(n, tenant)))
            n += 1
    outcomes: list[Outcome] = await asyncio.gather(*tasks)
    duration = max(o.finished_at for o in outcomes) - started
    stats = sim.stats()["counters"]
    upstream = int(stats.get("chat_requests", 0))
    rejected = int(stats.get("status_429", 0))
    admitted = upstream - rejected
    tokens = int(stats.get("prompt_tokens", 0)) + int(stats.get("completion_tokens", 0))
    # Admitted over the run / what the limits allow over the same wall time, for requests and for tokens.
    minutes = duration / 60
    request_share = admitted / (scale.rpm * minutes)
    token_share = tokens / (scale.tpm * minutes)
    basis = "requests" if request_share >= token_share else "tokens"
    successes = sorted(o.finished_at for o in outcomes if o.ok)
    half = successes[len(successes) // 2 - 1] if successes else started
    at_half = {t: sum(1 for o in outcomes if o.ok and o.tenant == t and o.finished_at <= half) for t in TENANTS}
    errors: dict[str, int] = {}
    for outcome in outcomes:
        if not outcome.ok:
            errors[outcome.error] = errors.get(outcome.error, 0) + 1
    figures = BurstFigures(
        system=name,
        requests=len(outcomes),
        succeeded=len(successes),
        duration_seconds=duration,
        upstream_calls=upstream,
        upstream_429=rejected,
        quota_used=max(request_share, token_share),
        quota_basis=basis,
        request_share=request_share,
        token_share=token_share,
        jain=jain([float(v) for v in at_half.values()]) if successes else 0.0,
        per_tenant_at_half=at_half,
        errors=errors,
    )
    print(
        f"  burst {name}: {figures.succeeded}/{figures.requests} ok in {duration:.0f}s, "
        f"{rejected}/{upstream} upstream 429, errors {errors}",
        flush=True,
    )
    return figures


async def burst_phase(systems: Systems, scale: Scale) -> list[BurstFigures]:
    sim = systems.simulator(
        [
            "--ttft",
            "0.3",
            "--itl",
            "0.01",
            "--completion-tokens",
            "40",
            "--rpm",
            str(scale.rpm),
            "--tpm",
            str(scale.tpm),
        ]
    )
    results = []
    try:
        ours = systems.orchestrator(sim, rpm=scale.rpm, tpm=scale.tpm, name="burst")
        async with grpc.aio.insecure_channel(ours) as channel:
            call = orchestrator_caller(channel, scale.deadline_seconds, orchestrator_pb2.PRIORITY_BATCH)
            results.append(await burst("pdfchat", call, sim, scale))
        litellm_url = systems.litellm(sim, rpm=scale.rpm, tpm=scale.tpm, name="burst")
        if litellm_url is not None:
            call, client = openai_caller(litellm_url, litellm_proxy.MASTER_KEY, scale.deadline_seconds)
            try:
                results.append(await burst("litellm", call, sim, scale))
            finally:
                await client.close()
    finally:
        await systems.stop()
    return results


def table(latency: dict[str, dict[str, float]], bursts: list[BurstFigures], scale: Scale) -> str:
    systems = [name for name in ("pdfchat", "litellm") if name in latency]
    width = 16
    lines = [
        "",
        f"(a) added latency vs the simulator directly, {scale.latency_requests} streamed requests at concurrency "
        f"{scale.concurrency} (direct p50 {latency['direct']['p50_ms']:.1f} ms, "
        f"p99 {latency['direct']['p99_ms']:.1f} ms)",
        f"{'':32s}" + "".join(f"{name:>{width}s}" for name in systems),
    ]
    for label, key in (
        ("added p50 (ms)", "added_p50_ms"),
        ("added p99 (ms)", "added_p99_ms"),
        ("p50 (ms)", "p50_ms"),
        ("p99 (ms)", "p99_ms"),
        ("ok", "ok"),
    ):
        lines.append(f"{label:32s}" + "".join(f"{latency[name][key]:>{width}.1f}" for name in systems))
    if "litellm" in latency and latency["litellm"]["added_p50_ms"] > 0:
        ratio = latency["pdfchat"]["added_p50_ms"] / latency["litellm"]["added_p50_ms"]
        lines.append(f"{'ours / litellm added p50':32s}{ratio:>{width}.2f}   (target <= 0.50)")
    lines += [
        "",
        f"(b) burst: {scale.burst_requests} batch requests, {len(TENANTS)} tenants, provider limit {scale.rpm} RPM / "
        f"{scale.tpm} TPM, {scale.deadline_seconds:.0f} s deadlines",
        f"{'':32s}" + "".join(f"{b.system:>{width}s}" for b in bursts),
        f"{'succeeded':32s}" + "".join(f"{f'{b.succeeded}/{b.requests}':>{width}s}" for b in bursts),
        f"{'duration (s)':32s}" + "".join(f"{b.duration_seconds:>{width}.0f}" for b in bursts),
        f"{'provider quota used':32s}"
        + "".join(f"{f'{b.quota_used:.1%} ({b.quota_basis[0]})':>{width}s}" for b in bursts),
        f"{'  requests / (RPM x minutes)':32s}" + "".join(f"{b.request_share:>{width}.1%}" for b in bursts),
        f"{'  tokens / (TPM x minutes)':32s}" + "".join(f"{b.token_share:>{width}.1%}" for b in bursts),
        f"{'upstream calls':32s}" + "".join(f"{b.upstream_calls:>{width}d}" for b in bursts),
        f"{'upstream 429s':32s}" + "".join(f"{b.upstream_429 / max(b.upstream_calls, 1):>{width}.1%}" for b in bursts),
        f"{'Jain fairness (tenants)':32s}" + "".join(f"{b.jain:>{width}.3f}" for b in bursts),
        "targets (ours): every request succeeds, quota >= 95%, 429s <= 1%, Jain >= 0.95",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="scaled-down limits and request counts (~3 min)")
    parser.add_argument("--skip-litellm", action="store_true", help="only our orchestrator (no LiteLLM venv)")
    parser.add_argument("--skip-burst", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args(argv)


async def main(args: argparse.Namespace, postgres: str, nats_url: str, redis_url: str) -> int:
    scale = QUICK if args.quick else FULL
    litellm = None if args.skip_litellm else litellm_proxy.ensure_venv()
    database = f"pdfchat_bench_{uuid.uuid4().hex[:8]}"
    await infra.create_database(postgres, database)
    work = Path(tempfile.mkdtemp(prefix="pdfchat-bench-orchestrator-"))
    systems = Systems(work, infra.Infrastructure(infra.with_database(postgres, database), nats_url, redis_url), litellm)
    print(f"orchestrator bench ({'quick' if args.quick else 'full'}), logs in {work}", flush=True)
    try:
        print("(a) latency ...", flush=True)
        latency = await latency_phase(systems, scale)
        bursts: list[BurstFigures] = []
        if not args.skip_burst:
            print(f"(b) burst ({scale.burst_requests} requests at {scale.rpm} RPM: minutes by nature) ...", flush=True)
            bursts = await burst_phase(systems, scale)
    finally:
        await systems.stop()
        await infra.drop_database(postgres, database)
    print(table(latency, bursts, scale))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"scale": asdict(scale), "latency": latency, "burst": [asdict(b) for b in bursts]}
        args.json.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return 0


def cli(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Found or started before the event loop runs: infra's helpers run their own loops.
    redis_url, _ = infra.ensure_redis()
    postgres = infra.ensure_postgres()
    nats_url, _ = infra.ensure_nats()
    return asyncio.run(main(args, postgres, nats_url, redis_url))


if __name__ == "__main__":
    sys.exit(cli())
