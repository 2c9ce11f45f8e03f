"""Exact response cache in Redis, with single-flight across replicas and invalidation per document.

Key. An answer is reused only for a request that would be sent to the provider unchanged: same tenant,
same model family, same decoding parameters, same prompt template (id and version, and the built-in
instructions' text), and the same normalized messages, including each retrieved passage's segment id,
document id and document version. A document that is reprocessed gets a new version, so its new
passages never hit an answer built on the old ones even before the invalidation event arrives.

What is stored. Only answers that completed normally on the route the request asked for: an error, a
stream cut after its first token, a cancelled call and an answer that came from a fallback (the
extractive provider standing in for a failing LLM) are never stored, so an outage is not replayed for
the entry's lifetime. The stored answer keeps its pieces, so a hit replays as a stream.

Single-flight. The first caller of a missing key takes a lock (`SET NX PX`) and calls upstream; the
others, in any replica, wait for the answer by polling the entry while the lock exists. When the leader
gives up (error, cancel) its lock disappears and one waiter takes over; when waiting outlasts
`wait_seconds` (or the caller's deadline) the waiter calls upstream itself. A lock whose holder died
expires after `lock_seconds`.

Invalidation. Every stored entry's key is added to a set per (tenant, document) it cites;
`invalidate_document()` deletes those entries and the set in one script.

Redis failing never fails a request: the cache then behaves as a miss and the call goes upstream.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from pdfchat.common import deadlines
from pdfchat.orchestrator import prompts
from pdfchat.orchestrator.generation import GenerationRequest, TokenUsage

log = logging.getLogger(__name__)

KEY_VERSION = "v1"
_DATE_SUFFIX = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{4}|-latest|@\d+)$")
_PROMPT_FINGERPRINT = hashlib.sha256(prompts.SYSTEM_INSTRUCTIONS.encode()).hexdigest()[:16]

# Deletes the lock only if it is still ours: a lock that expired and was taken by another is left alone.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Deletes every entry that cites the document, then the document's set; returns how many entries went.
_INVALIDATE = """
local keys = redis.call('SMEMBERS', KEYS[1])
local dropped = 0
for i = 1, #keys, 500 do
  dropped = dropped + redis.call('DEL', unpack(keys, i, math.min(i + 499, #keys)))
end
redis.call('DEL', KEYS[1])
return dropped
"""


def model_family(model: str) -> str:
    """`gpt-4o-2024-08-06` and `gpt-4o` share a family; an empty model means the router's choice."""
    return _DATE_SUFFIX.sub("", model.strip().lower()) or "auto"


def _normalize(text: str) -> str:
    return " ".join(text.split())


@dataclass(frozen=True)
class CacheKey:
    tenant_id: str
    digest: str
    documents: tuple[str, ...]
    """Document ids the request cites: the entry is dropped when any of them changes."""


@dataclass(frozen=True)
class CachedAnswer:
    pieces: tuple[str, ...]
    finish_reason: str
    input_tokens: int
    output_tokens: int
    model: str
    provider: str

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def usage(self) -> TokenUsage:
        return TokenUsage(self.input_tokens, self.output_tokens)

    def dumps(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str | bytes) -> CachedAnswer:
        data = json.loads(raw)
        data["pieces"] = tuple(data["pieces"])
        return cls(**data)


@dataclass(frozen=True)
class Lease:
    """This caller leads: it calls upstream, then `store()`s the answer (or not) and `release()`s."""

    key: CacheKey
    token: str


@dataclass(frozen=True)
class Lookup:
    """What the cache says about a request: an answer, a lease to go and get one, or neither (call uncached)."""

    hit: CachedAnswer | None = None
    lease: Lease | None = None
    waited_seconds: float = 0.0


def cache_key(tenant_id: str, request: GenerationRequest) -> CacheKey:
    """The exact-match key of a request for one tenant (see the module docstring for what goes in)."""
    material = {
        "family": model_family(request.model),
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "template": [request.prompt_template_id, request.prompt_template_version, _PROMPT_FINGERPRINT],
        "question": _normalize(request.question),
        "messages": [[m.role, _normalize(m.content)] for m in request.messages],
        "passages": [
            [p.segment_id, p.document_id, p.version, p.page, hashlib.sha256(_normalize(p.text).encode()).hexdigest()]
            for p in request.passages
        ],
    }
    digest = hashlib.sha256(json.dumps(material, ensure_ascii=False, sort_keys=True).encode()).hexdigest()
    documents = tuple(sorted({p.document_id for p in request.passages if p.document_id}))
    return CacheKey(tenant_id=tenant_id, digest=digest, documents=documents)


class ResponseCache:
    def __init__(
        self,
        redis: Redis,
        *,
        namespace: str = "pdfchat",
        ttl_seconds: float = 86_400.0,
        lock_seconds: float = 120.0,
        wait_seconds: float = 60.0,
        poll_seconds: float = 0.02,
    ) -> None:
        self._redis = redis
        self._prefix = f"{namespace}:orchestrator:cache:{KEY_VERSION}"
        self._ttl_ms = max(1, int(ttl_seconds * 1000))
        self._lock_ms = max(1, int(lock_seconds * 1000))
        self._wait = wait_seconds
        self._poll = poll_seconds
        self._release = redis.register_script(_RELEASE)
        self._invalidate = redis.register_script(_INVALIDATE)

    def _entry(self, key: CacheKey) -> str:
        return f"{self._prefix}:entry:{key.tenant_id}:{key.digest}"

    def _lock(self, key: CacheKey) -> str:
        return f"{self._prefix}:lock:{key.tenant_id}:{key.digest}"

    def _document_set(self, tenant_id: str, document_id: str) -> str:
        return f"{self._prefix}:doc:{tenant_id}:{document_id}"

    async def get(self, key: CacheKey) -> CachedAnswer | None:
        try:
            raw = await self._redis.get(self._entry(key))
        except RedisError as exc:
            log.warning("response cache read failed, treating as a miss: %r", exc)
            return None
        return None if raw is None else self._decode(raw)

    async def lookup(self, key: CacheKey) -> Lookup:
        """The cached answer, or the lease to produce it, or (after waiting too long) neither.

        Waits at most `wait_seconds`, and never past the caller's gRPC deadline (less a margin for the
        upstream call that may follow).
        """
        started = time.monotonic()
        left = deadlines.remaining()
        budget = self._wait if left is None else max(0.0, min(self._wait, left * 0.5))
        give_up_at = started + budget
        try:
            while True:
                raw, held = await self._peek(key)
                if raw is not None and (hit := self._decode(raw)) is not None:
                    return Lookup(hit=hit, waited_seconds=time.monotonic() - started)
                if held is None:
                    token = uuid.uuid4().hex
                    if await self._redis.set(self._lock(key), token, nx=True, px=self._lock_ms):
                        return Lookup(lease=Lease(key, token), waited_seconds=time.monotonic() - started)
                    continue  # someone took it between our peek and our SET: wait for them
                if time.monotonic() >= give_up_at:
                    log.info("gave up waiting for an identical request after %.1fs: calling upstream", budget)
                    return Lookup(waited_seconds=time.monotonic() - started)
                await asyncio.sleep(self._poll)
        except RedisError as exc:
            log.warning("response cache lookup failed, calling upstream uncached: %r", exc)
            return Lookup(waited_seconds=time.monotonic() - started)

    async def _peek(self, key: CacheKey) -> tuple[bytes | None, bytes | None]:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(self._entry(key))
            pipe.get(self._lock(key))
            raw, held = await pipe.execute()
        return raw, held

    async def store(self, lease: Lease, answer: CachedAnswer) -> None:
        """Stores a complete, normal answer and indexes it under every document it cites."""
        key = lease.key
        entry = self._entry(key)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(entry, answer.dumps(), px=self._ttl_ms)
                for document_id in key.documents:
                    members = self._document_set(key.tenant_id, document_id)
                    pipe.sadd(members, entry)
                    # The set outlives its newest entry; stale members only cost a DEL of a missing key.
                    pipe.pexpire(members, self._ttl_ms)
                await pipe.execute()
        except RedisError as exc:
            log.warning("response cache write failed (answer not cached): %r", exc)

    async def release(self, lease: Lease) -> None:
        try:
            await self._release(keys=[self._lock(lease.key)], args=[lease.token])
        except RedisError as exc:
            log.warning("response cache lock release failed (it expires on its own): %r", exc)

    async def invalidate_document(self, tenant_id: str, document_id: str) -> int:
        """Drops every cached answer that cites the document; returns how many were dropped.

        Raises RedisError, so an event handler can retry the invalidation later.
        """
        dropped = await self._invalidate(keys=[self._document_set(tenant_id, document_id)])
        log.info("dropped %s cached answers citing document %s of tenant %s", dropped, document_id, tenant_id)
        return int(dropped)

    @staticmethod
    def _decode(raw: str | bytes) -> CachedAnswer | None:
        try:
            return CachedAnswer.loads(raw)
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("unreadable cache entry ignored: %r", exc)
            return None


def answer_from(
    pieces: Sequence[str], finish_reason: str, usage: TokenUsage, model: str, provider: str
) -> CachedAnswer:
    return CachedAnswer(
        pieces=tuple(pieces),
        finish_reason=finish_reason,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        model=model,
        provider=provider,
    )
