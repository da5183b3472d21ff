"""The UI in a real headless Chromium: Hebrew (the default) and English, uploads, the player, exports, caches, cancel, a token.

Every page a test opens is watched: a console error, an uncaught exception, a
Content-Security-Policy violation or a request to anywhere but loopback fails
the test. ``UPDATE_SCREENSHOTS=1`` also writes docs/screenshots/page-{he,en}.png.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import srt
from playwright.async_api import async_playwright, expect

from conftest import JFK_TEXT, ROOT, SAMPLE_STM, SAMPLE_WAV, start_gateway, stm_text, wer

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
# Runs before the page's own script in every document: a CSP violation becomes a console error.
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) =>
  console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline code"}`));
"""
SCREENSHOTS = ROOT / "docs" / "screenshots"
TOKEN = "browser-test-token-0123456789"
HEBREW = {"lang": "he", "dir": "rtl", "title": "תמלול אודיו", "done": "התמלול הושלם"}
ENGLISH = {"lang": "en", "dir": "ltr", "title": "Audio Transcription", "done": "Transcription complete"}


@dataclass
class Browser:
    """One browser context; `problems` collects what the pages it opened did wrong."""

    context: object
    problems: list[str] = field(default_factory=list)

    async def open(self, url: str):
        page = await self.context.new_page()
        page.on("console", lambda message: message.type == "error" and self.problems.append(f"console: {message.text}"))
        page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))
        await page.goto(url)
        return page


@pytest.fixture(scope="module")
async def chromium():
    """One Chromium for the module (starting it takes a second or two); each test gets a context of its own."""
    assert CHROMIUM, "Chromium is missing: `make test` installs it (apt-get install chromium)"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", *GUARD_FLAGS])
        yield launched
        await launched.close()


@pytest.fixture
async def browser(chromium):
    """A fresh context (no storage from other tests) whose pages are watched."""
    context = await chromium.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    outside: list[str] = []

    async def loopback_only(route):
        if urlsplit(route.request.url).hostname in LOOPBACK or route.request.url.startswith(("data:", "blob:")):
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort()

    await context.route("**/*", loopback_only)
    await context.add_init_script(REPORT_CSP_VIOLATIONS)
    watched = Browser(context)
    yield watched
    await context.close()
    assert not outside, f"the page tried to reach outside loopback: {outside}"
    assert not watched.problems, f"the page reported problems: {watched.problems}"


@pytest.fixture
async def page(browser, system):
    return await browser.open(system.url)


# -- helpers -----------------------------------------------------------------------------


async def wait_until(page, expression: str, timeout: float = 30) -> None:
    """Poll ``expression`` with page.evaluate: wait_for_function evaluates strings in the page, which its CSP forbids."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await page.evaluate(expression):
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {expression}"
        await asyncio.sleep(0.1)


async def wait_for_job(page, timeout: float = 180) -> None:
    """The start button is disabled while a job runs and enabled again on complete, error or cancel."""
    await wait_until(page, "!document.getElementById('start').disabled", timeout=timeout)


async def choose_model(page, model: str) -> None:
    await wait_until(page, f"!!document.querySelector('#model option[value=\"{model}\"]')")  # the menu comes from /api/models
    await page.select_option("#model", model)


async def run_job(page, url: str, model: str = "base", language: str = "", diarize: bool = True) -> None:
    await page.fill("#url", url)
    await choose_model(page, model)
    await page.select_option("#language", language)
    await page.set_checked("#diarize", diarize)
    await page.click("#start")
    await wait_for_job(page)


async def transcript(page) -> list[tuple[str, str]]:
    """(speaker label, text) of every transcript line, as shown."""
    return await page.eval_on_selector_all(
        "#transcript li", "rows => rows.map(r => [r.querySelector('.speaker').innerText, r.querySelector('.text').innerText])"
    )


async def language_state(page) -> dict:
    return await page.evaluate(
        "({lang: document.documentElement.lang, dir: document.documentElement.dir, title: document.querySelector('h1').textContent})"
    )


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


async def no_horizontal_scroll(page) -> bool:
    return await page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")


async def screenshot(page, name: str) -> None:
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.mouse.move(0, 0)  # no hover highlight in the picture
        await page.screenshot(path=SCREENSHOTS / name, full_page=True)


# Records the progress bar's value when the first transcript line is added, in a
# MutationObserver (it runs before the next message is handled).
RECORD_FIRST_SEGMENT = """
new MutationObserver((changes, observer) => {
  if (!document.querySelector('#transcript li')) return;
  window.firstSegmentAt = {progress: document.getElementById('progress').value, status: document.getElementById('status').textContent};
  observer.disconnect();
}).observe(document.getElementById('transcript'), {childList: true});
"""


# -- tests -----------------------------------------------------------------------------------


async def test_loads_in_hebrew_with_no_console_errors_or_csp_violations(browser, system):
    response_headers = {}
    browser.context.on("response", lambda r: r.url == system.url and response_headers.update(r.headers))
    page = await browser.open(system.url)
    assert "script-src 'self'" in response_headers["content-security-policy"], "the page is served with its CSP"
    assert await language_state(page) == {"lang": "he", "dir": "rtl", "title": HEBREW["title"]}
    gpu = get_json(system.url + "gpu")
    await expect(page.locator("#gpu")).to_contain_text(gpu["compute_type"])
    await expect(page.locator("#gpu")).to_contain_text("מעבד" if not gpu["gpu_available"] else gpu["gpu_name"])
    await expect(page.locator("#cache-panel li[data-cache=asr] .cache-stats")).not_to_have_text("–")
    await page.wait_for_timeout(300)  # anything late (a failed request, a blocked style) is reported by now
    assert browser.problems == []

    # the watch works: a blocked inline style is reported (then forgotten, it was ours)
    await page.evaluate("document.body.setAttribute('style', 'color: red')")
    for _ in range(50):
        if any("CSP violation" in p for p in browser.problems):
            break
        await asyncio.sleep(0.1)
    assert any("CSP violation: style-src-attr" in p for p in browser.problems), browser.problems
    browser.problems.clear()


async def test_keyboard_reaches_every_control_with_a_visible_focus(page):
    await expect(page.locator("#cache-panel li[data-cache=asr] .cache-stats")).not_to_have_text("–")
    reached = {}
    for _ in range(40):  # Tab through the page until focus leaves it
        await page.keyboard.press("Tab")
        focused = await page.evaluate(
            "document.activeElement === document.body ? null : [document.activeElement.id || document.activeElement.dataset.clear"
            " || document.activeElement.textContent, getComputedStyle(document.activeElement).outlineStyle]"
        )
        if focused is None or focused[0] in reached:
            break
        reached[focused[0]] = focused[1]
    wanted = {"lang-toggle", "source-url", "url", "backend", "model", "language", "task", "diarize", "num-speakers", "start"}
    assert wanted | {"asr", "download", "diarization"} <= reached.keys(), reached
    assert all(outline not in ("none", "") for outline in reached.values()), f"no visible focus on some: {reached}"
    # the file picker by keyboard: arrows move between the source radios, Tab reaches the (visually hidden) input
    await page.focus("#source-url")
    await page.keyboard.press("ArrowDown")
    assert await page.is_checked("#source-file") and await page.is_visible("label[for=file]")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "file"
    assert await page.evaluate("getComputedStyle(document.querySelector('label[for=file].button')).outlineStyle") != "none"
    # a label for every form control (a screen reader names each)
    unlabelled = await page.eval_on_selector_all(
        "#job-form input, #job-form select", "els => els.filter(e => !e.labels || !e.labels.length).map(e => e.id)"
    )
    assert unlabelled == []


async def test_upload_with_speakers_player_export_languages_and_phone_width(page, system):
    """One transcription of the uploaded two-speaker sample serves most checks."""
    await page.evaluate(RECORD_FIRST_SEGMENT)
    await page.click("#source-file")
    await page.set_input_files("#file", SAMPLE_WAV)
    await choose_model(page, "base")
    await page.set_checked("#diarize", True)
    await page.click("#start")
    await expect(page.locator("#cancel")).to_be_enabled()
    await wait_for_job(page)

    assert await page.is_hidden("#error")
    assert await page.inner_text("#status") == HEBREW["done"]
    first = await page.evaluate("window.firstSegmentAt")
    assert first and first["progress"] < 100, f"the first segment came only with the end: {first}"
    await expect(page.locator("#video-title")).to_have_text("sample.wav")  # from the upload and the metadata message
    await expect(page.locator("#video-meta")).to_contain_text("0:30")
    assert await page.is_disabled("#cancel")
    await expect(page.locator("#timing")).to_have_text(re.compile(r"^זמן שחלף \d+:\d\d$"))

    lines = await transcript(page)
    assert {speaker for speaker, _ in lines} == {"דובר 1", "דובר 2"}
    assert wer(stm_text(SAMPLE_STM), " ".join(text for _, text in lines)) <= 0.30
    colours = await page.eval_on_selector_all("#transcript .speaker", "els => els.map(e => getComputedStyle(e).color)")
    assert len(set(colours)) == 2, "one colour per speaker"
    # each segment takes its direction from its own text: English lines read left to right in the Hebrew page
    assert await page.eval_on_selector_all("#transcript li", "els => els.every(e => e.dir === 'auto' && e.matches(':dir(ltr)'))")

    # the player: a click on a segment seeks to its start, and that segment is the playing one
    await expect(page.locator("#player")).to_be_visible()
    await wait_until(page, "document.getElementById('player').readyState >= 1")
    segment = page.locator("#transcript li").nth(1)
    start = float(await segment.get_attribute("data-start"))
    await segment.locator(".text").click()
    await wait_until(page, f"Math.abs(document.getElementById('player').currentTime - {start}) < 1.5")
    await page.evaluate("document.getElementById('player').pause()")
    assert abs(await page.evaluate("document.getElementById('player').currentTime") - start) < 1.5
    await expect(segment).to_have_class(re.compile(r"\bplaying\b"))
    await expect(page.locator("#transcript li.playing")).to_have_count(1)

    # exports: the SRT link downloads subtitles that parse, one per segment
    await expect(page.locator("#exports a")).to_have_count(5)
    async with page.expect_download() as download_info:
        await page.click("#exports a[data-format=srt]")
    download = await download_info.value
    assert download.suggested_filename.endswith(".srt")
    subtitles = list(srt.parse(Path(await download.path()).read_text(encoding="utf-8")))
    starts = await page.eval_on_selector_all("#transcript li", "els => els.map(e => Number(e.dataset.start))")
    assert len(subtitles) == len(lines)
    for subtitle, (_, text), begins in zip(subtitles, lines, starts):
        assert subtitle.content.endswith(text) and subtitle.content.startswith("SPEAKER_")
        assert abs(subtitle.start.total_seconds() - begins) < 0.01

    await screenshot(page, "page-he.png")
    await page.click("#lang-toggle")
    assert await language_state(page) == {"lang": "en", "dir": "ltr", "title": ENGLISH["title"]}
    assert await page.inner_text("#status") == ENGLISH["done"]
    assert {speaker for speaker, _ in await transcript(page)} == {"Speaker 1", "Speaker 2"}
    await screenshot(page, "page-en.png")

    # a phone: nothing wider than the screen, transcript and all
    await page.set_viewport_size({"width": 375, "height": 800})
    assert await no_horizontal_scroll(page)
    await page.click("#lang-toggle")
    assert await no_horizontal_scroll(page)
    await page.click("#lang-toggle")

    # the choice of English is remembered
    await page.reload()
    assert await language_state(page) == {"lang": "en", "dir": "ltr", "title": ENGLISH["title"]}
    assert await no_horizontal_scroll(page)


async def test_cache_panel_shows_the_stats_and_clears_only_when_confirmed(page, system):
    await page.click("#lang-toggle")  # English, so the counts read "N files"
    row = page.locator("#cache-panel li[data-cache=diarization]")
    stats = get_json(system.url + "api/diarization-cache/stats")
    count = "1 file" if stats["total_files"] == 1 else f"{stats['total_files']} files"
    await expect(row.locator(".cache-stats")).to_contain_text(count)
    for name in ("asr", "download"):
        files = get_json(system.url + {"asr": "api/cache/stats", "download": "api/download-cache/stats"}[name])["total_files"]
        await expect(page.locator(f"#cache-panel li[data-cache={name}] .cache-stats")).to_contain_text(f"{files} file")

    clears: list[str] = []
    page.on("request", lambda r: "/clear" in r.url and clears.append(r.url))
    questions: list[str] = []

    async def answer(dialog, accept: bool):
        questions.append(dialog.message)
        await (dialog.accept() if accept else dialog.dismiss())

    page.once("dialog", lambda d: answer(d, accept=False))
    await row.locator("button").click()
    await wait_until(page, "true")
    assert questions and "Speaker identification" in questions[0]
    assert clears == [], "dismissing the question clears nothing"

    page.once("dialog", lambda d: answer(d, accept=True))
    async with page.expect_response(lambda r: r.url.endswith("/api/diarization-cache/clear")) as cleared:
        await row.locator("button").click()
    assert (await (await cleared.value).json())["cleared"] is True
    await expect(page.locator("#cache-note")).to_contain_text("Deleted")
    await expect(row.locator(".cache-stats")).to_contain_text("0 files")
    assert get_json(system.url + "api/diarization-cache/stats")["total_files"] == 0


async def test_video_card_then_cancel_then_transcribe_again(page, media):
    # typing a link shows its card (POST /api/video-info, after a pause)
    await page.fill("#url", media.url("sample.wav"))
    await expect(page.locator("#video-title")).to_have_text("sample")

    # a download that stalls half-way (until the gate opens): progress shows, and cancel stops the job
    gated = "gated/browser-cancel.wav"
    if not (media.directory / "browser-cancel.wav").exists():
        (media.directory / "browser-cancel.wav").symlink_to(SAMPLE_WAV)
    try:
        await page.fill("#url", media.url(gated))
        await page.click("#start")  # at once: the link's card lookup (which would stall too) is dropped
        await expect(page.locator("#status")).to_have_text("מוריד אודיו…")
        await expect(page.locator("#percent")).to_have_text(re.compile(r"^\d+%$"))
        await expect(page.locator("#timing")).to_contain_text("KB")  # bytes so far (of the total)
        await page.click("#cancel")
        await expect(page.locator("#status")).to_have_text("התמלול בוטל")
        await expect(page.locator("#start")).to_be_enabled()
        await expect(page.locator("#cancel")).to_be_disabled()
        assert await page.is_hidden("#error")
    finally:
        media.open_gate(gated)

    # and the start button works again: a second job, this time in English
    await page.click("#lang-toggle")
    await run_job(page, media.url("jfk.flac"), model="tiny.en", language="en", diarize=False)
    assert await page.inner_text("#status") == ENGLISH["done"]
    lines = await transcript(page)
    assert wer(JFK_TEXT, " ".join(text for _, text in lines)) <= 0.15
    assert all(speaker == "" for speaker, _ in lines)


async def test_bad_url_shows_the_error(page):
    await run_job(page, "file:///etc/passwd", diarize=False)
    assert await page.is_visible("#error")
    assert "unsupported URL scheme 'file'" in await page.inner_text("#error")
    assert await page.query_selector_all("#transcript li") == []
    assert await page.inner_text("#status") == "התמלול נכשל"


async def test_model_menu_lists_the_asr_catalog(page, system):
    """The menu is filled from /api/models for the chosen engine, the service's default selected, and survives a language switch."""
    catalog = get_json(system.url + "api/models")

    def names(backend: str) -> list[str]:
        return [m["name"] for m in catalog["models"] if m["available"] and m["backend"] == backend]

    expected = names("faster-whisper")
    await wait_until(page, f"document.querySelectorAll('#model option').length === {len(expected)}")
    assert await page.input_value("#model") == catalog["default_model"]
    await page.select_option("#model", "tiny.en")
    await page.click("#lang-toggle")
    options = await page.eval_on_selector_all("#model option", "els => els.map(e => [e.value, e.textContent])")
    assert [value for value, _ in options] == expected
    assert ["tiny.en", "tiny.en (English)"] in options
    assert await page.input_value("#model") == "tiny.en", "switching the language keeps the choice"

    for backend in ("openai-whisper", "deepgram"):
        await page.select_option("#backend", backend)
        values = await page.eval_on_selector_all("#model option:not([disabled])", "els => els.map(e => e.value)")
        assert values == names(backend)
        # an engine with no usable model (Deepgram without its key) says so, and cannot be started
        assert await page.is_disabled("#start") == (not values)
        assert await page.is_visible("#model-hint") == (not values)
    await page.select_option("#backend", "faster-whisper")
    assert await page.is_enabled("#start")


async def test_token_is_asked_for_remembered_and_sent(browser, system, media):
    process, port = start_gateway(system, GATEWAY_API_TOKEN=TOKEN)
    try:
        page = await browser.open(f"http://127.0.0.1:{port}/")
        await expect(page.locator("#auth-form")).to_be_visible()
        assert await page.evaluate("document.activeElement.id") == "token"
        await page.fill("#token", "not-the-token")
        await page.press("#token", "Enter")
        await expect(page.locator("#auth-error")).to_be_visible()  # refused (401): asked again
        await page.fill("#token", TOKEN)
        await page.press("#token", "Enter")
        await expect(page.locator("#auth-form")).to_be_hidden()
        await expect(page.locator("#gpu")).not_to_be_empty()  # /gpu answered: the Bearer header went along

        # the WebSocket carries the token as its subprotocol; audio and exports come as signed links (they stream)
        await run_job(page, media.url("jfk.flac"), model="tiny.en", language="en", diarize=False)
        assert await page.is_hidden("#error"), await page.inner_text("#error")
        assert wer(JFK_TEXT, " ".join(text for _, text in await transcript(page))) <= 0.15
        await wait_until(page, "document.getElementById('player').src.includes('signature=')")
        await wait_until(page, "document.getElementById('player').duration > 10")  # the signed link loads
        async with page.expect_download() as download_info:
            await page.click("#exports a[data-format=srt]")
        assert list(srt.parse(Path(await (await download_info.value).path()).read_text(encoding="utf-8")))

        await page.reload()
        await expect(page.locator("#gpu")).not_to_be_empty()
        assert await page.is_hidden("#auth-form"), "the token is remembered"
        refusals = [p for p in browser.problems if "status of 401" in p]
        assert len(refusals) == 1, "after one refusal the page waits for another token"
        browser.problems.remove(refusals[0])  # Chromium logs it; it was the test's doing
    finally:
        process.terminate()
        process.wait(timeout=30)
