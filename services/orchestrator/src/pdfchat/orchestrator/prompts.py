"""The chat prompt sent to an LLM: the caller's messages, with the retrieved passages numbered for citing.

Passages go in as `[n] (page p) text` lines so the model can cite `[n]`, the same markers the
extractive provider uses; chat maps `[n]` back to the passage's document and page.
"""

from __future__ import annotations

from pdfchat.orchestrator.generation import ChatTurn, GenerationRequest, Passage

SYSTEM_INSTRUCTIONS = (
    "You answer questions about the user's documents using only the numbered passages below. "
    "Cite every claim with the passage number in square brackets, like [1] or [2][3]. "
    "If the passages do not contain the answer, say so. Answer in the language of the question."
)


def format_passages(passages: list[Passage]) -> str:
    lines = [f"[{n}] (page {p.page}) {' '.join(p.text.split())}" for n, p in enumerate(passages, start=1)]
    return "Passages:\n" + "\n".join(lines)


def build_messages(request: GenerationRequest) -> list[ChatTurn]:
    """The messages for the provider.

    With no caller messages: the instructions, then one user turn with the passages and the question.
    With caller messages: those, with the passages (if any) as a system turn after the caller's own
    system turns, so a caller-built prompt keeps its order and still gets the context.
    """
    passages = list(request.passages)
    if not request.messages:
        user = f"{format_passages(passages)}\n\nQuestion: {request.question}" if passages else request.question
        return [ChatTurn("system", SYSTEM_INSTRUCTIONS), ChatTurn("user", user)]
    messages = list(request.messages)
    if passages:
        at = next((i for i, m in enumerate(messages) if m.role != "system"), len(messages))
        messages.insert(at, ChatTurn("system", format_passages(passages)))
    return messages
