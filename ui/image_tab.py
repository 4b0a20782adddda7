"""Generation > Image: a prompt in, images out, with seeds that reproduce them.

The handler streams: cheap previews while the model denoises, then the final PNGs. The
pipeline runs in a worker thread so that the handler can wake up often: Gradio can only
close a generator (Stop, or `job.cancel()` from gradio_client) while it waits at a yield, and
closing it sets the pipeline's Stop flag.
"""

from __future__ import annotations

import queue
from concurrent.futures import ThreadPoolExecutor

import gradio as gr

from pipelines.config import AppConfig
from pipelines.gpu import image_generation_seconds, on_gpu
from pipelines.image_generation import offered_schedulers, save_png
from pipelines.openmp import release_openmp_pool
from pipelines.registry import ModelRegistry
from ui.common import StopFlags, describe_model, model_dropdown, output_path, show_errors

EXAMPLES = [
    ["A photo of an astronaut riding a horse on the moon, highly detailed", ""],
    ["A watercolor painting of a lighthouse at sunset", "blurry, low quality"],
    ["A cozy reading nook with a cat, warm light, digital art", "text, watermark"],
]


# How often (seconds) a handler waiting for the next step yields a no-op update; bounds how long
# Stop waits before the handler is closed and the pipeline told to stop after its current step.
HEARTBEAT_S = 0.5


def Slider(*args, **kwargs) -> gr.Slider:  # noqa: N802 - stands in for gr.Slider
    """A gr.Slider that leaves range checks to the model's own limits: Gradio's check would
    reject an API value with "Value 21 is greater than maximum value 20." (no field name), and
    against the bounds of the model shown first rather than the model the request names.
    (Replacing `preprocess` on the instance, not in a subclass: Gradio writes a .pyi file next
    to every module that subclasses a component.)"""
    slider = gr.Slider(*args, **kwargs)
    slider.preprocess = lambda payload: payload
    return slider


def save_gallery(results: list[dict]) -> tuple[list, dict]:
    """PNG files (parameters embedded as PNG text) captioned with their seeds, and the seeds/params JSON."""
    gallery = []
    for result in results:
        path = output_path(f"seed-{result['seed']}.png")  # deleted after a while: Gradio serves its own copy
        save_png(result["image"], path, result["params"])
        gallery.append((path, f"seed {result['seed']}"))
    return gallery, {"seeds": [r["seed"] for r in results], "params": results[0]["params"]}


# Long-lived worker threads: a fresh thread per request starts with a cold memory arena
# (benchmarks/image.py's app/raw ratio went from 1.24 to 1.15, within its noise). Each frees
# its OpenMP pool after every image (pipelines/openmp.py). A few, since a stopped run may still
# be finishing its step when the next request starts.
WORKERS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="generate-image")


def run_in_thread(generate, events: queue.Queue) -> None:
    """Run `generate()` in a worker thread, ending with ("done", result) or ("error", exception) in `events`."""

    def work():
        try:
            events.put(("done", generate()))
        except Exception as err:  # noqa: BLE001 - re-raised in the handler, which shows it
            events.put(("error", err))
        finally:
            release_openmp_pool()  # this worker idles until the next image: free its OpenMP threads

    WORKERS.submit(work)


def build(config: AppConfig, registry: ModelRegistry) -> None:
    names = config.names("image")
    default = config.entry("image", names[0])
    stops = StopFlags()

    @on_gpu(image_generation_seconds)  # ZeroGPU: a GPU for as long as the request needs; a no-op elsewhere
    @show_errors
    def generate_image(
        prompt: str, model_name: str, negative_prompt: str, steps: float, guidance_scale: float,
        width: float, height: float, num_images: float, seed: float, scheduler: str | None = None,
        preview_every: float = 0, request: gr.Request = None, progress=gr.Progress(),
    ):
        """Generate images from a prompt. Streams previews every `preview_every` steps (0 = none),
        then returns PNG files (parameters embedded as PNG text) and their seeds and parameters.
        `scheduler` is one of the model's schedulers (empty: the model's default)."""
        generator = registry.get("image", model_name)
        params = generator.default_params(
            negative_prompt=negative_prompt, steps=steps, guidance_scale=guidance_scale, width=width, height=height,
            num_images=num_images, seed=seed, scheduler=scheduler or None,
        )
        params = generator.check_inputs(prompt, params)  # bad input fails before the worker starts
        events: queue.Queue = queue.Queue()  # ("step", (done, total)), ("preview", (done, images)), then the end
        callbacks = {"on_step": lambda done, total: events.put(("step", (done, total)))}
        if preview_every:  # only then: generators without previews (remote ones) need not know the arguments
            callbacks |= {"on_preview": lambda done, images: events.put(("preview", (done, images))), "preview_every": preview_every}
        stop = stops.begin(request)
        run_in_thread(lambda: generator(prompt, params, stop=stop, **callbacks), events)
        # Every step and heartbeat yields, so that a Stop can close this handler between steps.
        # Until a preview is shown, those yields clear the outputs (the previous run's images and
        # seeds go away as this run starts): cheap, where gr.skip() makes Gradio rebuild the
        # Gallery component (~4 ms of the server's event loop each time, taken from the model).
        no_change = (None, None)
        try:
            while True:
                try:
                    kind, payload = events.get(timeout=HEARTBEAT_S)
                except queue.Empty:
                    yield no_change
                    continue
                if kind == "step":
                    progress(payload, desc="Denoising", unit="steps")
                    yield no_change
                elif kind == "preview":
                    done, images = payload
                    yield [(image, f"preview after step {done}/{params.steps}") for image in images], None
                    no_change = (gr.skip(), gr.skip())  # keep the preview on screen
                elif kind == "error":
                    raise payload
                else:
                    results = payload
                    break
        finally:
            stop.set()  # the handler was closed (Stop, client cancelled) or finished: end the worker's run
            stops.end(request, stop)
        if not results:
            raise gr.Error("Stopped before the images were finished.", print_exception=False)
        yield save_gallery(results)

    def stop_image(request: gr.Request):
        stops.stop(request)

    def reuse_seed(info: dict | None, evt: gr.SelectData):
        """Clicking an image puts its seed in the Seed field: generating again reproduces it."""
        seeds = (info or {}).get("seeds") or []
        return seeds[evt.index] if evt.index is not None and evt.index < len(seeds) else gr.skip()

    def show_model(model_name: str):
        entry = config.entry("image", model_name)
        d, lim = entry.defaults, entry.limits
        size = dict(minimum=lim.min_size, maximum=lim.max_size)
        schedulers = offered_schedulers(entry)
        return (
            describe_model(entry),
            gr.update(value=d.steps, minimum=lim.min_steps, maximum=lim.max_steps),
            gr.update(value=d.guidance_scale, maximum=lim.max_guidance_scale),
            gr.update(value=d.width, **size), gr.update(value=d.height, **size),
            gr.update(maximum=lim.max_images), d.negative_prompt,
            gr.update(choices=schedulers, value=schedulers[0]),
            gr.update(value=entry.preview_every, maximum=lim.max_steps),
        )

    with gr.Tab("Image", id="image"):
        d, lim = default.defaults, default.limits
        with gr.Row():
            with gr.Column(scale=3):
                prompt = gr.Textbox(label="Prompt", lines=3, placeholder="Describe the image…")
                negative_prompt = gr.Textbox(label="Negative prompt", value=d.negative_prompt, lines=1)
                model = model_dropdown(names)
                with gr.Row():
                    generate = gr.Button("Generate", variant="primary")
                    stop = gr.Button("Stop", variant="stop")
                with gr.Accordion("Parameters", open=False):
                    steps = Slider(lim.min_steps, lim.max_steps, value=d.steps, step=1, label="Steps")
                    guidance = Slider(0.0, lim.max_guidance_scale, value=d.guidance_scale, step=0.5, label="Guidance scale")
                    with gr.Row():
                        width = Slider(lim.min_size, lim.max_size, value=d.width, step=8, label="Width")
                        height = Slider(lim.min_size, lim.max_size, value=d.height, step=8, label="Height")
                    num_images = Slider(1, lim.max_images, value=1, step=1, label="Number of images")
                    seed = gr.Number(value=-1, precision=0, label="Seed (-1 = random; click an image to reuse its seed)")
                    schedulers = offered_schedulers(default)
                    # allow_custom_value: the model's own check names the allowed schedulers,
                    # also for API clients asking another model than the one shown.
                    scheduler = gr.Dropdown(schedulers, value=schedulers[0], label="Scheduler", allow_custom_value=True)
                    preview_every = Slider(
                        0, lim.max_steps, value=default.preview_every, step=1, label="Preview every N steps (0 = off)"
                    )
                model_info = gr.Markdown(describe_model(default))
            with gr.Column(scale=3):
                gallery = gr.Gallery(label="Images", format="png", columns=2, height="auto")
                info = gr.JSON(label="Seeds and parameters")
        gr.Examples(EXAMPLES, inputs=[prompt, negative_prompt], label="Examples")

        event = generate.click(
            generate_image,
            inputs=[prompt, model, negative_prompt, steps, guidance, width, height, num_images, seed, scheduler, preview_every],
            outputs=[gallery, info], api_name="generate_image", concurrency_id="image",
        )
        stop.click(stop_image, None, None, cancels=[event], api_visibility="private", queue=False)
        gallery.select(reuse_seed, info, seed, api_visibility="private", queue=False)
        model.change(
            show_model, model,
            [model_info, steps, guidance, width, height, num_images, negative_prompt, scheduler, preview_every],
            api_visibility="private", queue=False,
        )
