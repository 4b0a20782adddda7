"""What the models considered, in a real browser (Playwright + Debian's chromium): generate text
with the token view on and read a token's alternatives; load a file into the embedding map and
see its points. Screenshots of both go to $SCREENSHOT_DIR; with UPDATE_DOCS_SCREENSHOTS=1 the
README's small copies in docs/ are remade too."""

from __future__ import annotations

import os
import re

from tests.helpers import DOCS, DOCS_WIDTH, SCREENSHOT_DIR, button, open_tab, visible

DOCS_SHOTS = ("token-view", "embedding-map")
LABELLED = [
    ("ham", "Hey, are we still meeting for lunch tomorrow?"),
    ("spam", "WINNER!! You have won a free prize. Call now to claim."),
    ("ham", "I'll be home late tonight, can you pick up some milk?"),
    ("spam", "URGENT: your account has a bonus. Text WIN to 80086."),
    ("spam", "Free entry in a weekly competition to win tickets."),
    ("ham", "Thanks for the lovely dinner yesterday, see you soon."),
]


# A point's look as drawn: its colours and its stroke's width (the page's CSS applied).
POINT_STYLE_JS = """el => {
    const style = getComputedStyle(el);
    return {fill: style.fill, stroke: style.stroke, width: parseFloat(style.strokeWidth)};
}"""


def screenshot_of(locator, name: str) -> None:
    """A screenshot of one part of the page; with UPDATE_DOCS_SCREENSHOTS=1 a small copy in docs/."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}.png"
    locator.screenshot(path=str(path))
    assert path.stat().st_size > 0
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1" and name in DOCS_SHOTS:
        from PIL import Image

        with Image.open(path) as full:
            width = min(DOCS_WIDTH, full.width)
            small = full.resize((width, round(full.height * width / full.width)), Image.Resampling.LANCZOS)
        small.convert("RGB").quantize(colors=128).save(DOCS / f"{name}.png", optimize=True)


def test_the_readme_shows_the_small_screenshots():
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    for name in DOCS_SHOTS:
        assert f'src="docs/{name}.png"' in readme
        assert 0 < (DOCS / f"{name}.png").stat().st_size < 200_000, f"docs/{name}.png is missing or large"


def test_generate_text_then_read_a_tokens_alternatives(page):
    open_tab(page, "Generation")
    open_tab(page, "Text")
    visible(page.get_by_label("Prompt", exact=True)).fill("Once upon a time")
    visible(page.get_by_label("Record token probabilities (the token view)")).check()
    button(page, "Generate").click()
    page.get_by_text(re.compile(r"tokens/s · seed \d+")).wait_for()
    page.get_by_text(re.compile(r"^\d+ tokens; \d+ of them were the most likely choice")).wait_for()
    tokens = page.locator("#token-view .score-token")
    # The note shows with the first streamed token too: wait for the view to hold a second one.
    tokens.nth(1).wait_for()
    tokens.nth(1).click()
    alternatives = page.locator("#token-alternatives")
    alternatives.get_by_text("◀ chosen").wait_for()
    text = alternatives.inner_text()
    assert re.search(r"1\. \S+", text) and re.search(r"\d+(\.\d+)?%", text)  # ranked tokens with probabilities
    assert visible(page.get_by_text(re.compile(r"was sampled|the most likely token"))).count() >= 1
    screenshot_of(page.locator("#token-view-panel"), "token-view")


def test_next_token_explorer_appends_a_picked_token(page):
    open_tab(page, "Generation")
    open_tab(page, "Text")
    visible(page.get_by_label("Prompt", exact=True)).fill("Once upon a time")
    page.get_by_text("Next-token explorer: what could come next").click()
    text = page.locator("#explorer-text textarea")
    page.wait_for_function("el => el.value === 'Once upon a time'", arg=text.element_handle())
    button(page, "Show next tokens").click()
    page.locator("#next-token-chart g.mark-rect.role-mark path").first.wait_for()
    assert page.locator("#next-token-chart g.mark-rect.role-mark path").count() == 10  # the default top_k bars
    # bars from 0, in percent, so that their heights compare as the probabilities do
    y_axis = page.locator("#next-token-chart g.role-axis[aria-label^='Y-axis']").get_attribute("aria-label")
    assert re.search(r"values from 0% to \d", y_axis), y_axis
    page.locator("#explorer-pick label").first.click()
    page.wait_for_function("el => el.value.length > 'Once upon a time'.length", arg=text.element_handle())
    page.get_by_text(re.compile(r"After \d+ prompt tokens")).wait_for()


def test_load_a_file_into_the_embedding_map_and_see_its_points(page, tmp_path):
    path = tmp_path / "labelled.tsv"
    path.write_text("label\ttext\n" + "".join(f"{label}\t{text}\n" for label, text in LABELLED), encoding="utf-8")
    visible(page.get_by_label("Message", exact=True)).fill(LABELLED[1][1])
    open_tab(page, "Embedding map")
    page.wait_for_function(
        "t => document.querySelector('#embedding-map') && "
        "[...document.querySelectorAll('textarea')].some(el => el.value === t)",
        arg=LABELLED[1][1],
    )
    page.locator("#embedding-map-file input[type=file]").set_input_files(str(path))
    button(page, "Show the map and similar messages").click()
    page.get_by_text(re.compile(r"6 messages")).first.wait_for()
    points = page.locator("#embedding-map g.mark-symbol.role-mark path")
    points.first.wait_for()
    assert points.count() == len(LABELLED) + 1  # each message, and yours
    assert LABELLED[1][1] in page.locator("#similar-messages").inner_text()  # its own nearest neighbour
    yours = page.locator("#embedding-map g.mark-symbol.role-mark path[aria-label*='label: your message']")
    theirs = page.locator("#embedding-map g.mark-symbol.role-mark path[aria-label*='label: spam']").first
    assert yours.count() == 1
    mine, other = (point.evaluate(POINT_STYLE_JS) for point in (yours, theirs))
    assert mine["fill"] not in ("none", "transparent", "rgba(0, 0, 0, 0)"), "your message is not a filled disc"
    assert mine["stroke"] != other["stroke"] and mine["width"] >= 3 * other["width"], (mine, other)
    # The legend, each entry with its label, lies inside the plot's box (Gradio's block clips what overflows).
    plot = page.locator("#embedding-map").bounding_box()
    for label in ("ham", "spam", "your message"):
        entry = page.locator("#embedding-map g.role-legend text").filter(has_text=label).first.bounding_box()
        assert entry and plot["y"] <= entry["y"] and entry["y"] + entry["height"] <= plot["y"] + plot["height"], label
    screenshot_of(page.locator("#classification-map"), "embedding-map")
