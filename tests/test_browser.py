"""A real browser (Playwright + Debian's chromium) uses the app with the tiny models as a person
would: type, click, wait for the result, check what is shown. A screenshot of each tab is saved
under $SCREENSHOT_DIR (default artifacts/screenshots/, git-ignored) as a test artifact; with
UPDATE_DOCS_SCREENSHOTS=1 the README's small copies in docs/ are remade too."""

from __future__ import annotations

import re
import threading

from tests.helpers import DOCS, RESULT_TIMEOUT_MS, button, open_tab, screenshot, visible


def test_the_readme_shows_a_small_screenshot_of_each_tab():
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    for name in ("classification", "text", "image"):
        assert f"](docs/{name}.png)" in readme
        assert 0 < (DOCS / f"{name}.png").stat().st_size < 200_000, f"docs/{name}.png is missing or large"


def test_classify_a_message_shows_a_verdict(page):
    visible(page.get_by_label("Message", exact=True)).fill("WINNER!! You have won a free prize. Call now to claim.")
    button(page, "Classify").click()
    verdict = page.get_by_text(re.compile(r"(HAM|SPAM) — spam score \d\.\d{3}"))
    verdict.wait_for()
    confidences = page.get_by_test_id("label")  # gr.Label: the confidence of each class
    assert re.search(r"\b(ham|spam)\b", confidences.inner_text())
    screenshot(page, "classification")


def test_a_classified_file_shows_its_verdicts_first_until_the_file_is_cleared(page, tmp_path):
    path = tmp_path / "messages.tsv"
    path.write_text(
        "label\ttext\nspam\tWINNER!! You have won a free prize.\nham\tsee you at dinner\n", encoding="utf-8"
    )
    open_tab(page, "Batch file")
    table = page.locator("#verdicts")
    headers = table.get_by_role("columnheader")
    headers.first.wait_for()
    assert headers.all_inner_texts() == ["label", "spam_score", "text"]  # before any file: what a result shows
    page.locator("#batch-file input[type=file]").set_input_files(str(path))
    button(page, "Classify file").click()
    summary = page.get_by_text(re.compile(r"2 row\(s\) \(text column"))
    summary.wait_for()
    assert headers.all_inner_texts() == ["label", "spam_score", "text", "true_label"]
    rows = table.get_by_role("row").filter(has=page.get_by_role("gridcell"))  # not the header's row
    first_row = rows.first.get_by_role("gridcell").all_inner_texts()
    assert first_row[0] in ("ham", "spam") and 0 <= float(first_row[1]) <= 1 and first_row[2].startswith("WINNER!!")
    download = page.locator("#batch-results").get_by_test_id("download-link")
    assert download.get_attribute("download") == "messages-classified.csv"
    page.locator("#batch-file button[aria-label='Clear']").click()
    summary.wait_for(state="detached")  # the old results go with their file: summary, table and CSV
    assert rows.count() == 0 and download.count() == 0
    assert headers.all_inner_texts() == ["label", "spam_score", "text"]


# Records every "Generating… N tokens" line the page shows while the text streams in.
WATCH_PROGRESS_JS = """() => {
    window.progressSeen = [];
    new MutationObserver(() => {
        const match = document.body.innerText.match(/Generating… \\d+ tokens/);
        if (match && !window.progressSeen.includes(match[0])) window.progressSeen.push(match[0]);
    }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def test_generate_text_streams_into_the_output(page):
    open_tab(page, "Generation")
    open_tab(page, "Text")
    visible(page.get_by_label("Prompt", exact=True)).fill("Once upon a time")
    page.evaluate(WATCH_PROGRESS_JS)
    button(page, "Generate").click()
    stats = page.get_by_text(re.compile(r"tokens/s · seed \d+"))
    stats.wait_for()  # the final stats line: the stream has ended
    output = visible(page.get_by_label("Generated text", exact=True))
    assert output.input_value().strip(), "no generated text is shown"
    assert page.evaluate("window.progressSeen"), "no intermediate update was shown while streaming"
    visible(page.get_by_text("Parameters", exact=True)).first.click()  # the controls, each with its help line
    visible(page.get_by_label("number input for Temperature")).first.wait_for()
    screenshot(page, "text")


def test_generate_image_shows_the_image(page):
    open_tab(page, "Generation")
    open_tab(page, "Image")
    visible(page.get_by_label("Prompt", exact=True)).fill("A watercolor painting of a lighthouse at sunset")
    button(page, "Generate").click()
    image = visible(page.locator('img[src*="/gradio_api/file="]')).first  # the generated image, served by the app
    image.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    seeds = visible(page.get_by_test_id("json")).first  # "Seeds and parameters"
    assert re.search(r'"seeds"\s*:', seeds.inner_text())
    screenshot(page, "image")


def test_use_via_api_page_lists_every_public_endpoint(page, public_endpoints):
    page.get_by_role("button", name=re.compile("Use via API")).click()
    page.get_by_text("API documentation").first.wait_for()
    for endpoint in sorted(public_endpoints):
        assert visible(page.get_by_text(endpoint, exact=True)).count() > 0, f"{endpoint} is not on the API page"
    screenshot(page, "api")


def test_a_waiting_user_sees_their_place_in_the_queue(page, app_url, names, monkeypatch):
    """Someone else's long generation holds the text model: this user's request waits, and the
    page says where it is in the queue; it runs as soon as the model is free."""
    from gradio_client import Client

    from pipelines.text.pipeline import LocalTextGenerator

    started, release = threading.Event(), threading.Event()
    original = LocalTextGenerator.stream

    def stream(self, prompt, params=None, stop=None):
        if prompt == "someone else's long story":
            started.set()
            release.wait(RESULT_TIMEOUT_MS / 1000)
        yield from original(self, prompt, params, stop=stop)

    monkeypatch.setattr(LocalTextGenerator, "stream", stream)
    other = Client(app_url, verbose=False).submit(
        prompt="someone else's long story",
        model_name=names["text"],
        max_new_tokens=4,
        api_name="/generate_text",
    )
    try:
        assert started.wait(RESULT_TIMEOUT_MS / 1000)
        open_tab(page, "Generation")
        open_tab(page, "Text")
        visible(page.get_by_label("Prompt", exact=True)).fill("Once upon a time")
        button(page, "Generate").click()
        visible(page.get_by_text(re.compile(r"queue: 1/1"))).first.wait_for()
        screenshot(page, "queue")
    finally:
        release.set()
    other.result(timeout=RESULT_TIMEOUT_MS / 1000)
    page.get_by_text(re.compile(r"tokens/s · seed \d+")).wait_for()  # then it ran


def test_use_an_image_as_input_and_generate_from_it(page):
    """Generate, click "Use as input", change the prompt, generate again: image to image."""
    open_tab(page, "Generation")
    open_tab(page, "Image")
    prompt = visible(page.get_by_label("Prompt", exact=True))
    prompt.fill("A lighthouse at sunset")
    button(page, "Generate").click()
    visible(page.locator('img[src*="/gradio_api/file="]')).first.wait_for()
    visible(page.get_by_text("Start from an image (image to image)")).first.click()
    button(page, "Use as input").click()
    page.wait_for_function(
        "() => document.querySelectorAll('img[src*=\"/gradio_api/file=\"]').length >= 2"
    )  # gallery + input
    prompt.fill("The same lighthouse in winter")
    button(page, "Generate").click()
    info = visible(page.get_by_test_id("json")).first
    page.wait_for_function("el => el.innerText.includes('init_image')", arg=info.element_handle())
    assert "strength" in info.inner_text() and "winter" in info.inner_text()  # the new run, from the picture
    visible(page.locator('img[src*="seed-"]')).first.wait_for()
    screenshot(page, "image-to-image")
