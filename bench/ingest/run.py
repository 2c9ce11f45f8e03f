"""`python -m bench.ingest [--quick]`: the suite's ingest throughput side by side with an in-process baseline.

One run measures, on the same machine and corpus, one after the other (never concurrently, so they do not
share the cores):
1. the baseline (see `baseline`): extraction, chunking, embedding and pgvector insert in this process;
2. the suite with one replica of each service (embedding with its default: all cores);
3. the suite with two worker_pdf and two embedding replicas, each held to one thread
   (PDFCHAT_EMBEDDING_THREADS=1, OMP_NUM_THREADS=1), so per-core scaling is visible;
and, on the one-replica suite once it is idle, upload-to-READY time of a 10-page PDF over several runs.
Each configuration gets its own database, JetStream namespace and tenant, so no run sees another's rows.
Prints one table; `--json PATH` also writes the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

from bench.ingest import baseline, corpus
from bench.ingest.baseline import Throughput
from bench.ingest.suite import SuiteRun
from pdfchat_tools import infra

TARGET_RATIO = 0.85
ONE_THREAD = {"PDFCHAT_EMBEDDING_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low, high = int(position), min(int(position) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


async def _database(server_url: str, name: str) -> str:
    await infra.create_database(server_url, name)
    return infra.with_database(server_url, name)


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(
        cell.ljust(width) if i == 0 else cell.rjust(width)
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
    )


def render(
    results: list[Throughput], base: Throughput, latencies: list[float], memory: dict[str, dict[str, int]]
) -> str:
    header = ["configuration", "pages", "chunks", "seconds", "pages/s", "chunks/s", "vs baseline", "load 1m"]
    rows = [header]
    for result in [base, *results]:
        ratio = result.pages_per_second / base.pages_per_second if base.pages_per_second else 0.0
        rows.append(
            [
                result.label,
                str(result.pages),
                str(result.chunks),
                f"{result.seconds:.1f}",
                f"{result.pages_per_second:.2f}",
                f"{result.chunks_per_second:.2f}",
                "1.00x" if result is base else f"{ratio:.2f}x",
                f"{result.load_average:.1f}",
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [_row(row, widths) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    lines.append("")
    lines.append(
        f"target: suite (1 replica each) >= {TARGET_RATIO:.2f}x the baseline's throughput; "
        f"{os.cpu_count()} cores, load 1m above that means other work shared the cores"
    )
    if latencies:
        lines.append(
            f"upload -> READY, 10-page PDF, {len(latencies)} runs on the idle 1-replica suite: "
            f"p50 {_percentile(latencies, 0.5):.2f} s, p95 {_percentile(latencies, 0.95):.2f} s, "
            f"min {min(latencies):.2f} s, max {max(latencies):.2f} s"
        )
    lines.append("")
    lines.append("peak RSS per service process (MiB, with its child processes):")
    for label, peaks in memory.items():
        cells = ", ".join(f"{name} {peak / 2**20:.0f}" for name, peak in sorted(peaks.items()))
        lines.append(f"  {label}: {cells}")
    return "\n".join(lines)


async def run(
    quick: bool, latency_runs: int, json_path: Path | None, server_url: str, nats_url: str, redis_url: str
) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    documents = corpus.load(quick=quick)
    print(
        f"corpus: {len(documents)} PDFs, {sum(d.pages for d in documents)} pages "
        f"({'quick' if quick else 'full'}; includes a generated {documents[-1].pages}-page PDF)",
        flush=True,
    )
    run_id = uuid.uuid4().hex[:8]
    databases: list[str] = []

    async def database(label: str) -> str:
        name = f"pdfchat_bench_{run_id}_{label}"
        databases.append(name)
        return await _database(server_url, name)

    results: list[Throughput] = []
    memory: dict[str, dict[str, int]] = {}
    latencies: list[float] = []
    try:
        print("baseline (in-process) ...", flush=True)
        base = replace(
            await baseline.run_baseline(documents, await database("baseline")), load_average=os.getloadavg()[0]
        )
        print(f"  {base.pages} pages, {base.chunks} chunks in {base.seconds:.1f}s", flush=True)

        with tempfile.TemporaryDirectory(prefix="bench-ingest-") as work:
            configurations = [
                ("suite: 1 replica each", "one", {}, {}),
                (
                    "suite: 2 worker_pdf + 2 embedding, 1 thread each",
                    "two",
                    ONE_THREAD,
                    {"worker_pdf": 1, "embedding": 1},
                ),
            ]
            for label, key, extra_env, replicas in configurations:
                print(f"{label} ...", flush=True)
                infrastructure = infra.Infrastructure(await database(key), nats_url, redis_url)
                suite = SuiteRun(key, infrastructure, Path(work), dict(extra_env), dict(replicas))
                suite.label = label
                started = time.perf_counter()
                try:
                    suite.start()
                    print(f"  started in {time.perf_counter() - started:.1f}s", flush=True)
                    result = await suite.ingest(documents, tenant=f"bench-{key}")
                    result = replace(result, load_average=os.getloadavg()[0])
                    print(f"  {result.pages} pages, {result.chunks} chunks in {result.seconds:.1f}s", flush=True)
                    results.append(result)
                    if key == "one" and latency_runs:
                        pdfs = [corpus.generated_pdf(10, seed=1000 + i) for i in range(latency_runs)]
                        latencies = await suite.upload_to_ready_seconds(pdfs, tenant=f"bench-latency-{run_id}")
                finally:
                    await suite.stop()
                memory[label] = dict(suite.memory.peak_bytes)
    finally:
        for name in databases:
            await infra.drop_database(server_url, name)

    print()
    print(render(results, base, latencies, memory))
    if json_path is not None:
        figures = {
            "corpus": {"pdfs": len(documents), "pages": sum(d.pages for d in documents), "quick": quick},
            "throughput": [
                {
                    "configuration": r.label,
                    "pages": r.pages,
                    "chunks": r.chunks,
                    "seconds": r.seconds,
                    "pages_per_second": r.pages_per_second,
                    "chunks_per_second": r.chunks_per_second,
                    "ratio": r.pages_per_second / base.pages_per_second,
                }
                for r in [base, *results]
            ],
            "upload_to_ready_seconds": latencies,
            "peak_rss_bytes": memory,
        }
        json_path.write_text(json.dumps(figures, indent=2))
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small corpus (6 QA PDFs and a 30-page one)")
    parser.add_argument("--latency-runs", type=int, default=None, help="10-page uploads timed (default 10, quick 3)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    latency_runs = args.latency_runs if args.latency_runs is not None else (3 if args.quick else 10)
    # found or started before the event loop runs: infra's helpers run their own loops
    server_url = infra.ensure_postgres()
    nats_url, _ = infra.ensure_nats()
    redis_url, _ = infra.ensure_redis()
    return asyncio.run(run(args.quick, latency_runs, args.json, server_url, nats_url, redis_url))
