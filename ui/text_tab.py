"""Generation > Text: a prompt in, the continuation streamed token by token."""

from __future__ import annotations

import gradio as gr

from pipelines.config import AppConfig
from pipelines.gpu import text_generation_seconds, on_gpu
from pipelines.registry import ModelRegistry
from pipelines.text_generation import PRESETS, TextParams
from ui.common import StopFlags, describe_model, model_dropdown, show_errors

EXAMPLES = [
    ["In a shocking finding, scientists discovered a herd of unicorns living in a remote valley."],
    ["Once upon a time, in a small village by the sea,"],
    ["The three most important ideas in machine learning are"],
]

# The preset dropdown's first choice: the selected model's own defaults from models.yaml.
MODEL_DEFAULTS = "Model defaults"

# The sliders a preset sets, in the order of the preset event's outputs.
SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "repetition_penalty", "do_sample")


def format_stats(update: dict) -> str:
    if not update.get("done"):
        return f"Generating… {update['new_tokens']} tokens"
    parts = [f"{update['new_tokens']} tokens"]
    if update.get("ttft_s") is not None:
        parts.append(f"first token after {update['ttft_s']:.2f} s")
    if update.get("tokens_per_s") is not None:
        parts.append(f"{update['tokens_per_s']:.1f} tokens/s")
    parts.append(f"seed {update['seed']}")
    if update.get("truncated_tokens"):
        parts.append(f"prompt truncated: its first {update['truncated_tokens']} tokens were dropped to fit the context")
    return ("Stopped: " if update.get("stopped") else "") + " · ".join(parts)


def preset_values(config: AppConfig, model_name: str, preset: str) -> tuple:
    """The sampling sliders' values for `preset` on `model_name` (its defaults for MODEL_DEFAULTS)."""
    entry = config.entry("text", model_name)
    params = TextParams.from_defaults(entry) if preset == MODEL_DEFAULTS else TextParams.from_preset(entry, preset)
    return tuple(getattr(params, field) for field in SAMPLING_FIELDS)


def build(config: AppConfig, registry: ModelRegistry) -> None:
    names = config.names("text")
    default = config.entry("text", names[0])
    stops = StopFlags()

    @on_gpu(text_generation_seconds)  # ZeroGPU: a GPU for as long as the request needs; a no-op elsewhere
    @show_errors
    def generate_text(
        prompt: str, model_name: str, max_new_tokens: float, temperature: float, top_p: float, top_k: float,
        repetition_penalty: float, do_sample: bool, seed: float, truncate_prompt: bool = False,
        request: gr.Request = None, progress=gr.Progress(track_tqdm=True),
    ):
        """Continue a prompt; streams the generated text (a longer prefix with every update) and a stats line.
        seed -1 picks a random seed (the stats line names it); truncate_prompt drops the beginning of a
        prompt too long for the model's context instead of refusing it."""
        generator = registry.get("text", model_name)
        params = generator.default_params(
            max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
            repetition_penalty=repetition_penalty, do_sample=do_sample, seed=seed, truncate_prompt=truncate_prompt,
        )
        stop = stops.begin(request)
        try:
            # Closing this generator (Stop, a cancelled API job, a client gone) closes stream(),
            # which sets `stop` and so ends generate() itself, freeing the model at once.
            for update in generator.stream(prompt, params, stop=stop):
                yield update["text"], format_stats(update)
        finally:
            stops.end(request, stop)

    def stop_text(request: gr.Request):
        stops.stop(request)

    def show_model(model_name: str):
        entry = config.entry("text", model_name)
        return (
            describe_model(entry),
            gr.update(value=entry.defaults.max_new_tokens, maximum=entry.limits.max_new_tokens),
            MODEL_DEFAULTS,
            *preset_values(config, model_name, MODEL_DEFAULTS),
        )

    with gr.Tab("Text", id="text"):
        with gr.Row():
            with gr.Column(scale=3):
                prompt = gr.Textbox(label="Prompt", lines=4, placeholder="Type the beginning of a text…")
                model = model_dropdown(names)
                with gr.Row():
                    generate = gr.Button("Generate", variant="primary")
                    stop = gr.Button("Stop", variant="stop")
                with gr.Accordion("Parameters", open=False):
                    d = default.defaults
                    preset = gr.Dropdown([MODEL_DEFAULTS, *PRESETS], value=MODEL_DEFAULTS, label="Preset",
                                         info="Sets the sampling controls below; adjust them freely afterwards.")
                    max_new_tokens = gr.Slider(1, default.limits.max_new_tokens, value=d.max_new_tokens, step=1, label="Max new tokens")
                    do_sample = gr.Checkbox(value=d.do_sample, label="Sample (off = greedy)")
                    temperature = gr.Slider(0.05, 2.0, value=d.temperature, step=0.05, label="Temperature")
                    top_p = gr.Slider(0.05, 1.0, value=d.top_p, step=0.01, label="Top-p")
                    top_k = gr.Slider(0, 200, value=d.top_k, step=1, label="Top-k (0 = off)")
                    repetition_penalty = gr.Slider(1.0, 2.0, value=d.repetition_penalty, step=0.01, label="Repetition penalty")
                    seed = gr.Number(value=-1, precision=0, label="Seed (-1 = random; the seed used is shown after generating)")
                    truncate_prompt = gr.Checkbox(
                        value=False, label="Truncate a too-long prompt from the left (off = refuse it with a message)")
                model_info = gr.Markdown(describe_model(default))
            with gr.Column(scale=3):
                output = gr.Textbox(label="Generated text", lines=12, interactive=False)
                stats = gr.Markdown(label="Stats")
        gr.Examples(EXAMPLES, inputs=[prompt], label="Examples")

        sampling = [temperature, top_p, top_k, repetition_penalty, do_sample]  # SAMPLING_FIELDS' order
        event = generate.click(
            generate_text,
            inputs=[prompt, model, max_new_tokens, temperature, top_p, top_k, repetition_penalty, do_sample, seed, truncate_prompt],
            outputs=[output, stats], api_name="generate_text", concurrency_id="text",
        )
        stop.click(stop_text, None, None, cancels=[event], api_visibility="private", queue=False)
        preset.input(
            lambda model_name, name: preset_values(config, model_name, name), [model, preset], sampling,
            api_visibility="private", queue=False,
        )
        model.change(
            show_model, model, [model_info, max_new_tokens, preset, *sampling], api_visibility="private", queue=False,
        )
