"""Shared pytest fixtures: real PostgreSQL (pgvector), NATS JetStream and Redis, and real service processes.

Loaded by the root conftest.py. Each test session gets its own database and its own JetStream namespace,
so runs never see each other's data; the servers themselves are found or started by `infra`.
In CI (CI set), any skipped test fails the run: an integration test that did not run proves nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from pdfchat_tools import devstack, infra

SHARED_DATA = infra.REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def run_id() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def database_url(run_id: str) -> Iterator[str]:
    """A fresh database (with the vector extension) on a PostgreSQL that has pgvector."""
    server_url = infra.ensure_postgres()
    name = f"pdfchat_test_{run_id}"
    asyncio.run(infra.create_database(server_url, name))
    yield infra.with_database(server_url, name)
    asyncio.run(infra.drop_database(server_url, name))


def _run_off_loop(work: Coroutine[Any, Any, None]) -> None:
    """Runs a coroutine to completion from sync code, even when the caller is inside an event loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, work).result()


@pytest.fixture(scope="session")
def database_factory(run_id: str) -> Iterator[Callable[[], str]]:
    """Creates another fresh database (with pgvector) per call; a stack's background workers (reconcilers,
    senders, sweepers) then never act on another test's rows."""
    server_url = infra.ensure_postgres()
    created: list[str] = []

    def create() -> str:
        name = f"pdfchat_test_{run_id}_{len(created) + 1}"
        _run_off_loop(infra.create_database(server_url, name))
        created.append(name)
        return infra.with_database(server_url, name)

    yield create
    for name in created:
        _run_off_loop(infra.drop_database(server_url, name))


@pytest.fixture(scope="session")
def nats_url() -> str:
    url, _ = infra.ensure_nats()
    return url


@pytest.fixture(scope="session")
def jobs_namespace(run_id: str, nats_url: str) -> Iterator[str]:
    namespace = f"t{run_id}"
    yield namespace
    asyncio.run(infra.delete_streams(nats_url, namespace))


@pytest.fixture(scope="session")
def redis_url() -> str:
    url, _ = infra.ensure_redis()
    return url


@pytest.fixture(scope="session")
def infrastructure(database_url: str, nats_url: str, redis_url: str) -> infra.Infrastructure:
    return infra.Infrastructure(database_url, nats_url, redis_url)


@pytest.fixture(scope="session")
def stack_factory(
    infrastructure: infra.Infrastructure,
    jobs_namespace: str,
    database_factory: Callable[[], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., devstack.Stack]]:
    """Starts services of the suite as real processes on free ports; all are stopped at session end.

    Each stack gets its own database and JetStream namespace, so one stack's workers never take another's
    jobs or touch another's rows.
    """
    stacks: list[devstack.Stack] = []
    namespaces: list[str] = []

    def start(services: tuple[str, ...] = devstack.SERVICES, extra_env: dict[str, str] | None = None) -> devstack.Stack:
        data_dir = tmp_path_factory.mktemp("stack")
        namespace = f"{jobs_namespace}s{len(namespaces)}"
        namespaces.append(namespace)
        ports = {name: infra.free_port() for name in devstack.DEFAULT_PORTS}
        env = devstack.stack_env(
            dataclasses.replace(infrastructure, database_url=database_factory()),
            ports=ports,
            data_dir=data_dir,
            jobs_namespace=namespace,
            extra={"PDFCHAT_ENV": "test", **(extra_env or {})},
        )
        stack = devstack.Stack(devstack.StackConfig(env=env, log_dir=data_dir / "logs", gateway_port=ports["gateway"]))
        stacks.append(stack)
        stack.start(services)
        return stack

    yield start
    for stack in stacks:
        stack.stop()
    for namespace in namespaces:
        asyncio.run(infra.delete_streams(infrastructure.nats_url, namespace))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.fail(f"test data not found at {SHARED_DATA}")
    return SHARED_DATA


_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI") and _skipped and exitstatus == 0:
        session.exitstatus = 1
        print(f"\nCI: {len(_skipped)} test(s) skipped, which counts as a failure: {_skipped}")
