import json
import re
import unicodedata
from pathlib import Path

import pytest

from pdfchat.worker_pdf.chunking import Chunk, chunk_pages
from pdfchat.worker_pdf.extraction import (
    NO_PAGES,
    NOT_READABLE,
    PASSWORD_REQUIRED,
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
            pages = await pdf.extract_pages(1, pdf.page_count)
        finally:
            await pdf.close()
        assert [page.number for page in pages] == list(range(1, len(pages) + 1))
        chunks = chunk_pages(pages)
        assert chunks, path.name
        assert [chunk.ordinal for chunk in chunks] == list(range(len(chunks)))
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
    assert [page.number for page in first + rest] == list(range(1, 56))
