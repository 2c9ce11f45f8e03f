from pathlib import Path

from ingestion_support import tiny_pdf

from pdfchat.ingestion.page_count import PageCounter


async def test_counts_the_pages_of_real_pdfs_with_one_child(shared_data: Path) -> None:
    counter = PageCounter()
    try:
        docs = shared_data / "qa" / "xquad" / "en" / "docs"
        assert await counter.count(next(docs.glob("xquad_10_*.pdf"))) == 2
        assert await counter.count(next(docs.glob("xquad_00_*.pdf"))) == 1
    finally:
        await counter.close()


async def test_a_file_mupdf_cannot_open_has_no_count(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pdf"
    garbage.write_bytes(tiny_pdf())
    counter = PageCounter()
    try:
        assert await counter.count(garbage) is None
    finally:
        await counter.close()


async def test_a_count_over_the_time_limit_gives_up_and_the_next_one_works(shared_data: Path) -> None:
    pdf = next((shared_data / "qa" / "xquad" / "en" / "docs").glob("xquad_00_*.pdf"))
    counter = PageCounter(limit_seconds=0.000001)
    try:
        assert await counter.count(pdf) is None
        counter._limit = 10.0
        assert await counter.count(pdf) == 1
    finally:
        await counter.close()
