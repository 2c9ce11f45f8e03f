"""Runs the whole suite on one machine: `python -m pdfchat_tools.devstack up|down|status`.

`up` finds or starts the infrastructure (see `infra`), starts the seven services as their own
processes (each applies its own migrations), waits until the gateway's /readyz answers 200, prints the
URL and returns; the services keep running, logging to `.data/logs/<service>.log`. `down` stops them.
Tests use `Stack` to run a private copy of the suite on free ports.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from pdfchat_tools import infra

SERVICES = ("vector_index", "embedding", "orchestrator", "ingestion", "worker_pdf", "chat", "gateway")
GRPC_SERVICES = SERVICES[:-1]
DEFAULT_PORTS = {
    "ingestion": 50061,
    "worker_pdf": 50062,
    "embedding": 50063,
    "vector_index": 50064,
    "orchestrator": 50065,
    "chat": 50066,
    "gateway": 8080,
}
STATE_FILE = infra.DATA_DIR / "run" / "stack.json"


@dataclass
class StackConfig:
    env: dict[str, str]
    log_dir: Path
    gateway_port: int

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"


def stack_env(
    infrastructure: infra.Infrastructure,
    *,
    ports: dict[str, int],
    data_dir: Path,
    jobs_namespace: str = "pdfchat",
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment every service process gets: infrastructure URLs and every service's address."""
    env = {
        "PDFCHAT_DATABASE_URL": infrastructure.database_url,
        "PDFCHAT_NATS_URL": infrastructure.nats_url,
        "PDFCHAT_REDIS_URL": infrastructure.redis_url,
        "PDFCHAT_JOBS_NAMESPACE": jobs_namespace,
        "PDFCHAT_OBJECT_STORE_DIR": str(data_dir / "objects"),
        "PDFCHAT_GATEWAY_PORT": str(ports["gateway"]),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    for name in GRPC_SERVICES:
        env[f"PDFCHAT_{name.upper()}_ADDR"] = f"127.0.0.1:{ports[name]}"
    env.update(extra or {})
    return env


@dataclass
class ServiceProcess:
    name: str
    env: dict[str, str]
    log_file: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, *, detach: bool = False) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        environment = {**os.environ, **self.env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"pdfchat.{self.name}"],
            env=environment,
            stdout=self.log_file.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=detach,
            cwd=infra.REPO_ROOT,
        )

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def grpc_serving(address: str) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1.0)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Stack:
    config: StackConfig
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    def start(self, services: tuple[str, ...] = SERVICES, *, detach: bool = False, timeout: float = 180.0) -> None:
        for name in services:
            service = ServiceProcess(name, self.config.env, self.config.log_dir / f"{name}.log")
            service.start(detach=detach)
            self.processes[name] = service
        self.wait_ready(services, timeout)

    def wait_ready(self, services: tuple[str, ...], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = set(services)
        while pending and time.monotonic() < deadline:
            for name in sorted(pending):
                service = self.processes[name]
                if (code := service.exited()) is not None:
                    raise infra.InfrastructureError(
                        f"{name} exited with {code} during start-up:\n{tail(service.log_file)}"
                    )
                if name == "gateway":
                    ready = http_ok(f"{self.config.gateway_url}/readyz")
                else:
                    ready = grpc_serving(self.config.env[f"PDFCHAT_{name.upper()}_ADDR"])
                if ready:
                    pending.discard(name)
            time.sleep(0.3)
        if pending:
            logs = "\n".join(f"--- {name} ---\n{tail(self.processes[name].log_file)}" for name in sorted(pending))
            raise infra.InfrastructureError(f"not ready after {timeout:.0f}s: {sorted(pending)}\n{logs}")

    def stop(self) -> None:
        for name in reversed(list(self.processes)):
            self.processes[name].stop()


def _read_state() -> dict[str, int]:
    if not STATE_FILE.exists():
        return {}
    return {name: int(pid) for name, pid in json.loads(STATE_FILE.read_text()).items()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def up() -> int:
    started_at = time.monotonic()
    running = {name: pid for name, pid in _read_state().items() if _alive(pid)}
    if running:
        print(f"pdfchat is already running ({', '.join(sorted(running))}); `make down` stops it.")
        print(f"pdfchat is up: http://127.0.0.1:{os.environ.get('PDFCHAT_GATEWAY_PORT', DEFAULT_PORTS['gateway'])}")
        return 0
    print("==> infrastructure")
    infrastructure = infra.ensure_all()
    print(f"    postgres: {infrastructure.database_url}")
    print(f"    nats:     {infrastructure.nats_url}")
    print(f"    redis:    {infrastructure.redis_url}")
    ports = dict(DEFAULT_PORTS)
    if gateway_port := os.environ.get("PDFCHAT_GATEWAY_PORT"):
        ports["gateway"] = int(gateway_port)
    env = stack_env(infrastructure, ports=ports, data_dir=infra.DATA_DIR)
    # Variables the user set win over the defaults computed here.
    env.update({key: value for key, value in os.environ.items() if key.startswith("PDFCHAT_")})
    config = StackConfig(env=env, log_dir=infra.DATA_DIR / "logs", gateway_port=ports["gateway"])
    print("==> starting services (logs in .data/logs/)")
    stack = Stack(config)
    try:
        stack.start(detach=True)
    except Exception:
        stack.stop()
        raise
    finally:
        STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
        STATE_FILE.write_text(
            json.dumps({name: p.process.pid for name, p in stack.processes.items() if p.process is not None})
        )
    print(f"==> ready in {time.monotonic() - started_at:.1f}s")
    print(f"pdfchat is up: {config.gateway_url}")
    return 0


def down() -> int:
    state = _read_state()
    for name, pid in state.items():
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
            print(f"stopping {name} ({pid})")
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in state.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in state.values():
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    STATE_FILE.unlink(missing_ok=True)
    if infra.stop_embedded_postgres():
        print("stopped embedded postgres")
    print("pdfchat is down")
    return 0


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "up"
    if command == "up":
        return up()
    if command == "down":
        return down()
    print(f"usage: {argv[0]} up|down", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
