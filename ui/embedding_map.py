"""Classification > Embedding map: a labelled file's messages as points (the encoder's embeddings
projected to 2-D), the current message among them, and its most similar messages (/similar);
and /embed, the embeddings themselves for programs."""

from __future__ import annotations

import gradio as gr
import numpy as np

from pipelines.classification.contract import POOLING, SimilarParams, check_message
from pipelines.classification.embeddings import (
    EmbeddedFile,
    EmbeddingCache,
    check_messages,
    embed_file,
    nearest,
    place,
)
from pipelines.core.params import check_params, with_overrides
from ui.api_values import describe_api_values
from ui.common import controls, details_json, in_declaration_order
from ui.handlers import TabState, bind, handler, keep_errors_visible

TASK = "classification"
THIS_MESSAGE = "your message"  # its own series: its own colour and legend entry
COLOURS = {"ham": "#3b82f6", "spam": "#ef4444", "unlabelled": "#9ca3af", THIS_MESSAGE: "#f59e0b"}
# gr.ScatterPlot draws every point as the same small ring, with no option for a series' size or
# shape: the page's SVG (Vega, which writes each point's colour as its `stroke` attribute) gets a
# rule making your message's point, and its legend symbol, a large filled disc.
YOUR_POINT_CSS = (
    f"#embedding-map path[stroke='{COLOURS[THIS_MESSAGE]}'] "
    f"{{ fill: {COLOURS[THIS_MESSAGE]}; stroke-width: 8px; opacity: 1; }}"
)
HOVER_CHARS = 160  # of each message in the map's tooltips: the plot's data stays small


def short(text: str, limit: int = HOVER_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def map_frame(embedded: EmbeddedFile, message: str, position: tuple[float, float]):
    """The scatter plot's rows: one per message of the file, and the current message last (on top)."""
    import pandas as pd  # imported on first use, like the classification files

    labels = embedded.labels or ["unlabelled"] * len(embedded.texts)
    frame = pd.DataFrame(
        {
            "x": embedded.points[:, 0],
            "y": embedded.points[:, 1],
            "label": labels,
            "text": [short(text) for text in embedded.texts],
            "row": embedded.rows,
        }
    )
    mine = pd.DataFrame(
        {"x": [position[0]], "y": [position[1]], "label": [THIS_MESSAGE], "text": [short(message)], "row": [0]}
    )
    return pd.concat([frame, mine], ignore_index=True)


def neighbours_frame(neighbours: list[dict]):
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "rank": n["rank"],
                "similarity": round(n["similarity"], 4),
                "label": n["label"] or "",
                "row": n["row"],
                "message": n["text"],
            }
            for n in neighbours
        ]
    )


def describe_map(embedded: EmbeddedFile, cached: bool, neighbours: list[dict], model_name: str) -> str:
    where = "reused from the cache" if cached else f"computed in {embedded.seconds:.1f} s, now cached"
    first, second = embedded.explained_variance
    colours = "ham (blue) and spam (red)" if embedded.labels else "grey: the file has no label column"
    lines = [
        f"**{len(embedded.texts):,} messages** of `{embedded.name}` (column `{embedded.text_column}`) as {model_name}'s "
        f"embeddings ({embedded.vectors.shape[1]} numbers each; {where}). The map shows the two directions along which "
        f"they differ most (PCA: {first:.0%} and {second:.0%} of the variance), coloured {colours}; the large orange "
        "disc is your message. Hover a point to read it.",
    ]
    if neighbours:
        best = neighbours[0]
        label = f", {best['label']}" if best["label"] else ""
        lines.append(f"Most similar: row {best['row']} (cosine similarity {best['similarity']:.3f}{label}).")
    return "\n\n".join(lines)


class MapState(TabState):
    """The embedding map's handlers work with the classification models and a cache of embedded files,
    shared by every request: a file is embedded once per model."""

    def __init__(self, config, registry):
        super().__init__(config, registry, TASK)
        self.cache = EmbeddingCache()


@handler(
    gpu=TASK,
    texts=["message"],
    checks={"message": check_message},
    uploads={"file": "a .csv, .tsv or .txt file of (labelled) messages"},
)
def similar_messages(
    tab: MapState,
    message: str,
    file: str | None,
    model_name: str,
    text_column: str,
    request: gr.Request = None,
    progress=gr.Progress(),
    **params,
):
    """Place a message among a file's messages: the file's messages embedded by the classifier's
    encoder (once per file, then cached) and projected to 2-D, and the k messages most similar to
    this one (cosine similarity). Returns the map's points, a table of the neighbours, a summary, and
    JSON (neighbours with row, text, label, similarity; position; file; explained_variance)."""
    params = check_params(with_overrides(SimilarParams(), **params))
    settings = tab.settings
    classifier = tab.registry.get(TASK, model_name)
    progress(0, desc="Reading the file")
    embedded, cached = embed_file(
        classifier,
        file,
        tab.cache,
        text_column=(text_column or "").strip() or None,
        max_rows=settings.embedding_map_max_rows,
        max_cell_chars=settings.max_file_cell_chars,
        max_bytes=tab.upload_limit,
        on_progress=lambda done, total: progress((done, total), desc="Embedding the file's messages", unit="messages"),
    )
    vector = classifier.embed_many([message])[0]
    neighbours = nearest(embedded, vector, params.k)
    position = place(embedded, vector)
    result = {
        "model": model_name,
        "neighbours": neighbours,
        "position": {"x": position[0], "y": position[1]},
        "file": {
            "name": embedded.name,
            "sha256": embedded.sha256,
            "messages": len(embedded.texts),
            "text_column": embedded.text_column,
            "label_column": embedded.label_column,
            "cached": cached,
        },
        "explained_variance": embedded.explained_variance,
        "dimensions": int(embedded.vectors.shape[1]),
        "pooling": POOLING,
    }
    return (
        map_frame(embedded, message, position),
        neighbours_frame(neighbours),
        describe_map(embedded, cached, neighbours, model_name),
        result,
    )


@handler(gpu=TASK)
def embed(tab: MapState, messages: list[str], model_name: str) -> dict:
    """Embeddings of messages: the classifier's encoder, mean-pooled and scaled to length 1."""
    tab.config.entry(TASK, model_name)  # an unknown model is named before any work
    texts = check_messages(messages, tab.settings.embedding_map_max_rows, tab.settings.max_file_cell_chars)
    vectors = tab.registry.get(TASK, model_name).embed_many(texts)
    return {
        "model": model_name,
        "dimensions": int(vectors.shape[1]),
        "pooling": POOLING,
        "vectors": np.round(vectors, 6).tolist(),
    }


def build(config, registry, message: gr.Textbox, model: gr.Dropdown, batch_file: gr.File) -> None:
    """The Embedding map sub-tab (where it is called) and the /similar and /embed endpoints."""
    state = MapState(config, registry)

    with gr.Tab("Embedding map", id="classification-map", elem_id="classification-map"):
        gr.Markdown(
            "The classifier's encoder turns each message into a vector (an embedding); similar messages get "
            "nearby vectors. Upload a file of messages (labelled: `label<TAB>text`, or a label column) to see them "
            "as points, where your message lies among them, and the messages most like it."
        )
        with gr.Row():
            with gr.Column(scale=3):
                map_message = gr.Textbox(
                    label="Your message", lines=3, placeholder="The Single message tab's message, or type one…"
                )
                map_file = gr.File(
                    label="Messages (.csv, .tsv or .txt; the Batch file's upload by default)",
                    file_types=[".csv", ".tsv", ".txt"],
                    type="filepath",
                    elem_id="embedding-map-file",
                )
            with gr.Column(scale=2):
                map_column = gr.Textbox("", label="Text column (blank: text, message, sms… or the only column)")
                params = controls(SimilarParams, ["k"], state.default, SimilarParams())
                show = gr.Button("Show the map and similar messages", variant="primary")
        gr.HTML(f"<style>{YOUR_POINT_CSS}</style>", visible="hidden")
        # show_label=False: with a block label above it, a plot of fixed height cuts off its own
        # legend (Gradio sizes the chart to the whole block); the chart's title names it instead.
        scatter = gr.ScatterPlot(
            x="x",
            y="y",
            color="label",
            color_map=COLOURS,
            color_title="",
            tooltip=["label", "row", "text"],
            title="Your message among the file's messages",
            x_title="first direction",
            y_title="second direction",
            label="Embedding map",
            show_label=False,
            height=480,
            elem_id="embedding-map",
        )
        summary = gr.Markdown(label="Summary")
        table = gr.Dataframe(label="Most similar messages", interactive=False, wrap=True, elem_id="similar-messages")
        details = details_json()
        # for programs only: no control on the page; its model's default is the config's first
        embedding = gr.api(
            bind(embed, state, defaults={"model_name": state.default.name}),
            api_name="embed",
            concurrency_id=TASK,
            api_description="Embeddings: a list of messages in; JSON out with one vector per message (the classifier's "
            "encoder, mean-pooled, length 1: cosine similarity is their dot product), dimensions and model.",
        )
        describe_api_values(embedding, inputs=["Messages", "Model"], outputs=[("Embeddings (JSON)", dict)])

    message.change(None, message, map_message, js="(text) => text", api_visibility="private", queue=False)
    # Copied in the browser: no server handler that a raw client could hand a path to return.
    batch_file.change(None, batch_file, map_file, js="(file) => file", api_visibility="private", queue=False)
    mapped = gr.on(
        [show.click, map_message.submit],
        bind(similar_messages, state),
        inputs=[map_message, map_file, model, map_column],
        inputs_kwargs=in_declaration_order(SimilarParams, params),
        outputs=[scatter, table, summary, details],
        api_name="similar",
        concurrency_id=TASK,
        show_progress_on=[summary],
        api_description="Similar messages: a message and a .csv/.tsv/.txt file of messages in; (map points, table of the k "
        "most similar messages, summary markdown, JSON with neighbours: row, text, label, cosine similarity).",
    )
    keep_errors_visible(mapped, state, summary)
