"""Approximate token counts, for usage when a provider reports none and for the extractive provider.

Roughly what BPE tokenizers give: one token per CJK character, about four characters per token
elsewhere. Good enough for accounting and limits; a provider's own count wins whenever it reports one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from pdfchat.orchestrator.generation import ChatTurn

CJK_CLASS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_CJK_RE = re.compile(f"[{CJK_CLASS}]")


def count(text: str) -> int:
    if not text:
        return 0
    cjk = len(_CJK_RE.findall(text))
    rest = _CJK_RE.sub("", text)
    return cjk + math.ceil(len(rest.strip()) / 4)


def count_messages(messages: Iterable[ChatTurn]) -> int:
    # Chat formats spend a few tokens framing each message.
    return sum(count(message.content) + 4 for message in messages) + 3
