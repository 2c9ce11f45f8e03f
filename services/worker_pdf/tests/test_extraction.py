import json
import re
import unicodedata
from pathlib import Path

import pymupdf
import pytest

from pdfchat.worker_pdf.chunking import Chunk, chunk_pages
from pdfchat.worker_pdf.extraction import (
    NO_PAGES,
    NOT_READABLE,
    PASSWORD_REQUIRED,
    WRONG_PASSWORD,
    ExtractionLimits,
    ReadOptions,
    UnreadablePdf,
    extract_text,
    open_pdf,
)

XQUAD = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "qa" / "xquad"
PROBLEM_PDFS = XQUAD.parents[1] / "pdfs"

# Its answer starts at the foot of the gold page and runs on to the next (see the xquad README).
ANSWER_ACROSS_PAGES = {"571cd3b55efbb31900334e05"}


def read(path: Path) -> bytes:
    if not path.exists():
        pytest.fail(f"test data missing: {path}")
    return path.read_bytes()


async def chunks_of(path: Path) -> list[Chunk]:
    return chunk_pages(await extract_text(read(path)))


def compact(text: str) -> str:
    """As the xquad gold pages were computed (NFKC, no whitespace), and without hyphens: a hyphen at a
    line end is joined away ("comb-\\nbearing" becomes "combbearing"), which is the price of rejoining
    words that typesetting hyphenated."""
    return re.sub(r"[\s\ufeff\u200b\u200c\u200d-]", "", unicodedata.normalize("NFKC", text))


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_every_xquad_pdf_yields_page_anchored_chunks_with_boxes_inside_the_page(lang: str) -> None:
    pdfs = sorted((XQUAD / lang / "docs").glob("*.pdf"))
    assert len(pdfs) == 24
    for path in pdfs:
        pdf = await open_pdf(read(path))
        try:
            outcomes = await pdf.extract_pages(1, pdf.page_count)
        finally:
            await pdf.close()
        assert not [outcome.failure for outcome in outcomes if outcome.failure]
        pages = [outcome.page for outcome in outcomes]
        assert [page.number for page in pages] == list(range(1, len(pages) + 1))
        chunks = chunk_pages(pages)
        assert chunks, path.name
        ordinals = [chunk.ordinal for chunk in chunks]
        assert ordinals == sorted(set(ordinals))
        for chunk in chunks:
            assert chunk.text.strip()
            assert len(chunk.text) <= 900
            assert chunk.boxes
            for x0, y0, x1, y1 in chunk.boxes:
                assert 0 <= x0 < x1 <= 595.5
                assert 0 <= y0 < y1 <= 842.5


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_the_chunk_holding_each_xquad_answer_is_on_the_gold_page(lang: str) -> None:
    records = [json.loads(line) for line in read(XQUAD / f"qa_{lang}.jsonl").decode().splitlines()]
    chunks_by_file: dict[str, list[Chunk]] = {}
    checked = 0
    for record in records:
        if record["id"] in ANSWER_ACROSS_PAGES:
            continue
        path = record["pdf_file"]
        if path not in chunks_by_file:
            chunks_by_file[path] = await chunks_of(XQUAD / path)
        chunks = chunks_by_file[path]
        answer = compact(record["answers"][0])
        paragraph_start = compact(record["gold_paragraph_text"])[:30]
        pages = {chunk.page for chunk in chunks if answer in compact(chunk.text)}
        assert record["gold_answer_pdf_page"] in pages, (record["id"], record["answers"][0], pages)
        # the chunk that holds the answer in its own paragraph (not a repeat elsewhere) is on the gold page
        first_page = min(chunk.page for chunk in chunks if paragraph_start in compact(chunk.text))
        assert first_page in record["gold_paragraph_pdf_pages"]
        checked += 1
    assert checked >= 630


async def test_chinese_text_comes_out_without_spaces_between_joined_lines() -> None:
    chunks = await chunks_of(XQUAD / "zh" / "docs" / "xquad_00_Super_Bowl_50.pdf")
    text = "\n".join(chunk.text for chunk in chunks)
    assert "在联赛中排名第六，同时也以 24 次拦截领先国家橄榄球联盟(NFL)，并且四次入选职业碗。" in text


async def test_ligatures_are_expanded() -> None:
    chunks = await chunks_of(XQUAD / "en" / "docs" / "xquad_01_Warsaw.pdf")
    text = " ".join(chunk.text for chunk in chunks)
    assert "significantly fewer supporters" in text
    assert "\ufb01" not in text


async def test_two_column_page_is_read_column_by_column() -> None:
    chunks = await chunks_of(PROBLEM_PDFS / "sf__multicolumn.pdf")
    page_one = [chunk for chunk in chunks if chunk.page == 1]
    left_column = [box[0] < 300 for chunk in page_one for box in chunk.boxes]
    # once the right column starts, reading does not go back to the left one
    assert left_column == sorted(left_column, reverse=True), left_column


@pytest.mark.parametrize(
    "name",
    [
        "sf__libreoffice-writer-password.pdf",
        "pdfium__encrypted.pdf",
        "pdfium__encrypted_hello_world_r6.pdf",
        "qpdf__20-pages.pdf",
    ],
)
async def test_encrypted_pdf_without_password_needs_one(name: str) -> None:
    with pytest.raises(UnreadablePdf) as raised:
        await extract_text(read(PROBLEM_PDFS / name))
    assert raised.value.reason == PASSWORD_REQUIRED


async def test_pdf_encrypted_with_an_empty_user_password_opens() -> None:
    chunks = await chunks_of(PROBLEM_PDFS / "pypdf__r6-owner-password.pdf")
    assert "pdf encryption test" in chunks[0].text


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        ("qpdf__bad1.pdf", "failed to open stream"),
        ("pdfium__bug_325_a.pdf", "failed to open stream"),
        ("qpdf__issue-335b.pdf", "failed to open stream"),
        ("qpdf__deep-pages.pdf", "cycle in page tree"),
    ],
)
async def test_file_that_is_not_a_readable_pdf_gets_a_readable_reason(name: str, detail: str) -> None:
    with pytest.raises(UnreadablePdf) as raised:
        await extract_text(read(PROBLEM_PDFS / name))
    assert raised.value.reason == f"{NOT_READABLE}: {detail}"


async def test_empty_file_is_not_a_readable_pdf() -> None:
    with pytest.raises(UnreadablePdf, match="the file is empty"):
        await extract_text(b"")


@pytest.mark.parametrize("name", ["pdfium__no_page_count.pdf", "qpdf__bad40.pdf", "pdfjs__issue9418.pdf"])
async def test_pdf_with_zero_pages_is_refused(name: str) -> None:
    with pytest.raises(UnreadablePdf) as raised:
        await extract_text(read(PROBLEM_PDFS / name))
    assert raised.value.reason == NO_PAGES


async def test_blank_page_has_a_page_but_no_text() -> None:
    pages = await extract_text(read(PROBLEM_PDFS / "pdfjs__empty.pdf"))
    assert [(page.number, page.blocks) for page in pages] == [(1, ())]
    assert chunk_pages(pages) == []


@pytest.mark.parametrize(
    "name", ["qpdf__bad2.pdf", "qpdf__bad7.pdf", "pdfium__empty_xref.pdf", "pdfjs__bug1250079.pdf"]
)
async def test_repairable_pdf_is_repaired_and_read(name: str) -> None:
    chunks = await chunks_of(PROBLEM_PDFS / name)
    assert chunks
    assert chunks[0].page == 1


async def test_page_ranges_can_be_read_separately() -> None:
    pdf = await open_pdf(read(PROBLEM_PDFS / "pdfjs__pdkids.pdf"))
    try:
        assert pdf.page_count == 55
        first, rest = await pdf.extract_pages(1, 10), await pdf.extract_pages(11, 55)
        with pytest.raises(ValueError, match="outside"):
            await pdf.extract_pages(50, 56)
    finally:
        await pdf.close()
    assert [outcome.page.number for outcome in first + rest] == list(range(1, 56))


@pytest.mark.parametrize(
    ("name", "password"),
    [
        ("sf__libreoffice-writer-password.pdf", "openpassword"),
        ("pdfium__encrypted.pdf", "1234"),
        ("pdfium__encrypted_hello_world_r6.pdf", "hôtel"),
        ("pdfjs__issue6010_2.pdf", "æøå"),
        ("qpdf__20-pages.pdf", "user"),
    ],
)
async def test_encrypted_pdf_opens_with_its_password(name: str, password: str) -> None:
    pages = await extract_text(read(PROBLEM_PDFS / name), password)
    assert pages
    if name != "qpdf__20-pages.pdf":
        assert chunk_pages(pages)


async def test_encrypted_pdf_with_another_password_is_a_wrong_password() -> None:
    with pytest.raises(UnreadablePdf) as raised:
        await extract_text(read(PROBLEM_PDFS / "pdfium__encrypted.pdf"), "5679")
    assert raised.value.reason == WRONG_PASSWORD


async def test_a_page_over_the_time_limit_has_no_text_and_the_next_page_is_read() -> None:
    # OCR of a full scanned page at 600 dpi takes seconds
    limits = ExtractionLimits(page_time_limit=0.5, read=ReadOptions(ocr_dpi=600))
    scanned_then_text = scanned_pdf(
        [f"Line {n} of a long scanned page." for n in range(25)], then_text_page="Plain text page."
    )
    pdf = await open_pdf(scanned_then_text, limits=limits)
    try:
        first, second = await pdf.extract_pages(1, 2)
    finally:
        await pdf.close()
    assert first.failure == "took longer than 0.5 s"
    assert first.page.blocks == ()
    assert not second.failure
    assert second.page.blocks[0].lines[0].text == "Plain text page."


async def test_pages_not_started_before_the_deadline_are_failed() -> None:
    pdf = await open_pdf(read(PROBLEM_PDFS / "sf__pdflatex-4-pages.pdf"))
    try:
        outcomes = await pdf.extract_pages(1, 4, deadline=0.0)
    finally:
        await pdf.close()
    assert [outcome.failure for outcome in outcomes] == ["the job's time limit was reached"] * 4


def scanned_pdf(lines: list[str], chinese: bool = False, then_text_page: str = "") -> bytes:
    """A PDF whose first page is only an image of `lines` (rendered text), like a scan."""
    source = pymupdf.open()
    page = source.new_page(width=595, height=842)
    page.insert_textbox(
        pymupdf.Rect(60, 60, 540, 500), "\n".join(lines), fontsize=16, fontname="china-s" if chinese else "helv"
    )
    image = page.get_pixmap(dpi=200, colorspace=pymupdf.csGRAY).tobytes("png")
    scanned = pymupdf.open()
    scanned_page = scanned.new_page(width=595, height=842)
    scanned_page.insert_image(scanned_page.rect, stream=image)
    if then_text_page:
        scanned.new_page(width=595, height=842).insert_text((72, 72), then_text_page)
    return scanned.tobytes()


async def test_scanned_english_page_is_recognised_with_ocr_and_keeps_line_boxes() -> None:
    lines = ["The Panthers defense gave up just 308 points,", "ranking sixth in the league."]
    [page] = await extract_text(scanned_pdf(lines))
    assert page.ocr
    text = " ".join(line.text for block in page.blocks for line in block.lines)
    assert "Panthers defense gave up just 308 points" in text
    assert "sixth in the league" in text
    for block in page.blocks:
        for line in block.lines:
            x0, y0, x1, y1 = line.box
            assert 40 <= x0 < x1 <= 560
            assert 40 <= y0 < y1 <= 520


async def test_scanned_chinese_page_is_recognised_with_ocr_without_spaces_between_characters() -> None:
    [page] = await extract_text(scanned_pdf(["黑豹队的防守只丢了308分，", "在联赛中排名第六。"], chinese=True))
    assert page.ocr
    [chunk] = chunk_pages([page])
    assert "黑豹队的防守只" in chunk.text
    assert "308分，在联赛中" in chunk.text
    assert "排名第六" in chunk.text


async def test_scanned_page_without_ocr_language_data_has_no_text_and_says_so() -> None:
    limits = ExtractionLimits(read=ReadOptions(ocr_languages="xyz", tessdata_dir="/nonexistent"))
    pdf = await open_pdf(scanned_pdf(["Hello"]), limits=limits)
    try:
        [outcome] = await pdf.extract_pages(1, 1)
    finally:
        await pdf.close()
    assert outcome.ocr_unavailable
    assert outcome.page.blocks == ()


async def test_image_only_corpus_pages_are_sent_to_ocr() -> None:
    [page] = await extract_text(read(PROBLEM_PDFS / "sf__grayscale-image.pdf"))
    assert page.ocr


async def test_tables_are_one_block_with_a_row_per_line() -> None:
    [page] = await extract_text(read(PROBLEM_PDFS / "pypdf__issue-914-xmp-data.pdf"))
    tables = [block for block in page.blocks if block.kind == "table"]
    assert tables
    assert all(" | " in line.text for line in tables[0].lines[:3])


async def test_a_larger_font_line_is_a_heading() -> None:
    document = pymupdf.open()
    page = document.new_page()
    page.insert_text((72, 72), "Introduction", fontsize=20)
    page.insert_text((72, 110), "Body text of the first section, in the usual size.", fontsize=11)
    page.insert_text((72, 125), "More body text follows here, in the usual size.", fontsize=11)
    [parsed] = await extract_text(document.tobytes())
    assert parsed.blocks[0].kind == "heading"
    assert {block.kind for block in parsed.blocks[1:]} == {"text"}
