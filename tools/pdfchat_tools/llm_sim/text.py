"""Deterministic text for the simulator: token counts, answers built from the prompt, embeddings.

Everything here is a pure function of its input, so tests can predict what the simulator answers:
a chat completion quotes the first numbered context passage (a line starting `[1]`) when the prompt
has one, and otherwise echoes the start of the last user message.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import math
import re
import struct
from collections.abc import Sequence
from typing import Any

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN_RE = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+\s*|\s+")
_WORD_RE = re.compile(rf"[{_CJK}]|\w+", re.UNICODE)
_PASSAGE_RE = re.compile(r"^\s*\[1\]\s*(?:\([^)]*\)\s*)?(.+)$", re.MULTILINE)
_FILLER = "and so on"


def tokenize(text: str) -> list[str]:
    """Splits text into simulated tokens: one per CJK character, one per word with its trailing space.

    Joining the tokens gives the text back exactly, so a streamed answer concatenates to the full one.
    """
    return _TOKEN_RE.findall(text)


def count_tokens(text: str) -> int:
    return sum(1 for token in tokenize(text) if token.strip())


def message_text(content: Any) -> str:
    """The text of an OpenAI message `content`: a string or a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def prompt_tokens(messages: Sequence[dict[str, Any]]) -> int:
    # A few tokens of framing per message, as real chat formats have.
    return sum(count_tokens(message_text(m.get("content"))) + 3 for m in messages) + 3


def answer_for(messages: Sequence[dict[str, Any]]) -> str:
    """The simulator's deterministic answer to a chat prompt."""
    full = "\n".join(message_text(m.get("content")) for m in messages)
    passage = _PASSAGE_RE.search(full)
    if passage:
        quote = _first_sentence(passage.group(1).strip())
        return f"From the context: {quote} [1]"
    last_user = next((message_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    words = tokenize(last_user.strip())
    echoed = "".join(words[:24]).strip()
    return f"You asked: {echoed}" if echoed else "Hello from the simulator."


def fit_to_length(answer: str, tokens: int) -> str:
    """Pads (with a filler phrase) or truncates `answer` to exactly `tokens` simulated tokens."""
    pieces = [t for t in tokenize(answer) if t.strip()]
    while len(pieces) < tokens:
        pieces.extend(f"{word} " for word in _FILLER.split())
    return "".join(piece if piece.endswith(" ") or _is_cjk(piece) else piece + " " for piece in pieces[:tokens]).strip()


def _is_cjk(token: str) -> bool:
    return len(token) == 1 and re.match(rf"[{_CJK}]", token) is not None


def _first_sentence(text: str) -> str:
    match = re.search(r"^(.+?[.!?。！？])(\s|$)", text)
    return (match.group(1) if match else text)[:400]


def embedding(text: str, dimensions: int) -> list[float]:
    """A unit vector from feature hashing of words and CJK characters: similar texts get similar vectors."""
    vector = [0.0] * dimensions
    features = [w.lower() for w in _WORD_RE.findall(text)]
    features += [a + b for a, b in itertools.pairwise(features)]
    for feature in features or [text]:
        digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
        index = int.from_bytes(digest[:4], "little") % dimensions
        vector[index] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0:
        vector[0] = 1.0
        return vector
    return [v / norm for v in vector]


def encode_base64(vector: Sequence[float]) -> str:
    """The OpenAI `encoding_format=base64` form: little-endian float32 bytes."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
