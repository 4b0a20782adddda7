"""Generation > Text, what the model considered: the token view (each generated token shaded by
its probability; click one for its alternatives) and the next-token explorer (the likeliest next
tokens of a text as a bar chart; pick one to append it and see the next step)."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from pipelines.core.params import with_overrides
from pipelines.text.contract import (
    NextTokenParams,
    NextTokens,
    TextParams,
    TextUpdate,
    TokenProbability,
)
from ui.common import controls, details_json, in_declaration_order, markdown_code
from ui.handlers import TabState, bind, handler, keep_errors_visible

TASK = "text"
VIEW_PARAMETERS = ["token_probabilities"]  # the TextParams control that sits with the view
EXPLORER_PARAMETERS = ["top_k", "temperature"]
TOKEN_VIEW_LABEL = "Tokens, shaded by the probability the model gave each (darker: likelier); click one"
NOT_RECORDED = "Turn on *Record token probabilities* and generate to see, for every token, how likely it was and what else the model considered."
# How whitespace tokens are shown in the alternatives and the chart (a bare space is invisible).
VISIBLE_WHITESPACE = str.maketrans({" ": "␣", "\n": "↵", "\t": "⇥"})


class DeclaredRangesOnly:
    """`controls()` for parameters no models.yaml entry narrows (the explorer's own)."""

    @staticmethod
    def ranges() -> dict:
        return {}

    @staticmethod
    def choices() -> dict:
        return {}


def visible(token: str) -> str:
    return token.translate(VISIBLE_WHITESPACE) or "∅"


def shade(probability: float) -> float:
    """How dark a token is drawn: the square root spreads the many small probabilities apart (a
    token at 4% is drawn at 0.2, one at 64% at 0.8); negative: Gradio's second colour (purple)."""
    return -(probability**0.5)


@handler(private=True)
def token_segments(update: TextUpdate | None) -> tuple[list[tuple[str, float]], str]:
    """The token view of an update: (token, shade) pairs and a line saying what is shown, or why nothing is."""
    update = update or {}
    if update.get("tokens_unavailable"):
        return [], f"Token probabilities are not available for this model: {update['tokens_unavailable']}."
    tokens = update.get("tokens")
    if tokens is None:
        return [], NOT_RECORDED if update else ""
    # A token holding part of a character adds no text: it shows as itself (e.g. �) to stay clickable.
    segments = [(token["text"] or token["token"] or "∅", shade(token["probability"])) for token in tokens]
    likeliest = sum(token["most_likely"] for token in tokens)
    return (
        segments,
        f"{len(tokens)} tokens; {likeliest} of them were the most likely choice. Click a token for its alternatives.",
    )


def describe_choice(token: TokenProbability, sampled: bool) -> str:
    chance = f"{token['probability']:.1%}"
    if not sampled:
        return f"{markdown_code(visible(token['token']))} ({chance}): the most likely token, chosen as greedy decoding does."
    if token["most_likely"]:
        return f"{markdown_code(visible(token['token']))} was sampled ({chance}); it was also the most likely token."
    best = (token["alternatives"] or [token])[0]  # (none: a client's own JSON, not a generation's)
    return (
        f"{markdown_code(visible(token['token']))} was sampled at rank {token['rank']} ({chance}); the most likely was "
        f"{markdown_code(visible(best['token']))} ({best['probability']:.1%})."
    )


def token_alternatives(update: TextUpdate | None, index: object) -> tuple[dict[str, float], str]:
    """gr.Label confidences of the token at `index` (its alternatives, the chosen one marked) and a
    line on how it was chosen; nothing for an index that is not one of its tokens'."""
    tokens = (update or {}).get("tokens") or []
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(tokens):
        return {}, ""
    token = tokens[index]
    sampled = bool((update.get("params") or {}).get("do_sample", True))
    confidences = {
        f"{alternative['rank']}. {visible(alternative['token'])}"
        + (" ◀ chosen" if alternative["rank"] == token["rank"] else ""): alternative["probability"]
        for alternative in token["alternatives"]
    }
    return confidences, describe_choice(token, sampled)


@handler(private=True)
def show_alternatives(update: TextUpdate | None, event: gr.SelectData):
    return token_alternatives(update, event.index)


def next_token_chart(result: NextTokens):
    import pandas as pd  # imported on first use, like the classification files

    labels = [f"{choice['rank']}. {visible(choice['token'])}" for choice in result["tokens"]]
    return pd.DataFrame({"token": labels, "probability": [choice["probability"] for choice in result["tokens"]]})


def describe_next_tokens(result: NextTokens) -> str:
    return (
        f"After {result['prompt_tokens']} prompt tokens, at temperature {result['temperature']:g}: these "
        f"{len(result['tokens'])} tokens hold {result['top_k_probability']:.1%} of the probability; the entropy of the whole "
        f"distribution is {result['entropy_bits']:.2f} bits (0: one certain token; higher: more tokens in play)."
    )


@dataclass
class TokenView:
    controls: dict[str, gr.components.Component]  # its TextParams control (token_probabilities)
    view: gr.HighlightedText
    note: gr.Markdown
    alternatives: gr.Label
    choice: gr.Markdown

    def wire(self, details: gr.JSON) -> None:
        """Redraw the view with every streamed update (`details`); show a clicked token's alternatives."""
        # queue=False, always_last: cheap redraws that never wait behind a generation, at most one pending
        details.change(
            bind(token_segments),
            details,
            [self.view, self.note],
            api_visibility="private",
            queue=False,
            trigger_mode="always_last",
            show_progress="hidden",
        )
        self.view.select(
            bind(show_alternatives), details, [self.alternatives, self.choice], api_visibility="private", queue=False
        )


def build_token_view(default) -> TokenView:
    """The token view, where it is called (under the generated text)."""
    with gr.Accordion("Token view: what the model considered", open=True, elem_id="token-view-panel"):
        made = controls(TextParams, VIEW_PARAMETERS, default)
        view = gr.HighlightedText(
            label=TOKEN_VIEW_LABEL, combine_adjacent=False, show_legend=False, elem_id="token-view"
        )
        note = gr.Markdown(NOT_RECORDED)
        with gr.Row():
            alternatives = gr.Label(
                label="Alternatives of the selected token (probabilities after the sampling settings)",
                num_top_classes=6,
                show_heading=False,
                elem_id="token-alternatives",
            )
            choice = gr.Markdown()
    return TokenView(made, view, note, alternatives, choice)


@handler(gpu=TASK, texts=["prompt"])
def next_tokens(tab: TabState, prompt: str, model_name: str, request: gr.Request = None, **params):
    """The likeliest next tokens after a text, with their probabilities at a temperature: a bar chart, a
    summary, and the result as JSON (prompt_tokens, temperature, tokens with token/id/probability/rank,
    top_k_probability, entropy_bits)."""
    generator = tab.registry.get(TASK, model_name)
    result = generator.next_tokens(prompt, with_overrides(NextTokenParams(), **params))
    return next_token_chart(result), describe_next_tokens(result), result


@handler(private=True)
def append_token(text: str, result: NextTokens | None, picked: str | None):
    tokens = (result or {}).get("tokens") or []
    index = int(picked) if picked and picked.isdecimal() else -1
    return text + tokens[index]["token"] if 0 <= index < len(tokens) else text


@handler(private=True)
def offer_tokens(result: NextTokens | None):
    tokens = (result or {}).get("tokens") or []
    choices = [(f"{visible(t['token'])}  ({t['probability']:.1%})", str(i)) for i, t in enumerate(tokens)]
    return gr.update(choices=choices, value=None)


def build_explorer(state: TabState, model: gr.Dropdown, prompt: gr.Textbox) -> None:
    """The next-token explorer (its /next_tokens endpoint), in an accordion where it is called."""
    with gr.Accordion("Next-token explorer: what could come next", open=False):
        gr.Markdown(
            "A language model gives every token of its vocabulary a probability of coming next. See the likeliest, "
            "pick one to append it, and watch the next step; the temperature sharpens or flattens the distribution."
        )
        with gr.Row():
            text = gr.Textbox(
                label="Text so far",
                lines=3,
                scale=3,
                elem_id="explorer-text",
                placeholder="Starts as the prompt above; picked tokens are appended",
            )
            with gr.Column(scale=2):
                params = controls(NextTokenParams, EXPLORER_PARAMETERS, DeclaredRangesOnly, NextTokenParams())
                explore = gr.Button("Show next tokens", variant="primary")
        chart = gr.BarPlot(
            x="token",
            y="probability",
            sort="-y",
            x_title="next token",
            y_title="probability",
            # from 0, in percent: bar heights compare as the probabilities do (0.25% is not 10x 0.20%)
            y_lim=[0, None],
            y_axis_format="~%",
            label="Likeliest next tokens",
            x_label_angle=-30,
            elem_id="next-token-chart",
        )
        pick = gr.Radio([], label="Append a token and show the next step", elem_id="explorer-pick")
        summary = gr.Markdown(label="Summary")
        result = details_json()

    prompt.change(None, prompt, text, js="(prompt) => prompt", api_visibility="private", queue=False)
    explored, offered = bind(next_tokens, state), bind(offer_tokens)
    inputs = dict(
        inputs=[text, model],
        inputs_kwargs=in_declaration_order(NextTokenParams, params),
        outputs=[chart, summary, result],
    )
    explored_event = gr.on(
        [explore.click, text.submit, params["temperature"].release, params["top_k"].release],
        explored,
        **inputs,
        api_name="next_tokens",
        concurrency_id=TASK,
        show_progress_on=[summary],
        api_description="Next-token explorer: the top_k likeliest next tokens after a text (prompt) and their probabilities at a "
        "temperature: (bar chart data, summary markdown, JSON with tokens, top_k_probability, entropy_bits).",
    )
    explored_event.success(offered, result, pick, api_visibility="private", queue=False)
    keep_errors_visible(explored_event, state, summary)
    pick.input(bind(append_token), [text, result, pick], text, api_visibility="private", queue=False).success(
        explored,
        **inputs,
        api_visibility="private",
        concurrency_id=TASK,
    )
    explored_event.success(offered, result, pick, api_visibility="private", queue=False)
    keep_errors_visible(explored_event, state, summary)
