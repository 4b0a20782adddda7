"""Helpers the test modules share: launching the app in-process, slowing the tiny models down."""

from __future__ import annotations

import subprocess
import time


def launch_local(config, registry=None, max_queue: int = 64):
    """Build the app as app.py does and launch it on a free loopback port; returns (demo, url)."""
    from app import build_app, enable_queue, launch_options

    demo = enable_queue(build_app(config, registry), max_size=max_queue)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **launch_options(config))  # as app.py
    return demo, url.rstrip("/") + "/"


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
    from pipelines.studio import ModelRegistry, default_loaders
    from pipelines.text.pipeline import LocalTextGenerator

    def slow_text(entry):
        generator = LocalTextGenerator.from_entry(entry)
        generator.model.register_forward_pre_hook(hook)
        return generator

    return ModelRegistry(config, loaders=default_loaders() | {"text": slow_text})


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
        detail = response.json().get("error") if response.headers.get("content-type", "").startswith("application/json") else None
        return ("error", detail) if detail else ("rejected", response.text)
    response = httpx.post(f"{url}gradio_api/queue/join", json=body, timeout=timeout_s)  # a queued event
    if response.status_code != 200:
        return "rejected", response.text
    with httpx.stream("GET", f"{url}gradio_api/queue/data", params={"session_hash": session_hash}, timeout=timeout_s) as stream:
        for line in stream.iter_lines():
            message = json.loads(line[5:]) if line.startswith("data:") else {}
            if message.get("msg") == "process_completed":
                output = message.get("output") or {}
                return ("complete", output["data"]) if message.get("success") else ("error", output.get("error"))
    return "rejected", "the stream ended without a result"
