"""Push notifications of document changes, across replicas, through Postgres LISTEN/NOTIFY.

Every committed change to a document sends `pg_notify('ingestion_documents', <id>)` (see `documents`).
One dedicated connection per process LISTENs on that channel and wakes the in-process watchers of that
id; a watcher then re-reads the document itself, scoped by its tenant, so the notification carries no
data and needs no trust. Wake-ups coalesce: a watcher that is slower than the changes sees the latest
state, never a queue of stale ones. When the listening connection drops, it reconnects and wakes every
watcher, since notifications sent in between are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import asyncpg

from pdfchat.ingestion.documents import NOTIFY_CHANNEL

log = logging.getLogger(__name__)


class DocumentChanges:
    """Fans out change notifications to the watchers of each document in this process."""

    def __init__(self, dsn: str, *, reconnect_seconds: float = 1.0) -> None:
        self._dsn = dsn
        self._reconnect_seconds = reconnect_seconds
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self._listening = asyncio.Event()

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    async def wait_listening(self) -> None:
        await self._listening.wait()

    @contextlib.contextmanager
    def subscribe(self, document_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever the document may have changed; subscribe before reading the state."""
        changed = asyncio.Event()
        self._watchers.setdefault(document_id, set()).add(changed)
        try:
            yield changed
        finally:
            watchers = self._watchers.get(document_id)
            if watchers is not None:
                watchers.discard(changed)
                if not watchers:
                    del self._watchers[document_id]

    def _on_notification(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        for changed in self._watchers.get(str(payload), ()):
            changed.set()

    def _wake_all(self) -> None:
        for watchers in self._watchers.values():
            for changed in watchers:
                changed.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Keeps the LISTEN connection open until `stop` is set (a ServiceSpec background task)."""
        while not stop.is_set():
            lost = asyncio.Event()
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn)
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await conn.add_listener(NOTIFY_CHANNEL, self._on_notification)
                self._listening.set()
                # Anything sent while we were not listening is lost: let every watcher re-read.
                self._wake_all()
                log.info("listening for document changes")
                await _first(stop.wait(), lost.wait())
                if lost.is_set():
                    log.warning("document change listener lost its connection; reconnecting")
            except Exception as exc:
                log.warning("document change listener failed: %r; retrying", exc)
            finally:
                self._listening.clear()
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 2.0)
            if not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._reconnect_seconds)
        self._wake_all()


async def _first(*waits: Any) -> None:
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
