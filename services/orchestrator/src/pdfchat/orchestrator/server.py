"""gRPC glue for OrchestratorService: messages in, domain calls, messages out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from pdfchat.common import identity
from pdfchat.orchestrator.generation import ChatTurn, GenerationRequest, ModelSpec, Passage, TokenUsage
from pdfchat.orchestrator.limiter import Waiting
from pdfchat.orchestrator.orchestration import Orchestrator
from pdfchat.orchestrator.router import Completion, StreamInterrupted
from pdfchat.v1 import common_pb2, orchestrator_pb2, orchestrator_pb2_grpc

SERVICE_NAME = orchestrator_pb2.DESCRIPTOR.services_by_name["OrchestratorService"].full_name
PARTIAL_INPUT_TOKENS_KEY = "x-pdfchat-partial-input-tokens"
PARTIAL_OUTPUT_TOKENS_KEY = "x-pdfchat-partial-output-tokens"


class OrchestratorServicer(orchestrator_pb2_grpc.OrchestratorServiceServicer):
    def __init__(self, orchestrator: Orchestrator) -> None:
        self._orchestrator = orchestrator

    async def Generate(
        self, request: orchestrator_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.GenerateResponse:
        answer = await self._orchestrator.generate(to_request(request.spec))
        end = answer.completion
        return orchestrator_pb2.GenerateResponse(
            text=answer.text,
            usage=to_usage(end.usage, end.model),
            model=end.model.name,
            provider=end.provider,
            finish_reason=end.finish_reason,
            cached=end.cached,
        )

    async def GenerateStream(
        self, request: orchestrator_pb2.GenerateStreamRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[orchestrator_pb2.GenerateStreamResponse]:
        seq = 0
        try:
            async for event in self._orchestrator.stream(to_request(request.spec)):
                seq += 1
                if isinstance(event, Completion):
                    yield orchestrator_pb2.GenerateStreamResponse(
                        seq=seq,
                        end=orchestrator_pb2.GenerationEnd(
                            finish_reason=event.finish_reason,
                            usage=to_usage(event.usage, event.model),
                            model=event.model.name,
                            provider=event.provider,
                            cached=event.cached,
                        ),
                    )
                elif isinstance(event, Waiting):
                    # Before any token: the caller waits for capacity and can tell the user how long.
                    yield orchestrator_pb2.GenerateStreamResponse(
                        seq=seq, queued=common_pb2.QueueNotice(expected_wait_seconds=event.expected_wait_seconds)
                    )
                else:
                    yield orchestrator_pb2.GenerateStreamResponse(seq=seq, delta=common_pb2.TokenDelta(text=event.text))
        except StreamInterrupted as exc:
            # The error status carries the partial usage, so the caller can account for what it received.
            context.set_trailing_metadata(
                (
                    (PARTIAL_INPUT_TOKENS_KEY, str(exc.usage.input_tokens)),
                    (PARTIAL_OUTPUT_TOKENS_KEY, str(exc.usage.output_tokens)),
                )
            )
            raise

    async def ListModels(
        self, request: orchestrator_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.ListModelsResponse:
        return orchestrator_pb2.ListModelsResponse(models=[to_model_info(m) for m in self._orchestrator.models()])

    async def GetUsage(
        self, request: orchestrator_pb2.GetUsageRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.GetUsageResponse:
        tenant = identity.require().tenant_id
        summary = await self._orchestrator.ledger.usage(
            tenant,
            _time(request.start_time if request.HasField("start_time") else None),
            _time(request.end_time if request.HasField("end_time") else None),
        )
        return orchestrator_pb2.GetUsageResponse(
            requests=summary.requests,
            usage=common_pb2.Usage(
                input_tokens=summary.input_tokens, output_tokens=summary.output_tokens, cost_usd=summary.cost_usd
            ),
            by_model=[
                orchestrator_pb2.ModelUsage(
                    model=m.model,
                    requests=m.requests,
                    usage=common_pb2.Usage(
                        input_tokens=m.input_tokens, output_tokens=m.output_tokens, cost_usd=m.cost_usd
                    ),
                )
                for m in summary.by_model
            ],
        )


def to_request(spec: orchestrator_pb2.GenerationSpec) -> GenerationRequest:
    # proto3 cannot tell 0 from unset: 0 means "provider default" for both.
    return GenerationRequest(
        question=spec.question,
        messages=tuple(ChatTurn(m.role, m.content) for m in spec.messages),
        passages=tuple(
            Passage(text=p.text, page=p.page, document_id=p.document_id, segment_id=p.segment_id, version=p.version)
            for p in spec.passages
        ),
        model=spec.model,
        temperature=spec.temperature or None,
        max_tokens=spec.max_tokens or None,
        prompt_template_id=spec.prompt_template_id,
        prompt_template_version=spec.prompt_template_version,
        priority="batch" if spec.priority == orchestrator_pb2.PRIORITY_BATCH else "interactive",
    )


def to_usage(usage: TokenUsage, model: ModelSpec) -> common_pb2.Usage:
    return common_pb2.Usage(
        input_tokens=usage.input_tokens, output_tokens=usage.output_tokens, cost_usd=usage.cost_usd(model)
    )


def to_model_info(model: ModelSpec) -> orchestrator_pb2.ModelInfo:
    return orchestrator_pb2.ModelInfo(
        name=model.name,
        provider=model.provider,
        context_window=model.context_window,
        quality_tier=model.quality_tier,
        input_price_per_mtok=model.input_price_per_mtok,
        output_price_per_mtok=model.output_price_per_mtok,
    )


def _time(stamp: Timestamp | None) -> datetime | None:
    return None if stamp is None else stamp.ToDatetime(tzinfo=UTC)
