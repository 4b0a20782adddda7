"""Helpers the test modules share: launching the app in-process, slowing the tiny models down,
waiting for something to happen (or stop happening), and driving a browser page."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

SCREENSHOT_DIR = Path(
    os.environ.get("SCREENSHOT_DIR", Path(__file__).resolve().parent.parent / "artifacts" / "screenshots")
)
DOCS = Path(__file__).resolve().parent.parent / "docs"
DOCS_WIDTH, DOCS_MAX_HEIGHT = 640, 800  # the README's copies: small, the top of the page
CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; never `playwright install`
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
RESULT_TIMEOUT_MS = 60_000  # bound on a page's waits for a result; the tiny models answer in about a second


def launch_local(config, registry=None, max_queue: int = 64):
    """Build the app as app.py does and launch it on a free loopback port; returns (demo, url)."""
    from app import build_app, enable_queue, launch_options

    demo = enable_queue(build_app(config, registry), max_size=max_queue)
    _, url, _ = demo.launch(
        prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **launch_options(config)
    )  # as app.py
    return demo, url.rstrip("/") + "/"


def wait_until(condition, timeout_s: float = 10.0) -> bool:
    """Whether `condition()` became true within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def wait_for(condition, what: str, timeout_s: float = 120.0) -> None:
    """Wait until `condition()` is true; fail naming `what` after `timeout_s` (only reached if something is broken)."""
    if not wait_until(condition, timeout_s):
        pytest.fail(f"gave up waiting for {what}")


def settles(count, quiet_s: float = 0.3, timeout_s: float = 10.0) -> bool:
    """Whether `count()` (e.g. a model's forward passes) stops changing for `quiet_s` within
    `timeout_s`: the work that moves it has stopped."""
    deadline = time.monotonic() + timeout_s
    last, since = count(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.02)
        now = count()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return True
    return False


def generates_at_once(generator, timeout_s: float = 5.0) -> bool:
    """Whether a text generator runs a one-token generation within `timeout_s`: nothing else (a
    generation that should have stopped) holds the model."""
    done = threading.Event()

    def generate() -> None:
        generator.generate("Hello", generator.default_params(max_new_tokens=1, seed=1))
        done.set()

    threading.Thread(target=generate, name="test-generates-at-once", daemon=True).start()
    return done.wait(timeout_s)


class SlowSteps:
    """A forward pre-hook that makes every decoding step of the tiny model take `delay_s`, so
    that a generation lasts long enough to be stopped in the middle; counts the steps."""

    def __init__(self, delay_s: float = 0.05):
        self.delay_s, self.calls = delay_s, 0

    def __call__(self, module, args, kwargs=None):
        self.calls += 1
        time.sleep(self.delay_s)


def slow_text_registry(config, hook: SlowSteps):
    """A registry whose text models run `hook` before every forward pass."""
    return slow_registry(config, text=hook)


def slow_registry(config, text: SlowSteps | None = None, image: SlowSteps | None = None):
    """A registry whose text models run `text` before every forward pass, and whose image models
    run `image` before every UNet step."""
    from pipelines.image.pipeline import LocalImageGenerator
    from pipelines.studio import ModelRegistry, default_loaders
    from pipelines.text.pipeline import LocalTextGenerator

    def slow_text(entry):
        generator = LocalTextGenerator.from_entry(entry)
        generator.model.register_forward_pre_hook(text)
        return generator

    def slow_image(entry):
        generator = LocalImageGenerator.from_entry(entry)
        generator.pipe.unet.register_forward_pre_hook(image)
        return generator

    slowed = {"text": slow_text} if text else {}
    slowed |= {"image": slow_image} if image else {}
    return ModelRegistry(config, loaders=default_loaders() | slowed)


def stop_process(process: subprocess.Popen, timeout_s: float = 15) -> None:
    """Terminate a server the tests started, killing it if it does not exit in time."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def fn_index_of(demo, function_name: str) -> int:
    """The fn_index of the (first) event whose handler is called `function_name`, private ones too."""
    found = [index for index, block_fn in demo.fns.items() if block_fn.name == function_name]
    assert found, f"no event calls {function_name}"
    return found[0]


def call_event(url: str, fn_index: int, data: list, session_hash: str, timeout_s: float = 120) -> tuple[str, object]:
    """Call any event, public or private, as a raw HTTP client of session `session_hash` can:
    ("complete", outputs), ("error", message) or ("rejected", HTTP body)."""
    import json

    import httpx

    body = {"data": data, "fn_index": fn_index, "session_hash": session_hash, "event_data": None, "trigger_id": None}
    response = httpx.post(f"{url}gradio_api/run/predict", json=body, timeout=timeout_s)
    if response.status_code == 200:
        return "complete", response.json()["data"]
    if "queue" not in response.text.lower():  # an unqueued event's error, or a refusal
        detail = (
            response.json().get("error")
            if response.headers.get("content-type", "").startswith("application/json")
            else None
        )
        return ("error", detail) if detail else ("rejected", response.text)
    response = httpx.post(f"{url}gradio_api/queue/join", json=body, timeout=timeout_s)  # a queued event
    if response.status_code != 200:
        return "rejected", response.text
    with httpx.stream(
        "GET", f"{url}gradio_api/queue/data", params={"session_hash": session_hash}, timeout=timeout_s
    ) as stream:
        for line in stream.iter_lines():
            message = json.loads(line[5:]) if line.startswith("data:") else {}
            if message.get("msg") == "process_completed":
                output = message.get("output") or {}
                return ("complete", output["data"]) if message.get("success") else ("error", output.get("error"))
    return "rejected", "the stream ended without a result"


# -- a browser page (the `browser`, `open_page` and `page` fixtures are in conftest.py) -------------
def visible(locator):
    return locator.filter(visible=True)


def button(page, name: str):
    # exact: the page also has e.g. "Use via API", and both generation tabs have "Generate".
    return visible(page.get_by_role("button", name=name, exact=True))


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()


def screenshot(page, name: str, docs: tuple[str, ...] = ("classification", "text", "image")) -> None:
    """A screenshot of the whole page under SCREENSHOT_DIR; with UPDATE_DOCS_SCREENSHOTS=1 and a name in
    `docs`, the README's small copy in docs/ (its top) too."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1" and name in docs:
        from PIL import Image

        with Image.open(path) as full:
            small = full.resize((DOCS_WIDTH, round(full.height * DOCS_WIDTH / full.width)), Image.Resampling.LANCZOS)
        small = small.crop((0, 0, DOCS_WIDTH, min(small.height, DOCS_MAX_HEIGHT)))
        small.convert("RGB").quantize(colors=128).save(DOCS / f"{name}.png", optimize=True)
