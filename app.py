"""ML Studio: spam classification and text/image generation in one Gradio app.

The entry point: it reads models.yaml, runs the start-up hooks and builds the tabs of the task
table (`pipelines/tasks.py`) and wires the queues. Models, devices and all the ML live in
`pipelines/`; each tab's layout and handlers live in `ui/`. Nothing here imports torch: a
model's libraries load with the model.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from itertools import groupby

import gradio as gr

# First of the pipelines: on ZeroGPU `spaces` must patch torch before any model is loaded.
from pipelines.core import zerogpu
from pipelines.core.errors import ConfigError
from pipelines.studio import AppConfig, ModelRegistry, load_config
from pipelines.tasks import TASKS, named
from ui import model_list, status_panel, train_tab, uploads
from ui.request_limits import QueueLimits, launch_app_kwargs, limit_queue

TITLE = "ML Studio — classify and generate"

# Gradio's copies of the files requests return (images, CSVs): every 10 minutes, those older
# than an hour are deleted, so that a long-running app does not fill its disk.
OUTPUT_CACHE_LIFETIME_S = (600, 3600)

# What one client may hold of the server (ui/request_limits.py enforces them). Each queue group
# (each task's, the training's, the preview's, ...) holds at most this many waiting requests
# (--max-queue); more of that group are turned away with HTTP 503 "queue full", and the other
# groups keep answering.
DEFAULT_MAX_QUEUE = 64
# Groups whose requests hold a core for minutes (a training, up to an hour; a model's zip): a short
# backlog, never more than --max-queue. (The Train tab's preview, one at a time, takes ~1 s:
# `python -m benchmarks.hostile --only previews`.)
GROUP_MAX_QUEUE = {train_tab.CONCURRENCY_ID: 4, "trained_model_files": 8}
# One session's waiting requests, all groups together (HTTP 429 beyond). A page has at most one
# request of each of its ~10 queued events waiting (a button sends one at a time); 32 leaves room
# for a program sending /classify requests together through one client (dynamic batching serves
# them in one pass), and no session alone can fill a group of 64.
SESSION_MAX_QUEUE = 32
# ... and in these groups: one training waiting per session (the page starts one at a time), so
# that one visitor cannot hold the whole training backlog; two previews or zips.
SESSION_GROUP_MAX_QUEUE = {train_tab.CONCURRENCY_ID: 1, "train_preview": 2, "trained_model_files": 2}
# Sessions whose state Gradio keeps, least recently used evicted first (its default: 10,000).
# With ui.request_limits.LeanSessionState a new session costs ~60 KB of RSS (`python -m
# benchmarks.hostile --only sessions`), so at most ~60 MB. An open page
# stays recent (its status panel refreshes every 5 s); an evicted session that comes back starts
# from the page's defaults on the server (the Train tab's model list may need a reload).
STATE_SESSION_CAPACITY = 1000

# How often Gradio's queue loop looks for new requests when it is free (its default: every 1 ms)
# and for progress to send (default 10 ms). 10 ms: on 2 vCPUs the 1 ms polling takes CPU from the
# model computing on both cores (`python -m benchmarks.image` measures the app against the same
# pipeline alone). At 10 ms a request starts at most 10 ms later; progress bars still update 20
# times a second.
QUEUE_POLL_S = 0.01
PROGRESS_POLL_S = 0.05


def import_matplotlib_if_installed() -> None:
    """Gradio 6.31 wraps every event in a context that imports matplotlib (when it is installed)
    to switch its backend; the first events to run at once race on that import and fail with
    "'MatplotlibBackendMananger' object has no attribute '_original_backend'" (32 of the first
    1,280 requests of `python -m benchmarks.load` with matplotlib installed). Importing it once,
    before any event runs, removes the race."""
    if importlib.util.find_spec("matplotlib") is not None:
        importlib.import_module("matplotlib")


def build_app(config: AppConfig, registry: ModelRegistry | None = None) -> gr.Blocks:
    import_matplotlib_if_installed()
    registry = registry or ModelRegistry(config)
    for task in TASKS.values():
        for hook in task.on_start:  # e.g. the models trained here before: offered again, like models.yaml entries
            named(hook)(config)
    with gr.Blocks(title=TITLE, delete_cache=OUTPUT_CACHE_LIFETIME_S) as demo:
        gr.Markdown(f"# {TITLE}\nThe two core uses of machine learning: **classification** and **generation**.")
        with gr.Tabs():
            build_task_tabs(config, registry)
        status_panel.build(demo, config, registry)  # loaded models, device/dtype, memory: shared by all tabs
        model_list.build(config, registry)  # /list_models: for programs, trained models included
    demo.registry = registry  # for tests and preloading
    share_task_queues(demo, config)
    uploads.refuse_non_files(demo)  # an input naming a folder of the upload folder would stop its clean-up
    return demo


def build_task_tabs(config: AppConfig, registry: ModelRegistry) -> None:
    """Each task's own tab (the first of its `tabs`), in the table's order; tasks of one
    `tab_group` share a top-level tab. Then the tasks' other tabs (e.g. Train), top-level, in the
    table's order."""
    for group, tasks in groupby(TASKS.values(), key=lambda task: task.tab_group):
        tasks = list(tasks)
        if group is None:
            for task in tasks:
                importlib.import_module(task.tabs[0]).build(config, registry)
            continue
        with gr.Tab(group, id=group.lower()), gr.Tabs():
            for task in tasks:
                importlib.import_module(task.tabs[0]).build(config, registry)
    for task in TASKS.values():
        for tab in task.tabs[1:]:
            importlib.import_module(tab).build(config, registry)


def queue_limits(max_queue: int = DEFAULT_MAX_QUEUE) -> QueueLimits:
    return QueueLimits(max_queue, GROUP_MAX_QUEUE, SESSION_MAX_QUEUE, SESSION_GROUP_MAX_QUEUE)


def enable_queue(demo: gr.Blocks, max_size: int = DEFAULT_MAX_QUEUE) -> gr.Blocks:
    """demo.queue() with each queue group's backlog capped at `max_size` (GROUP_MAX_QUEUE for some)
    and each session's (SESSION_MAX_QUEUE), polling less often than Gradio's default (QUEUE_POLL_S)."""
    limits = queue_limits(max_size)
    groups = {fn.concurrency_id for fn in demo.fns.values() if fn.queue}
    # Gradio's own max_size counts every group together: the sum of the groups' caps never turns
    # away what they admit (None would too, but on ZeroGPU Gradio makes None 1). api_open=False:
    # queued events only through the queue (off a Space, Gradio lets /run/<api_name> skip it).
    demo.queue(max_size=sum(limits.backlog_of(group) for group in groups), api_open=False)
    limit_queue(demo, limits)
    # Gradio has no public setting for these; tests/test_app_api.py fails if an upgrade renames them.
    demo._queue.sleep_when_free = QUEUE_POLL_S
    demo._queue.progress_update_sleep_when_free = PROGRESS_POLL_S
    return demo


def share_task_queues(demo: gr.Blocks, config: AppConfig) -> None:
    """Size each task's concurrency group (the tabs name it after the task) for the device its
    models run on, so that e.g. /classify and /classify_batch wait for each other."""
    limits = {task: zerogpu.concurrency_limit(config, task) for task in TASKS}
    for block_fn in demo.fns.values():
        if block_fn.concurrency_id in limits:
            block_fn.concurrency_limit = limits[block_fn.concurrency_id]


def launch_options(config: AppConfig) -> dict:
    """What every launch of the app passes to `demo.launch` (app.py, the tests, the benchmarks)."""
    # show_error: a value Gradio itself cannot convert (NaN into an integer field, text into a slider)
    # reaches the client with Gradio's message naming the input, instead of an empty error.
    # max_file_size: Gradio refuses a larger upload while receiving it, naming the limit.
    # app_kwargs: other request bodies are limited to what the longest request needs, and sessions
    # keep no copy of the page's config (ui/request_limits.py).
    return {
        "show_error": True,
        "max_file_size": f"{config.settings.max_upload_mb:g}mb",
        "state_session_capacity": STATE_SESSION_CAPACITY,
        "app_kwargs": launch_app_kwargs(config.settings.max_text_chars),
    }


def with_concurrency(config: AppConfig, concurrency: int | None) -> AppConfig:
    """The config with --concurrency (if given) replacing both settings.*_concurrency."""
    if concurrency is None:
        return config
    settings = config.settings.model_copy(update={"gpu_concurrency": concurrency, "cpu_concurrency": concurrency})
    return config.model_copy(update={"settings": settings})


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Environment: MODELS_CONFIG (models file), GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (bind address; "
        "Hugging Face Spaces set them), HF_TOKEN (gated or private models), HF_HUB_OFFLINE=1 (use the local cache only).",
    )
    parser.add_argument(
        "--config",
        default=None,
        help="models config file (default: $MODELS_CONFIG, else the models.yaml next to app.py)",
    )
    # None lets Gradio read GRADIO_SERVER_NAME / GRADIO_SERVER_PORT, which Spaces set.
    parser.add_argument(
        "--host",
        default=None,
        help="interface to bind, 0.0.0.0 for every interface (default: $GRADIO_SERVER_NAME or 127.0.0.1)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="port to listen on (default: $GRADIO_SERVER_PORT, else the first free port from 7860)",
    )
    parser.add_argument("--share", action="store_true", help="also create a temporary public gradio.live link")
    parser.add_argument(
        "--max-queue",
        type=positive_int,
        default=DEFAULT_MAX_QUEUE,
        metavar="N",
        help=f"requests allowed to wait in each queue group (each task's, the training's: at most "
        f"{GROUP_MAX_QUEUE[train_tab.CONCURRENCY_ID]}); more are turned away with 'queue full' (default: {DEFAULT_MAX_QUEUE})",
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=None,
        metavar="N",
        help="requests each task runs at once, the rest wait in the queue (default: settings.gpu_concurrency / "
        "cpu_concurrency in the models file, 1 and 1)",
    )
    # On ZeroGPU the weights must be loaded in the main process before launch (then ZeroGPU moves them
    # to each GPU worker); loading inside a GPU call would repeat it for every new worker.
    parser.add_argument(
        "--preload",
        action=argparse.BooleanOptionalAction,
        default=zerogpu.zero_gpu_active(),
        help="load each task's default model at start-up instead of on first use (default: on for ZeroGPU Spaces, else off)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        config = with_concurrency(load_config(args.config), args.concurrency)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    registry = ModelRegistry(config)
    if args.preload:
        for task in TASKS:
            try:
                registry.get(task, config.default_name(task))
            except Exception as err:
                logging.error("%s", err)
    registry.start_idle_reaper()
    demo = build_app(config, registry)
    enable_queue(demo, max_size=args.max_queue)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, **launch_options(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
