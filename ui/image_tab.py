"""Generation > Image: a prompt in, images out, with seeds that reproduce them.

The handler streams: cheap previews while the model denoises, then the final PNGs. It waits on
the model's stream with a heartbeat, because Gradio can only close a generator (Stop, or
`job.cancel()` from gradio_client) while it waits at a yield; closing it stops the pipeline
after its current step.
"""

from __future__ import annotations

import threading
import time
from contextlib import closing
from pathlib import Path

import gradio as gr
from typing_extensions import TypedDict  # pydantic reads it (check_inputs) on Python < 3.12

from pipelines.image.contract import ImageParams, ImageResult
from pipelines.image.png import save_png
from ui.common import (
    control_updates,
    controls,
    describe_model,
    in_declaration_order,
    model_dropdown,
    output_path,
    start_and_stop,
)
from ui.handlers import TabState, bind, handler, keep_errors_visible, show_waiting, wire_stop

IDLE = "Ready: describe an image and press Generate."  # the status line before the first run
TASK = "image"
EXAMPLES = [
    ["A photo of an astronaut riding a horse on the moon, highly detailed", ""],
    ["A watercolor painting of a lighthouse at sunset", "blurry, low quality"],
    ["A cozy reading nook with a cat, warm light, digital art", "text, watermark"],
]
# The parameters under "Parameters", in this order (the negative prompt sits by the prompt, the
# initial image and how it is used under "Start from an image").
PARAMETERS = ["steps", "guidance_scale", "width", "height", "num_images", "seed", "scheduler", "preview_every"]
IMAGE_TO_IMAGE = ["init_image", "strength", "init_fit"]

# How often (seconds) a handler waiting for the next step yields a no-op update; bounds how long
# Stop waits before the handler is closed and the pipeline told to stop after its current step.
HEARTBEAT_S = 0.5


def save_gallery(result: ImageResult) -> tuple[list, dict]:
    """PNG files (parameters embedded as PNG text) captioned with their seeds, and the result's JSON."""
    gallery = []
    for item in result["images"]:
        path = output_path(f"seed-{item['seed']}.png")  # deleted after a while: Gradio serves its own copy
        save_png(item["image"], path, item["params"])
        gallery.append((path, f"seed {item['seed']}"))
    return gallery, {"seeds": result["seeds"], "parameters": result["parameters"], "stopped": False}


class Outcome(TypedDict, total=False):
    """The fields of a run's JSON result that its status line reads (the page sends them back)."""

    seeds: list[int]
    stopped: bool
    steps_done: int
    steps_total: int
    preview_kept: bool
    seconds: float


def describe_outcome(info: Outcome | None) -> str:
    """The status line once a run has ended: what it made, or where it was stopped."""
    if not info:
        return ""
    if info.get("stopped"):
        done, total = info.get("steps_done", 0), info.get("steps_total", 0)
        where = f"after step {done} of {total}" if done else "before the first step"
        kept = "; the last preview is kept above" if info.get("preview_kept") else ""
        return f"**Stopped** {where}: no finished image{kept}."
    seeds = ", ".join(map(str, info.get("seeds", [])))
    count = len(info.get("seeds", []))
    return f"**Done** — {count} image{'s' * (count != 1)} in {info.get('seconds', 0):.1f} s (seed {seeds})."


@handler(gpu=TASK, texts=["prompt", "negative_prompt"], stoppable=True)
def generate_image(
    tab: TabState,
    prompt: str,
    model_name: str,
    request: gr.Request = None,
    progress=gr.Progress(),
    init_image: str | None = None,
    *,
    stop: threading.Event,
    **params,
):
    """Generate images from a prompt, from noise or from `init_image` (image to image, `strength`
    of it redrawn). Streams previews every `preview_every` steps (0 = none), then returns PNG
    files (parameters embedded as PNG text) and, as JSON, their seeds, the parameters and the
    seconds taken. `scheduler` is one of the model's schedulers (empty: the model's default)."""
    started = time.perf_counter()
    params["init_image"] = init_image  # named in the signature: a file input without a default needs `= None`
    generator = tab.registry.get(TASK, model_name)
    params = generator.check_inputs(prompt, generator.default_params(**params))  # bad input fails at once
    # Every step and heartbeat yields, so that a Stop can close this handler between steps.
    # Until a preview is shown, those yields clear the outputs (the previous run's images and
    # seeds go away as this run starts): cheap, where gr.skip() makes Gradio rebuild the
    # Gallery component on the server's event loop each time, taking CPU from the model
    # (`python -m benchmarks.request_overhead` measures what a request costs besides the model).
    # The third output, the server-side list of this run's PNGs, is emptied likewise.
    no_change = (None, None, [])
    result, steps = None, (0, 0)
    with closing(generator.stream(prompt, params, stop=stop, idle_every_s=HEARTBEAT_S)) as events:
        for event in events:
            if event["kind"] == "step":
                steps = (event["done"], event["total"])
                progress(steps, desc=f"Denoising: step {event['done']} of {event['total']}", unit="steps")
            elif event["kind"] == "preview":
                yield (
                    [(image, f"preview after step {event['done']}/{steps[1]}") for image in event["images"]],
                    None,
                    [],
                )
                no_change = (gr.skip(), gr.skip(), gr.skip())  # keep the preview on screen
                continue
            elif event["kind"] == "result":
                result = event["result"]
                break
            yield no_change
    if not result or result["stopped"]:  # Stop: the outputs keep the last preview, the JSON says where it stopped
        yield gr.skip(), stopped_info(steps, preview_kept=no_change[0] is not None), []
        return
    gallery, info = save_gallery(result)
    yield gallery, info | {"seconds": round(time.perf_counter() - started, 2)}, [path for path, _caption in gallery]


def stopped_info(steps: tuple[int, int], preview_kept: bool) -> dict:
    done, total = steps
    return {"seeds": [], "stopped": True, "steps_done": done, "steps_total": total, "preview_kept": preview_kept}


@handler()
def stop_image(tab: TabState, request: gr.Request):
    tab.stops.stop(request, "generate_image")


@handler(private=True)
def show_outcome(info: Outcome | None) -> str:
    return describe_outcome(info)


@handler(private=True)
def select_image(info: dict | None, evt: gr.SelectData):
    """Clicking an image puts its seed in the Seed field (generating again reproduces it) and
    makes it the one "Use as input" takes."""
    seeds = (info or {}).get("seeds") or []
    if not isinstance(evt.index, int) or not 0 <= evt.index < len(seeds):
        return gr.skip(), gr.skip()
    return seeds[evt.index], evt.index


@handler()
def use_as_input(produced: list | None, selected: int | None):
    """The selected image of the last result (the first if none is) becomes the initial image.
    Both inputs are gr.State, kept on the server: the PNGs this session's last run wrote, never
    a path a client sends (the gallery's value comes from the client)."""
    if not produced:
        raise gr.Error("There is no image to use yet: generate one first.", print_exception=False)
    path = Path(produced[selected if isinstance(selected, int) and 0 <= selected < len(produced) else 0])
    if not path.is_file():  # deleted after a while (ui.common.OUTPUT_MAX_AGE_S)
        raise gr.Error("That image is no longer kept on the server: generate it again.", print_exception=False)
    return str(path)


@handler(private=True)
def show_model(tab: TabState, model_name: str):
    entry = tab.config.entry(TASK, model_name)
    return (
        describe_model(entry),
        entry.defaults.negative_prompt,
        *control_updates(ImageParams, PARAMETERS + IMAGE_TO_IMAGE[1:], entry, entry.defaults),
    )


def build(config, registry) -> None:
    state = TabState(config, registry, TASK)

    with gr.Tab("Image", id="image"):
        with gr.Row():
            with gr.Column(scale=3):
                prompt = gr.Textbox(label="Prompt", lines=3, placeholder="Describe the image…")
                parameters = controls(ImageParams, ["negative_prompt"], state.default)
                model = model_dropdown(state.names)
                generate, stop = start_and_stop("Generate")
                with gr.Accordion("Start from an image (image to image)", open=False):
                    parameters |= controls(
                        ImageParams, IMAGE_TO_IMAGE, state.default, max_upload_bytes=state.upload_limit
                    )
                with gr.Accordion("Parameters", open=False):
                    parameters |= controls(ImageParams, PARAMETERS, state.default)
                model_info = gr.Markdown(describe_model(state.default))
            with gr.Column(scale=3):
                # interactive=False: an output, never an upload box ("Drop Media Here")
                gallery = gr.Gallery(label="Images", format="png", columns=2, height="auto", interactive=False)
                status = gr.Markdown(IDLE, label="Status", min_height=24)
                use_input = gr.Button(
                    "Use as input", variant="secondary"
                )  # full size: a small grey one looked disabled
                info = gr.JSON(label="Seeds and parameters (the JSON result API clients receive)")
                selected = gr.State(None)
                produced = gr.State([])  # the last result's PNG paths: what "Use as input" may take
        gr.Examples(EXAMPLES, inputs=[prompt, parameters["negative_prompt"]], label="Examples")

        show_waiting(generate, status)  # before the event: its pending state would hide the change
        event = generate.click(
            bind(generate_image, state),
            inputs=[prompt, model],
            inputs_kwargs=in_declaration_order(ImageParams, parameters),
            outputs=[gallery, info, produced],
            api_name="generate_image",
            concurrency_id=TASK,
            show_progress_on=[status],  # queue place, step k of N and errors by the images, not over them
        )
        event.success(bind(show_outcome), info, status, api_visibility="private", queue=False, show_progress="hidden")
        keep_errors_visible(event, state, status)
        wire_stop(stop, event, state, stop_image)
        gallery.select(bind(select_image), info, [parameters["seed"], selected], api_visibility="private", queue=False)
        use_input.click(
            bind(use_as_input), [produced, selected], parameters["init_image"], api_visibility="private", queue=False
        )
        # .input: the visitor's own choice of model. Only that may reset the controls to the model's
        # defaults; a .change listener also runs on values set by the page itself.
        model.input(
            bind(show_model, state),
            model,
            [
                model_info,
                parameters["negative_prompt"],
                *[parameters[name] for name in PARAMETERS + IMAGE_TO_IMAGE[1:]],
            ],
            api_visibility="private",
            queue=False,
        )
