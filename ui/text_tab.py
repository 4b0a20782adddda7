"""Generation > Text: a prompt in, the continuation streamed token by token."""

from __future__ import annotations

from contextlib import closing

import gradio as gr

from pipelines.core.errors import InputError
from pipelines.core.limits import check_text
from pipelines.core.params import from_defaults
from pipelines.studio import on_gpu
from pipelines.text.contract import PRESETS, TextParams, TextUpdate
from ui.common import (
    StopFlags, control_updates, controls, describe_model, details_json, in_declaration_order, model_dropdown, private_handler,
    show_errors,
)
from ui.token_view import build_explorer, build_token_view

TASK = "text"
EXAMPLES = [
    ["In a shocking finding, scientists discovered a herd of unicorns living in a remote valley."],
    ["Once upon a time, in a small village by the sea,"],
    ["The three most important ideas in machine learning are"],
]

# The preset dropdown's first choice: the selected model's own defaults from models.yaml.
MODEL_DEFAULTS = "Model defaults"
# The parameters shown, in this order, under "Parameters" (all of TextParams but the token view's
# switch, shown with the view; the API takes them by these names, in TextParams' order). A
# preset sets the sampling ones.
PARAMETERS = ["max_new_tokens", "do_sample", "temperature", "top_p", "top_k", "repetition_penalty", "seed", "truncate_prompt"]
SAMPLING = ["temperature", "top_p", "top_k", "repetition_penalty", "do_sample"]


def format_stats(update: TextUpdate) -> str:
    if not update["done"]:
        return f"Generating… {update['new_tokens']} tokens"
    parts = [f"{update['new_tokens']} tokens"]
    if update["ttft_s"] is not None:
        parts.append(f"first token after {update['ttft_s']:.2f} s")
    if update["tokens_per_s"] is not None:
        parts.append(f"{update['tokens_per_s']:.1f} tokens/s")
    parts.append(f"seed {update['seed']}")
    if update["truncated_tokens"]:
        chars = f"{update['truncated_chars']:,} characters and then " if update["truncated_chars"] else ""
        parts.append(f"prompt truncated: its first {chars}{update['truncated_tokens']} tokens were dropped to fit the context")
    return ("Stopped: " if update["stopped"] else "") + " · ".join(parts)


def preset_params(entry, preset: str) -> TextParams:
    """The model's defaults, with a named preset's sampling fields on top (MODEL_DEFAULTS: none)."""
    if preset != MODEL_DEFAULTS and preset not in PRESETS:
        raise InputError("preset", f"unknown preset {preset!r}; choose one of {', '.join(map(repr, PRESETS))}")
    return from_defaults(TextParams, entry.defaults, **PRESETS.get(preset, {}))


def build(config, registry) -> None:
    names = config.names(TASK)
    default = config.entry(TASK, names[0])
    stops = StopFlags()

    @on_gpu(TASK)  # ZeroGPU: a GPU for as long as the request needs; a no-op elsewhere
    @show_errors
    def generate_text(prompt: str, model_name: str, request: gr.Request = None,
                      progress=gr.Progress(track_tqdm=True), **params):
        """Continue a prompt; streams the generated text (a longer prefix with every update), a stats
        line and the update as JSON (text, new_tokens, ttft_s, tokens_per_s, seed, truncated_tokens, ...).
        seed -1 picks a random seed (the stats line names it); truncate_prompt drops the beginning of a
        prompt too long for the model's context instead of refusing it."""
        truncate = params.get("truncate_prompt")
        truncating = config.entry(TASK, model_name).defaults.truncate_prompt if truncate is None else truncate
        check_text(prompt, "prompt", None if truncating else config.settings.max_text_chars)  # a truncated prompt is cut instead
        generator = registry.get(TASK, model_name)
        stop = stops.begin(request)
        try:
            # Closing this generator (Stop, a cancelled API job, a client gone) closes stream(),
            # which sets `stop` and so ends generate() itself, freeing the model at once.
            with closing(generator.stream(prompt, generator.default_params(**params), stop=stop)) as updates:
                for update in updates:
                    yield update["text"], format_stats(update), update
        finally:
            stops.end(request, stop)

    @private_handler
    def stop_text(request: gr.Request):
        stops.stop(request)

    @private_handler
    def apply_preset(model_name: str, preset: str):
        entry = config.entry(TASK, model_name)
        return control_updates(TextParams, SAMPLING, entry, preset_params(entry, preset))

    @private_handler
    def show_model(model_name: str):
        entry = config.entry(TASK, model_name)
        return describe_model(entry), MODEL_DEFAULTS, *control_updates(TextParams, list(parameters), entry, entry.defaults)

    with gr.Tab("Text", id="text"):
        with gr.Row():
            with gr.Column(scale=3):
                prompt = gr.Textbox(label="Prompt", lines=4, placeholder="Type the beginning of a text…")
                model = model_dropdown(names)
                with gr.Row():
                    generate = gr.Button("Generate", variant="primary")
                    stop = gr.Button("Stop", variant="stop")
                with gr.Accordion("Parameters", open=False):
                    preset = gr.Dropdown([MODEL_DEFAULTS, *PRESETS], value=MODEL_DEFAULTS, label="Preset",
                                         info="Sets the sampling controls below; adjust them freely afterwards.")
                    parameters = controls(TextParams, PARAMETERS, default, default.defaults)
                model_info = gr.Markdown(describe_model(default))
            with gr.Column(scale=3):
                output = gr.Textbox(label="Generated text", lines=12, interactive=False)
                stats = gr.Markdown(label="Stats")
                token_view = build_token_view(default)
                parameters |= token_view.controls
                details = details_json()
        gr.Examples(EXAMPLES, inputs=[prompt], label="Examples")
        build_explorer(config, registry, model, prompt)

        event = generate.click(
            generate_text, inputs=[prompt, model], inputs_kwargs=in_declaration_order(TextParams, parameters),
            outputs=[output, stats, details],
            api_name="generate_text", concurrency_id=TASK,
        )
        token_view.wire(details)
        stop.click(stop_text, None, None, cancels=[event], api_visibility="private", queue=False)
        preset.input(apply_preset, [model, preset], [parameters[name] for name in SAMPLING], api_visibility="private", queue=False)
        model.change(show_model, model, [model_info, preset, *parameters.values()], api_visibility="private", queue=False)
