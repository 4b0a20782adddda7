"""ML Studio: spam classification and text/image generation in one Gradio app.

The entry point: it reads models.yaml, builds one tab per task of the task table
(`pipelines/tasks.py`) and wires the queues. Models, devices and all the ML live in
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
from pipelines.classification import trained_models
from pipelines.core.config import AppConfig, load_config
from pipelines.core.errors import ConfigError
from pipelines.core.registry import ModelRegistry
from pipelines.tasks import TASKS
from ui import status_panel, train_tab, uploads

TITLE = "ML Studio — classify and generate"

# Gradio's copies of the files requests return (images, CSVs): every 10 minutes, those older
# than an hour are deleted, so that a long-running app does not fill its disk.
OUTPUT_CACHE_LIFETIME_S = (600, 3600)

# Requests waiting per event queue before new ones are turned away with "queue full".
DEFAULT_MAX_QUEUE = 64

# How often Gradio's queue loop looks for new requests when it is free (its default: every 1 ms)
# and for progress to send (default 10 ms). On 2 vCPUs the 1 ms polling costs 3% of a core while
# idle and ~130 ms of CPU per image request, taken from the model computing on both cores
# (benchmarks/image.py: the app's pipeline ran ~8% slower than the same pipeline alone). At 10 ms
# a request starts at most 10 ms later; progress bars still update 20 times a second.
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
    if config.training.enabled:
        trained_models.register_all(config)  # models trained here before: offered again, like models.yaml entries
    with gr.Blocks(title=TITLE, delete_cache=OUTPUT_CACHE_LIFETIME_S) as demo:
        gr.Markdown(f"# {TITLE}\nThe two core uses of machine learning: **classification** and **generation**.")
        with gr.Tabs():
            build_task_tabs(config, registry)
            train_tab.build(config, registry)  # fine-tune a classifier (models.yaml `training:`)
        status_panel.build(config, registry)  # loaded models, device/dtype, memory: shared by all tabs
    demo.registry = registry  # for tests and preloading
    share_task_queues(demo, config)
    uploads.refuse_non_files(demo)  # an input naming a folder of the upload folder would stop its clean-up
    return demo


def build_task_tabs(config: AppConfig, registry: ModelRegistry) -> None:
    """One tab per task, in the table's order; tasks of one `tab_group` share a top-level tab."""
    for group, tasks in groupby(TASKS.values(), key=lambda task: task.tab_group):
        tasks = list(tasks)
        if group is None:
            for task in tasks:
                importlib.import_module(task.tab).build(config, registry)
            continue
        with gr.Tab(group, id=group.lower()):
            with gr.Tabs():
                for task in tasks:
                    importlib.import_module(task.tab).build(config, registry)


def enable_queue(demo: gr.Blocks, max_size: int | None = DEFAULT_MAX_QUEUE) -> gr.Blocks:
    """demo.queue(max_size), polling less often than Gradio's default (QUEUE_POLL_S)."""
    demo.queue(max_size=max_size)
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
    return {"show_error": True, "max_file_size": f"{config.settings.max_upload_mb:g}mb"}


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
    parser.add_argument("--config", default=None, help="models config file (default: $MODELS_CONFIG, else the models.yaml next to app.py)")
    # None lets Gradio read GRADIO_SERVER_NAME / GRADIO_SERVER_PORT, which Spaces set.
    parser.add_argument("--host", default=None, help="interface to bind, 0.0.0.0 for every interface (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port to listen on (default: $GRADIO_SERVER_PORT, else the first free port from 7860)")
    parser.add_argument("--share", action="store_true", help="also create a temporary public gradio.live link")
    parser.add_argument(
        "--max-queue", type=positive_int, default=DEFAULT_MAX_QUEUE, metavar="N",
        help=f"requests allowed to wait in the queue; more are turned away with 'queue full' (default: {DEFAULT_MAX_QUEUE})",
    )
    parser.add_argument(
        "--concurrency", type=positive_int, default=None, metavar="N",
        help="requests each task runs at once, the rest wait in the queue (default: settings.gpu_concurrency / "
        "cpu_concurrency in the models file, 1 and 1)",
    )
    # On ZeroGPU the weights must be loaded in the main process before launch (then ZeroGPU moves them
    # to each GPU worker); loading inside a GPU call would repeat it for every new worker.
    parser.add_argument(
        "--preload", action=argparse.BooleanOptionalAction, default=zerogpu.zero_gpu_active(),
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
            except Exception as err:  # noqa: BLE001 - a model that fails to load must not stop the app
                logging.error("%s", err)
    registry.start_idle_reaper()
    demo = build_app(config, registry)
    enable_queue(demo, max_size=args.max_queue)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, **launch_options(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
