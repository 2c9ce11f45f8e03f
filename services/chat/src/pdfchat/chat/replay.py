"""The replay buffer: every event of an answer, kept in Redis so a reconnecting client can resume.

Each message has one Redis Stream, `pdfchat:chat:replay:<tenant>:<message id>`, whose entries are the
serialized ChatEvents in seq order, closed either by the end event or by an error entry (code and
message) when the answer failed. The key expires `ttl` seconds after its last write.

A follower reads the stream from its first entry with blocking XREAD, so events written while it
replays the past are never missed, skips those at or below `last_seq`, and stops after the end (or
raises the recorded error). Any chat replica can serve a resume: the state is all in Redis.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis

from pdfchat.chat.citations import cited_from_records
from pdfchat.chat.sessions import StoredMessage
from pdfchat.common import errors
from pdfchat.v1 import chat_pb2, common_pb2

KEY_PREFIX = "pdfchat:chat:replay"
_BLOCK_MS = 1000

_ERROR_TYPES: dict[str, type[errors.PdfchatError]] = {
    error_type.code.name: error_type
    for error_type in (
        errors.InvalidArgument,
        errors.NotFound,
        errors.FailedPrecondition,
        errors.ResourceExhausted,
        errors.Unavailable,
        errors.DeadlineExceeded,
        errors.PermissionDenied,
        errors.Unauthenticated,
    )
}


def error_from(code_name: str, message: str) -> errors.PdfchatError:
    """The domain error for a status code name (INTERNAL for any other)."""
    error_type = _ERROR_TYPES.get(code_name, errors.PdfchatError)
    return error_type(message)


class ReplayBuffer:
    def __init__(self, redis: Redis, ttl_seconds: int) -> None:
        self._redis = redis
        self._ttl = ttl_seconds

    @staticmethod
    def key(tenant_id: str, message_id: str) -> str:
        return f"{KEY_PREFIX}:{tenant_id}:{message_id}"

    async def append(self, tenant_id: str, message_id: str, event: chat_pb2.ChatEvent) -> None:
        await self._write(tenant_id, message_id, {"seq": str(event.seq), "event": event.SerializeToString()})

    async def fail(self, tenant_id: str, message_id: str, error: errors.PdfchatError) -> None:
        """Closes the message's events with an error: followers raise it instead of waiting."""
        await self._write(tenant_id, message_id, {"error_code": error.code.name, "error_message": error.message})

    async def _write(self, tenant_id: str, message_id: str, fields: dict[str, str | bytes]) -> None:
        key = self.key(tenant_id, message_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(key, fields)  # type: ignore[arg-type]
            pipe.expire(key, self._ttl)
            await pipe.execute()

    async def exists(self, tenant_id: str, message_id: str) -> bool:
        return bool(await self._redis.exists(self.key(tenant_id, message_id)))

    async def follow(
        self, tenant_id: str, message_id: str, after_seq: int, idle_timeout: float
    ) -> AsyncIterator[chat_pb2.ChatEvent]:
        """Events with seq > `after_seq`, past then live, until the end event.

        Raises the recorded error when the answer failed, and Unavailable when nothing new arrives for
        `idle_timeout` seconds (its producer died without closing the stream).
        """
        key = self.key(tenant_id, message_id)
        last_id = "0-0"
        idle_since = time.monotonic()
        while True:
            reply: Any = await self._redis.xread({key: last_id}, count=256, block=_BLOCK_MS)
            entries: list[tuple[bytes, dict[bytes, bytes]]] = reply[0][1] if reply else []
            if not entries:
                if time.monotonic() - idle_since > idle_timeout:
                    raise errors.Unavailable(
                        f"message {message_id} produced no events for {idle_timeout:g} s; it was interrupted"
                    )
                continue
            idle_since = time.monotonic()
            for entry_id, fields in entries:
                last_id = entry_id.decode()
                if b"error_code" in fields:
                    raise error_from(fields[b"error_code"].decode(), fields[b"error_message"].decode())
                event = chat_pb2.ChatEvent.FromString(fields[b"event"])
                if event.seq > after_seq:
                    yield event
                if event.HasField("end"):
                    return


async def resume(
    buffer: ReplayBuffer, message: StoredMessage, after_seq: int, idle_timeout: float
) -> AsyncIterator[chat_pb2.ChatEvent]:
    """The events of `message` after `after_seq`, following the answer until it ends.

    When the buffer has expired, a finished answer comes back as a single end event built from the
    stored message (seq after_seq + 1: the original numbering is gone); a failed one raises
    FailedPrecondition.
    """
    if message.role != "assistant":
        raise errors.NotFound(f"message {message.id} not found")
    if message.status != "streaming" and not await buffer.exists(message.tenant_id, message.id):
        if message.status == "failed":
            raise errors.FailedPrecondition(f"message {message.id} failed; ask the question again")
        usage = message.usage or {}
        yield chat_pb2.ChatEvent(
            seq=after_seq + 1,
            message_id=message.id,
            end=chat_pb2.MessageEnd(
                answer=message.content,
                citations=cited_from_records(message.citations),
                usage=common_pb2.Usage(
                    input_tokens=int(usage.get("input_tokens", 0)),
                    output_tokens=int(usage.get("output_tokens", 0)),
                    cost_usd=float(usage.get("cost_usd", 0.0)),
                ),
                model=message.model,
                finish_reason=str(usage.get("finish_reason", "")),
            ),
        )
        return
    async for event in buffer.follow(message.tenant_id, message.id, after_seq, idle_timeout):
        yield event
