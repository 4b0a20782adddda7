"""A number typed into a slider's box beyond its bounds, in a real browser: Gradio's slider moves
it to the nearest bound when the box loses focus, without a word (a width of 5000 became 256).
The page keeps the number typed, so that the model's check refuses it, naming the field and its
range, as it does for an API client."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.helpers import button, open_tab, visible


def test_a_width_beyond_the_slider_is_refused_naming_the_range_not_moved_to_the_bound(page):
    open_tab(page, "Generation")
    open_tab(page, "Image")
    visible(page.get_by_label("Prompt", exact=True)).fill("a cat")
    visible(page.get_by_text("Parameters", exact=True)).first.click()
    width = visible(page.get_by_label("number input for Width"))
    width.fill("5000")
    width.press("Tab")  # the box loses focus: where Gradio's slider would show 256
    expect(width).to_have_value("5000")
    button(page, "Generate").click()
    visible(page.get_by_text("width: must be an integer in [32, 256], a multiple of 8, got 5000")).first.wait_for()
    expect(width).to_have_value("5000")

    width.fill("128")  # within the range: used as typed
    button(page, "Generate").click()
    seeds = visible(page.get_by_test_id("json")).first  # "Seeds and parameters"
    expect(seeds).to_contain_text(re.compile(r'"width"\s*:\s*128\b'))
