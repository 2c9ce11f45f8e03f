from __future__ import annotations

from pdfchat.orchestrator import prompts
from pdfchat.orchestrator.generation import ChatTurn, GenerationRequest, Passage


def test_question_only_request_gets_instructions_and_numbered_passages() -> None:
    request = GenerationRequest(question="Why?", passages=(Passage("First.", page=3), Passage("Second.", page=4)))
    messages = prompts.build_messages(request)
    assert [m.role for m in messages] == ["system", "user"]
    assert "[1] (page 3) First.\n[2] (page 4) Second." in messages[1].content
    assert messages[1].content.endswith("Question: Why?")


def test_caller_messages_keep_their_order_with_passages_after_system_turns() -> None:
    request = GenerationRequest(
        messages=(ChatTurn("system", "Be brief."), ChatTurn("user", "Why?")), passages=(Passage("Because.", page=1),)
    )
    messages = prompts.build_messages(request)
    assert [m.content for m in messages] == ["Be brief.", "Passages:\n[1] (page 1) Because.", "Why?"]
