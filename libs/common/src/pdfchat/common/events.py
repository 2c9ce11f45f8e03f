"""Document change events: ingestion tells the other services that a document's content changed or is gone.

One JSON message on `<ns>.events.document` (stream `<NS>_EVENTS`, see `jetstream.JobQueues`) whenever a
document is deleted or a reprocessed version replaces the old one:

    {"tenant_id": "t1", "document_id": "d1", "version": 3, "change": "reprocessed"}

`change` is `reprocessed` or `deleted` (version 0). The `Nats-Msg-Id` `<document_id>:<version>:<change>`
makes a repeated publish count once. The orchestrator drops cached answers that cite the document.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from nats.js import JetStreamContext

from pdfchat.common import jetstream
from pdfchat.common.jetstream import JobQueues

CHANGES = ("reprocessed", "deleted")


@dataclass(frozen=True)
class DocumentChanged:
    tenant_id: str
    document_id: str
    change: str
    version: int = 0

    @classmethod
    def parse(cls, data: bytes) -> DocumentChanged:
        """Raises ValueError for a payload that can never be handled."""
        try:
            body = json.loads(data)
            event = cls(
                tenant_id=str(body["tenant_id"]),
                document_id=str(body["document_id"]),
                change=str(body.get("change", "reprocessed")),
                version=int(body.get("version") or 0),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not a document event: {exc!r}") from exc
        if not event.tenant_id or not event.document_id or event.change not in CHANGES:
            raise ValueError(f"not a document event: {body!r}")
        return event

    def to_json(self) -> bytes:
        body = {"tenant_id": self.tenant_id, "document_id": self.document_id, "version": self.version}
        return json.dumps({**body, "change": self.change}).encode()

    @property
    def msg_id(self) -> str:
        return f"{self.document_id}:{self.version}:{self.change}"


async def publish_document_changed(js: JetStreamContext, queues: JobQueues, event: DocumentChanged) -> None:
    await jetstream.publish(js, queues.document_events_subject, event.to_json(), msg_id=event.msg_id)
