"""Starts the ingestion service: `python -m pdfchat.ingestion`."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pdfchat.common import db, grpc_client, jetstream
from pdfchat.common.grpc_server import ServiceSpec, serve
from pdfchat.common.logs import configure_logging
from pdfchat.common.object_store import S3ObjectStore, create_object_store
from pdfchat.common.settings import port_of
from pdfchat.ingestion import server
from pdfchat.ingestion.documents import DocumentRepository
from pdfchat.ingestion.jobs import ParseJobPublisher
from pdfchat.ingestion.library import DocumentLibrary, run_reconciler
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
        upload_temp_dir=settings.upload_temp_dir,
        watch_resync_seconds=settings.watch_resync_seconds,
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

    async def on_stop() -> None:
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
        background=(changes.run, reconciler),
        on_stop=on_stop,
    )
    await serve(spec, settings)


if __name__ == "__main__":
    asyncio.run(main())
