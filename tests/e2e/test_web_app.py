"""The web page in a real headless Chromium, as a person uses it: upload, watch, ask, read the cited page."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import async_playwright

from pdfchat_tools.devstack import Stack

pytestmark = pytest.mark.e2e

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _record(shared_data: Path) -> dict[str, Any]:
    with (shared_data / "qa" / "xquad" / "qa_en.jsonl").open(encoding="utf-8") as lines:
        records = [json.loads(line) for line in lines]
    return next(r for r in records if r["core"] and r["pdf_pages"] > 1 and r["gold_answer_pdf_page"] == 2)


async def test_person_uploads_asks_and_sees_the_cited_page(suite: Stack, shared_data: Path, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "Debian chromium is required (make setup installs it for the tests)"
    record = _record(shared_data)
    pdf = shared_data / "qa" / "xquad" / record["pdf_file"]

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await page.goto(suite.config.gateway_url)
            await page.set_input_files("#file-input", str(pdf))
            await page.click("#upload-button")

            row = page.locator("#documents li", has_text=pdf.name)
            await row.locator(".pill.READY").wait_for(timeout=180_000)
            await row.locator("input[type=checkbox]").check()

            await page.fill("#question", record["question"])
            await page.click("#ask-button")
            answer = page.locator("#conversation .turn.assistant").last
            await answer.locator(".chip").first.wait_for(timeout=120_000)
            await page.wait_for_function(
                "() => !document.querySelector('#conversation .turn.assistant.streaming')", timeout=120_000
            )
            await page.screenshot(path=str(tmp_path / "web-app.png"), full_page=True)

            text = await answer.locator(".text").inner_text()
            chips = await answer.locator(".chip").all_inner_texts()
            assert text.strip(), "the answer text is shown"
            assert f"p. {record['gold_answer_pdf_page']}" in chips, chips

            await answer.locator(".chip").first.click()
            quote = answer.locator(".quote")
            assert await quote.is_visible()
            assert "page" in (await quote.inner_text())
        finally:
            await browser.close()
