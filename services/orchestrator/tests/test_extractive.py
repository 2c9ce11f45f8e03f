"""The extractive provider's answer: the notice, then the best-matching sentences with [n] and page."""

from __future__ import annotations

from pdfchat.orchestrator import extractive
from pdfchat.orchestrator.generation import Passage

ENGLISH = [
    Passage("The museum opens at nine. Tickets cost twelve euros for adults.", page=2),
    Passage("The Eiffel Tower was completed in 1889 for the World's Fair. It is 330 metres tall.", page=7),
    Passage("Paris has many bridges. The Seine flows through the city.", page=9),
]
CHINESE = [
    Passage("故宫位于北京市中心。故宫是明清两代的皇家宫殿。", page=3),
    Passage("长城是中国古代的军事防御工程。长城修建的历史持续了两千多年。它如今是著名的旅游景点。", page=12),
]


def test_english_answer_says_no_model_is_configured_and_quotes_the_best_sentence() -> None:
    answer = extractive.compose_answer("When was the Eiffel Tower completed?", ENGLISH)
    assert answer.startswith(extractive.NOTICE_EN)
    assert "The Eiffel Tower was completed in 1889 for the World's Fair. [2] (p. 7)" in answer
    assert "museum" not in answer


def test_chinese_answer_matches_by_character_bigrams() -> None:
    answer = extractive.compose_answer("长城修建了多少年？", CHINESE)
    assert answer.startswith(extractive.NOTICE_ZH)
    assert "长城修建的历史持续了两千多年。[2]（第12页）" in answer
    assert "故宫" not in answer


def test_best_sentence_ranks_first() -> None:
    ranked = extractive.rank("How many metres tall is it?", ENGLISH)
    assert ranked[0].text == "It is 330 metres tall."
    assert (ranked[0].passage_number, ranked[0].page) == (2, 7)


def test_at_most_three_sentences_are_quoted() -> None:
    passages = [Passage(f"Apples are red number {i}. Apples grow on trees {i}.", page=i) for i in range(1, 6)]
    assert len(extractive.best_sentences("apples", passages)) == 3


def test_no_overlap_quotes_the_top_passage_first_sentence() -> None:
    answer = extractive.compose_answer("zebra migration", ENGLISH)
    assert "The museum opens at nine. [1] (p. 2)" in answer


def test_no_passages_says_there_is_nothing_to_quote() -> None:
    assert extractive.compose_answer("anything?", []) == extractive.NOTHING_EN


def test_pieces_concatenate_to_the_answer_for_both_scripts() -> None:
    for answer in (
        extractive.compose_answer("Eiffel Tower?", ENGLISH),
        extractive.compose_answer("长城修建了多少年？", CHINESE),
    ):
        pieces = list(extractive.pieces(answer))
        assert "".join(pieces) == answer
        assert len(pieces) > 10
        assert all(len(p.strip()) <= 20 for p in pieces)


def test_terms_use_bigrams_for_cjk_and_words_otherwise() -> None:
    assert extractive.terms("长城 Great Wall") == {"长城", "great", "wall"}
    assert "the" not in extractive.terms("the wall")


def test_inflected_words_match_their_question_terms() -> None:
    passages = [
        Passage("Several German figures were of Huguenot descent.", page=1),
        Passage("Frederick William invited Huguenots to settle in his realms.", page=2),
    ]
    ranked = extractive.rank("Which ruler invites Huguenot settlers?", passages)
    assert ranked[0].text.startswith("Frederick William")
    assert extractive.stem("huguenots") == extractive.stem("huguenot")
    assert extractive.stem("invited") == extractive.stem("invite")
