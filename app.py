"""ML Studio: spam classification and text/image generation in one Gradio app.

The UI only: it reads models.yaml, builds one tab per task from it and wires the events.
Models, devices and all the ML live in `pipelines/`; each tab's layout lives in `ui/`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import gradio as gr

from pipelines.config import AppConfig, ConfigError, load_config
from pipelines.registry import ModelRegistry
from ui import classification_tab, image_tab, text_tab

TITLE = "ML Studio — classify and generate"

# Requests waiting per event queue before new ones are turned away with "queue full".
DEFAULT_MAX_QUEUE = 64


def build_app(config: AppConfig, registry: ModelRegistry | None = None) -> gr.Blocks:
    registry = registry or ModelRegistry(config)
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"# {TITLE}\nThe two core uses of machine learning: **classification** and **generation**.")
        with gr.Tabs():
            classification_tab.build(config, registry)
            with gr.Tab("Generation", id="generation"):
                with gr.Tabs():
                    text_tab.build(config, registry)
                    image_tab.build(config, registry)
    demo.registry = registry  # for tests and preloading
    return demo


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=None, help="models config file (default: $MODELS_CONFIG or ./models.yaml)")
    parser.add_argument("--host", default=None, help="interface to bind (default: $GRADIO_SERVER_NAME or 127.0.0.1; Spaces set it)")
    parser.add_argument("--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--share", action="store_true", help="create a temporary public gradio.live link")
    parser.add_argument("--max-queue", type=int, default=DEFAULT_MAX_QUEUE, help="requests allowed to wait in the queue")
    parser.add_argument("--preload", action="store_true", help="load each task's default model at start-up instead of on first use")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    registry = ModelRegistry(config)
    if args.preload:
        for task in ("classification", "text", "image"):
            try:
                registry.get(task, config.default_name(task))
            except Exception as err:  # noqa: BLE001 - a model that fails to load must not stop the app
                logging.error("%s", err)
    registry.start_idle_reaper()
    demo = build_app(config, registry)
    demo.queue(max_size=args.max_queue)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share)
    return 0


if __name__ == "__main__":
    sys.exit(main())
