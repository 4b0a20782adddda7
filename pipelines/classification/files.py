"""Classifying a whole file of messages (CSV, TSV or TXT), with metrics when it has labels."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypedDict

from pipelines.classification.contract import CLASSES, Classifier, check_threshold
from pipelines.classification.data import check_cell_sizes, classification_metrics, read_messages
from pipelines.core.errors import InputError


class FileSummary(TypedDict):
    """What /classify_batch returns as JSON, besides the CSV."""

    rows: int
    counts: dict[str, int]  # rows labelled ham / spam at the threshold
    threshold: float
    text_column: str
    label_column: str | None
    empty_rows: int  # rows without text: not classified, their label left blank
    truncated: int  # messages longer than max_length tokens, of which only the start was read
    max_length: int
    metrics: dict | None  # against the file's labels, when it has a label column


class FileResult(FileSummary):
    frame: object  # pandas.DataFrame: the file's rows with `label` and `spam_score` added


def rows_with_text(table, max_cell_chars: int | None = None) -> list[int]:
    """The indices of the rows that have text; a message over `max_cell_chars`, or a file
    without any text, is refused naming the row or the column."""
    texts = table.texts
    check_cell_sizes(texts, max_cell_chars)
    filled = [i for i, text in enumerate(texts) if text.strip()]
    if not filled:
        raise InputError("file", f"column {table.text_column!r} has no text in any row")
    return filled


def classify_file(
    classifier: Classifier,
    path: str | Path,
    threshold: float = 0.5,
    text_column: str | None = None,
    max_rows: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    batch_size: int | None = None,
    max_cell_chars: int | None = None,
    max_bytes: int | None = None,
) -> FileResult:
    """Classify every message of a CSV/TSV/TXT file: its summary, and in `frame` the file's rows
    with `label` and `spam_score` added (an original `label` column kept as `true_label`)."""
    threshold = check_threshold(threshold)
    table = read_messages(path, text_column=text_column or None, max_rows=max_rows, max_bytes=max_bytes)
    texts = table.texts
    filled = rows_with_text(table, max_cell_chars)
    results = classifier.classify_many(
        [texts[i] for i in filled], threshold, on_progress=on_progress, batch_size=batch_size
    )

    frame = table.frame.copy()
    if "label" in frame.columns:
        frame = frame.rename(columns={"label": "true_label"})
    labels, scores = [""] * len(texts), [float("nan")] * len(texts)
    for i, result in zip(filled, results):
        labels[i], scores[i] = result["label"], round(result["scores"]["spam"], 6)
    frame["label"], frame["spam_score"] = labels, scores

    metrics = None
    true_labels = table.labels
    if true_labels is not None:
        predicted = [CLASSES.index(result["label"]) for result in results]
        metrics = classification_metrics([true_labels[i] for i in filled], predicted)
    return FileResult(
        frame=frame,
        rows=len(frame),
        counts={name: sum(1 for r in results if r["label"] == name) for name in CLASSES},
        threshold=threshold,
        text_column=table.text_column,
        label_column=table.label_column,
        empty_rows=len(texts) - len(filled),
        truncated=sum(result["truncated"] for result in results),
        max_length=classifier.max_length,
        metrics=metrics,
    )
