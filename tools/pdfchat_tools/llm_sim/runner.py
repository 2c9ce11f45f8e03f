"""Starting a simulator from tests and benchmarks: in-process (a uvicorn thread) or as a subprocess.

`SimServer` runs the app on its own event loop in a daemon thread, so a test's loop and any service
processes can call it like a remote provider; `config()` / `stats()` / `reset()` talk to the admin API
over HTTP, so the same helpers work for a subprocess started with `python -m pdfchat_tools.llm_sim`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import uvicorn

from pdfchat_tools import infra
from pdfchat_tools.llm_sim.app import create_app
from pdfchat_tools.llm_sim.config import SimConfig


class SimClient:
    """The admin API of a simulator at `base_url` (`http://host:port`, without `/v1`)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    @property
    def openai_base_url(self) -> str:
        """What an OpenAI client takes as `base_url`."""
        return f"{self.base_url}/v1"

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Changes the named settings (see `SimConfig`) and returns the whole new config."""
        return self._call("POST", "/_sim/config", changes)

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/_sim/stats")

    def reset(self, *, config: bool = True) -> dict[str, Any]:
        """Zeroes the counters and the rate-limit window; with `config`, restores the default settings."""
        return self._call("POST", "/_sim/reset", {"config": config})

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path, data=data, method=method, headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            result: dict[str, Any] = json.loads(response.read())
            return result


class SimServer(SimClient):
    """A simulator in a background thread of this process. Use as a context manager or start()/stop()."""

    def __init__(self, config: SimConfig | None = None, *, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or infra.free_port()
        super().__init__(f"http://{host}:{self.port}")
        self.app = create_app(config)
        self._server = uvicorn.Server(
            uvicorn.Config(self.app, host=host, port=self.port, log_level="warning", lifespan="off", access_log=False)
        )
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> SimServer:
        self._thread = threading.Thread(target=self._server.run, name=f"llm-sim-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"LLM simulator did not start on {self.base_url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_subprocess(
    port: int | None = None, args: list[str] | None = None, log_file: Path | None = None, timeout: float = 15.0
) -> tuple[subprocess.Popen[bytes], SimClient]:
    """Starts `python -m pdfchat_tools.llm_sim` on `port` (a free one by default) and waits until it answers."""
    port = port or infra.free_port()
    output = log_file.open("ab") if log_file is not None else subprocess.DEVNULL
    process = subprocess.Popen(
        [sys.executable, "-m", "pdfchat_tools.llm_sim", "--port", str(port), *(args or [])],
        stdout=output,
        stderr=subprocess.STDOUT,
        cwd=infra.REPO_ROOT,
    )
    try:
        infra.wait_for_port("127.0.0.1", port, timeout, "LLM simulator")
    except infra.InfrastructureError:
        process.kill()
        raise
    return process, SimClient(f"http://127.0.0.1:{port}")
