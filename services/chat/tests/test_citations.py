from pdfchat.chat.citations import (
    Passage,
    build_citations,
    cited_citations,
    cited_from_records,
    cited_numbers,
    from_records,
    normalize_text,
    select_passages,
    to_records,
    trim_quote,
)


def test_short_text_is_kept_whole_with_layout_whitespace_collapsed() -> None:
    assert trim_quote("  The  cat\nsat.  ") == "The cat sat."


def test_english_quote_ends_at_the_last_sentence_within_the_limit() -> None:
    text = "First sentence is here. " * 30
    quote = trim_quote(text, limit=100)
    assert quote.endswith("here.")
    assert len(quote) <= 100
    assert quote.startswith("First sentence")


def test_decimal_point_is_not_a_sentence_end() -> None:
    text = "Alpha beta. " + "x" * 40 + " version 3.5 of the gamma delta epsilon zeta eta theta iota kappa lambda"
    quote = trim_quote(text, limit=70)
    assert "3." not in quote[-3:]
    assert quote.endswith("…")


def test_english_quote_without_sentence_end_is_cut_at_a_word_boundary() -> None:
    text = " ".join(["word"] * 200)
    quote = trim_quote(text, limit=50)
    assert quote.endswith("word…")
    assert len(quote) <= 51


def test_chinese_quote_ends_at_a_full_stop() -> None:
    text = "本产品的保修期为两年。" * 60
    quote = trim_quote(text, limit=100)
    assert quote.endswith("。")
    assert len(quote) <= 100


def test_chinese_quote_without_punctuation_is_cut_at_the_limit() -> None:
    quote = trim_quote("中" * 500, limit=400)
    assert quote == "中" * 400 + "…"


def test_chinese_line_breaks_are_layout_not_spaces() -> None:
    assert normalize_text("保修期\n为两年。 Warranty\nlasts") == "保修期为两年。 Warranty lasts"


def test_default_quote_is_about_400_characters() -> None:
    quote = trim_quote("A sentence of moderate length ends here. " * 40)
    assert 200 <= len(quote) <= 400


def test_citations_keep_passage_order_page_segment_and_boxes() -> None:
    passages = [
        Passage("s2", "d1", page=4, text="b", score=0.5, boxes=((1.0, 2.0, 3.0, 4.0),)),
        Passage("s1", "d2", page=1, text="a", score=0.9),
    ]
    citations = build_citations(passages)
    assert [(c.segment_id, c.document_id, c.page) for c in citations] == [("s2", "d1", 4), ("s1", "d2", 1)]
    assert (citations[0].boxes[0].x0, citations[0].boxes[0].y1) == (1.0, 4.0)
    assert citations[0].score == 0.5


def test_cited_numbers_in_order_of_first_mention_in_all_forms() -> None:
    answer = "Two years [3]. Also [1, 2] and [3][9] and 【2】 and [2，1]."
    assert cited_numbers(answer, 4) == [3, 1, 2]


def test_answer_without_markers_cites_all_passages() -> None:
    citations = build_citations([Passage("s1", "d", 1, "a", 1.0), Passage("s2", "d", 2, "b", 0.5)])
    assert [c.segment_id for c in cited_citations("no markers", citations)] == ["s1", "s2"]
    assert [c.segment_id for c in cited_citations("see [2]", citations)] == ["s2"]


def test_records_round_trip_and_keep_citation_numbering() -> None:
    citations = build_citations(
        [Passage("s1", "d", 1, "a", 1.0, boxes=((0, 0, 1, 1),)), Passage("s2", "d", 2, "b", 0.5)]
    )
    records = to_records(citations, [2])
    assert [r["cited"] for r in records] == [0, 1]
    assert from_records(records) == citations
    assert [c.segment_id for c in cited_from_records(records)] == ["s2"]
    assert [c.segment_id for c in cited_from_records(to_records(citations, []))] == ["s1", "s2"]


def test_select_passages_keeps_the_best_and_drops_repeats() -> None:
    candidates = [
        Passage("s1", "d1", 1, "same text", 0.4),
        Passage("s2", "d2", 1, "same  text", 0.9),  # the same page text of a document indexed twice
        Passage("s3", "d1", 2, "other", 0.7),
        Passage("s3", "d1", 2, "other", 0.7),
        Passage("s4", "d1", 3, "third", 0.1),
    ]
    chosen = select_passages(candidates, top_k=2)
    assert [p.segment_id for p in chosen] == ["s2", "s3"]
