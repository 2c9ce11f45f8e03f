from pdfchat.chat.citations import Passage
from pdfchat.chat.prompt import TEMPLATE_ID, TEMPLATE_VERSION, render


def _passages() -> list[Passage]:
    return [
        Passage(segment_id="s1", document_id="doc-a", page=3, text="The warranty lasts\ntwo years.", score=0.9),
        Passage(segment_id="s2", document_id="doc-b", page=12, text="保修期为两年。", score=0.8),
    ]


def test_prompt_is_grounded_answer_version_1() -> None:
    prompt = render("How long is the warranty?", _passages())
    assert (prompt.template_id, prompt.template_version) == (TEMPLATE_ID, TEMPLATE_VERSION) == ("grounded-answer", 1)


def test_system_message_demands_passages_only_and_numbered_citations() -> None:
    system, user = render("q?", _passages()).messages
    assert system.role == "system"
    assert "only the numbered passages" in system.content
    assert "[1]" in system.content
    assert user.role == "user"


def test_passages_are_numbered_from_one_with_their_pages_then_the_question() -> None:
    user = render("How long is the warranty?", _passages()).messages[1].content
    first = user.index("[1] (document doc-a, page 3)\nThe warranty lasts two years.")
    second = user.index("[2] (document doc-b, page 12)\n保修期为两年。")
    question = user.index("Question: How long is the warranty?")
    assert first < second < question


def test_prompt_carries_passages_and_question_for_extractive_providers() -> None:
    prompt = render("q?", _passages())
    assert prompt.question == "q?"
    assert [p.segment_id for p in prompt.passages] == ["s1", "s2"]
