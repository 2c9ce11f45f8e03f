from pathlib import Path

from ingestion_support import tiny_pdf

from pdfchat.ingestion.page_count import count_pages


async def test_counts_the_pages_of_a_real_pdf(shared_data: Path) -> None:
    pdf = next((shared_data / "qa" / "xquad" / "en" / "docs").glob("xquad_10_*.pdf"))
    assert await count_pages(pdf) == 2


async def test_a_file_mupdf_cannot_open_has_no_count(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pdf"
    garbage.write_bytes(b"%PDF-1.7\n" + b"\x00\xff" * 50)
    assert await count_pages(garbage) in (None, 0)


async def test_counting_gives_up_at_its_time_limit(tmp_path: Path) -> None:
    pdf = tmp_path / "tiny.pdf"
    pdf.write_bytes(tiny_pdf())
    assert await count_pages(pdf, limit_seconds=0.001) is None
