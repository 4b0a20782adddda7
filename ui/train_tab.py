"""Train: fine-tune a spam classifier on your own labelled messages, watch it learn, use it at once.

The same training as `python -m pipelines.train_classifier` (pipelines/classification/
training.py, run for the app by train_job.py). The handler streams the run's progress: the
loss and validation curves grow, a status line gives steps, epoch and time left, the log gets
a line per epoch. Stop keeps the best epoch so far; a cancelled API job (or a closed page)
abandons the run and saves nothing. The new model joins the Classification tab's list at once.
"""

from __future__ import annotations

import json
import threading
from contextlib import closing

import gradio as gr
import pandas as pd
from gradio.components.plot import AltairPlotData

from pipelines.classification import trained_models
from pipelines.classification.train_job import TrainingRunner, TrainUpdate, check_data, duration
from pipelines.classification.training import TrainParams
from pipelines.core.errors import UserFacingError
from pipelines.core.params import check_params, from_defaults
from ui.common import (
    confusion_markdown,
    controls,
    details_json,
    in_declaration_order,
    markdown_code,
    output_path,
    start_and_stop,
)
from ui.handlers import TabState, bind, handler, keep_errors_visible, wire_stop

# Trainings take their own queue group, one at a time: the other tabs' groups keep answering
# (and the training pauses, layer by layer, while they compute).
CONCURRENCY_ID = "training"
# Under the base model, in this order; the rest of TrainParams under "More settings".
PARAMETERS = ["epochs", "learning_rate", "batch_size", "max_length", "validation_fraction", "seed", "patience"]
MORE = ["weight_decay", "transformer_weight", "threshold", "time_limit_minutes"]
# How often (seconds) the page gets an update while training: the curves grow twice a second.
UPDATE_EVERY_S = 0.5
# The validation chart's series: (key of a TrainUpdate's validation row, name, colour, dash). The
# saved model's scores are the ones the Result reports; the transformer half's are shown beside
# them for a blend (it alone can score far lower: TF-IDF carries small data sets).
SAVED_MODEL_F1 = "spam F1 (saved model)"
VALIDATION_SERIES = (
    ("spam_f1", SAVED_MODEL_F1, "#2f8a2f", []),
    ("accuracy", "accuracy (saved model)", "#4c78a8", []),
    ("transformer_spam_f1", "spam F1 (transformer alone)", "#8fcf8f", [5, 3]),
    ("loss", "validation loss (transformer)", "#e45756", [2, 2]),
)
VALIDATION_CHART_HEIGHT = 340  # pixels, legend included: as high as the training-loss plot beside it


def describe_data(data: dict) -> str:
    lines = [
        f"**{data['messages']:,} messages** in {markdown_code(data['file'])} (text column {markdown_code(data['text_column'])}, "
        f"label column {markdown_code(data['label_column'])}): **{data['ham']:,} ham** and **{data['spam']:,} spam** "
        f"({data['distinct_ham'] + data['distinct_spam']:,} distinct texts)."
    ]
    if data["validation_messages"]:
        lines.append(
            f"Validation split ({data['validation_fraction']:.0%} of the distinct texts, seed {data['seed']}; copies of a "
            f"message stay on one side): **{data['train_messages']:,} to train on**, **{data['validation_messages']:,} held "
            f"out** ({data['validation_spam']:,} spam) to measure the model on messages it never saw."
        )
    else:
        lines.append(
            f"No validation share: all {data['messages']:,} messages are trained on (no validation curves or metrics)."
        )
    return "\n\n".join(lines)


def loss_frame(update: TrainUpdate) -> pd.DataFrame | None:
    """The training loss per logging step (None until the first one: an empty plot)."""
    rows = [(p["epoch"], p["loss"]) for p in update["train_loss"]]
    return pd.DataFrame(rows, columns=["epoch", "training loss"], dtype=float) if rows else None


def series_layer(series: list[tuple], shown: dict, width: int) -> dict:
    """A line with a marker per epoch for each series that passes the filter `shown`; every layer
    shares the colour and dash scales (and so one legend, under the plot, every name whole)."""
    names = [s[1] for s in series]
    measure = {"field": "measure", "type": "nominal", "title": None}
    return {
        "transform": [{"filter": shown}],
        "mark": {"type": "line", "strokeWidth": width, "point": {"filled": True, "size": 70, "strokeOpacity": 0}},
        "encoding": {
            "color": measure
            | {
                "scale": {"domain": names, "range": [s[2] for s in series]},
                "legend": {
                    "orient": "bottom",
                    "columns": 2,
                    "labelLimit": 0,
                    "symbolType": "stroke",
                    "symbolStrokeWidth": 3,
                    "symbolSize": 300,
                },
            },
            "strokeDash": measure | {"scale": {"domain": names, "range": [s[3] for s in series]}},
            "tooltip": [
                measure | {"title": "series"},
                {"field": "epoch", "type": "quantitative", "format": "~g"},
                {"field": "value", "type": "quantitative", "format": ".4f"},
            ],
        },
    }


def validation_chart(update: TrainUpdate) -> AltairPlotData | None:
    """The validation scores per epoch, a line per series with a marker per epoch (one epoch is a
    point), the saved model's spam F1 drawn over the rest (None until the first epoch ends): a
    Vega-Lite spec of its own, as gr.LinePlot draws no markers and gr.ScatterPlot no lines."""
    rows = [
        {"epoch": v["epoch"], "measure": name, "value": v[key]}
        for v in update["validation"]
        for key, name, *_ in VALIDATION_SERIES
        if key in v
    ]
    if not rows:
        return None
    series = [s for s in VALIDATION_SERIES if any(row["measure"] == s[1] for row in rows)]
    reported = {"field": "measure", "equal": SAVED_MODEL_F1}
    spec = {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "data": {"values": rows},
        "height": VALIDATION_CHART_HEIGHT,
        "padding": {"top": 32, "left": 5, "right": 5, "bottom": 5},  # room for the block's label, top left
        "encoding": {
            "x": {
                "field": "epoch",
                "type": "quantitative",
                "axis": {"values": sorted({row["epoch"] for row in rows}), "format": "~g"},
                "scale": {"padding": 12},  # whole markers at the first and last epoch
            },
            "y": {
                "field": "value",
                "type": "quantitative",
                "title": None,
                "scale": {"domain": [0, max(1.0, *(row["value"] for row in rows))]},
            },
        },
        "layer": [series_layer(series, {"not": reported}, 2), series_layer(series, reported, 3)],
        # SVG: each marker is an element of the page, its values in its aria-label (the browser test reads them)
        "usermeta": {"embedOptions": {"renderer": "svg", "actions": False}},
    }
    # chart="scatter": Gradio then sizes the plot to its block and themes it (fonts, text colours) as
    # its own plots, leaving the colours alone (it recolours only a top-level `color` encoding)
    return AltairPlotData(chart="scatter", plot=json.dumps(spec))


def describe_status(update: TrainUpdate) -> str:
    state = update["state"]
    if state == "training" and update["max_steps"]:
        text = (
            f"**Training** · step {update['step']:,} / {update['max_steps']:,} · epoch {update['epoch']:.2f} of "
            f"{update['epochs']:g} · {duration(update['elapsed_s'])} so far · about {duration(update['eta_s'])} left"
        )
        return text + (f" · on {update['device']}" if update["device"] else "")
    if state == "done":
        return f"**Done** in {duration(update['elapsed_s'])}" + (
            " (stopped early: the best epoch so far is kept)" if update["stopped"] else ""
        )
    waiting = {
        "starting": "Starting (reading the file)…",
        "reading": "Reading the file…",
        "loading": "Loading the base model…",
        "tfidf": "Fitting the TF-IDF half…",
        "saving": "Saving the model…",
    }
    return f"**{waiting.get(state, state)}** · {duration(update['elapsed_s'])} so far"


def describe_scoring(recipe: dict) -> str:
    weight, threshold = recipe.get("transformer_weight", 1), recipe.get("threshold", 0.5)
    if weight >= 1:
        return f"its spam score is the transformer's, spam at {threshold:g}"
    return f"its spam score = {weight:g} × the transformer's + {1 - weight:g} × TF-IDF's, spam at {threshold:g}"


def transformer_alone(validation: list[dict], epoch: float | None) -> str:
    """The transformer half's own validation spam F1 at `epoch`, for a blend ("" otherwise)."""
    row = next((v for v in validation if v["epoch"] == epoch and "transformer_spam_f1" in v), None)
    return f" (the transformer alone: spam F1 {row['transformer_spam_f1']:.4f})" if row else ""


def describe_result(update: TrainUpdate) -> str:
    metrics = update["metrics"] or {}
    recipe = metrics.get("recipe", {})
    lines = [
        f"**Saved as {markdown_code(update['model'])}**: it is now in the Classification tab's model list (and in /classify's). "
        f"{metrics.get('train_messages', 0):,} training messages · {metrics.get('epochs_run', 0):g} epoch(s) run, "
        f"best epoch **{metrics.get('best_epoch', 0):g}**{' (the best validation spam F1, kept)' if 'spam_f1' in metrics else ''} · trained in **{duration(metrics.get('train_seconds'))}**"
        + (" · stopped early" if update["stopped"] else "")
        + "."
    ]
    if "spam_f1" in metrics:
        lines += [
            f"**Validation of the saved model** ({metrics['validation_messages']:,} messages it never trained on; "
            f"{describe_scoring(recipe)}; the chart's *{SAVED_MODEL_F1}* at epoch {metrics.get('best_epoch', 0):g}): "
            f"accuracy **{metrics['accuracy']:.4f}** · spam precision {metrics['spam_precision']:.4f} · recall "
            f"{metrics['spam_recall']:.4f} · **spam F1 {metrics['spam_f1']:.4f}**"
            + transformer_alone(update["validation"], metrics.get("best_epoch")),
            confusion_markdown(metrics["confusion_matrix"]),
        ]
    else:
        lines.append("No validation share, so no validation metrics: every message was trained on.")
    return "\n\n".join(lines)


NO_FILE_YET = "Upload a file to see its first rows, its class counts and the validation split."


class TrainState(TabState):
    """The Train tab's handlers work with the app's config (its `training:` section), the runner
    that trains one model at a time, and the tab's Stop flags."""

    def __init__(self, config, registry):
        super().__init__(config, registry)
        self.section = config.training
        self.runner = TrainingRunner(config)

    def owner_of(self, request: gr.Request | None) -> str | None:
        """Whose models a request may list and download (None: everyone's are shared)."""
        return trained_models.owner_of(self.config, getattr(request, "session_hash", None))

    def visible_model(self, name: str | None, request: gr.Request | None):
        return next((m for m in trained_models.visible(self.config, self.owner_of(request)) if m.name == name), None)


@handler(uploads={"file": None}, stoppable=True)  # no file: the training's own checks say what to upload
def train_classifier(
    tab: TrainState,
    file: str | None,
    base_model: str,
    save_as: str,
    text_column: str,
    label_column: str,
    request: gr.Request = None,
    progress=gr.Progress(),
    *,
    stop: threading.Event,
    **params,
):
    """Fine-tune a classifier on a labelled file; streams progress, then saves and serves the model."""
    params = from_defaults(TrainParams, tab.section.defaults, **params)
    shown = (0.0, None, -1)  # when the page last got an update, in which state, with how many epochs measured
    # Closing this generator (a cancelled API job, a page closed) closes run(): the training
    # is abandoned at its next step and nothing is saved; Stop (the flag) keeps the best epoch.
    with closing(
        tab.runner.run(file, base_model, save_as, text_column, label_column, params, stop, owner=tab.owner_of(request))
    ) as updates:
        for update in updates:
            if update["max_steps"]:
                progress((update["step"], update["max_steps"]), desc=f"epoch {update['epoch']:.2f}", unit="steps")
            now, state, epochs = update["elapsed_s"], update["state"], len(update["validation"])
            if update["done"] or now - shown[0] >= UPDATE_EVERY_S or (state, epochs) != shown[1:]:
                shown = (now, state, epochs)
                result = describe_result(update) if update["done"] else ""
                yield (
                    describe_status(update),
                    loss_frame(update),
                    validation_chart(update),
                    "\n".join(update["log"]),
                    result,
                    update,
                )


@handler()
def stop_training(tab: TrainState, request: gr.Request):
    tab.stops.stop(request, "train_classifier")


def unfit_for_training(err: UserFacingError):
    """The preview of a file that cannot be trained on: why, and no table."""
    return f"**This file cannot be trained on** — {err}", gr.update(visible=False)


@handler(uploads={"file": None}, errors_as=unfit_for_training)
def preview(
    tab: TrainState, file: str | None, text_column: str, label_column: str, validation_fraction: float, seed: int
):
    if not file:
        return NO_FILE_YET, gr.update(visible=False)
    section = tab.section
    checked = check_params(
        from_defaults(TrainParams, section.defaults, validation_fraction=validation_fraction, seed=seed),
        section.ranges(),
    )
    data = check_data(
        tab.config,
        file,
        (text_column or "").strip(),
        (label_column or "").strip(),
        checked.validation_fraction,
        checked.seed,
    )
    return describe_data(data), gr.update(value=pd.DataFrame(data["preview"]), visible=True)


@handler()
def trained_list(tab: TrainState, request: gr.Request, selected: str | None = None):
    models = trained_models.visible(tab.config, tab.owner_of(request))
    names = [m.name for m in models]
    chosen = selected if selected in names else (names[-1] if names else None)
    frame = pd.DataFrame(trained_models.table_rows(models), columns=trained_models.TABLE_HEADERS)
    return frame, gr.update(choices=names, value=chosen), snippet_of(tab, chosen, request)


@handler()
def snippet_of(tab: TrainState, name: str | None, request: gr.Request) -> str:
    model = tab.visible_model(name, request)
    return trained_models.yaml_snippet(model) if model else ""


@handler()
def after_training(tab: TrainState, update: dict | None, request: gr.Request):
    return trained_list(tab, request, (update or {}).get("model") if isinstance(update, dict) else None)


@handler()
def zip_chosen(tab: TrainState, name: str | None, request: gr.Request):
    model = tab.visible_model(name, request)
    if model is None:
        raise gr.Error("Choose one of your trained models first.", print_exception=False)
    return str(trained_models.zip_model(model, output_path(f"{trained_models.slug(model.name)}.zip")))


def build(config, registry) -> None:
    if not config.training.enabled:  # no `training: base_models:` in models.yaml: no Train tab
        return
    state = TrainState(config, registry)
    section = state.section
    bases = [b.name for b in section.base_models]

    with gr.Tab("Train", id="train"):
        gr.Markdown(
            "Fine-tune your own spam classifier on labelled messages and watch it learn; "
            "when it is done it joins the Classification tab's models."
        )
        with gr.Row():
            with gr.Column(scale=1):
                gr.Markdown("### 1. Data")
                upload = gr.File(
                    label="Labelled messages (.csv, .tsv or .txt)",
                    file_types=[".csv", ".tsv", ".txt"],
                    type="filepath",
                    elem_id="train-file",
                )
                with gr.Row():
                    text_column = gr.Textbox("", label="Text column", placeholder="blank: text, message, sms…")
                    label_column = gr.Textbox(
                        "", label="Label column", placeholder="blank: label, class… (ham/spam or 0/1)"
                    )
                data_summary = gr.Markdown(NO_FILE_YET)
                data_preview = gr.Dataframe(label="First rows", interactive=False, wrap=True, visible=False)
            with gr.Column(scale=1):
                gr.Markdown("### 2. Base model and hyper-parameters")
                base_model = gr.Dropdown(
                    bases,
                    value=bases[0],
                    label="Base model",
                    info="A pre-trained encoder that already reads English; training adds a ham/spam head and adjusts it.",
                )
                save_as = gr.Textbox("", label="Save as", placeholder="blank: file · base model · date and time")
                parameters = controls(TrainParams, PARAMETERS, section)
                with gr.Accordion("More settings", open=False):
                    parameters |= controls(TrainParams, MORE, section)
                train, stop = start_and_stop("Train")
        with gr.Column(elem_id="train-results"):  # the README's screenshot
            gr.Markdown("### 3. Training")
            status = gr.Markdown("Not started: choose a file and press Train.", label="Status")
            with gr.Row():
                loss_plot = gr.LinePlot(
                    None,
                    x="epoch",
                    y="training loss",
                    label="Training loss per step (lower is better)",
                    height=340,
                    elem_id="train-loss-plot",
                )
                # Validation loss rising while training loss falls = memorising.
                metrics_plot = gr.Plot(
                    None,
                    label="Validation per epoch, on messages it never trained on (higher is better, loss: lower)",
                    elem_id="train-metrics-plot",
                )
            log = gr.Textbox(label="Log", lines=6, max_lines=10, interactive=False, autoscroll=True)
            gr.Markdown("### 4. Result")
            result = gr.Markdown(label="Result")
            details = details_json()
        with gr.Accordion("Trained models", open=True):
            table = gr.Dataframe(
                headers=trained_models.TABLE_HEADERS,
                label="Saved in this app (newest first)",
                interactive=False,
                wrap=True,
            )
            with gr.Row():
                chosen = gr.Dropdown(
                    [], label="Trained model", info="Download it, or serve it elsewhere with the snippet below."
                )
                zip_button = gr.Button("Download as zip")
            download = gr.File(label="Model folder (.zip)", interactive=False)
            snippet = gr.Code(
                language="yaml",
                label="models.yaml snippet (unzip the folder next to that models.yaml)",
                interactive=False,
            )

        event = train.click(
            bind(train_classifier, state),
            inputs=[upload, base_model, save_as, text_column, label_column],
            inputs_kwargs=in_declaration_order(TrainParams, parameters),
            outputs=[status, loss_plot, metrics_plot, log, result, details],
            show_progress_on=[status],
            api_name="train_classifier",
            concurrency_id=CONCURRENCY_ID,
            concurrency_limit=1,
            api_description="Fine-tune a spam classifier on a labelled .csv/.tsv/.txt file (the training command's "
            "recipe and defaults; models.yaml `training:` sets the app's): streams (status, loss plot, metrics plot, log, "
            "result markdown, progress JSON with state, step, max_steps, epoch, eta_s, train_loss, validation, log); the "
            "last update has done, model (its name, for /classify) and metrics. Cancelling the job saves nothing.",
        )
        event.then(
            bind(after_training, state), details, [table, chosen, snippet], api_visibility="private", queue=False
        )
        keep_errors_visible(event, state, status)
        wire_stop(stop, event, state, stop_training)
        gr.on(
            [
                upload.change,
                text_column.blur,
                label_column.blur,
                parameters["validation_fraction"].release,
                parameters["seed"].blur,
            ],
            bind(preview, state),
            [upload, text_column, label_column, parameters["validation_fraction"], parameters["seed"]],
            [data_summary, data_preview],
            api_visibility="private",  # reads the whole upload: queued, one at a time
            concurrency_id="train_preview",
            concurrency_limit=1,
            trigger_mode="always_last",
        )
        chosen.input(bind(snippet_of, state), chosen, snippet, api_visibility="private", queue=False)
        zip_button.click(
            bind(zip_chosen, state), chosen, download, api_visibility="private", concurrency_id="trained_model_files"
        )
        gr.on(
            None, bind(trained_list, state), None, [table, chosen, snippet], api_visibility="private", queue=False
        )  # on page load
