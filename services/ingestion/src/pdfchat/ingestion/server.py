"""gRPC glue of the IngestionService: requests become `DocumentLibrary` calls, documents become messages.

The server interceptor (pdfchat.common.grpc_server) has bound the caller's identity and deadline before
any handler runs and translates domain errors to status codes, so the handlers here only convert.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from pdfchat.common import grpc_client, identity
from pdfchat.common.errors import InvalidArgument
from pdfchat.ingestion.documents import Document, DocumentStatus, Progress, ProgressReport
from pdfchat.ingestion.library import DocumentLibrary, UploadRequest
from pdfchat.ingestion.ranges import PageRange
from pdfchat.v1 import (
    common_pb2,
    ingestion_pb2,
    ingestion_pb2_grpc,
    vector_index_pb2,
    vector_index_pb2_grpc,
)

SERVICE_NAME = ingestion_pb2.DESCRIPTOR.services_by_name["IngestionService"].full_name
_STATUS_PREFIX = "DOCUMENT_STATUS_"


def _timestamp(value: object) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)  # type: ignore[arg-type]
    return stamp


def status_to_proto(status: DocumentStatus) -> common_pb2.DocumentStatus.ValueType:
    return common_pb2.DocumentStatus.Value(_STATUS_PREFIX + status.value)


def status_from_proto(value: int) -> DocumentStatus:
    """The domain status of a proto enum value; InvalidArgument for UNSPECIFIED or unknown values."""
    try:
        name = common_pb2.DocumentStatus.Name(value)  # type: ignore[arg-type]
        return DocumentStatus(name.removeprefix(_STATUS_PREFIX))
    except ValueError as exc:
        raise InvalidArgument(f"status {value} is not a document status") from exc


def document_to_proto(document: Document) -> ingestion_pb2.Document:
    return ingestion_pb2.Document(
        id=document.id,
        filename=document.filename,
        status=status_to_proto(document.status),
        pages=document.progress.pages_total,
        error=document.error,
        failed_stage=document.failed_stage,
        size_bytes=document.size_bytes,
        sha256=document.sha256,
        version=document.version,
        progress=ingestion_pb2.DocumentProgress(
            pages_total=document.progress.pages_total,
            pages_done=document.progress.pages_done,
            chunks_total=document.progress.chunks_total,
            chunks_done=document.progress.chunks_done,
        ),
        created_at=_timestamp(document.created_at),
        updated_at=_timestamp(document.updated_at),
    )


def report_from_proto(request: ingestion_pb2.ReportProgressRequest) -> ProgressReport:
    progress = request.progress
    return ProgressReport(
        version=request.version,
        status=status_from_proto(request.status),
        progress=Progress(
            pages_total=max(progress.pages_total, 0),
            pages_done=max(progress.pages_done, 0),
            chunks_total=max(progress.chunks_total, 0),
            chunks_done=max(progress.chunks_done, 0),
        ),
        error=request.error,
        failed_stage=request.failed_stage,
        range_result=(
            PageRange(request.range_result.page_start, request.range_result.page_end, request.range_result.segments)
            if request.HasField("range_result")
            else None
        ),
    )


def _document_id(value: str) -> str:
    document_id = value.strip()
    if not document_id:
        raise InvalidArgument("document_id is required")
    return document_id


class GrpcSegmentIndex:
    """vector_index over gRPC; the channel attaches the bound identity and the remaining deadline."""

    def __init__(self, address: str) -> None:
        self._address = address

    async def delete_document_segments(self, document_id: str, keep_version: int = 0) -> None:
        stub = vector_index_pb2_grpc.VectorIndexServiceStub(grpc_client.channel(self._address))
        await stub.DeleteDocumentSegments(
            vector_index_pb2.DeleteDocumentSegmentsRequest(document_id=document_id, keep_version=keep_version)
        )

    async def activate_version(self, document_id: str, version: int) -> None:
        stub = vector_index_pb2_grpc.VectorIndexServiceStub(grpc_client.channel(self._address))
        await stub.ActivateVersion(vector_index_pb2.ActivateVersionRequest(document_id=document_id, version=version))


async def _upload_chunks(requests: AsyncIterator[ingestion_pb2.UploadRequest]) -> AsyncIterator[bytes]:
    async for request in requests:
        if request.WhichOneof("payload") != "chunk":
            raise InvalidArgument("metadata may be sent only once, in the first message")
        yield request.chunk


class IngestionServicer(ingestion_pb2_grpc.IngestionServiceServicer):
    def __init__(self, library: DocumentLibrary) -> None:
        self._library = library

    async def Upload(
        self, request_iterator: AsyncIterable[ingestion_pb2.UploadRequest], context: grpc.aio.ServicerContext
    ) -> ingestion_pb2.UploadResponse:
        requests = aiter(request_iterator)
        first = await anext(requests, None)
        if first is None or first.WhichOneof("payload") != "metadata":
            raise InvalidArgument("the first upload message must carry the metadata")
        metadata = first.metadata
        result = await self._library.upload(
            identity.require(),
            UploadRequest(
                filename=metadata.filename,
                content_type=metadata.content_type,
                idempotency_key=metadata.idempotency_key,
                callback_url=metadata.callback_url,
                password=metadata.password,
            ),
            _upload_chunks(requests),
        )
        return ingestion_pb2.UploadResponse(document=document_to_proto(result.document), created=result.created)

    async def GetDocument(
        self, request: ingestion_pb2.GetDocumentRequest, context: grpc.aio.ServicerContext
    ) -> ingestion_pb2.GetDocumentResponse:
        document = await self._library.get(identity.require().tenant_id, _document_id(request.document_id))
        return ingestion_pb2.GetDocumentResponse(document=document_to_proto(document))

    async def ListDocuments(
        self, request: ingestion_pb2.ListDocumentsRequest, context: grpc.aio.ServicerContext
    ) -> ingestion_pb2.ListDocumentsResponse:
        page = await self._library.list_documents(identity.require().tenant_id, request.page_size, request.page_token)
        return ingestion_pb2.ListDocumentsResponse(
            documents=[document_to_proto(document) for document in page.documents],
            next_page_token=page.next_page_token,
        )

    async def DeleteDocument(
        self, request: ingestion_pb2.DeleteDocumentRequest, context: grpc.aio.ServicerContext
    ) -> ingestion_pb2.DeleteDocumentResponse:
        await self._library.delete(identity.require().tenant_id, _document_id(request.document_id))
        return ingestion_pb2.DeleteDocumentResponse()

    async def ReprocessDocument(
        self, request: ingestion_pb2.ReprocessDocumentRequest, context: grpc.aio.ServicerContext
    ) -> ingestion_pb2.ReprocessDocumentResponse:
        document = await self._library.reprocess(identity.require(), _document_id(request.document_id))
        return ingestion_pb2.ReprocessDocumentResponse(document=document_to_proto(document))

    async def WatchDocument(
        self, request: ingestion_pb2.WatchDocumentRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ingestion_pb2.WatchDocumentResponse]:
        changes = self._library.watch(identity.require().tenant_id, _document_id(request.document_id))
        async for document in changes:
            yield ingestion_pb2.WatchDocumentResponse(document=document_to_proto(document))

    async def ReportProgress(
        self, request: ingestion_pb2.ReportProgressRequest, context: grpc.aio.ServicerContext
    ) -> ingestion_pb2.ReportProgressResponse:
        document = await self._library.report_progress(
            identity.require().tenant_id, _document_id(request.document_id), report_from_proto(request)
        )
        return ingestion_pb2.ReportProgressResponse(document=document_to_proto(document))
