"""Starts the chat service: `python -m pdfchat.chat`."""

from __future__ import annotations

import asyncio

import grpc

from pdfchat.chat._downstream import GrpcRetriever, OrchestratorGenerator
from pdfchat.chat.answering import Answerer, AnswerLimits
from pdfchat.chat.replay import ReplayBuffer
from pdfchat.chat.server import SERVICE_NAME, ChatServicer
from pdfchat.chat.sessions import MIGRATIONS_DIR, SCHEMA, SessionRepository, init_connection
from pdfchat.chat.settings import ChatSettings
from pdfchat.common import db, grpc_client, redis_client
from pdfchat.common.grpc_server import ServiceSpec, serve
from pdfchat.common.logs import configure_logging
from pdfchat.common.settings import port_of
from pdfchat.v1 import chat_pb2_grpc


async def main() -> None:
    settings = ChatSettings()
    configure_logging("chat", settings.log_level)
    pool = await db.create_pool(
        settings.database_url,
        min_size=settings.database_pool_min,
        max_size=settings.database_pool_max,
        init=init_connection,
    )
    await db.migrate(pool, SCHEMA, MIGRATIONS_DIR)
    redis = redis_client.create_redis(settings.redis_url)
    buffer = ReplayBuffer(redis, settings.replay_ttl_seconds)
    sessions = SessionRepository(pool)
    answerer = Answerer(
        retriever=GrpcRetriever(
            settings.embedding_addr,
            settings.vector_index_addr,
            candidates=settings.retrieval_candidates,
            timeout=settings.retrieval_timeout_seconds,
        ),
        generator=OrchestratorGenerator(
            settings.orchestrator_addr,
            timeout=settings.answer_deadline_seconds,
            temperature=settings.answer_temperature,
            max_tokens=settings.answer_max_tokens,
        ),
        replay=buffer,
        store=sessions,
        limits=AnswerLimits(
            top_k=settings.top_k,
            max_question_chars=settings.max_question_chars,
            answer_deadline_seconds=settings.answer_deadline_seconds,
        ),
    )
    servicer = ChatServicer(settings, sessions, answerer, buffer)

    def register(server: grpc.aio.Server) -> None:
        chat_pb2_grpc.add_ChatServiceServicer_to_server(servicer, server)

    async def check_database() -> None:
        await db.check(pool)

    async def check_redis() -> None:
        await redis_client.check(redis)

    async def on_stop() -> None:
        await answerer.close(settings.shutdown_grace_seconds)
        await grpc_client.close_all()
        await redis.aclose()
        await pool.close()

    await serve(
        ServiceSpec(
            name="chat",
            port=port_of(settings.chat_addr),
            register=register,
            service_names=(SERVICE_NAME,),
            dependency_checks=(check_database, check_redis),
            on_stop=on_stop,
        ),
        settings,
    )


if __name__ == "__main__":
    asyncio.run(main())
