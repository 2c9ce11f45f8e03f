"""Starts the embedding service: loads the model, then serves gRPC and consumes embed jobs.

The model is loaded before the server starts, so the service never reports SERVING without it; health
then follows the NATS connection.
"""

from __future__ import annotations

import asyncio
import logging

from pdfchat.common import grpc_client
from pdfchat.common.grpc_server import ServiceSpec, serve
from pdfchat.common.jetstream import ConsumerSpec, JobQueues
from pdfchat.common.logs import configure_logging
from pdfchat.common.settings import port_of
from pdfchat.embedding.jobs import EmbedJobConsumer, EmbedJobHandler
from pdfchat.embedding.models import TextLimits, create_embedder
from pdfchat.embedding.server import SERVICE_NAME, EmbeddingServicer
from pdfchat.embedding.settings import EmbeddingSettings
from pdfchat.v1 import embedding_pb2_grpc

log = logging.getLogger("pdfchat.embedding")


async def main() -> None:
    settings = EmbeddingSettings()
    configure_logging("embedding", settings.log_level)
    embedder = await create_embedder(
        model_path=settings.embedding_model,
        base_url=settings.embedding_base_url,
        api_key=settings.embedding_api_key,
        api_model=settings.embedding_api_model,
        api_dimensions=settings.embedding_api_dimensions,
        api_timeout_seconds=settings.embedding_api_timeout_seconds,
        threads=settings.embedding_threads,
        max_batch=settings.embedding_max_batch,
        passage_batch=settings.embedding_passage_batch,
    )
    servicer = EmbeddingServicer(
        embedder, TextLimits(max_texts=settings.embedding_max_texts, max_chars=settings.embedding_max_text_chars)
    )
    queues = JobQueues(settings.jobs_namespace)
    handler = EmbedJobHandler(
        embedder,
        vector_index_addr=settings.vector_index_addr,
        ingestion_addr=settings.ingestion_addr,
        max_deliver=settings.embedding_job_max_deliver,
    )
    consumer = EmbedJobConsumer(
        settings.nats_url,
        queues,
        ConsumerSpec(
            durable="embedding",
            subject=queues.embed_subject,
            kind="embed",
            concurrency=settings.embedding_job_concurrency,
            ack_wait_seconds=settings.embedding_job_ack_wait_seconds,
            max_deliver=settings.embedding_job_max_deliver,
        ),
        handler,
    )

    async def on_stop() -> None:
        await consumer.close()
        await embedder.close()
        await grpc_client.close_all()

    await serve(
        ServiceSpec(
            name="embedding",
            port=port_of(settings.embedding_addr),
            register=lambda server: embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server(servicer, server),
            service_names=[SERVICE_NAME],
            dependency_checks=[consumer.check],
            background=[consumer.run],
            on_stop=on_stop,
        ),
        settings,
    )


if __name__ == "__main__":
    asyncio.run(main())
