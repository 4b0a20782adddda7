"""Where a message lies among others: a labelled file's messages as embeddings (the classifier's
encoder, `Classifier.embed`), a 2-D map of them (PCA), and the messages nearest to a message
(cosine similarity: semantic search over the user's own file).

A file is embedded once per (content, model, text column) and kept (`EmbeddingCache`), so that
looking at one message after another costs one embedding each. The neighbours are one product
of normalised vectors, not a vector index: for the 10,000 messages the map allows at most it
takes about a millisecond (`python -m benchmarks.embeddings`), far below the embedding itself,
and an exact search needs no extra library and no index to build. No torch here: any classifier
(local or remote) that gives embeddings will do.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import numpy as np

from pipelines.classification.contract import CLASSES, Classifier, check_message
from pipelines.classification.data import read_messages
from pipelines.classification.files import rows_with_text
from pipelines.core.errors import InputError
from pipelines.core.limits import check_text

# Files whose embeddings are kept (least recently used dropped first): 10,000 messages of a
# 768-dimension encoder take 31 MB.
CACHED_FILES = 4


class Neighbour(TypedDict):
    rank: int  # 1 = the most similar
    row: int  # the message's row in the file (1 = the first message)
    text: str
    label: str | None  # ham/spam from the file, None when it has no labels
    similarity: float  # cosine similarity of the embeddings: 1 = the same direction


@dataclass
class EmbeddedFile:
    """A file's messages with their embeddings and their places on the map."""

    sha256: str
    model: str
    name: str
    text_column: str
    label_column: str | None
    rows: list[int]  # the file row of each message (rows without text are left out)
    texts: list[str]
    labels: list[str] | None  # ham/spam per message, when the file has a label column
    vectors: np.ndarray  # (messages, dimensions), each row of length 1
    points: np.ndarray  # (messages, 2): the map
    projection: object | None  # the fitted PCA that places other messages on the same map
    explained_variance: list[float]  # of the map's two axes
    seconds: float  # the time embedding took


class EmbeddingCache:
    """The embeddings of the last CACHED_FILES files, by (content hash, model, text column)."""

    def __init__(self, size: int = CACHED_FILES):
        self.size = size
        self._files: OrderedDict[tuple, EmbeddedFile] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> EmbeddedFile | None:
        with self._lock:
            if key in self._files:
                self._files.move_to_end(key)
                return self._files[key]
        return None

    def put(self, key: tuple, embedded: EmbeddedFile) -> None:
        with self._lock:
            self._files[key] = embedded
            self._files.move_to_end(key)
            while len(self._files) > self.size:
                self._files.popitem(last=False)


def embed_file(
    classifier: Classifier,
    path: str | Path,
    cache: EmbeddingCache,
    *,
    text_column: str | None = None,
    max_rows: int,
    max_cell_chars: int | None = None,
    max_bytes: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[EmbeddedFile, bool]:
    """The file's messages embedded and mapped, and whether that came from `cache`. More than
    `max_rows` messages (settings.embedding_map_max_rows) are refused naming the limit."""
    path = Path(path)
    table = read_messages(path, text_column=text_column or None, max_bytes=max_bytes)
    if len(table.frame) > max_rows:
        raise InputError(
            "file",
            f"{path.name!r} has {len(table.frame):,} messages; the embedding map takes at most "
            f"{max_rows:,} (settings.embedding_map_max_rows)",
        )
    filled = rows_with_text(table, max_cell_chars)
    key = (table.sha256, classifier.name, table.text_column)  # the bytes read once, within max_bytes
    cached = cache.get(key)
    if cached is not None:
        return cached, True
    texts = [table.texts[i] for i in filled]
    started = time.perf_counter()
    vectors = classifier.embed_many(texts, on_progress=on_progress)
    seconds = time.perf_counter() - started
    points, projection, explained = map_points(vectors)
    labels = table.labels
    embedded = EmbeddedFile(
        sha256=key[0],
        model=classifier.name,
        name=path.name,
        text_column=table.text_column,
        label_column=table.label_column,
        rows=[i + 1 for i in filled],
        texts=texts,
        labels=None if labels is None else [CLASSES[labels[i]] for i in filled],
        vectors=vectors,
        points=points,
        projection=projection,
        explained_variance=explained,
        seconds=seconds,
    )
    cache.put(key, embedded)
    return embedded, False


def map_points(vectors: np.ndarray) -> tuple[np.ndarray, object | None, list[float]]:
    """2-D coordinates of each vector: its projection on the two directions along which the
    vectors vary most (PCA), the fitted projection, and the share of the variance each keeps."""
    from sklearn.decomposition import PCA  # imported on first use, like the rest of scikit-learn here

    if len(vectors) < 2:  # one message: no direction to project on
        return np.zeros((len(vectors), 2), dtype=np.float32), None, [0.0, 0.0]
    projection = PCA(n_components=2, random_state=0).fit(vectors)
    return (
        projection.transform(vectors).astype(np.float32),
        projection,
        [float(v) for v in projection.explained_variance_ratio_],
    )


def place(embedded: EmbeddedFile, vector: np.ndarray) -> tuple[float, float]:
    """Where a message (its embedding) lies on the file's map."""
    if embedded.projection is None:
        return 0.0, 0.0
    x, y = embedded.projection.transform(vector[None, :].astype(np.float32))[0]
    return float(x), float(y)


def nearest(embedded: EmbeddedFile, vector: np.ndarray, k: int) -> list[Neighbour]:
    """The `k` messages of the file most similar to `vector` (cosine similarity, highest first;
    ties in file order)."""
    similarities = embedded.vectors @ vector.astype(np.float32)  # rows of length 1: the products are the cosines
    order = np.argsort(-similarities, kind="stable")[:k]
    return [
        Neighbour(
            rank=rank,
            row=embedded.rows[i],
            text=embedded.texts[i],
            label=None if embedded.labels is None else embedded.labels[i],
            similarity=round(min(float(similarities[i]), 1.0), 6),
        )
        for rank, i in enumerate(order.tolist(), start=1)
    ]


def check_messages(messages: object, max_messages: int, max_chars: int) -> list[str]:
    """A list of message texts (the /embed request), each checked; sizes name their settings."""
    if not isinstance(messages, (list, tuple)):
        raise InputError("messages", f"must be a list of message texts, got {type(messages).__name__}")
    if not messages:
        raise InputError("messages", "is empty; give at least one message")
    if len(messages) > max_messages:
        raise InputError(
            "messages",
            f"has {len(messages):,} messages; the limit is {max_messages:,} per request (settings.embedding_map_max_rows)",
        )
    for i, text in enumerate(messages):
        check_message(text, field=f"messages[{i}]")
        check_text(text, f"messages[{i}]", None)  # its size is checked below, against another setting
        if len(text) > max_chars:
            raise InputError(
                f"messages[{i}]",
                f"is {len(text):,} characters; the limit is {max_chars:,} per message of a list (settings.max_file_cell_chars)",
            )
    return list(messages)
