"""The UI in a real headless Chromium: a transcription in Hebrew (the default) and in English."""

from __future__ import annotations

import os
import shutil
from urllib.parse import urlsplit

import pytest
from playwright.async_api import async_playwright

from conftest import JFK_TEXT, SAMPLE_STM, stm_text, wer

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}
# Chromium is not under the Python socket guard, so it gets its own: every host
# name but loopback fails to resolve, and the page's requests are checked below.
GUARD_FLAGS = [
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--no-proxy-server",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
async def page(system):
    assert CHROMIUM, "Chromium is missing: `make test` installs it (apt-get install chromium)"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", *GUARD_FLAGS])
        context = await browser.new_context()
        outside: list[str] = []

        async def loopback_only(route):
            if urlsplit(route.request.url).hostname in LOOPBACK or route.request.url.startswith("data:"):
                await route.continue_()
            else:
                outside.append(route.request.url)
                await route.abort()

        await context.route("**/*", loopback_only)
        page = await context.new_page()
        await page.goto(system.url)
        yield page
        await browser.close()
        assert not outside, f"the page tried to reach outside loopback: {outside}"


async def run_job(page, url: str, model: str = "base", language: str = "", diarize: bool = True) -> None:
    await page.fill("#url", url)
    await page.select_option("#model", model)
    await page.select_option("#language", language)
    await page.set_checked("#diarize", diarize)
    await page.click("#start")
    # the button is disabled while a job runs and enabled again on complete or error
    await page.wait_for_function("!document.getElementById('start').disabled", timeout=180_000)


async def transcript(page) -> list[tuple[str, str]]:
    """(speaker label, text) of every transcript line, as shown."""
    rows = await page.query_selector_all("#transcript li")
    return [
        (await (await row.query_selector(".speaker")).inner_text(), await (await row.query_selector(".text")).inner_text()) for row in rows
    ]


async def test_hebrew_by_default_with_speakers_then_english(page, media):
    assert await page.evaluate("[document.documentElement.lang, document.documentElement.dir]") == ["he", "rtl"]
    assert await page.inner_text("h1") == "תמלול אודיו"

    await run_job(page, media.url("sample.wav"), diarize=True)
    assert await page.is_hidden("#error")
    assert await page.inner_text("#status") == "התמלול הושלם"
    lines = await transcript(page)
    assert lines, "no transcript line was shown"
    assert {speaker for speaker, _ in lines} == {"דובר 1", "דובר 2"}
    assert wer(stm_text(SAMPLE_STM), " ".join(text for _, text in lines)) <= 0.30

    await page.click("#lang-toggle")
    assert await page.evaluate("[document.documentElement.lang, document.documentElement.dir]") == ["en", "ltr"]
    assert await page.inner_text("h1") == "Audio Transcription"
    assert await page.inner_text("#status") == "Transcription complete"
    assert {speaker for speaker, _ in await transcript(page)} == {"Speaker 1", "Speaker 2"}

    await run_job(page, media.url("jfk.flac"), model="tiny.en", language="en", diarize=False)
    lines = await transcript(page)
    assert wer(JFK_TEXT, " ".join(text for _, text in lines)) <= 0.15
    assert all(speaker == "" for speaker, _ in lines)


async def test_bad_url_shows_the_error(page):
    await run_job(page, "file:///etc/passwd", diarize=False)
    assert await page.is_visible("#error")
    assert "unsupported URL scheme 'file'" in await page.inner_text("#error")
    assert await page.query_selector_all("#transcript li") == []


async def test_model_menu_lists_the_asr_catalog(page, system):
    """The menu is filled from /api/models (ListModels), the service's default selected, and survives a language switch."""
    import json
    import urllib.request

    with urllib.request.urlopen(system.url + "api/models", timeout=30) as response:
        catalog = json.loads(response.read())
    expected = [m["name"] for m in catalog["models"] if m["available"] and m["backend"] == "faster-whisper"]
    await page.wait_for_function(f"document.querySelectorAll('#model option').length === {len(expected)}")
    await page.select_option("#model", "tiny.en")
    await page.click("#lang-toggle")
    options = await page.eval_on_selector_all("#model option", "els => els.map(e => [e.value, e.textContent])")
    assert [value for value, _ in options] == expected
    assert ["tiny.en", "tiny.en (English)"] in options
    assert await page.input_value("#model") == "tiny.en", "switching the language keeps the choice"
    await page.click("#lang-toggle")
