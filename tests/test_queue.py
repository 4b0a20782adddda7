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
    public = [fn for fn in demo.fns.values() if fn.api_visibility == "public"]
    assert [fn.api_name for fn in public if not fn.queue] == ["list_models"]  # reads two lists: never waits
    queued = [fn for fn in public if fn.queue]
    assert queued, "no public endpoints"
    for fn in queued:
        if fn.api_name == "train_classifier":  # a group of its own: one training at a time, whatever the settings
            assert (fn.concurrency_id, fn.concurrency_limit) == (train_tab.CONCURRENCY_ID, 1)
            continue
        assert fn.concurrency_id in TASKS, f"/{fn.api_name} is outside every task's queue group"
        assert fn.concurrency_limit == 3

    cpu_default = build_app(tiny_config)  # tiny models run on this CPU-only machine
    limits = {fn.concurrency_id: fn.concurrency_limit for fn in cpu_default.fns.values() if fn.concurrency_id in TASKS}
    assert limits == dict.fromkeys(TASKS, tiny_config.settings.cpu_concurrency)


def test_progress_and_queue_position_are_not_hidden(tiny_config):
    demo = build_app(tiny_config)
    shown = [fn for fn in demo.fns.values() if fn.api_visibility == "public" and fn.targets]
    assert {"classify", "generate_text", "generate_image"} <= {fn.api_name for fn in shown}
    for fn in shown:  # an endpoint with no event on the page (gr.api: /embed) has nothing to show it on
        assert fn.show_progress == "full", f"/{fn.api_name} hides its progress and queue position"


# -- one client cannot starve the others (issue 28) -------------------------------------------------
def join(url: str, fn_index: int, data: list, session_hash: str):
    """POST /queue/join as a raw HTTP client: the response (200 with event_id, or the refusal)."""
    import httpx

    body = {"data": data, "fn_index": fn_index, "session_hash": session_hash, "event_data": None, "trigger_id": None}
    return httpx.post(f"{url}gradio_api/queue/join", json=body, timeout=30)


@pytest.fixture(scope="module")
def blocked_training(tiny_config):
    """The tiny app whose training event waits until released: trainings pile up in the queue
    behind the first. (The training itself is not what is tested here, its queue is.)"""
    import gradio as gr

    from pipelines.studio import ModelRegistry
    from tests.helpers import fn_index_of, launch_local

    release = threading.Event()
    started = threading.Event()

    def blocked(*_args, **_kwargs):
        started.set()
        release.wait(WAIT_S)
        raise gr.Error("released", print_exception=False)
        yield  # a generator, as the real handler

    demo, url = launch_local(tiny_config, ModelRegistry(tiny_config))
    train = demo.fns[fn_index_of(demo, "train_classifier")]
    train.fn, train.preprocess = blocked, False
    yield demo, url, (train._id, [None] * len(train.inputs)), started, release
    release.set()
    demo.close()


def test_one_session_queueing_64_trainings_locks_out_no_one(blocked_training, names):
    from gradio_client import Client

    from app import GROUP_MAX_QUEUE, SESSION_GROUP_MAX_QUEUE

    demo, url, train, started, release = blocked_training
    assert join(url, *train, "running").status_code == 200
    assert started.wait(WAIT_S), "the first training did not start"

    answers = [join(url, *train, "greedy") for _ in range(64)]
    assert [a.status_code for a in answers] == [200] * SESSION_GROUP_MAX_QUEUE["training"] + [429] * (
        64 - SESSION_GROUP_MAX_QUEUE["training"]
    )
    assert "most one session may queue there (1)" in answers[-1].json()["detail"]

    # other sessions fill the training group's own backlog, then get "queue full" for it ...
    answers = [join(url, *train, f"other-{i}") for i in range(64)]
    admitted = GROUP_MAX_QUEUE["training"] - SESSION_GROUP_MAX_QUEUE["training"]
    assert [a.status_code for a in answers] == [200] * admitted + [503] * (64 - admitted)
    assert (
        answers[-1]
        .json()["detail"]
        .startswith("The training queue is full: 4 requests are waiting, the most it holds (4)")
    )
    with pytest.raises(Exception, match="Queue is full"):  # gradio_client's QueueError, as for Gradio's own limit
        Client(url, verbose=False).predict(file=None, api_name="/train_classifier")

    # ... while every other queue answers, through gradio_client and raw HTTP
    label, _, _ = Client(url, verbose=False).predict(
        "WIN a free prize", names["classification"], 0.5, api_name="/classify"
    )
    assert label["label"] in ("ham", "spam")
    from tests.helpers import call_event, fn_index_of

    outcome, outputs = call_event(
        url, fn_index_of(demo, "classify"), ["hello there", names["classification"], 0.5], "visitor"
    )
    assert outcome == "complete" and outputs[0]["label"] in ("ham", "spam")

    release.set()  # the queued trainings run (and end at once)
    wait_until(lambda: not demo._queue.event_queue_per_concurrency_id["training"].queue, "the training queue to drain")
    assert join(url, *train, "greedy").status_code == 200  # room again


def test_queue_limits_per_group_and_per_session():
    from types import SimpleNamespace

    from ui.request_limits import QueueLimits

    limits = QueueLimits(
        default_backlog=6, backlog={"training": 3}, per_session=4, per_session_in_group={"training": 1}
    )
    events = lambda *sessions: [SimpleNamespace(session_hash=s) for s in sessions]  # noqa: E731
    assert limits.refusal({"text": events("a", "b")}, "text", "a") is None
    full = limits.refusal({"text": events(*"bcdefg")}, "text", "a")
    assert (
        full.status_code == 503
        and "The text queue is full: 6 requests are waiting, the most it holds (6)" in full.detail
    )
    assert (
        limits.refusal({"training": events("b", "c", "d")}, "training", "a").status_code == 503
    )  # its own, smaller cap
    in_group = limits.refusal({"training": events("a")}, "training", "a")
    assert in_group.status_code == 429 and "1 request(s) waiting in the training queue" in in_group.detail
    spread = limits.refusal({"text": events("a", "a"), "image": events("a", "a")}, "classification", "a")
    assert spread.status_code == 429 and "4 requests waiting, the most one session may queue (4)" in spread.detail
    assert limits.refusal({"text": events("a", "a", "a", "a")}, "text", None) is None  # no session: its own
    assert QueueLimits(default_backlog=2, backlog={"training": 4}).backlog_of("training") == 2  # never over --max-queue


def test_every_queue_group_is_capped_and_the_app_s_limits_name_real_groups(tiny_config):
    from app import GROUP_MAX_QUEUE, SESSION_GROUP_MAX_QUEUE, enable_queue

    demo = enable_queue(build_app(tiny_config), max_size=10)
    groups = {fn.concurrency_id for fn in demo.fns.values() if fn.queue}
    assert set(GROUP_MAX_QUEUE) | set(SESSION_GROUP_MAX_QUEUE) <= groups  # no limit on a misspelt group
    limits = demo._queue.limits
    assert limits.backlog_of("classification") == 10 and limits.backlog_of("training") == 4
    assert demo._queue.max_size == sum(limits.backlog_of(g) for g in groups)  # Gradio's total never bites first
    assert demo.api_open is False  # queued events cannot skip the queue through /run/<api_name>


def test_the_queue_hooks_are_what_gradio_calls(tiny_config):
    """limit_queue wraps Gradio's private Queue.push and reads its waiting events: fail loudly if
    an upgrade renames them or pushes requests some other way."""
    import inspect

    from gradio import queueing, routes

    assert list(inspect.signature(queueing.Queue.push).parameters) == ["self", "body", "request", "username"]
    assert "await blocks._queue.push(" in inspect.getsource(routes.App.create_app)
    push_source = inspect.getsource(queueing.Queue.push)
    assert (
        "self.event_queue_per_concurrency_id[event.concurrency_id]" in push_source
        and "event_queue.queue.append(event)" in push_source
    )
    assert "self.session_hash" in inspect.getsource(queueing.Event.__init__)


# Events whose handler reads an uploaded file: each waits in a queue group with a concurrency
# limit, so that N visitors uploading at once read at most `limit` files at a time.
READS_AN_UPLOAD = {
    "preview": "train_preview",
    "train_classifier": "training",
    "similar_messages": "classification",
    "classify_batch": "classification",
    "generate_image": "image",
    "zip_chosen": "trained_model_files",
}


def test_every_handler_that_reads_a_file_is_queued_and_limited(tiny_config, app_url):
    from tests.helpers import call_event, fn_index_of

    demo = build_app(tiny_config)
    for name, group in READS_AN_UPLOAD.items():
        fn = demo.fns[fn_index_of(demo, name)]
        assert fn.queue and fn.concurrency_id == group, name
    from app import enable_queue

    enable_queue(demo)
    preview = demo.fns[fn_index_of(demo, "preview")]
    assert preview.concurrency_limit == 1 and preview.trigger_mode == "always_last"
    # a raw HTTP client cannot run it outside the queue (/run/predict): it is refused, and the queue answers
    import httpx

    body = {"data": [None, "", "", 0.2, 42], "fn_index": preview._id, "session_hash": "preview-direct"}
    direct = httpx.post(f"{app_url}gradio_api/run/predict", json=body, timeout=30)
    assert direct.status_code == 404 and "join the queue" in direct.text
    outcome, outputs = call_event(app_url, preview._id, [None, "", "", 0.2, 42], "preview-queued")
    assert outcome == "complete" and outputs[0].startswith("Upload a file")


def test_new_sessions_keep_only_what_their_events_changed(blocked_training):
    """Each page load makes a session; Gradio's own SessionState copies every component's config
    for it (and every input and output value after): the app's LeanSessionState does not."""
    from gradio.state_holder import SessionState

    from app import STATE_SESSION_CAPACITY
    from tests.helpers import call_event, fn_index_of
    from ui.request_limits import LeanSessionState, LeanStateHolder

    demo, url, _train, _started, _release = blocked_training
    holder = demo.server_app.state_holder
    assert isinstance(holder, LeanStateHolder) and holder.capacity == STATE_SESSION_CAPACITY
    assert (
        len(SessionState(demo).config_values) > 100
    )  # what Gradio would copy per session, so that {} below means something
    page_load = [i for i, fn in demo.fns.items() if any(event == "load" for _, event in fn.targets)]
    assert page_load, "no page-load events"
    for n in range(5):
        for fn_index in page_load:
            outcome, _ = call_event(url, fn_index, [], f"page-{n}")
            assert outcome == "complete"
    outcome, _ = call_event(url, fn_index_of(demo, "classify"), ["hello " * 1000, None, 0.5], "page-0")
    sessions = [holder.session_data[f"page-{n}"] for n in range(5)]
    assert all(type(s) is LeanSessionState and s.config_values == {} for s in sessions)
    # what the page load changed for the session is still the session's own: its model list
    model_list = demo.fns[fn_index_of(demo, "list_models")].outputs[0]
    assert sessions[0].blocks_config.blocks[model_list._id] is not model_list


def test_sessions_beyond_the_capacity_are_dropped_oldest_first(tiny_config):
    from ui.request_limits import LeanStateHolder

    demo = build_app(tiny_config)
    demo.state_session_capacity = 3
    holder = LeanStateHolder()
    holder.set_blocks(demo)
    for n in range(5):
        holder[f"s{n}"]
    holder["s2"]  # used again: the most recent
    holder["s5"]
    assert list(holder.session_data) == ["s4", "s2", "s5"]
