"""Unit tests of the full-text preparation (no database)."""

from __future__ import annotations

import re

from pdfchat.vector_index import fts


def test_latin_words_are_lowercased_and_split_on_punctuation() -> None:
    assert fts.prepare_document("Hello, World! e-mail v2.0") == "hello world e mail v2 0"


def test_chinese_run_becomes_overlapping_bigrams_plus_unigrams_in_documents() -> None:
    assert fts.prepare_document("向量检索") == "向量 量检 检索 向 量 检 索"


def test_chinese_query_becomes_overlapping_bigrams_only() -> None:
    assert fts.query_tokens("向量检索") == ["向量", "量检", "检索"]


def test_chinese_punctuation_separates_runs() -> None:
    # no bigram may span the comma: "文测" is not a word of the text
    assert fts.query_tokens("中文，测试") == ["中文", "测试"]


def test_mixed_chinese_and_latin_need_no_spaces() -> None:
    assert fts.query_tokens("A股市场2023年GDP") == ["股市", "市场", "2023", "年", "gdp"]


def test_single_cjk_character_in_a_query_is_a_unigram_that_documents_also_index() -> None:
    assert fts.query_tokens("A股") == ["股"]
    assert "股" in fts.prepare_document("股票市场").split()


def test_japanese_and_korean_runs_are_bigrammed_too() -> None:
    assert fts.query_tokens("東京タワー 한국어") == ["東京", "京タ", "タワ", "ワー", "한국", "국어"]


def test_fullwidth_latin_is_normalised() -> None:
    assert fts.query_tokens("ＰＤＦ") == ["pdf"]


def test_query_drops_english_stopwords_contraction_fragments_and_duplicates() -> None:
    assert fts.query_tokens("What is the capital of Poland? It's the capital, Warsaw") == [
        "capital",
        "poland",
        "warsaw",
    ]


def test_query_of_only_stopwords_has_no_expression() -> None:
    assert fts.query_expression("what is it?") is None
    assert fts.query_expression("  ") is None


def test_query_expression_ors_quoted_lexemes_so_input_cannot_inject_operators() -> None:
    expression = fts.query_expression("warsaw & !(poland) | 'x':* <-> \\ 华沙")
    assert expression == "'warsaw' | 'poland' | 'x' | '华沙'"
    assert re.fullmatch(r"'[^']+'( \| '[^']+')*", expression)


def test_query_tokens_are_capped() -> None:
    many = " ".join(f"word{i}" for i in range(500))
    assert len(fts.query_tokens(many)) == fts.MAX_QUERY_TOKENS
