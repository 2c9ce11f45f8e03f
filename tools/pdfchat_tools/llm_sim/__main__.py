"""`python -m pdfchat_tools.llm_sim --port 8900 [--ttft 0.2 --itl 0.02 --rpm 600 --tpm 100000 ...]`.

Every `SimConfig` setting can also be changed while running: `POST /_sim/config`.
"""

from __future__ import annotations

import argparse
import logging

import uvicorn

from pdfchat_tools.llm_sim.app import create_app
from pdfchat_tools.llm_sim.config import SimConfig


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, SimConfig]:
    parser = argparse.ArgumentParser(prog="python -m pdfchat_tools.llm_sim", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--ttft", type=float, default=0.0, help="time to first token, seconds")
    parser.add_argument("--itl", type=float, default=0.0, help="inter-token latency, seconds")
    parser.add_argument("--rpm", type=int, default=None, help="requests per minute before 429")
    parser.add_argument("--tpm", type=int, default=None, help="tokens per minute before 429")
    parser.add_argument("--completion-tokens", type=int, default=None, help="fixed answer length in tokens")
    parser.add_argument("--error-500-rate", type=float, default=0.0)
    parser.add_argument("--error-503-rate", type=float, default=0.0)
    parser.add_argument("--timeout-rate", type=float, default=0.0)
    parser.add_argument("--cut-rate", type=float, default=0.0)
    parser.add_argument("--cut-after-tokens", type=int, default=3)
    parser.add_argument("--api-key", default=None, help="require this bearer token")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    config = SimConfig(
        api_key=args.api_key,
        time_to_first_token_seconds=args.ttft,
        inter_token_seconds=args.itl,
        completion_tokens=args.completion_tokens,
        rpm_limit=args.rpm,
        tpm_limit=args.tpm,
        error_500_rate=args.error_500_rate,
        error_503_rate=args.error_503_rate,
        timeout_rate=args.timeout_rate,
        cut_rate=args.cut_rate,
        cut_after_tokens=args.cut_after_tokens,
        seed=args.seed,
    )
    return args, config


def main(argv: list[str] | None = None) -> None:
    args, config = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())
    uvicorn.run(create_app(config), host=args.host, port=args.port, log_level=args.log_level, access_log=False)


if __name__ == "__main__":
    main()
