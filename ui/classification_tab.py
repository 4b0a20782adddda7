"""Classification tab: spam detection for one message (with why) or a whole file of messages, and
where a message lies among a file's messages (the embedding map, `embedding_map.py`)."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from pipelines.classification import trained_models
from pipelines.classification.contract import (
    ClassificationParams,
    ClassificationResult,
    Explanation,
    check_message,
    check_threshold,
)
from ui import embedding_map
from ui.common import (
    confusion_markdown,
    controls,
    describe_model,
    details_json,
    error_message,
    model_dropdown,
    output_path,
)
from ui.handlers import TabState, bind, handler, keep_errors_visible

TASK = "classification"
EXAMPLES = [
    ["WINNER!! You have been selected to receive a £900 prize reward! To claim call 09061701461. Valid 12 hours only."],
    ["Hey, are we still on for dinner tonight? I can pick you up at 7."],
    ["Your parcel is waiting for delivery. Please confirm your address here: bit.ly/2xYz to avoid return."],
]
EXAMPLE_LABELS = ["Clear spam", "Clear ham", "Borderline"]
TABLE_PREVIEW_ROWS = 1000  # rows of a classified file shown in the page; the CSV has them all
TOP_WORDS = 5  # words listed under the highlighted message for each side, strongest push first
# The Verdicts table's columns before any file is classified (and after it is cleared): what a result shows first.
VERDICT_COLUMNS = ["label", "spam_score", "text"]


def describe_result(result: ClassificationResult) -> str:
    verdict = f"**{result['label'].upper()}** — spam score {result['scores']['spam']:.3f} (threshold {result['threshold']:.2f})"
    if result["truncated"]:
        verdict += f"<br>Note: the message was longer than {result['max_length']} tokens and was truncated."
    return verdict


def summarize_file(summary: dict, shown_rows: int) -> str:
    lines = [
        f"**{summary['rows']:,} row(s)** (text column `{summary['text_column']}`): {summary['counts']['ham']:,} ham, "
        f"{summary['counts']['spam']:,} spam at threshold {summary['threshold']:.2f}."
    ]
    if summary["empty_rows"]:
        lines.append(f"{summary['empty_rows']:,} row(s) have no text: not classified, their label is left blank.")
    if summary["truncated"]:
        lines.append(
            f"{summary['truncated']:,} message(s) were longer than {summary['max_length']} tokens and were truncated."
        )
    if summary["rows"] > shown_rows:
        lines.append(f"The table shows the first {shown_rows:,} rows; the CSV has all of them.")
    metrics = summary["metrics"]
    if metrics is not None:
        renamed = ", kept as `true_label`" if summary["label_column"] == "label" else ""
        lines += [
            f"**Against the file's labels** (column `{summary['label_column']}`{renamed}): "
            f"accuracy {metrics['accuracy']:.3f}, spam precision {metrics['spam_precision']:.3f}, "
            f"recall {metrics['spam_recall']:.3f}, F1 {metrics['spam_f1']:.3f}.",
            confusion_markdown(metrics["confusion_matrix"]),
        ]
    return "\n\n".join(lines)


def classify_requests(
    registry,
    messages: list[str],
    model_names: list[str],
    thresholds: list[float],
    refused: dict[int, str] | None = None,
):
    """The batched /classify: (scores, verdicts, details), one each per request, one forward
    pass per model. `refused`: the requests the request layer refused, {index: message}.

    A request with bad input gets an error of its own (its verdict, and `{"error": ...}` as its
    details) and never fails the requests batched with it. When no request of the batch gets a
    result and all share one error (always so for a lone request), that error is raised, so API
    clients receive it as one.
    """
    results: list[ClassificationResult | None] = [None] * len(messages)
    errors: dict[int, str] = dict(refused or {})
    by_model: dict[str, list[int]] = {}
    for i, name in enumerate(model_names):
        if i not in errors:
            by_model.setdefault(name, []).append(i)
    for name, indices in by_model.items():
        try:
            classifier = registry.get(TASK, name)
            batch = classifier([messages[i] for i in indices], threshold=[thresholds[i] for i in indices])
        except Exception as err:
            errors.update({i: error_message(err, "classify") for i in indices})
            continue
        for i, result in zip(indices, batch):
            results[i] = result | {"model": name}
    if errors and len(errors) == len(messages) and len(set(errors.values())) == 1:
        raise gr.Error(next(iter(errors.values())), print_exception=False)
    scores = [r["scores"] if r else None for r in results]
    verdicts = [describe_result(r) if r else f"**Error** — {errors[i]}" for i, r in enumerate(results)]
    details = [r if r else {"error": errors[i]} for i, r in enumerate(results)]
    return scores, verdicts, details


@handler(gpu=TASK, batch=True, texts=["message"], checks={"message": check_message, "threshold": check_threshold})
def classify(
    tab: TabState,
    message: list[str],
    model_name: list[str],
    threshold: list[float],
    request: gr.Request = None,
    *,
    refused: dict[int, str],
):
    """Classify one SMS message as spam or ham.

    Returns the confidence of each class, the verdict at the given spam threshold, and the
    result as JSON (label, scores, truncated, max_length, threshold, model). Gradio batches
    concurrent requests into one call (one list item per request).
    """
    return classify_requests(tab.registry, message, model_name, threshold, refused)


def signed(score: float) -> str:
    """A word's push with three significant figures: a confident model's words often move its spam
    score by less than 0.001, which fixed decimals would all show as +0.000."""
    return f"{score:+.3g}"


def top_words(words: list[dict], towards: str) -> str:
    """The words pushing most towards spam (score > 0) or ham (score < 0), strongest first."""
    sign = 1 if towards == "spam" else -1
    pushing = sorted((w for w in words if sign * w["score"] > 0), key=lambda w: -sign * w["score"])[:TOP_WORDS]
    if not pushing:
        return f"No word pushed this message towards {towards}."
    return f"Towards {towards} most: " + ", ".join(f"`{w['text']}` ({signed(w['score'])})" for w in pushing)


def describe_explanation(result: Explanation) -> str:
    lines = [top_words(result["words"], "spam"), top_words(result["words"], "ham")]
    if result["truncated"]:
        lines.append("Only the start of the message (what the model reads) is explained.")
    return "<br>".join(lines)


@handler(gpu=TASK, texts=["message"])
def explain_message(tab: TabState, message: str, model_name: str, request: gr.Request = None):
    """Highlight the words that pushed the verdict towards spam (red) or ham (blue).

    Each word is removed in turn and the message scored again (occlusion, one batched pass);
    colours are relative to the strongest word, the lists below give the spam-score change of the
    words pushing most towards each side.
    """
    result = tab.registry.get(TASK, model_name).explain(message)
    peak = max((abs(w["score"]) for w in result["words"]), default=0.0) or 1.0
    highlighted = [(piece, None if score is None else score / peak) for piece, score in result["segments"]]
    return highlighted, describe_explanation(result), result


def verdicts_first(frame, text_column: str):
    """The Verdicts table: the verdict (label, spam_score) and the message first, where the eye
    starts, then the file's label (true_label) and its other columns. The CSV keeps the file's own
    column order, the verdict added at the end."""
    first = [column for column in ("label", "spam_score", text_column, "true_label") if column in frame.columns]
    return frame[list(dict.fromkeys(first + list(frame.columns)))]


@handler(gpu=TASK, uploads={"file": "a .csv, .tsv or .txt file of messages"})
def classify_batch(
    tab: TabState,
    file: str | None,
    model_name: str,
    threshold: float,
    text_column: str,
    request: gr.Request = None,
    progress=gr.Progress(),
):
    """Classify every message of a CSV, TSV or TXT file.

    Returns a CSV with the file's columns plus `label` and `spam_score`, a table of the first
    rows, a summary (with accuracy, precision, recall, F1 and the confusion matrix when the
    file has a label column), and the summary as JSON.
    """
    from pipelines.classification.files import (
        classify_file,  # pandas: imported on first use
    )

    classifier = tab.registry.get(TASK, model_name)
    progress(0, desc="Reading the file")

    def report(done: int, total: int) -> None:
        progress((done, total), desc="Classifying", unit="messages")

    result = classify_file(
        classifier,
        file,
        threshold,
        text_column=(text_column or "").strip() or None,
        max_rows=tab.settings.classification_max_file_rows,
        max_cell_chars=tab.settings.max_file_cell_chars,
        max_bytes=tab.upload_limit,
        on_progress=report,
    )
    out = output_path(f"{Path(file).stem}-classified.csv")  # deleted after a while: Gradio serves its own copy
    frame = result.pop("frame")
    frame.to_csv(out, index=False)
    return (
        str(out),
        verdicts_first(frame.head(TABLE_PREVIEW_ROWS), result["text_column"]),
        summarize_file(result, TABLE_PREVIEW_ROWS),
        result | {"model": model_name},
    )


@handler(private=True)
def clear_batch_results():
    """Empty results (CSV, table, summary, JSON): a file's results go when the file does, or when
    another file replaces it."""
    return None, None, "", None


@handler(private=True)
def show_model(tab: TabState, model_name: str):
    return describe_model(tab.config.entry(TASK, model_name))


@handler()
def list_models(tab: TabState, request: gr.Request):
    """The models this visitor may pick: models.yaml's, trained ones shared with everyone,
    and their own (settings.trained_models: per_session)."""
    config = tab.config
    return gr.update(
        choices=config.names(TASK, trained_models.owner_of(config, getattr(request, "session_hash", None)))
    )


def build(config, registry) -> None:
    state = TabState(config, registry, TASK)

    with gr.Tab("Classification", id="classification") as tab:
        gr.Markdown("Spam detection with a fine-tuned transformer: paste a message or upload a file, get ham or spam.")
        with gr.Row():
            # custom values: models trained in the Train tab are accepted by name (unknown names get the registry's message)
            model = model_dropdown(state.names, allow_custom_value=True)
            threshold = controls(ClassificationParams, ["threshold"], state.default)["threshold"]
        model_info = gr.Markdown(describe_model(state.default))
        with gr.Tabs():
            with gr.Tab("Single message", id="classification-single"):
                with gr.Row():
                    with gr.Column(scale=3):
                        message = gr.Textbox(label="Message", lines=4, placeholder="Paste an SMS or e-mail text…")
                        button = gr.Button("Classify", variant="primary")
                        gr.Examples(EXAMPLES, inputs=[message], label="Examples", example_labels=EXAMPLE_LABELS)
                    with gr.Column(scale=2):
                        label = gr.Label(label="Confidence per class", num_top_classes=2)
                        verdict = gr.Markdown(label="Verdict")
                        details = details_json()
                why = gr.HighlightedText(
                    label="Why: words pushing towards spam (red) or ham (blue)",
                    combine_adjacent=False,
                    show_legend=False,
                )
                why_note = gr.Markdown(label="Top words")
                why_details = details_json("Details (words and their scores, as API clients receive them)")
            with gr.Tab("Batch file", id="classification-batch"):
                with gr.Row():
                    upload = gr.File(
                        label="Messages (.csv, .tsv or .txt)",
                        file_types=[".csv", ".tsv", ".txt"],
                        type="filepath",
                        elem_id="batch-file",
                    )
                    with gr.Column():
                        text_column = gr.Textbox(
                            "", label="Text column (blank: text, message, sms… or the only column)"
                        )  # "": API clients may omit it
                        batch_button = gr.Button("Classify file", variant="primary")
                        download = gr.File(
                            label="Results (CSV: your columns + label, spam_score)",
                            interactive=False,
                            elem_id="batch-results",
                        )
                summary = gr.Markdown(label="Summary")
                table = gr.Dataframe(
                    label="Verdicts", headers=VERDICT_COLUMNS, interactive=False, wrap=True, elem_id="verdicts"
                )
                summary_details = details_json()
            embedding_map.build(config, registry, message, model, upload)

        classified = gr.on(
            [button.click, message.submit],
            bind(classify, state),
            inputs=[message, model, threshold],
            outputs=[label, verdict, details],
            api_name="classify",
            concurrency_id=TASK,
            show_progress_on=[verdict],  # the place in the queue and errors by the verdict
            batch=True,
            max_batch_size=config.settings.classification_max_batch_size,
            api_description="Classify one message: (confidence per class, verdict markdown, result JSON with label, "
            "scores, truncated, max_length, threshold). Concurrent requests share a forward pass (dynamic batching).",
        )
        explained = classified.success(
            bind(explain_message, state),
            inputs=[message, model],
            outputs=[why, why_note, why_details],
            api_name="explain",
            concurrency_id=TASK,
            show_progress_on=[why_note],
            api_description="Why: each word of the message with its push towards spam (occlusion), the words pushing "
            "most towards spam and towards ham, and the explanation as JSON (spam_score, words with start/end/score, segments, truncated).",
        )
        batch_event = batch_button.click(
            bind(classify_batch, state),
            inputs=[upload, model, threshold, text_column],
            outputs=[download, table, summary, summary_details],
            api_name="classify_batch",
            concurrency_id=TASK,
            show_progress_on=[summary],
            api_description="Classify a .csv/.tsv/.txt file of messages: (CSV with label and spam_score, table "
            "preview with the verdict first, summary markdown, summary JSON with counts and metrics when the file has labels).",
        )
        for event, status in [(classified, verdict), (explained, why_note), (batch_event, summary)]:
            keep_errors_visible(event, state, status)
        upload.change(
            bind(clear_batch_results),
            None,
            [download, table, summary, summary_details],
            api_visibility="private",
            queue=False,
        )
        model.change(
            bind(show_model, state),
            model,
            model_info,
            api_name="show_classification_model",
            api_visibility="private",
            queue=False,
            api_description="Internal: the selected model's description.",
        )
        # Models trained in the Train tab join the list: on page load and whenever this tab is opened.
        # (Named: its function's name would take /list_models, the public endpoint, from ui/model_list.py.)
        listed = bind(list_models, state)
        for trigger in (None, [tab.select]):
            gr.on(trigger, listed, None, model, api_name="offer_models", api_visibility="private", queue=False)
