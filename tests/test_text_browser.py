"""The Text tab in a real browser (Playwright + Debian's chromium): a preset sets the sliders,
Stop ends the generation itself (the model is free at once), the status panel lists the model."""

from __future__ import annotations

import time

import pytest

from tests.helpers import SlowSteps, launch_local, settles, slow_text_registry, wait_until


@pytest.fixture(scope="module")
def slow_text_app(tiny_config):
    """The app with a tiny GPT-Neo that takes 0.05 s per token."""
    hook = SlowSteps()
    registry = slow_text_registry(tiny_config, hook)
    demo, url = launch_local(tiny_config, registry)
    yield url, hook
    demo.close()


@pytest.fixture
def text_page(slow_text_app, open_page):
    """A page of that app on the Text tab, its parameters open; the app's step counter."""
    url, hook = slow_text_app
    page = open_page(url, height=1100)
    page.get_by_role("tab", name="Generation").click()
    page.get_by_role("tab", name="Text", exact=True).click()
    page.get_by_text("Parameters").click()
    return page, hook


def choose_preset(page, name: str) -> None:
    page.get_by_label("Preset").click()
    page.get_by_role("option", name=name).click()


def test_presets_set_the_sliders(text_page):
    page, _ = text_page
    temperature, sample = page.get_by_label("number input for Temperature"), page.get_by_label("Sample (off = greedy)")
    choose_preset(page, "Creative")
    wait_until(lambda: temperature.input_value() == "1.1")
    assert (
        temperature.input_value() == "1.1"
        and page.get_by_label("number input for Top-k (0 = off)").input_value() == "0"
    )
    assert sample.is_checked()
    choose_preset(page, "Precise (greedy)")
    wait_until(lambda: not sample.is_checked())
    assert not sample.is_checked()


def test_stop_button_ends_generation_and_frees_the_model(text_page, names):
    page, hook = text_page
    max_tokens = page.get_by_label("number input for Max new tokens")
    max_tokens.fill("200")
    max_tokens.press("Enter")
    page.get_by_role("textbox", name="Prompt").fill("Once upon a time")
    first_step = hook.calls
    page.get_by_role("button", name="Generate", exact=True).click()
    assert wait_until(lambda: hook.calls - first_step >= 10, timeout_s=30), "generation did not start"
    page.get_by_role("button", name="Stop", exact=True).click()
    assert settles(lambda: hook.calls), "generate() still runs after Stop"
    stopped_at = hook.calls
    assert stopped_at - first_step < 150  # stopped mid-way through its 200 tokens
    time.sleep(0.3)
    assert hook.calls == stopped_at  # and does not go on in the background
    # the next generation starts at once and its stats are shown; the status panel lists the model
    max_tokens.fill("5")
    max_tokens.press("Enter")
    page.get_by_role("button", name="Generate", exact=True).click()
    page.get_by_text("5 tokens · first token after").wait_for()
    page.get_by_text("Loaded models").first.click()
    page.get_by_role("button", name="Refresh").click()
    page.get_by_role("cell", name=names["text"]).wait_for()
    assert page.get_by_role("cell", name="cpu/float32").count() >= 1
