"""The simulator's HTTP surface: an OpenAI-compatible API plus a small admin API.

OpenAI-compatible:
- `POST /v1/chat/completions`: non-streaming, or `stream: true` as server-sent events of
  `chat.completion.chunk` objects ending with `data: [DONE]`; with `stream_options.include_usage`
  every chunk carries `usage: null` and one last chunk with empty `choices` carries the usage.
- `POST /v1/embeddings`: deterministic pseudo-vectors (`float` or `base64` encoding).
- `GET /v1/models`.

Admin (not part of any real provider):
- `GET /_sim/config`, `POST /_sim/config` (partial update), `GET /_sim/stats`, `POST /_sim/reset`
  (zeroes counters and the rate-limit window; keeps the config unless `{"config": true}` is posted).

Faults are decided per request before anything is sent: 429 (limits or injected), 500, 503, a hang
(`timeout`), or for streams a connection dropped after some tokens (`cut`), which a client sees as a
body that ends without `[DONE]` or a finish reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from pdfchat_tools.llm_sim import text
from pdfchat_tools.llm_sim.config import SimConfig
from pdfchat_tools.llm_sim.limits import SlidingWindowLimiter

log = logging.getLogger(__name__)


class StreamCut(Exception):
    """Raised inside a streaming body to drop the connection mid-stream, as a failing provider would."""


class SimState:
    """Mutable state of one simulator: its config, rate-limit window, fault dice and counters."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.limiter = SlidingWindowLimiter()
        self.random = random.Random(config.seed)
        self.counters: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.started_at = time.time()

    def reset(self, config: SimConfig | None = None) -> None:
        if config is not None:
            self.config = config
        self.limiter.reset()
        self.random = random.Random(self.config.seed)
        self.counters.clear()
        self.max_in_flight = self.in_flight

    def next_fault(self, streaming: bool) -> str | None:
        """The fault this request gets: a scheduled one first, then the configured rates."""
        config = self.config
        if config.next_faults:
            return config.next_faults.pop(0)
        roll = self.random.random()
        for kind, rate in (
            ("500", config.error_500_rate),
            ("503", config.error_503_rate),
            ("timeout", config.timeout_rate),
            ("cut", config.cut_rate if streaming else 0.0),
        ):
            if roll < rate:
                return kind
            roll -= rate
        return None

    def stats(self) -> dict[str, Any]:
        return {
            "counters": dict(sorted(self.counters.items())),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "uptime_seconds": round(time.time() - self.started_at, 3),
        }


def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return JSONResponse(body, status_code=status, headers=headers)


def create_app(config: SimConfig | None = None) -> Starlette:
    """A Starlette app simulating one OpenAI-compatible provider; `app.state.sim` holds its `SimState`."""
    state = SimState(config or SimConfig())

    def unauthorized(request: Request) -> Response | None:
        key = state.config.api_key
        if key is not None and request.headers.get("authorization") != f"Bearer {key}":
            state.counters["status_401"] += 1
            return _error(401, "invalid api key", "invalid_request_error")
        return None

    async def chat_completions(request: Request) -> Response:
        if (refused := unauthorized(request)) is not None:
            return refused
        try:
            body = await request.json()
            messages = list(body["messages"])
            model = str(body["model"])
        except (ValueError, KeyError, TypeError):
            state.counters["status_400"] += 1
            return _error(400, "body must be JSON with `model` and `messages`", "invalid_request_error")
        streaming = bool(body.get("stream"))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        config = state.config
        answer = config.fixed_answer if config.fixed_answer is not None else text.answer_for(messages)
        if config.completion_tokens is not None:
            answer = text.fit_to_length(answer, config.completion_tokens)
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        tokens = text.tokenize(answer)
        finish_reason = "stop"
        if isinstance(max_tokens, int) and max_tokens > 0 and sum(1 for t in tokens if t.strip()) > max_tokens:
            tokens, finish_reason = _truncate(tokens, max_tokens), "length"
        usage = {
            "prompt_tokens": text.prompt_tokens(messages),
            "completion_tokens": sum(1 for t in tokens if t.strip()),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]

        state.counters["chat_requests"] += 1
        reserved = usage["prompt_tokens"] + (max_tokens if isinstance(max_tokens, int) else usage["completion_tokens"])
        admission = state.limiter.admit(reserved, config.rpm_limit, config.tpm_limit)
        fault = None if not admission.admitted else state.next_fault(streaming)
        if not admission.admitted or fault == "429":
            state.counters["status_429"] += 1
            retry_after = admission.retry_after_seconds if not admission.admitted else 1.0
            headers = dict(admission.headers)
            if math.isfinite(retry_after):
                headers["retry-after"] = str(max(1, math.ceil(retry_after)))
                headers["retry-after-ms"] = str(round(retry_after * 1000))
            return _error(429, "rate limit reached (simulated)", "rate_limit_exceeded", headers)
        if fault in ("500", "503"):
            state.counters[f"status_{fault}"] += 1
            return _error(int(fault), f"injected {fault} (simulated)", "server_error", admission.headers)
        if fault == "timeout":
            state.counters["timeouts"] += 1
            await asyncio.sleep(config.timeout_seconds)
            return _error(504, "injected timeout (simulated)", "server_error")

        state.counters["prompt_tokens"] += usage["prompt_tokens"]
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        if not streaming:
            await _sleep(config.time_to_first_token_seconds + config.inter_token_seconds * max(len(tokens) - 1, 0))
            state.counters["completion_tokens"] += usage["completion_tokens"]
            state.counters["status_200"] += 1
            return JSONResponse(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "".join(tokens)},
                            "finish_reason": finish_reason,
                            "logprobs": None,
                        }
                    ],
                    "usage": usage,
                },
                headers=admission.headers,
            )
        state.counters["status_200"] += 1
        state.counters["streams_started"] += 1
        chunks = _stream_chunks(
            state, completion_id, created, model, tokens, finish_reason, usage, include_usage, cut=fault == "cut"
        )
        return StreamingResponse(chunks, media_type="text/event-stream", headers=admission.headers)

    async def embeddings(request: Request) -> Response:
        if (refused := unauthorized(request)) is not None:
            return refused
        try:
            body = await request.json()
            raw = body["input"]
            model = str(body.get("model", "sim-embedding"))
        except (ValueError, KeyError, TypeError):
            state.counters["status_400"] += 1
            return _error(400, "body must be JSON with `input`", "invalid_request_error")
        inputs = [raw] if isinstance(raw, str) else [str(item) for item in raw]
        dimensions = int(body.get("dimensions") or state.config.embedding_dimensions)
        tokens = sum(text.count_tokens(item) for item in inputs)
        admission = state.limiter.admit(tokens, state.config.rpm_limit, state.config.tpm_limit)
        state.counters["embedding_requests"] += 1
        if not admission.admitted:
            state.counters["status_429"] += 1
            headers = dict(admission.headers)
            if math.isfinite(admission.retry_after_seconds):
                headers["retry-after"] = str(max(1, math.ceil(admission.retry_after_seconds)))
            return _error(429, "rate limit reached (simulated)", "rate_limit_exceeded", headers)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, item in enumerate(inputs):
            vector = text.embedding(item, dimensions)
            data.append(
                {
                    "object": "embedding",
                    "index": index,
                    "embedding": text.encode_base64(vector) if as_base64 else vector,
                }
            )
        state.counters["embedding_inputs"] += len(inputs)
        state.counters["status_200"] += 1
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
            headers=admission.headers,
        )

    async def models(request: Request) -> Response:
        if (refused := unauthorized(request)) is not None:
            return refused
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "llm-sim"} for name in state.config.models]
        return JSONResponse({"object": "list", "data": data})

    async def get_config(_: Request) -> Response:
        return JSONResponse(state.config.as_dict())

    async def set_config(request: Request) -> Response:
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise ValueError("config must be a JSON object")
            state.config = state.config.updated(changes)
        except (ValueError, TypeError) as exc:
            return _error(400, str(exc), "invalid_request_error")
        if "seed" in changes:
            state.random = random.Random(state.config.seed)
        return JSONResponse(state.config.as_dict())

    async def get_stats(_: Request) -> Response:
        return JSONResponse(state.stats())

    async def reset(request: Request) -> Response:
        body = await request.body()
        wants_config = bool(body) and bool(json.loads(body).get("config"))
        state.reset(SimConfig() if wants_config else None)
        return JSONResponse(state.stats())

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/_sim/config", get_config, methods=["GET"]),
            Route("/_sim/config", set_config, methods=["POST"]),
            Route("/_sim/stats", get_stats, methods=["GET"]),
            Route("/_sim/reset", reset, methods=["POST"]),
        ]
    )
    app.state.sim = state
    app.add_middleware(_InFlight, state=state)
    return app


class _InFlight:
    """Counts requests in flight until their body, streamed or not, is fully sent (plain ASGI, so streams count)."""

    def __init__(self, app: ASGIApp, state: SimState) -> None:
        self._app = app
        self._state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        self._state.in_flight += 1
        self._state.max_in_flight = max(self._state.max_in_flight, self._state.in_flight)
        try:
            await self._app(scope, receive, send)
        except StreamCut as cut:
            # Returning with the body unfinished makes the server drop the connection, which is the point.
            log.info("%s", cut)
        finally:
            self._state.in_flight -= 1


async def _sleep(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)


def _truncate(tokens: list[str], limit: int) -> list[str]:
    kept: list[str] = []
    count = 0
    for token in tokens:
        if token.strip():
            if count == limit:
                break
            count += 1
        kept.append(token)
    return kept


async def _stream_chunks(
    state: SimState,
    completion_id: str,
    created: int,
    model: str,
    tokens: list[str],
    finish_reason: str,
    usage: dict[str, int],
    include_usage: bool,
    *,
    cut: bool,
) -> AsyncIterator[str]:
    """The SSE body of a streamed completion, with latency, and a dropped connection when `cut`."""
    config = state.config

    def chunk(delta: dict[str, Any], finish: str | None) -> str:
        payload: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
        if include_usage:
            payload["usage"] = None
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""}, None)
    await _sleep(config.time_to_first_token_seconds)
    sent = 0
    for index, token in enumerate(tokens):
        if cut and sent >= config.cut_after_tokens:
            state.counters["streams_cut"] += 1
            state.counters["completion_tokens"] += sent
            raise StreamCut(f"stream {completion_id} cut after {sent} tokens (simulated)")
        if index:
            await _sleep(config.inter_token_seconds)
        yield chunk({"content": token}, None)
        sent += 1 if token.strip() else 0
    if cut:  # an answer shorter than `cut_after_tokens` is cut just before its finish
        state.counters["streams_cut"] += 1
        state.counters["completion_tokens"] += sent
        raise StreamCut(f"stream {completion_id} cut after {sent} tokens (simulated)")
    yield chunk({}, finish_reason)
    if include_usage:
        final = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
        yield f"data: {json.dumps({**final, 'choices': [], 'usage': usage})}\n\n"
    yield "data: [DONE]\n\n"
    state.counters["completion_tokens"] += usage["completion_tokens"]
    state.counters["streams_completed"] += 1
