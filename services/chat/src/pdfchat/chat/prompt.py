"""The grounded-answer prompt (template "grounded-answer", version 1).

The model sees numbered passages with their document and page and must answer only from them, citing
each claim as [n]. The numbers are the positions in the citations event (see `citations`), so a [2] in
the answer points at the second citation. Change the wording only together with TEMPLATE_VERSION: the
orchestrator caches and accounts by template id and version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pdfchat.chat.citations import Passage, normalize_text

TEMPLATE_ID = "grounded-answer"
TEMPLATE_VERSION = 1

SYSTEM_INSTRUCTIONS = (
    "You answer questions about the user's documents. Use only the numbered passages the user gives you, "
    "never outside knowledge. After every claim, cite the passage or passages it comes from by number in "
    "square brackets, like [1] or [2][3]. If the passages do not contain the answer, say plainly that the "
    "documents do not answer the question. Answer in the language of the question, concisely."
)


@dataclass(frozen=True)
class PromptMessage:
    role: str
    """system, user or assistant."""
    content: str


@dataclass(frozen=True)
class Prompt:
    """What the generator is asked: chat messages plus the passages and question for providers that answer
    without a prompt (the extractive one)."""

    messages: tuple[PromptMessage, ...]
    passages: tuple[Passage, ...]
    question: str
    template_id: str = TEMPLATE_ID
    template_version: int = TEMPLATE_VERSION


def render_passages(passages: Sequence[Passage]) -> str:
    blocks = [
        f"[{number}] (document {passage.document_id}, page {passage.page})\n{normalize_text(passage.text)}"
        for number, passage in enumerate(passages, start=1)
    ]
    return "\n\n".join(blocks)


def render(question: str, passages: Sequence[Passage]) -> Prompt:
    """The prompt for `question` grounded in `passages`, numbered from 1 in the given order."""
    user = f"Passages:\n\n{render_passages(passages)}\n\nQuestion: {question}"
    return Prompt(
        messages=(PromptMessage("system", SYSTEM_INSTRUCTIONS), PromptMessage("user", user)),
        passages=tuple(passages),
        question=question,
    )
