"""Outcome callbacks: when a document version becomes READY or FAILED, POST its outcome to the upload's
`callback_url`.

Durable by construction: the delivery is written to `ingestion.callback_deliveries` (the outbox) in the
same transaction that makes the version final (see `documents._save`), and a background task
(`run_callback_sender`) sends due deliveries. A crash before the send leaves the row pending; a crash
during it leaves the row leased until `lease_seconds` pass, then it is sent again, so the receiver gets
a delivery at least once and must treat a repeated `(document_id, version)` as the same event. Every
attempt is recorded in `ingestion.callback_attempts` (status code, error, time). A 2xx answer delivers;
anything else is retried with exponential backoff until `max_attempts`, then the delivery is `failed`.

The body is signed with HMAC-SHA256 using the tenant's webhook secret; the signature travels in the
header `X-Pdfchat-Signature: sha256=<hex>`, computed over the exact body bytes, which are stored with
the delivery so a retry sends and signs the same bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import asyncpg
import httpx

from pdfchat.common.errors import InvalidArgument

if TYPE_CHECKING:
    from pdfchat.ingestion.documents import Document

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Pdfchat-Signature"
DELIVERIES = "ingestion.callback_deliveries"
ATTEMPTS = "ingestion.callback_attempts"
MAX_URL_CHARS = 2048


def check_callback_url(url: str) -> str:
    """The URL trimmed; InvalidArgument unless it is an absolute http(s) URL with a host."""
    url = url.strip()
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > MAX_URL_CHARS:
        raise InvalidArgument("callback_url must be an absolute http or https URL")
    return url


def outcome_body(document: Document) -> str:
    """The JSON the receiver gets: what happened to which version of which document."""
    return json.dumps(
        {
            "event": f"document.{document.status.value.lower()}",
            "document_id": document.id,
            "version": document.version,
            "status": document.status.value,
            "filename": document.filename,
            "sha256": document.sha256,
            "pages": document.progress.pages_total,
            "chunks": document.progress.chunks_total,
            "error": document.error,
            "failed_stage": document.failed_stage,
            "occurred_at": datetime.now(UTC).isoformat(),
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def signature(secret: str, body: bytes) -> str:
    """The header value for `body`: `sha256=` and the hex HMAC-SHA256 under `secret`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class WebhookSecrets:
    """Each tenant's webhook secret: its own when configured, else the global default."""

    default: str
    by_tenant: Mapping[str, str]

    def of(self, tenant_id: str) -> str:
        return self.by_tenant.get(tenant_id, self.default)


@dataclass(frozen=True)
class Delivery:
    id: int
    tenant_id: str
    document_id: str
    version: int
    url: str
    body: str
    attempts: int


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    backoff_seconds: float = 2.0
    backoff_max_seconds: float = 600.0
    timeout_seconds: float = 10.0
    lease_seconds: float = 60.0
    """A claimed delivery is not claimed again for this long (longer than one attempt can take)."""

    def delay_after(self, attempts: int) -> float:
        """Seconds before the next attempt after `attempts` failed ones: doubling, capped."""
        return float(min(self.backoff_seconds * 2 ** max(attempts - 1, 0), self.backoff_max_seconds))


class CallbackOutbox:
    """The outbox tables: claim due deliveries, record each attempt's result."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def claim_due(self, lease_seconds: float, limit: int = 20) -> list[Delivery]:
        """Pending deliveries whose time has come, leased so other replicas skip them while they are sent."""
        rows = await self._pool.fetch(
            f"""
            WITH due AS (
                SELECT id FROM {DELIVERIES}
                WHERE state = 'pending' AND next_attempt_at <= now()
                ORDER BY next_attempt_at LIMIT $2
                FOR UPDATE SKIP LOCKED
            )
            UPDATE {DELIVERIES} d SET next_attempt_at = now() + make_interval(secs => $1)
            FROM due WHERE d.id = due.id
            RETURNING d.*
            """,
            lease_seconds,
            limit,
        )
        return [
            Delivery(
                id=row["id"],
                tenant_id=row["tenant_id"],
                document_id=row["document_id"],
                version=row["version"],
                url=row["url"],
                body=row["body"],
                attempts=row["attempts"],
            )
            for row in rows
        ]

    async def record(
        self,
        delivery: Delivery,
        *,
        status_code: int | None,
        error: str,
        duration_ms: int,
        delivered: bool,
        retry_in_seconds: float | None,
    ) -> None:
        """Records one attempt and moves the delivery on: delivered, retried later, or failed for good."""
        attempt = delivery.attempts + 1
        state = "delivered" if delivered else ("pending" if retry_in_seconds is not None else "failed")
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                f"""
                INSERT INTO {ATTEMPTS} (delivery_id, attempt, status_code, error, duration_ms)
                VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING
                """,
                delivery.id,
                attempt,
                status_code,
                error[:1000],
                duration_ms,
            )
            await conn.execute(
                f"""
                UPDATE {DELIVERIES}
                SET attempts = $2, state = $3,
                    next_attempt_at = now() + make_interval(secs => $4),
                    finished_at = CASE WHEN $3 = 'pending' THEN NULL ELSE now() END
                WHERE id = $1
                """,
                delivery.id,
                attempt,
                state,
                retry_in_seconds or 0.0,
            )


class CallbackSender:
    """Sends due callbacks over HTTP; one `send_due()` pass sends what is due now."""

    def __init__(
        self, outbox: CallbackOutbox, secrets: WebhookSecrets, policy: RetryPolicy, client: httpx.AsyncClient
    ) -> None:
        self._outbox = outbox
        self._secrets = secrets
        self._policy = policy
        self._client = client

    async def send_due(self) -> int:
        """Attempts every due delivery once; returns how many were delivered."""
        deliveries = await self._outbox.claim_due(self._policy.lease_seconds)
        results = await asyncio.gather(*(self._attempt(delivery) for delivery in deliveries))
        return sum(results)

    async def _attempt(self, delivery: Delivery) -> bool:
        body = delivery.body.encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(self._secrets.of(delivery.tenant_id), body),
            "X-Pdfchat-Delivery": str(delivery.id),
            "User-Agent": "pdfchat-callbacks",
        }
        started = time.monotonic()
        status_code: int | None = None
        error = ""
        try:
            response = await self._client.post(
                delivery.url, content=body, headers=headers, timeout=self._policy.timeout_seconds
            )
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        duration_ms = int((time.monotonic() - started) * 1000)
        delivered = not error
        attempts = delivery.attempts + 1
        retry = None if delivered or attempts >= self._policy.max_attempts else self._policy.delay_after(attempts)
        if not delivered:
            log.warning(
                "callback %d for document %s v%d, attempt %d: %s%s",
                delivery.id,
                delivery.document_id,
                delivery.version,
                attempts,
                error,
                "" if retry is not None else " (giving up)",
            )
        await self._outbox.record(
            delivery,
            status_code=status_code,
            error=error,
            duration_ms=duration_ms,
            delivered=delivered,
            retry_in_seconds=retry,
        )
        return delivered


async def run_callback_sender(sender: CallbackSender, stop: asyncio.Event, *, interval_seconds: float) -> None:
    """Sends due callbacks every `interval_seconds` until `stop` is set (a ServiceSpec background task)."""
    while not stop.is_set():
        try:
            await sender.send_due()
        except Exception:
            log.exception("callback sender pass failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_seconds)
