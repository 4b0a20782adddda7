"""What a person sees of a run, in Chromium: Stop keeps what was made and says so (no "Error"),
an error stays readable by the outputs, a job still waiting in the queue can be stopped, and
the Loaded models panel is current as the page opens."""

from __future__ import annotations

import re
import time

import pytest

from tests.helpers import (
    SlowSteps,
    button,
    launch_local,
    open_tab,
    settles,
    slow_registry,
    visible,
    wait_until,
)

ERROR_KEPT_S = 30  # how long after an error its message must still be on the page


@pytest.fixture(scope="module")
def slow_app(tiny_config):
    """The app with a tiny GPT-Neo at 0.05 s a token and a tiny diffusion model at 0.3 s a step."""
    text, image = SlowSteps(delay_s=0.05), SlowSteps(delay_s=0.3)
    demo, url = launch_local(tiny_config, slow_registry(tiny_config, text=text, image=image))
    yield url, text, image
    demo.close()


def open_generation_tab(open_page, url: str, tab: str):
    page = open_page(url, height=1100)
    open_tab(page, "Generation")
    open_tab(page, tab)
    return page


def set_number(page, label: str, value: int) -> None:
    """Set a slider's number; again if the page's first events (the model's controls being set
    as the page opens) put it back meanwhile."""
    field = visible(page.get_by_label(f"number input for {label}"))
    for _ in range(3):
        field.fill(str(value))
        field.press("Enter")
        time.sleep(0.5)
        if field.input_value() == str(value):
            return
    pytest.fail(f"{label} stays at {field.input_value()}, not {value}")


def error_marks(page) -> int:
    """Gradio's bare "Error" marks over outputs (the toast's title is "Error" too: not counted)."""
    return visible(page.locator(".error").get_by_text("Error", exact=True)).count()


def test_stop_on_text_keeps_the_streamed_text_and_says_it_stopped(slow_app, open_page):
    url, text_steps, _ = slow_app
    page = open_generation_tab(open_page, url, "Text")
    visible(page.get_by_text("Parameters", exact=True)).first.click()
    set_number(page, "Max new tokens", 200)
    visible(page.get_by_label("Prompt", exact=True)).fill("Once upon a time")
    output = visible(page.get_by_label("Generated text"))
    first = text_steps.calls
    button(page, "Generate").click()
    assert wait_until(lambda: text_steps.calls - first >= 20 and output.input_value(), timeout_s=30)
    button(page, "Stop").click()
    stats = visible(page.get_by_text(re.compile(r"Stopped after (\d+) tokens")))
    stats.wait_for()
    made = int(re.search(r"Stopped after (\d+) tokens", stats.inner_text()).group(1))
    assert 20 <= made < 200
    streamed = output.input_value()
    time.sleep(1)
    assert streamed and output.input_value() == streamed  # the text so far stays, neither cleared nor replaced
    assert error_marks(page) == 0


def test_stop_on_image_keeps_a_preview_and_says_where_it_stopped(slow_app, open_page):
    url, _, image_steps = slow_app
    page = open_generation_tab(open_page, url, "Image")
    visible(page.get_by_text("Parameters", exact=True)).first.click()
    set_number(page, "Steps", 20)
    set_number(page, "Preview every N steps (0 = off)", 0)  # the stop's own preview is what stays
    visible(page.get_by_label("Prompt", exact=True)).fill("a lighthouse")
    first = image_steps.calls
    button(page, "Generate").click()
    assert wait_until(lambda: image_steps.calls - first >= 3, timeout_s=60)  # the model loads first
    button(page, "Stop").click()
    status = visible(page.get_by_text(re.compile(r"Stopped after step \d+ of 20")))
    status.wait_for()
    assert "the last preview is kept" in status.inner_text()
    assert settles(lambda: image_steps.calls)
    assert visible(page.get_by_text(re.compile(r"preview after step \d+/20"))).count() == 1  # its caption
    assert visible(page.locator("img[src^='data:image'], img[src*='/gradio_api/file=']")).count() >= 1
    assert error_marks(page) == 0


def test_an_error_stays_readable_by_the_outputs(slow_app, open_page):
    url, _, _ = slow_app
    page = open_generation_tab(open_page, url, "Text")
    button(page, "Generate").click()  # with an empty prompt
    message = visible(page.get_by_text(re.compile(r"prompt.*is empty")))
    message.first.wait_for()
    time.sleep(ERROR_KEPT_S)  # the toast has gone by now
    assert message.count() >= 1
    assert "Error" in message.first.inner_text()
    # the next run replaces it
    visible(page.get_by_label("Prompt", exact=True)).fill("Hello")
    button(page, "Generate").click()
    visible(page.get_by_text(re.compile(r"tokens/s · seed \d+"))).wait_for()
    assert message.count() == 0


def test_stop_while_waiting_in_the_queue_ends_the_job_before_it_starts(slow_app, open_page, names):
    from gradio_client import Client

    url, text_steps, _ = slow_app
    other = Client(url, verbose=False).submit(
        prompt="someone else's story", model_name=names["text"], max_new_tokens=60, api_name="/generate_text"
    )
    before = text_steps.calls
    assert wait_until(lambda: text_steps.calls > before, timeout_s=60)  # it holds the model
    page = open_generation_tab(open_page, url, "Text")
    visible(page.get_by_label("Prompt", exact=True)).fill("Once upon a time")
    button(page, "Generate").click()
    visible(page.get_by_text(re.compile(r"queue: 1/1"))).first.wait_for()
    button(page, "Stop").click()
    other.result(timeout=60)
    visible(page.get_by_text("Stopped before the first token")).wait_for()
    assert visible(page.get_by_label("Generated text")).input_value() == ""
    assert error_marks(page) == 0


def test_the_loaded_models_panel_lists_models_loaded_before_the_page_opened(slow_app, open_page, names):
    from gradio_client import Client

    url, _, _ = slow_app
    Client(url, verbose=False).predict(
        prompt="Hello", model_name=names["text"], max_new_tokens=1, api_name="/generate_text"
    )
    page = open_page(url)
    opened = time.monotonic()
    page.get_by_text("Loaded models").first.click()
    page.get_by_role("cell", name=names["text"]).wait_for(timeout=4000)
    # before the panel's first timed refresh (every 5 s): the page's load filled it
    assert time.monotonic() - opened < 5


def test_a_stop_with_nothing_running_or_waiting_does_not_stop_the_next_job():
    from ui.common import StopFlags

    flags = StopFlags()
    flags.stop(None, "generate_text")  # nothing of this session runs or waits: forgotten
    assert not flags.begin(None).is_set()


def test_last_errors_keep_a_bounded_number_of_sessions():
    from ui.handlers import LastErrors

    errors = LastErrors()
    for i in range(LastErrors.MAX_SESSIONS + 5):
        errors.remember(f"session-{i}", f"error {i}")
    assert errors.take("session-0") is None  # the oldest went first
    assert errors.take(f"session-{LastErrors.MAX_SESSIONS + 4}") == f"error {LastErrors.MAX_SESSIONS + 4}"
    assert errors.take(f"session-{LastErrors.MAX_SESSIONS + 4}") is None  # shown once
