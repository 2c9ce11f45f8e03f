import uuid

import pytest

from pdfchat.worker_pdf.chunking import (
    SEGMENT_NAMESPACE,
    Chunk,
    chunk_pages,
    normalise_line,
    page_ordinal,
    segment_id,
    sentence_spans,
)
from pdfchat.worker_pdf.layout import PageText, TextBlock, TextLine


def block(*lines: str, top: float = 0.0) -> TextBlock:
    text_lines = tuple(
        TextLine(text=text, box=(50.0, top + 12.0 * index, 500.0, top + 12.0 * index + 10.0))
        for index, text in enumerate(lines)
    )
    return TextBlock(lines=text_lines, box=(50.0, top, 500.0, top + 12.0 * len(lines)))


def page(number: int, *blocks: TextBlock) -> PageText:
    return PageText(number=number, blocks=blocks)


def texts(chunks: list[Chunk]) -> list[str]:
    return [chunk.text for chunk in chunks]


def test_small_blocks_on_a_page_are_packed_into_one_chunk_with_each_blocks_box() -> None:
    first, second = block("Title", top=10), block("A short paragraph.", top=40)
    chunks = chunk_pages([page(1, first, second)])
    assert texts(chunks) == ["Title\nA short paragraph."]
    assert chunks[0].boxes == (first.box, second.box)
    assert (chunks[0].page, chunks[0].ordinal) == (1, 10000)


def test_english_lines_are_joined_with_spaces_and_hyphenated_words_are_rejoined() -> None:
    lines = ("The quick brown fox jumps over the la-", "zy dog and a soft hy\u00ad", "phen.")
    chunks = chunk_pages([page(1, block(*lines))])
    assert texts(chunks) == ["The quick brown fox jumps over the lazy dog and a soft hyphen."]


def test_hyphen_before_a_capital_or_digit_is_kept() -> None:
    chunks = chunk_pages([page(1, block("Warsaw-", "Berlin and pre-", "1900 maps"))])
    assert texts(chunks) == ["Warsaw- Berlin and pre- 1900 maps"]


def test_chinese_lines_are_joined_without_spaces() -> None:
    chunks = chunk_pages([page(1, block("黑豹队的防守只丢了 308分，在联赛中排名", "第六，同时也以 24 次拦截领先。"))])
    assert texts(chunks) == ["黑豹队的防守只丢了 308分，在联赛中排名第六，同时也以 24 次拦截领先。"]


def test_whitespace_ligatures_and_invisible_characters_are_normalised() -> None:
    assert normalise_line("  signi\ufb01cantly\u00a0 \t more\u200b \ufeffﬂow  ") == "significantly more flow"


def test_empty_blocks_and_pages_produce_no_chunks() -> None:
    chunks = chunk_pages([page(1, block("   ", "\u200b")), page(2), page(3, block("Text."))])
    assert [(chunk.page, chunk.ordinal, chunk.text) for chunk in chunks] == [(3, 30000, "Text.")]


def test_chunks_never_span_pages_and_ordinals_are_page_times_10000_plus_index_on_the_page() -> None:
    long = block("Long sentence here. " * 30)
    chunks = chunk_pages(
        [page(1, block("One.")), page(2, block("Two.")), page(3, block("Three."), long)], target_chars=300
    )
    assert [(chunk.page, chunk.ordinal) for chunk in chunks] == [
        (1, 10000),
        (2, 20000),
        (3, 30000),
        (3, 30001),
        (3, 30002),
    ]
    assert chunks[0].text == "One."


def test_a_page_too_big_for_its_ordinal_space_is_refused() -> None:
    with pytest.raises(ValueError, match="more than 10000 chunks"):
        page_ordinal(3, 10000)


def test_blocks_are_packed_up_to_the_target_and_not_beyond() -> None:
    paragraphs = [block(f"Paragraph {index} " + "word " * 30, top=index * 50.0) for index in range(10)]
    chunks = chunk_pages([page(1, *paragraphs)], target_chars=400)
    assert len(chunks) > 1
    assert all(len(chunk.text) <= 400 for chunk in chunks)
    assert "\n".join(texts(chunks)) == "\n".join(normalise_line(b.lines[0].text) for b in paragraphs)


def test_a_long_english_block_is_split_at_sentence_ends() -> None:
    sentences = [f"Sentence number {index} says something about the topic at hand." for index in range(40)]
    lines = [" ".join(sentences[index : index + 3]) for index in range(0, 40, 3)]
    chunks = chunk_pages([page(1, block(*lines))], target_chars=300)
    assert len(chunks) > 1
    for chunk in chunks:
        assert len(chunk.text) <= 300
        assert chunk.text.startswith("Sentence number ")
        assert chunk.text.endswith("at hand.")
    assert " ".join(texts(chunks)) == " ".join(sentences)


def test_a_long_chinese_block_without_spaces_is_split_at_chinese_sentence_ends() -> None:
    sentence = "这是一个没有空格的中文句子，用来测试分块是否正确！"
    body = "".join(sentence if index % 2 else sentence.replace("！", "。") for index in range(60))
    lines = [body[index : index + 40] for index in range(0, len(body), 40)]
    chunks = chunk_pages([page(4, block(*lines))], target_chars=200)
    assert len(chunks) > 1
    for chunk in chunks:
        assert len(chunk.text) <= 200
        assert chunk.text[-1] in "。！"
        assert " " not in chunk.text
        assert chunk.page == 4
    assert "".join(texts(chunks)) == body


def test_split_pieces_are_balanced_rather_than_leaving_a_tiny_remainder() -> None:
    sentences = " ".join(f"Short sentence {index}." for index in range(60))  # ~1200 chars
    chunks = chunk_pages([page(1, block(sentences))], target_chars=900)
    assert len(chunks) == 2
    assert min(len(chunk.text) for chunk in chunks) > 400


def test_a_sentence_longer_than_the_target_is_cut_at_a_space_or_hard_without_spaces() -> None:
    english = " ".join(["lorem"] * 100)  # 599 chars, no sentence end
    chinese = "字" * 450
    chunks = chunk_pages([page(1, block(english)), page(2, block(chinese))], target_chars=200)
    english_chunks = [chunk.text for chunk in chunks if chunk.page == 1]
    assert all(len(text) <= 200 and not text.startswith(" ") and not text.endswith(" ") for text in english_chunks)
    assert " ".join(english_chunks) == english
    assert [len(chunk.text) for chunk in chunks if chunk.page == 2] == [200, 200, 50]


def test_pieces_of_a_split_block_get_the_boxes_of_their_own_lines() -> None:
    lines = [f"Line {index} has a sentence in it." for index in range(30)]
    long_block = block(*lines, top=100)
    chunks = chunk_pages([page(1, long_block)], target_chars=300)
    assert len(chunks) >= 3
    tops = [chunk.boxes[0][1] for chunk in chunks]
    assert tops == sorted(tops)
    assert tops[0] == long_block.box[1]
    for chunk in chunks:
        _x0, y0, _x1, y1 = chunk.boxes[0]
        assert long_block.box[1] <= y0 < y1 <= long_block.box[3]
        assert y1 - y0 < long_block.box[3] - long_block.box[1]


def test_sentence_spans_handle_english_and_chinese_without_whitespace_assumptions() -> None:
    text = "第一句。第二句！第三句？第四句；Fifth one. Sixth? Pi is 3.14 here! “引号。”结束"
    pieces = [text[start:end] for start, end in sentence_spans(text)]
    assert pieces == [
        "第一句。",
        "第二句！",
        "第三句？",
        "第四句；",
        "Fifth one.",
        "Sixth?",
        "Pi is 3.14 here!",
        "“引号。”",
        "结束",
    ]


def test_chunking_page_ranges_separately_gives_the_same_chunks_as_the_whole_document() -> None:
    pages = [page(number, block(f"Page {number} text. " * 30), block("More.")) for number in range(1, 6)]
    whole = chunk_pages(pages, target_chars=250)
    assert chunk_pages(pages[:2], target_chars=250) + chunk_pages(pages[2:], target_chars=250) == whole
    assert len({chunk.ordinal for chunk in whole}) == len(whole)


def heading(text: str, top: float = 0.0) -> TextBlock:
    return TextBlock(
        lines=(TextLine(text, (50.0, top, 300.0, top + 14.0)),), box=(50.0, top, 300.0, top + 14.0), kind="heading"
    )


def test_a_heading_moves_to_the_next_chunk_with_its_paragraph_instead_of_ending_a_chunk() -> None:
    first = block("First paragraph. " * 12, top=0)  # ~204 chars
    second = block("Second paragraph under the heading. " * 5, top=100)  # ~180 chars
    chunks = chunk_pages([page(1, first, heading("2. Results", top=80), second)], target_chars=300)
    assert [chunk.text.split("\n")[0] for chunk in chunks] == [("First paragraph. " * 12).strip(), "2. Results"]
    assert chunks[1].text.startswith("2. Results\nSecond paragraph")
    assert chunks[1].boxes[0] == (50.0, 80.0, 300.0, 94.0)


def test_headings_and_short_paragraphs_that_fit_share_a_chunk() -> None:
    chunks = chunk_pages([page(1, heading("Intro"), block("Short text."), heading("Next"), block("More text."))])
    assert texts(chunks) == ["Intro\nShort text.\nNext\nMore text."]


def table(*rows: str, top: float = 200.0) -> TextBlock:
    lines = tuple(TextLine(row, (50.0, top + 10.0 * i, 500.0, top + 10.0 * i + 9.0)) for i, row in enumerate(rows))
    return TextBlock(lines=lines, box=(50.0, top, 500.0, top + 10.0 * len(rows)), kind="table")


def test_a_small_table_is_kept_whole_in_one_chunk_with_rows_on_their_own_lines() -> None:
    rows = ["Name | Count", "apples | 3", "pears | 4"]
    before = block("Intro sentence. " * 15, top=0)  # ~240 chars
    chunks = chunk_pages([page(2, before, table(*rows))], target_chars=260)
    assert chunks[-1].text == "\n".join(rows)
    assert chunks[-1].boxes == ((50.0, 200.0, 500.0, 229.0),)


def test_a_table_longer_than_the_target_is_split_between_rows() -> None:
    rows = [f"item {index} | {index * 7} | a description of the item" for index in range(40)]
    chunks = chunk_pages([page(1, table(*rows))], target_chars=300)
    assert len(chunks) > 1
    assert all(len(chunk.text) <= 300 for chunk in chunks)
    assert "\n".join(texts(chunks)).split("\n") == rows


def test_segment_ids_are_deterministic_uuid5_of_document_version_and_ordinal() -> None:
    assert segment_id("doc-1", 2, 7) == segment_id("doc-1", 2, 7)
    assert segment_id("doc-1", 2, 7) == str(uuid.uuid5(SEGMENT_NAMESPACE, "doc-1:2:7"))
    assert len({segment_id("doc-1", 2, 7), segment_id("doc-1", 3, 7), segment_id("doc-1", 2, 8)}) == 3
    uuid.UUID(segment_id("doc-1", 2, 7))
