"""Generation > Image: a prompt in, images out, with seeds that reproduce them."""

from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr

from pipelines.config import AppConfig
from pipelines.gpu import image_generation_seconds, on_gpu
from pipelines.image_generation import save_png
from pipelines.registry import ModelRegistry
from ui.common import StopFlags, describe_model, model_dropdown, show_errors

EXAMPLES = [
    ["A photo of an astronaut riding a horse on the moon, highly detailed"],
    ["A watercolor painting of a lighthouse at sunset"],
    ["A cozy reading nook with a cat, warm light, digital art"],
]

OUTPUT_DIR = Path(tempfile.gettempdir()) / "ml-studio-images"


def build(config: AppConfig, registry: ModelRegistry) -> None:
    names = config.names("image")
    default = config.entry("image", names[0])
    stops = StopFlags()

    @on_gpu(image_generation_seconds)  # ZeroGPU: a GPU for as long as the request needs; a no-op elsewhere
    @show_errors
    def generate_image(
        prompt: str, model_name: str, negative_prompt: str, steps: float, guidance_scale: float,
        width: float, height: float, num_images: float, seed: float,
        request: gr.Request = None, progress=gr.Progress(track_tqdm=True),
    ):
        """Generate images from a prompt; returns PNG files (parameters embedded as PNG text) and their seeds."""
        generator = registry.get("image", model_name)
        params = generator.default_params(
            negative_prompt=negative_prompt, steps=steps, guidance_scale=guidance_scale, width=width, height=height,
            num_images=num_images, seed=seed,
        )

        def on_step(done: int, total: int):
            progress((done, total), desc="Denoising", unit="steps")

        stop = stops.begin(request)
        try:
            results = generator(prompt, params, on_step=on_step, stop=stop)
        finally:
            stops.end(request, stop)
        if not results:
            raise gr.Error("Stopped before the images were finished.", print_exception=False)
        OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
        gallery = []
        for result in results:
            path = tempfile.NamedTemporaryFile(dir=OUTPUT_DIR, suffix=".png", delete=False).name
            save_png(result["image"], path, result["params"])
            gallery.append((path, f"seed {result['seed']}"))
        return gallery, {"seeds": [r["seed"] for r in results], "params": results[0]["params"]}

    def stop_image(request: gr.Request):
        stops.stop(request)

    def show_model(model_name: str):
        entry = config.entry("image", model_name)
        d, lim = entry.defaults, entry.limits
        size = dict(minimum=lim.min_size, maximum=lim.max_size)
        return (
            describe_model(entry),
            gr.update(value=d.steps, minimum=lim.min_steps, maximum=lim.max_steps),
            gr.update(value=d.guidance_scale, maximum=lim.max_guidance_scale),
            gr.update(value=d.width, **size), gr.update(value=d.height, **size),
            gr.update(maximum=lim.max_images), d.negative_prompt,
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
                    steps = gr.Slider(lim.min_steps, lim.max_steps, value=d.steps, step=1, label="Steps")
                    guidance = gr.Slider(0.0, lim.max_guidance_scale, value=d.guidance_scale, step=0.5, label="Guidance scale")
                    with gr.Row():
                        width = gr.Slider(lim.min_size, lim.max_size, value=d.width, step=8, label="Width")
                        height = gr.Slider(lim.min_size, lim.max_size, value=d.height, step=8, label="Height")
                    num_images = gr.Slider(1, lim.max_images, value=1, step=1, label="Number of images")
                    seed = gr.Number(value=-1, precision=0, label="Seed (-1 = random)")
                model_info = gr.Markdown(describe_model(default))
            with gr.Column(scale=3):
                gallery = gr.Gallery(label="Images", format="png", columns=2, height="auto")
                info = gr.JSON(label="Seeds and parameters")
        gr.Examples(EXAMPLES, inputs=[prompt], label="Examples")

        event = generate.click(
            generate_image,
            inputs=[prompt, model, negative_prompt, steps, guidance, width, height, num_images, seed],
            outputs=[gallery, info], api_name="generate_image", concurrency_id="image",
        )
        stop.click(stop_image, None, None, cancels=[event], api_visibility="private", queue=False)
        model.change(
            show_model, model, [model_info, steps, guidance, width, height, num_images, negative_prompt],
            api_visibility="private", queue=False,
        )
