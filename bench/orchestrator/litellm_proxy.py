"""LiteLLM's proxy for the side-by-side benchmark: its own venv, a config with the same limits, a subprocess.

LiteLLM never enters the project's lock: `ensure_venv()` creates `bench/orchestrator/.venv-litellm`
(gitignored) and installs the pinned `litellm[proxy]` there. The proxy runs without a database, with
its usage-based router enforcing the deployment's RPM/TPM through the same Redis, Redis response
caching on, and its own retries on (LiteLLM's defaults for a proxy in front of a rate-limited provider).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import yaml

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-litellm"
LITELLM_VERSION = "1.100.5"
"""Newest release whose dependencies resolve from the package index these machines use (1.106+ need a
certifi release the index does not have yet)."""
MASTER_KEY = "sk-bench-master"


def ensure_venv() -> Path:
    """The `litellm` executable of the bench's own venv, installing the pinned release when missing."""
    executable = VENV / "bin" / "litellm"
    marker = VENV / f".installed-{LITELLM_VERSION}"
    if executable.exists() and marker.exists():
        return executable
    base = getattr(sys, "_base_executable", sys.executable)
    if not (VENV / "bin" / "python").exists():
        subprocess.run([base, "-m", "venv", str(VENV)], check=True)
    print(f"installing litellm[proxy]=={LITELLM_VERSION} into {VENV} (once) ...", flush=True)
    subprocess.run(
        [str(VENV / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"],
        check=True,
    )
    marker.touch()
    return executable


def write_config(
    path: Path, *, sim_base_url: str, model: str, rpm: int, tpm: int, redis_url: str, timeout_seconds: float
) -> Path:
    redis = urlsplit(redis_url)
    redis_params = {"host": redis.hostname or "127.0.0.1", "port": redis.port or 6379}
    config = {
        "model_list": [
            {
                "model_name": model,
                "litellm_params": {
                    "model": f"openai/{model}",
                    "api_base": sim_base_url,
                    "api_key": "sk-sim",
                    "rpm": rpm,
                    "tpm": tpm,
                },
            }
        ],
        "router_settings": {
            "routing_strategy": "usage-based-routing-v2",
            "redis_host": redis_params["host"],
            "redis_port": redis_params["port"],
            "num_retries": 3,
            "timeout": timeout_seconds,
        },
        "litellm_settings": {
            "cache": True,
            "cache_params": {"type": "redis", **redis_params},
            "request_timeout": timeout_seconds,
            "telemetry": False,
        },
        "general_settings": {"master_key": MASTER_KEY},
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def start(executable: Path, config: Path, port: int, log_file: Path, timeout: float = 180.0) -> subprocess.Popen[bytes]:
    """Starts the proxy and waits until it answers its liveness probe."""
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the price list from the internet
        "LITELLM_TELEMETRY": "False",
        "DISABLE_SCHEMA_UPDATE": "True",
    }
    env.pop("DATABASE_URL", None)
    output = log_file.open("ab")
    process = subprocess.Popen(
        [str(executable), "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"],
        stdout=output,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=str(config.parent),
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"LiteLLM proxy exited with {process.returncode}; see {log_file}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/liveliness", timeout=2) as reply:
                if reply.status == 200:
                    return process
        except OSError:
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"LiteLLM proxy did not start in {timeout:.0f}s; see {log_file}")
