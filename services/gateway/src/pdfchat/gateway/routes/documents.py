"""/v1/documents: upload (streamed to ingestion), get, list, delete, reprocess."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from pdfchat.common.errors import PayloadTooLarge
from pdfchat.common.identity import Identity
from pdfchat.gateway import upload, views
from pdfchat.gateway._context import caller, gateway
from pdfchat.v1 import ingestion_pb2

router = APIRouter(prefix="/v1/documents", tags=["documents"])

Caller = Annotated[Identity, Depends(caller)]

# Multipart framing and the small fields around the file; the exact limit is enforced while streaming.
_FORM_OVERHEAD_BYTES = 64 * 1024


@router.post("", status_code=202)
async def upload_document(request: Request, ident: Caller) -> JSONResponse:
    """Streams the `file` part to ingestion; 202 when created, 200 when the same upload already existed."""
    gw = gateway(request)
    limit = gw.settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + _FORM_OVERHEAD_BYTES:
        raise PayloadTooLarge(f"upload is too large: the limit is {limit} bytes")
    sink = upload.IngestionUpload(gw.ingestion(), ident.to_metadata(), gw.settings.upload_timeout_seconds)
    defaults = {name: value for name in upload.METADATA_FIELDS if (value := request.query_params.get(name))}
    reply = await upload.forward(
        request.stream(),
        request.headers.get("content-type"),
        sink,
        max_bytes=limit,
        idempotency_key=request.headers.get("idempotency-key", ""),
        defaults=defaults,
    )
    body = {**views.document(reply.document), "created": reply.created}
    return JSONResponse(body, status_code=202 if reply.created else 200)


@router.get("")
async def list_documents(
    request: Request,
    ident: Caller,
    page_size: Annotated[int, Query(ge=0, le=1000)] = 0,
    page_token: str = "",
) -> dict[str, Any]:
    gw = gateway(request)
    reply = await gw.ingestion().ListDocuments(
        ingestion_pb2.ListDocumentsRequest(page_size=page_size, page_token=page_token),
        metadata=ident.to_metadata(),
        timeout=gw.settings.rpc_timeout_seconds,
    )
    return {
        "documents": [views.document(doc) for doc in reply.documents],
        "next_page_token": reply.next_page_token or None,
    }


@router.get("/{document_id}")
async def get_document(request: Request, document_id: str, ident: Caller) -> dict[str, Any]:
    gw = gateway(request)
    reply = await gw.ingestion().GetDocument(
        ingestion_pb2.GetDocumentRequest(document_id=document_id),
        metadata=ident.to_metadata(),
        timeout=gw.settings.rpc_timeout_seconds,
    )
    return views.document(reply.document)


@router.delete("/{document_id}", status_code=204)
async def delete_document(request: Request, document_id: str, ident: Caller) -> Response:
    gw = gateway(request)
    await gw.ingestion().DeleteDocument(
        ingestion_pb2.DeleteDocumentRequest(document_id=document_id),
        metadata=ident.to_metadata(),
        timeout=gw.settings.rpc_timeout_seconds,
    )
    return Response(status_code=204)


@router.post("/{document_id}:reprocess", status_code=202)
async def reprocess_document(request: Request, document_id: str, ident: Caller) -> JSONResponse:
    gw = gateway(request)
    reply = await gw.ingestion().ReprocessDocument(
        ingestion_pb2.ReprocessDocumentRequest(document_id=document_id),
        metadata=ident.to_metadata(),
        timeout=gw.settings.rpc_timeout_seconds,
    )
    return JSONResponse(views.document(reply.document), status_code=202)
