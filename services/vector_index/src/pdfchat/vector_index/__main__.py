"""Starts vector_index: `python -m pdfchat.vector_index`.

Migrations run before the server binds, and start-up is refused when the `embedding` column's dimensions
differ from PDFCHAT_EMBEDDING_DIMENSIONS: every upsert would otherwise fail one request at a time.
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

import grpc

from pdfchat.common import db
from pdfchat.common.grpc_server import ServiceSpec, serve
from pdfchat.common.logs import configure_logging
from pdfchat.common.settings import port_of
from pdfchat.v1 import vector_index_pb2_grpc
from pdfchat.vector_index.search import HybridSearch
from pdfchat.vector_index.server import VectorIndexServicer
from pdfchat.vector_index.settings import VectorIndexSettings
from pdfchat.vector_index.store import SegmentStore, index_dimensions, init_connection

SCHEMA = "vector_index"
MIGRATIONS = Path(__file__).parent / "migrations"


async def main(settings: VectorIndexSettings) -> None:
    pool = await db.create_pool(
        settings.database_url,
        min_size=settings.database_pool_min,
        max_size=settings.database_pool_max,
        init=init_connection,
    )
    try:
        await db.migrate(pool, SCHEMA, MIGRATIONS)
        stored = await index_dimensions(pool)
        if stored != settings.embedding_dimensions:
            raise SystemExit(
                f"the index stores {stored}-dimensional vectors but PDFCHAT_EMBEDDING_DIMENSIONS is "
                f"{settings.embedding_dimensions}; set it to {stored} or migrate the column"
            )
        store = SegmentStore(pool, dimensions=settings.embedding_dimensions, max_batch=settings.max_batch)
        servicer = VectorIndexServicer(store, HybridSearch(store, settings))

        def register(server: grpc.aio.Server) -> None:
            vector_index_pb2_grpc.add_VectorIndexServiceServicer_to_server(servicer, server)

        spec = ServiceSpec(
            name="vector_index",
            port=port_of(settings.vector_index_addr),
            register=register,
            service_names=["pdfchat.v1.VectorIndexService"],
            dependency_checks=[functools.partial(db.check, pool)],
        )
        await serve(spec, settings)
    finally:
        await pool.close()


if __name__ == "__main__":
    settings = VectorIndexSettings()
    configure_logging("vector_index", settings.log_level)
    asyncio.run(main(settings))
