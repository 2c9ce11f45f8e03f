"""Every PDF of the shared robustness corpus through the real pipeline, fan-out included.

The pipeline runs with local sinks (segments, embed jobs and range jobs are recorded; range jobs are then
taken from that local queue as a replica would) and real extraction. Each file must end READY-able (its
page ranges cover every page) or FAILED with a reason that fits its MANIFEST category, within a time
bound, without crashing the worker.
"""

import asyncio
import csv
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from pdfchat.worker_pdf.extraction import NO_PAGES, NOT_READABLE, PASSWORD_REQUIRED
from pdfchat.worker_pdf.pipeline import FAILED, Outcome, ParseLimits, ParsePipeline

from ._fakes import (
    PROBLEM_PDFS,
    RecordingParsePublisher,
    RecordingPublisher,
    RecordingReporter,
    RecordingSink,
    parse_job,
    store_with,
)

DOCUMENT_TIME_BOUND = 120.0
LIMITS = ParseLimits(range_pages=8)  # small ranges, so the corpus's multi-page files fan out

# What each main category (first tag) may end as: "ready" (text or not), or the start of the FAILED reason.
ALLOWED = {
    "normal": {"ready"},
    "long": {"ready"},
    "scanned": {"ready"},
    "image-only": {"ready"},
    "encrypted": {"ready", PASSWORD_REQUIRED},
    "not-a-pdf": {NOT_READABLE},
    "truncated": {NOT_READABLE},
    "broken-xref": {"ready", NO_PAGES, NOT_READABLE},
    "broken-trailer": {"ready", NO_PAGES, NOT_READABLE},
    "broken-stream": {"ready"},
    "fuzzed": {NO_PAGES, NOT_READABLE},
    "page-tree": {NO_PAGES, NOT_READABLE},
    "page-tree-deep": {NOT_READABLE},
    "outline-loop": {"ready"},
    "blank-page": {"ready"},
    "annotations": {"ready"},
    "form": {"ready"},
    "unicode": {"ready"},
    "cjk": {"ready"},
}


@dataclass(frozen=True)
class Entry:
    file: str
    category: str
    password: str
    observed: str

    @property
    def main_category(self) -> str:
        return self.category.split(",")[0]

    @property
    def user_password(self) -> str:
        return "" if self.password.startswith("(owner") else self.password


def manifest() -> list[Entry]:
    with (PROBLEM_PDFS / "MANIFEST.tsv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [Entry(row["file"], row["category"], row["password"], row["pymupdf_1.28.5_observed"]) for row in rows]


def expected(entry: Entry, with_password: bool) -> str:
    """The outcome MuPDF's observed behaviour implies: "ready" or the start of the FAILED reason."""
    observed = entry.observed
    if observed.startswith("open fails") or "ERROR" in observed:
        return NOT_READABLE
    if observed.startswith("needs password") and not with_password:
        return PASSWORD_REQUIRED
    if "pages=0" in observed:
        return NO_PAGES
    return "ready"


@dataclass
class DocumentRun:
    outcome: str
    """"ready" or the FAILED reason."""
    pages: int
    chunks: int
    failed_pages: int


async def run_document(tmp_path: Path, entry: Entry, password: str) -> DocumentRun:
    key = f"tenant-a/doc-1/1/{entry.file}"
    store = await store_with(tmp_path / "objects", key, PROBLEM_PDFS / entry.file)
    reporter, sink, ranges = RecordingReporter(), RecordingSink(), RecordingParsePublisher()
    pipeline = ParsePipeline(store, reporter, sink, RecordingPublisher(), ranges, LIMITS)
    planned = await pipeline.run(parse_job(key, password=password))
    results = [planned]
    for _, range_job in ranges.published:
        results.append(await pipeline.run(range_job))
    failed = [report for report in reporter.reports if report.status == FAILED]
    if failed:
        return DocumentRun(failed[0].error, 0, 0, 0)
    assert all(result.outcome in {Outcome.PARSED, Outcome.FANNED_OUT} for result in results)
    pages_total = reporter.reports[0].pages_total
    covered = sorted(
        page
        for report in reporter.reports
        if report.range_result
        for page in range(report.range_result.page_start, report.range_result.page_end + 1)
    )
    assert covered == list(range(1, pages_total + 1)), "the reported ranges cover every page once"
    assert sum(r.range_result.segments for r in reporter.reports if r.range_result) == len(sink.segments)
    ids = [segment.id for segment in sink.segments]
    assert len(set(ids)) == len(ids)
    failed_pages = sum(len(result.failed_pages) for result in results)
    return DocumentRun("ready", pages_total, len(sink.segments), failed_pages)


ENTRIES = manifest()


def test_the_corpus_is_all_there() -> None:
    assert len(ENTRIES) == 59
    assert {entry.main_category for entry in ENTRIES} <= set(ALLOWED)
    assert all((PROBLEM_PDFS / entry.file).exists() for entry in ENTRIES)


@pytest.mark.parametrize("entry", ENTRIES, ids=[entry.file for entry in ENTRIES])
async def test_every_corpus_pdf_ends_ready_able_or_failed_with_a_reason_that_fits_its_category(
    tmp_path: Path, entry: Entry
) -> None:
    attempts = [(entry.user_password, True)]
    if entry.user_password:
        attempts.append(("", False))  # and without the password it names
    for password, with_password in attempts:
        started = time.monotonic()
        run = await asyncio.wait_for(run_document(tmp_path / str(with_password), entry, password), DOCUMENT_TIME_BOUND)
        outcome = (
            run.outcome
            if run.outcome == "ready"
            else next(
                (allowed for allowed in ALLOWED[entry.main_category] if run.outcome.startswith(allowed)), run.outcome
            )
        )
        print(
            f"{entry.file}\t{entry.category}\tpassword={'yes' if password else 'no'}\t{run.outcome}\t"
            f"pages={run.pages} chunks={run.chunks} failed_pages={run.failed_pages}\t{time.monotonic() - started:.1f}s"
        )
        assert outcome in ALLOWED[entry.main_category], (entry.category, run.outcome)
        assert outcome == expected(entry, with_password), (entry.observed, run.outcome)
        if outcome == "ready" and entry.main_category in {"normal", "long", "cjk"}:
            assert run.chunks > 0
        if outcome == "ready" and "pages=" in entry.observed:
            observed_pages = int(entry.observed.split("pages=")[1].split(";")[0])
            assert run.pages == observed_pages


@pytest.mark.parametrize("name", ["pypdf__GeoBase_NHNC1_Data_Model_UML_EN.pdf", "pdfjs__pdkids.pdf"])
async def test_a_pdf_cut_off_half_way_is_repaired_or_refused_never_stuck(tmp_path: Path, name: str) -> None:
    data = (PROBLEM_PDFS / name).read_bytes()
    cut = tmp_path / f"cut-{name}"
    cut.write_bytes(data[: len(data) // 2])
    entry = Entry(file=name, category="truncated", password="", observed="")
    key = f"tenant-a/doc-1/1/{cut.name}"
    store = await store_with(tmp_path / "objects", key, cut)
    reporter, sink, ranges = RecordingReporter(), RecordingSink(), RecordingParsePublisher()
    pipeline = ParsePipeline(store, reporter, sink, RecordingPublisher(), ranges, LIMITS)
    planned = await asyncio.wait_for(pipeline.run(parse_job(key)), DOCUMENT_TIME_BOUND)
    for _, range_job in ranges.published:
        await asyncio.wait_for(pipeline.run(range_job), DOCUMENT_TIME_BOUND)
    if planned.outcome == Outcome.FAILED:
        assert planned.reason.startswith((NOT_READABLE, NO_PAGES)), entry
    else:
        covered = {
            p
            for r in reporter.reports
            if r.range_result
            for p in range(r.range_result.page_start, r.range_result.page_end + 1)
        }
        assert covered == set(range(1, reporter.reports[0].pages_total + 1))
        assert sink.segments
