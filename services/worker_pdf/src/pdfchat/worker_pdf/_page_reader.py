"""Synchronous PyMuPDF work on one document: open it, read a page's text blocks (OCR where needed).

This module runs inside the parser child process (see `extraction`), one document per process, so a page
that hangs or crashes MuPDF can be abandoned by killing the process. It imports nothing that talks to the
network and keeps its state in `_state`.

Per page:
- the text layer is read as blocks of lines with their boxes, in content-stream order (see `extraction`);
- a page with almost no text (fewer than `ocr_min_chars` characters) whose images cover a good part of it
  (`ocr_min_image_cover`) is recognised with Tesseract through MuPDF (`Page.get_textpage_ocr`), keeping the
  boxes of the recognised lines; without Tesseract's language data the page is left without text and
  says so (`PageRead.ocr_unavailable`);
- tables (`Page.find_tables`, only on pages that draw lines, where it is cheap) become one block each, a
  line per row, replacing the text blocks inside them;
- a short block in a clearly larger or bold font than the page's body text is a heading.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pymupdf

from pdfchat.worker_pdf.layout import BlockKind, Box, PageText, TextBlock, TextLine, union

PASSWORD_REQUIRED = "password required"
WRONG_PASSWORD = "wrong password"
NO_PAGES = "the PDF has no pages"
NOT_READABLE = "the file is not a readable PDF"

# Ligatures come out expanded ("fi", not U+FB01) so text matches what people type; images are left out.
_TEXT_FLAGS = pymupdf.TEXTFLAGS_DICT & ~pymupdf.TEXT_PRESERVE_LIGATURES & ~pymupdf.TEXT_PRESERVE_IMAGES

# What MuPDF raises for damaged input: FileDataError is a RuntimeError; FzErrorBase (e.g. "cycle in page
# tree" on page access) is not.
MUPDF_ERRORS: tuple[type[BaseException], ...] = (RuntimeError, ValueError, pymupdf.mupdf.FzErrorBase)

_BOLD = 16  # span flag
_MAX_DRAWINGS_FOR_TABLES = 3000
_CJK = "\u2e80-\u2fff\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
# Tesseract's chi_sim model spaces out CJK characters and the digits next to them: "丢了3 0 8 分".
_OCR_SPACE = re.compile(rf"(?<=[{_CJK}0-9]) (?=[{_CJK}0-9])")
_HAS_CJK = re.compile(rf"[{_CJK}]")

# MuPDF prints its errors and warnings to stderr; they arrive as exceptions or are irrelevant here.
pymupdf.TOOLS.mupdf_display_errors(False)
pymupdf.TOOLS.mupdf_display_warnings(False)


class UnreadablePdf(Exception):
    """The file can never be parsed; `reason` says why in words a user understands."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ReadOptions:
    ocr_languages: str = "eng+chi_sim"
    """Tesseract languages joined with "+"; empty turns OCR off."""
    ocr_dpi: int = 200
    tessdata_dir: str = ""
    """Where Tesseract's *.traineddata are; empty: TESSDATA_PREFIX or what PyMuPDF finds."""
    ocr_min_chars: int = 20
    ocr_min_image_cover: float = 0.1
    """Share of the page area images must cover for a page without text to be recognised."""
    tables: bool = True


@dataclass(frozen=True)
class PageRead:
    page: PageText
    ocr_unavailable: bool = False
    """The page looked scanned, but no Tesseract language data was found: it has no text."""


def describe(exc: BaseException) -> str:
    """MuPDF's message without its error-code prefix, e.g. 'cycle in page tree'."""
    message = re.sub(r"^code=\d+:\s*", "", str(exc).strip()) or type(exc).__name__
    return message[:1].lower() + message[1:]


def unreadable(exc: BaseException) -> UnreadablePdf:
    return UnreadablePdf(f"{NOT_READABLE}: {describe(exc)}")


def open_document(data: bytes, password: str, probe: bool) -> pymupdf.Document:
    """Opens and, when needed, decrypts the PDF; with `probe`, fails unless at least one page loads."""
    if not data:
        raise UnreadablePdf(f"{NOT_READABLE}: the file is empty")
    try:
        document = pymupdf.open(stream=data, filetype="pdf")
    except MUPDF_ERRORS as exc:
        raise unreadable(exc) from exc
    try:
        # needs_pass stays true only when the empty user password does not open the file.
        if document.needs_pass:
            if not password:
                raise UnreadablePdf(PASSWORD_REQUIRED)
            if not document.authenticate(password):
                raise UnreadablePdf(WRONG_PASSWORD)
        try:
            pages = document.page_count
        except MUPDF_ERRORS as exc:
            raise unreadable(exc) from exc
        if pages == 0:
            raise UnreadablePdf(NO_PAGES)
        if probe:
            _probe_pages(document)
    except BaseException:
        document.close()
        raise
    return document


def _probe_pages(document: pymupdf.Document) -> None:
    """Raises UnreadablePdf when not a single page can be loaded (e.g. a cycle in the page tree)."""
    first_error: BaseException | None = None
    for index in range(document.page_count):
        try:
            document.load_page(index)
            return
        except MUPDF_ERRORS as exc:
            first_error = first_error or exc
    assert first_error is not None
    raise unreadable(first_error)


def tessdata(options: ReadOptions) -> str | None:
    """The tessdata directory holding at least one of the OCR languages, or None."""
    if not options.ocr_languages:
        return None
    candidates = [options.tessdata_dir, os.environ.get("TESSDATA_PREFIX", "")]
    with contextlib.suppress(RuntimeError, OSError):
        candidates.append(pymupdf.get_tessdata() or "")
    candidates.append("/usr/share/tesseract-ocr/5/tessdata")
    for directory in candidates:
        if directory and any(
            os.path.exists(os.path.join(directory, f"{language}.traineddata"))
            for language in options.ocr_languages.split("+")
        ):
            return directory
    return None


def _languages(options: ReadOptions, directory: str) -> str:
    found = [
        language
        for language in options.ocr_languages.split("+")
        if os.path.exists(os.path.join(directory, f"{language}.traineddata"))
    ]
    return "+".join(found)


def read_page(document: pymupdf.Document, number: int, options: ReadOptions) -> PageRead:
    """Page `number` (1-based): its text blocks in reading order, recognised with OCR when scanned."""
    page = document.load_page(number - 1)
    layout = page.get_text("dict", flags=_TEXT_FLAGS)
    blocks = _blocks(layout, ocr=False)
    text_chars = sum(len(line.text.strip()) for block in blocks for line in block.lines)
    if text_chars < options.ocr_min_chars and _image_cover(page) >= options.ocr_min_image_cover:
        directory = tessdata(options)
        if directory is None:
            return PageRead(PageText(number=number, blocks=()), ocr_unavailable=True)
        languages = _languages(options, directory)
        layout = _ocr(page, languages, options.ocr_dpi, directory)
        if "chi_sim" in languages and not languages.startswith("chi_sim") and _mostly_cjk(layout):
            # Tesseract reads Chinese far better with chi_sim as its first language (and English slightly
            # worse: full-width commas), so a page that came out mostly Chinese is read again that way
            first = "+".join(["chi_sim"] + [name for name in languages.split("+") if name != "chi_sim"])
            layout = _ocr(page, first, options.ocr_dpi, directory)
        return PageRead(PageText(number=number, blocks=tuple(_blocks(layout, ocr=True)), ocr=True))
    if options.tables:
        blocks = _with_tables(page, blocks)
    return PageRead(PageText(number=number, blocks=tuple(blocks)))


def _ocr(page: pymupdf.Page, languages: str, dpi: int, directory: str) -> dict[str, Any]:
    textpage = page.get_textpage_ocr(flags=_TEXT_FLAGS, language=languages, dpi=dpi, full=True, tessdata=directory)
    layout: dict[str, Any] = page.get_text("dict", flags=_TEXT_FLAGS, textpage=textpage)
    return layout


def _mostly_cjk(layout: dict[str, Any]) -> bool:
    text = "".join(
        span.get("text", "")
        for block in layout.get("blocks", ())
        for line in block.get("lines", ())
        for span in line.get("spans", ())
    )
    letters = [character for character in text if character.isalnum()]
    return bool(letters) and sum(1 for character in letters if _HAS_CJK.match(character)) >= 0.3 * len(letters)


def _image_cover(page: pymupdf.Page) -> float:
    area = abs(page.rect)
    if not area:
        return 0.0
    covered = 0.0
    for info in page.get_image_info():
        covered += abs(pymupdf.Rect(info["bbox"]) & page.rect)
    return min(covered / area, 1.0)


def _blocks(layout: dict[str, Any], ocr: bool) -> list[TextBlock]:
    found: list[tuple[list[TextLine], list[float], bool]] = []
    sizes: Counter[float] = Counter()
    for block in layout.get("blocks", ()):
        if block.get("type") != 0:  # 1 is an image block
            continue
        lines: list[TextLine] = []
        block_sizes: list[float] = []
        bold = True
        for line in block.get("lines", ()):
            spans = [span for span in line.get("spans", ()) if span.get("text", "").strip()]
            text = "".join(span.get("text", "") for span in line.get("spans", ()))
            if ocr and _HAS_CJK.search(text):
                text = _OCR_SPACE.sub("", text)
            if not text.strip():
                continue
            x0, y0, x1, y1 = line["bbox"]
            lines.append(TextLine(text=text, box=(float(x0), float(y0), float(x1), float(y1))))
            for span in spans:
                size = round(float(span.get("size", 0.0)), 1)
                block_sizes.append(size)
                sizes[size] += len(span["text"].strip())
                bold = bold and bool(span.get("flags", 0) & _BOLD)
        if lines:
            found.append((lines, block_sizes, bold))
    body = sizes.most_common(1)[0][0] if sizes else 0.0
    return [
        TextBlock(
            lines=tuple(lines),
            box=union([line.box for line in lines]),
            kind="text" if ocr else _kind(lines, block_sizes, bold, body),
        )
        for lines, block_sizes, bold in found
    ]


def _kind(lines: list[TextLine], sizes: list[float], bold: bool, body: float) -> BlockKind:
    """A heading is short, does not end like a sentence, and stands out from the body text by size or weight."""
    text = " ".join(line.text.strip() for line in lines)
    if len(lines) > 3 or len(text) > 150 or not sizes or text.endswith((".", "。", ",", "，", ":", ";")):
        return "text"
    largest = max(sizes)
    if body and largest >= body * 1.15:
        return "heading"
    if bold and body and largest >= body * 0.95 and len(text) <= 80:
        return "heading"
    return "text"


def _with_tables(page: pymupdf.Page, blocks: list[TextBlock]) -> list[TextBlock]:
    """Replaces the text blocks inside each table found on the page by one block for the table."""
    drawings = len(page.get_cdrawings())
    if not 0 < drawings <= _MAX_DRAWINGS_FOR_TABLES:  # the default strategy finds tables by their lines
        return blocks
    tables: list[TextBlock] = []
    for table in page.find_tables().tables:
        rows: list[TextLine] = []
        for row, cells in zip(table.rows, table.extract(), strict=False):
            texts = [" ".join((cell or "").split()) for cell in cells]
            if any(texts):
                x0, y0, x1, y1 = row.bbox
                rows.append(TextLine(text=" | ".join(texts), box=(float(x0), float(y0), float(x1), float(y1))))
        if rows and (len(rows) > 1 or table.col_count > 1):
            tables.append(TextBlock(lines=tuple(rows), box=union([row.box for row in rows]), kind="table"))
    if not tables:
        return blocks
    result: list[TextBlock] = []
    placed: set[int] = set()
    for block in blocks:
        inside = next((index for index, table in enumerate(tables) if _centre_inside(block.box, table.box)), None)
        if inside is None:
            result.append(block)
        elif inside not in placed:
            placed.add(inside)
            result.append(tables[inside])
    result.extend(table for index, table in enumerate(tables) if index not in placed)
    return result


def _centre_inside(box: Box, outer: Box) -> bool:
    x, y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return outer[0] - 1 <= x <= outer[2] + 1 and outer[1] - 1 <= y <= outer[3] + 1


def serve(connection: Any) -> None:
    """The child process's loop: answers the parent's requests over `connection` until it closes.

    Requests: ("open", data, password, probe) -> ("ok", page_count); ("page", number, options) ->
    ("ok", PageRead). A document that cannot be opened answers ("unreadable", reason), a page MuPDF fails
    on answers ("error", reason).
    """
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - PyMuPDF prints advice ("Consider using pymupdf_layout")
    document: pymupdf.Document | None = None
    while True:
        try:
            request = connection.recv()
        except (EOFError, OSError):
            return
        reply: tuple[str, Any]
        try:
            if request[0] == "open":
                document = open_document(request[1], request[2], request[3])
                reply = ("ok", document.page_count)
            elif request[0] == "page" and document is not None:
                reply = ("ok", read_page(document, request[1], request[2]))
            else:
                return
        except UnreadablePdf as exc:
            reply = ("unreadable", exc.reason)
        except Exception as exc:  # the parent logs it as this page's failure
            reply = ("error", describe(exc))
        connection.send(reply)
