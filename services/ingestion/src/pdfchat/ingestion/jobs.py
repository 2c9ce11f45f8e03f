"""Parse jobs on JetStream: a reference to the stored original, never its bytes.

The message id `parse:<document>:<version>` makes a repeated publish of the same version (a retry, the
reconciler, two replicas racing) land once within the stream's duplicate window; workers also ignore a
job whose version is no longer the document's. A stuck document's re-publish is a deliberate new attempt
and gets its own id (`...:<attempt>`). The job carries the upload's PDF password, if any: the work-queue
stream drops the message once it is acked.
"""

from __future__ import annotations

import uuid

from nats.js import JetStreamContext

from pdfchat.common import jetstream
from pdfchat.common.events import DocumentChanged, publish_document_changed
from pdfchat.common.jetstream import JobQueues
from pdfchat.ingestion.documents import Document
from pdfchat.v1 import common_pb2


def parse_msg_id(document_id: str, version: int, attempt: int = 1) -> str:
    base = f"parse:{document_id}:{version}"
    return base if attempt <= 1 else f"{base}:{attempt}"


def parse_job_of(document: Document, request_id: str, password: str = "") -> common_pb2.ParseJob:
    """The planning job of the document's current version (page range 0/0: the worker counts the pages)."""
    return common_pb2.ParseJob(
        tenant_id=document.tenant_id,
        document_id=document.id,
        version=document.version,
        object_key=document.object_key,
        filename=document.filename,
        request_id=request_id or uuid.uuid4().hex,
        password=password,
    )


class ParseJobPublisher:
    def __init__(self, js: JetStreamContext, queues: JobQueues) -> None:
        self._js = js
        self._queues = queues

    async def announce(self, event: DocumentChanged) -> None:
        """Tells other services (the orchestrator's answer cache) that the document changed or is gone."""
        await publish_document_changed(self._js, self._queues, event)

    async def publish(self, document: Document, request_id: str, password: str = "") -> None:
        """Publishes the parse job of the document's current version; raises when JetStream did not accept it."""
        job = parse_job_of(document, request_id, password)
        await jetstream.publish(
            self._js,
            self._queues.parse_subject,
            job.SerializeToString(),
            msg_id=parse_msg_id(document.id, document.version, document.parse_attempts),
        )
