"""Queueing as API clients see it: one request per task at a time, the rest wait with their place
in the queue, and a queued job can be cancelled before it runs."""

from __future__ import annotations

import threading
import time

import pytest
from gradio_client import Client
from gradio_client.utils import Status

from app import build_app, with_concurrency
from pipelines.tasks import TASKS
from pipelines.text.pipeline import LocalTextGenerator
from ui import train_tab

WAIT_S = 60  # generous bound for things that happen within a second; only reached if broken


def wait_until(condition, what: str):
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def recorded_prompts(monkeypatch):
    """Prompts that reached the text model; the prompt 'blocker' holds the model until released."""
    started: list[str] = []
    release = threading.Event()
    original = LocalTextGenerator.stream

    def stream(self, prompt, params=None, stop=None):
        started.append(prompt)
        if prompt == "blocker":
            release.wait(WAIT_S)
        yield from original(self, prompt, params, stop=stop)

    monkeypatch.setattr(LocalTextGenerator, "stream", stream)
    yield started, release
    release.set()


def test_queued_job_shows_its_place_and_can_be_cancelled_before_it_runs(app_url, client, names, recorded_prompts):
    started, release = recorded_prompts
    text = dict(model_name=names["text"], max_new_tokens=4, api_name="/generate_text")
    blocker = client.submit(prompt="blocker", **text)
    wait_until(lambda: started == ["blocker"], "the first job to start")

    # Another user: Gradio's cancel also stops the same session's running job of that endpoint.
    other_user = Client(app_url, verbose=False)
    queued = other_user.submit(prompt="queued", **text)
    wait_until(lambda: queued.status().code == Status.IN_QUEUE, "the second job to wait in the queue")
    status = queued.status()
    assert status.rank == 0 and status.queue_size >= 1  # first in line, behind the running job
    assert queued.cancel()

    release.set()
    blocker.result(timeout=WAIT_S)
    after, _stats, _details = client.predict(prompt="after", **text)
    assert isinstance(after, str)
    assert started == ["blocker", "after"]  # the cancelled job never reached the model
    assert queued.status().code == Status.CANCELLED


def test_each_task_shares_one_concurrency_group_sized_by_settings(tiny_config):
    demo = build_app(with_concurrency(tiny_config, 3))
    queued = [fn for fn in demo.fns.values() if fn.api_visibility == "public"]
    assert queued, "no public endpoints"
    for fn in queued:
        if fn.api_name == "train_classifier":  # a group of its own: one training at a time, whatever the settings
            assert (fn.concurrency_id, fn.concurrency_limit) == (train_tab.CONCURRENCY_ID, 1)
            continue
        assert fn.concurrency_id in TASKS, f"/{fn.api_name} is outside every task's queue group"
        assert fn.concurrency_limit == 3

    cpu_default = build_app(tiny_config)  # tiny models run on this CPU-only machine
    limits = {fn.concurrency_id: fn.concurrency_limit for fn in cpu_default.fns.values() if fn.concurrency_id in TASKS}
    assert limits == {task: tiny_config.settings.cpu_concurrency for task in TASKS}


def test_progress_and_queue_position_are_not_hidden(tiny_config):
    demo = build_app(tiny_config)
    shown = [fn for fn in demo.fns.values() if fn.api_visibility == "public" and fn.targets]
    assert {"classify", "generate_text", "generate_image"} <= {fn.api_name for fn in shown}
    for fn in shown:  # an endpoint with no event on the page (gr.api: /embed) has nothing to show it on
        assert fn.show_progress == "full", f"/{fn.api_name} hides its progress and queue position"
