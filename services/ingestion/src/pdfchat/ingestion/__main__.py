"""Starts the ingestion service: `python -m pdfchat.ingestion`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from pdfchat.common import db, grpc_client, jetstream
from pdfchat.common.grpc_server import ServiceSpec, serve
from pdfchat.common.logs import configure_logging
from pdfchat.common.object_store import S3ObjectStore, create_object_store
from pdfchat.common.settings import port_of
from pdfchat.ingestion import server
from pdfchat.ingestion.callbacks import (
    CallbackOutbox,
    CallbackSender,
    RetryPolicy,
    WebhookSecrets,
    run_callback_sender,
)
from pdfchat.ingestion.dead_letters import run_dead_letter_consumer
from pdfchat.ingestion.documents import DocumentRepository
from pdfchat.ingestion.jobs import ParseJobPublisher
from pdfchat.ingestion.library import DocumentLibrary, Lifecycle, run_reconciler
from pdfchat.ingestion.passwords import PasswordBox
from pdfchat.ingestion.settings import IngestionSettings
from pdfchat.ingestion.watch import DocumentChanges

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SCHEMA = "ingestion"


async def main() -> None:
    settings = IngestionSettings()
    configure_logging("ingestion", settings.log_level)
    pool = await db.create_pool(
        settings.database_url, min_size=settings.database_pool_min, max_size=settings.database_pool_max
    )
    await db.migrate(pool, SCHEMA, MIGRATIONS_DIR)
    nats = await jetstream.connect(settings.nats_url, "ingestion")
    js = nats.jetstream()
    queues = jetstream.JobQueues(settings.jobs_namespace)
    await jetstream.ensure_streams(js, queues)
    store = create_object_store(settings)
    if isinstance(store, S3ObjectStore):
        await store.ensure_bucket()
    changes = DocumentChanges(settings.database_url)
    library = DocumentLibrary(
        DocumentRepository(pool),
        store,
        ParseJobPublisher(js, queues),
        server.GrpcSegmentIndex(settings.vector_index_addr),
        changes,
        max_upload_bytes=settings.max_upload_bytes,
        max_upload_pages=settings.max_upload_pages,
        upload_temp_dir=settings.upload_temp_dir,
        watch_resync_seconds=settings.watch_resync_seconds,
        passwords=PasswordBox(settings.password_encryption_key),
        lifecycle=Lifecycle(
            stuck_after_seconds=settings.stuck_after_seconds,
            max_parse_attempts=settings.max_parse_attempts,
            sweep_delay_seconds=settings.sweep_delay_seconds,
        ),
    )
    http = httpx.AsyncClient(follow_redirects=False)
    callbacks = CallbackSender(
        CallbackOutbox(pool),
        WebhookSecrets(settings.webhook_secret, settings.webhook_tenant_secrets),
        RetryPolicy(
            max_attempts=settings.callback_max_attempts,
            backoff_seconds=settings.callback_backoff_seconds,
            backoff_max_seconds=settings.callback_backoff_max_seconds,
            timeout_seconds=settings.callback_timeout_seconds,
            lease_seconds=settings.callback_timeout_seconds * 3,
        ),
        http,
    )

    async def database_answers() -> None:
        await db.check(pool)

    async def nats_connected() -> None:
        if not nats.is_connected:
            raise ConnectionError("not connected to NATS")

    async def reconciler(stop: asyncio.Event) -> None:
        await run_reconciler(
            library,
            stop,
            interval_seconds=settings.reconcile_interval_seconds,
            older_than_seconds=settings.reconcile_after_seconds,
        )

    async def callback_sender(stop: asyncio.Event) -> None:
        await run_callback_sender(callbacks, stop, interval_seconds=settings.callback_interval_seconds)

    async def dead_letters(stop: asyncio.Event) -> None:
        await run_dead_letter_consumer(js, queues, library, stop)

    async def on_stop() -> None:
        await http.aclose()
        await grpc_client.close_all()
        await nats.drain()
        await pool.close()

    spec = ServiceSpec(
        name="ingestion",
        port=port_of(settings.ingestion_addr),
        register=lambda grpc_server: server.ingestion_pb2_grpc.add_IngestionServiceServicer_to_server(
            server.IngestionServicer(library), grpc_server
        ),
        service_names=(server.SERVICE_NAME,),
        dependency_checks=(database_answers, nats_connected),
        background=(changes.run, reconciler, callback_sender, dead_letters),
        on_stop=on_stop,
    )
    await serve(spec, settings)


if __name__ == "__main__":
    asyncio.run(main())
