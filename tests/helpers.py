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
    from pipelines.core.registry import ModelRegistry, default_loaders
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
