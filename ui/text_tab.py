"""Generation > Text: a prompt in, the continuation streamed token by token."""

from __future__ import annotations

import threading
from contextlib import closing

import gradio as gr

from pipelines.core.errors import InputError
from pipelines.core.params import from_defaults
from pipelines.text.contract import PRESETS, TextParams, TextUpdate
from ui.common import (
    control_updates,
    controls,
    describe_model,
    details_json,
    in_declaration_order,
    model_dropdown,
    start_and_stop,
)
from ui.handlers import TabState, bind, handler, keep_errors_visible, show_waiting, wire_stop
from ui.token_view import VIEW_PARAMETERS, build_explorer, build_token_view

IDLE = "Ready: type a prompt and press Generate."  # the status line before the first run
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
PARAMETERS = [
    "max_new_tokens",
    "do_sample",
    "temperature",
    "top_p",
    "top_k",
    "repetition_penalty",
    "seed",
    "truncate_prompt",
]
SAMPLING = ["temperature", "top_p", "top_k", "repetition_penalty", "do_sample"]
SHOWN = PARAMETERS + VIEW_PARAMETERS  # what another model's defaults reset


def format_stats(update: TextUpdate) -> str:
    """The stats line: progress in words while generating, then what was made and how fast."""
    rate = f"{update['tokens_per_s']:.1f} tokens/s" if update["tokens_per_s"] is not None else None
    if not update["done"]:
        return " · ".join(filter(None, [f"Generating… {update['new_tokens']} tokens", rate]))
    parts = [f"{update['new_tokens']} tokens"]
    if update["ttft_s"] is not None:
        parts.append(f"first token after {update['ttft_s']:.2f} s")
    parts += [rate, f"seed {update['seed']}"]
    if update["truncated_tokens"]:
        chars = f"{update['truncated_chars']:,} characters and then " if update["truncated_chars"] else ""
        parts.append(
            f"prompt truncated: its first {chars}{update['truncated_tokens']} tokens were dropped to fit the context"
        )
    if update["stopped"]:
        parts[0] = (
            f"**Stopped** after {parts[0]} (the text so far is kept)"
            if update["new_tokens"]
            else "**Stopped** before the first token"
        )
    return " · ".join(filter(None, parts))


def preset_params(entry, preset: str) -> TextParams:
    """The model's defaults, with a named preset's sampling fields on top (MODEL_DEFAULTS: none)."""
    if preset != MODEL_DEFAULTS and preset not in PRESETS:
        raise InputError("preset", f"unknown preset {preset!r}; choose one of {', '.join(map(repr, PRESETS))}")
    return from_defaults(TextParams, entry.defaults, **PRESETS.get(preset, {}))


def prompt_limit(tab: TabState, request: dict) -> int | None:
    """The prompt's limit: settings.max_text_chars, none for a prompt that is truncated (it is cut instead)."""
    truncate = request.get("truncate_prompt")
    truncating = (
        tab.config.entry(TASK, request["model_name"]).defaults.truncate_prompt if truncate is None else truncate
    )
    return None if truncating else tab.settings.max_text_chars


@handler(gpu=TASK, texts={"prompt": prompt_limit}, stoppable=True)
def generate_text(
    tab: TabState,
    prompt: str,
    model_name: str,
    request: gr.Request = None,
    progress=gr.Progress(track_tqdm=True),
    *,
    stop: threading.Event,
    **params,
):
    """Continue a prompt; streams the generated text (a longer prefix with every update), a stats
    line and the update as JSON (text, new_tokens, ttft_s, tokens_per_s, seed, truncated_tokens, ...).
    seed -1 picks a random seed (the stats line names it); truncate_prompt drops the beginning of a
    prompt too long for the model's context instead of refusing it."""
    generator = tab.registry.get(TASK, model_name)
    # Closing this generator (Stop, a cancelled API job, a client gone) closes stream(),
    # which sets `stop` and so ends generate() itself, freeing the model at once.
    with closing(generator.stream(prompt, generator.default_params(**params), stop=stop)) as updates:
        for update in updates:
            yield update["text"], format_stats(update), update


@handler(private=True)
def stop_text(tab: TabState, request: gr.Request):
    tab.stops.stop(request, "generate_text")


@handler(private=True)
def apply_preset(tab: TabState, model_name: str, preset: str):
    entry = tab.config.entry(TASK, model_name)
    return control_updates(TextParams, SAMPLING, entry, preset_params(entry, preset))


@handler(private=True)
def show_model(tab: TabState, model_name: str):
    entry = tab.config.entry(TASK, model_name)
    return describe_model(entry), MODEL_DEFAULTS, *control_updates(TextParams, SHOWN, entry, entry.defaults)


def build(config, registry) -> None:
    state = TabState(config, registry, TASK)

    with gr.Tab("Text", id="text"):
        with gr.Row():
            with gr.Column(scale=3):
                prompt = gr.Textbox(label="Prompt", lines=4, placeholder="Type the beginning of a text…")
                model = model_dropdown(state.names)
                generate, stop = start_and_stop("Generate")
                with gr.Accordion("Parameters", open=False):
                    preset = gr.Dropdown(
                        [MODEL_DEFAULTS, *PRESETS],
                        value=MODEL_DEFAULTS,
                        label="Preset",
                        info="Sets the sampling controls below; adjust them freely afterwards.",
                    )
                    parameters = controls(TextParams, PARAMETERS, state.default)
                model_info = gr.Markdown(describe_model(state.default))
            with gr.Column(scale=3):
                output = gr.Textbox(label="Generated text", lines=12, interactive=False)
                stats = gr.Markdown(IDLE, label="Stats", min_height=24)
                token_view = build_token_view(state.default)
                parameters |= token_view.controls
                details = details_json()
        gr.Examples(EXAMPLES, inputs=[prompt], label="Examples")
        build_explorer(state, model, prompt)

        show_waiting(generate, stats)  # before the event: its pending state would hide the change
        event = generate.click(
            bind(generate_text, state),
            inputs=[prompt, model],
            inputs_kwargs=in_declaration_order(TextParams, parameters),
            outputs=[output, stats, details],
            api_name="generate_text",
            concurrency_id=TASK,
        )
        keep_errors_visible(event, state, stats, output, details)
        token_view.wire(details)
        wire_stop(stop, event, state, stop_text)
        preset.input(
            bind(apply_preset, state),
            [model, preset],
            [parameters[name] for name in SAMPLING],
            api_visibility="private",
            queue=False,
        )
        # .input: the visitor's own choice of model. Only that may reset the controls to the model's
        # defaults; a .change listener also runs on values set by the page itself.
        model.input(
            bind(show_model, state),
            model,
            [model_info, preset, *[parameters[name] for name in SHOWN]],
            api_visibility="private",
            queue=False,
        )
