"""An OpenAI-compatible LLM provider simulator for tests and benchmarks: nothing reaches the internet.

It serves chat completions (plain and streamed), embeddings and the model list with deterministic
content, and behaves like a loaded provider on demand: time to first token, inter-token latency,
RPM/TPM limits answered with 429 + Retry-After + `x-ratelimit-*` headers, and injected 500/503s,
hangs and streams cut mid-way. Counters at `GET /_sim/stats` let a test check what reached it.

    with SimServer(SimConfig(rpm_limit=600)) as sim:
        client = openai.AsyncOpenAI(base_url=sim.openai_base_url, api_key="x")
        sim.configure(next_faults=["503"])

Or as a process: `python -m pdfchat_tools.llm_sim --port 8900 --ttft 0.3 --itl 0.02`.
"""

from pdfchat_tools.llm_sim.app import create_app
from pdfchat_tools.llm_sim.config import FAULT_KINDS, SimConfig
from pdfchat_tools.llm_sim.runner import SimClient, SimServer, start_subprocess

__all__ = ["FAULT_KINDS", "SimClient", "SimConfig", "SimServer", "create_app", "start_subprocess"]
