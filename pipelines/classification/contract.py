"""Classification's contract: its request parameters, its results, and the interface that the
local pipeline (`pipeline.LocalClassifier`) and the remote client (`remote.GradioClassifier`)
both implement. No torch here: the UI and the config read it without loading a model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypedDict

import numpy as np

from pipelines.core import background
from pipelines.core.errors import InputError
from pipelines.core.params import Range, check_params, from_defaults, param

CLASSES = ("ham", "spam")
# What an embedding is, for every classifier that gives them (said in the API's results).
POOLING = "the mean of the encoder's last hidden states over the message's tokens, scaled to length 1"


@dataclass(frozen=True)
class ClassificationParams:
    threshold: float = param(
        0.5,
        "Spam threshold",
        "A message is spam when its spam score is at least this: raise it to flag fewer messages (fewer false alarms, more missed spam).",
        range=Range(0.0, 1.0, step=0.01),
    )


@dataclass(frozen=True)
class SimilarParams:
    k: int = param(
        5,
        "Similar messages",
        "How many of the file's messages most similar to this one to list.",
        range=Range(1, 50, integer=True),
    )


class ClassificationResult(TypedDict):
    label: str  # "ham" | "spam"
    scores: dict[str, float]  # {"ham": p, "spam": 1 - p}
    truncated: bool  # the message was longer than max_length tokens and only its start was read
    max_length: int  # tokens the model reads per message
    threshold: float  # the spam threshold the label was decided at


class WordScore(TypedDict):
    text: str
    start: int  # character offsets in the message
    end: int
    score: float  # how much the spam score drops without this word (> 0: it pushed towards spam)


class Explanation(TypedDict):
    spam_score: float
    words: list[WordScore]
    segments: list[tuple[str, float | None]]  # the whole message as (piece, score or None for spaces)
    truncated: bool  # the model (and so the explanation) saw only the start of the message


def check_message(text: object, field: str = "message") -> str:
    if not isinstance(text, str):
        raise InputError(field, f"expected text, got {type(text).__name__}")
    if not text.strip():
        raise InputError(field, "is empty; enter the text of a message to classify")
    return text


def check_threshold(threshold: object) -> float:
    return check_params(ClassificationParams(threshold=threshold)).threshold


def decide(scores: dict[str, float], threshold: float, truncated: bool, max_length: int) -> ClassificationResult:
    label = "spam" if scores["spam"] >= threshold else "ham"
    return ClassificationResult(
        label=label, scores=scores, truncated=truncated, max_length=max_length, threshold=threshold
    )


def gpu_seconds(**_request) -> float:
    """ZeroGPU: seconds of GPU a request needs (a batch of short messages through a BERT/RoBERTa)."""
    return 5.0


class Classifier(ABC):
    """A ham/spam classifier, local or remote. Subclasses implement `predict` and `explain_one`;
    the checks, and running on a worker thread, are here, the same for all."""

    name: str
    entry: object  # its models.yaml entry (ClassificationEntry)
    placement: str  # where it runs, as the status panel shows it
    memory_mb: float = 0.0  # weights held in this process
    max_length: int  # tokens the model reads per message

    def default_params(self, **overrides) -> ClassificationParams:
        return from_defaults(ClassificationParams, self.entry.defaults, **overrides)

    @abstractmethod
    def predict(
        self,
        texts: list[str],
        thresholds: list[float],
        on_progress: Callable[[int, int], None] | None = None,
        batch_size: int | None = None,
    ) -> list[ClassificationResult]:
        """Results for already checked messages, in input order, computed `batch_size` at a time
        (None: the classifier's own choice), reporting (done, total) after each batch."""

    @abstractmethod
    def explain_one(self, text: str) -> Explanation:
        """The explanation of one already checked message."""

    def __call__(self, texts: list[str], threshold: float | list[float] | None = None) -> list[ClassificationResult]:
        """Classify a batch of messages; `threshold` is one for all or one per message (requests
        that Gradio batched together each bring their own); None: the model's default."""
        texts = [check_message(t) for t in texts]
        threshold = self.default_params().threshold if threshold is None else threshold
        thresholds = threshold if isinstance(threshold, (list, tuple)) else [threshold] * len(texts)
        if len(thresholds) != len(texts):
            raise InputError("threshold", f"got {len(thresholds)} thresholds for {len(texts)} messages")
        thresholds = [check_threshold(t) for t in thresholds]
        return background.call(lambda emit: self.predict(texts, thresholds), f"classify-{self.name}")

    def classify_many(
        self,
        texts: list[str],
        threshold: float | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        batch_size: int | None = None,
    ) -> list[ClassificationResult]:
        """Any number of messages (a file), reporting (done, total) to `on_progress` in this thread;
        threshold None: the model's default."""
        threshold = check_threshold(self.default_params().threshold if threshold is None else threshold)
        texts = [check_message(t, field=f"message {i + 1}") for i, t in enumerate(texts)]
        relay = (lambda progress: on_progress(*progress)) if on_progress else None
        return background.call(
            lambda emit: self.predict(
                texts, [threshold] * len(texts), on_progress=lambda *p: emit(p), batch_size=batch_size
            ),
            f"classify-{self.name}",
            on_item=relay,
        )

    def explain(self, text: str) -> Explanation:
        """Which words pushed the verdict towards spam, and how much."""
        text = check_message(text)
        return background.call(lambda emit: self.explain_one(text), f"explain-{self.name}")

    def spam_scores(self, texts: list[str]) -> list[float]:
        return [r["scores"]["spam"] for r in self(texts, threshold=0.5)]

    def embed(
        self, texts: list[str], on_progress: Callable[[int, int], None] | None = None, batch_size: int | None = None
    ) -> np.ndarray:
        """Embeddings of already checked messages (POOLING): float32 rows of length 1, in input
        order, computed `batch_size` at a time, reporting (done, total) after each batch."""
        raise InputError(
            "model", f"'{self.name}' cannot give embeddings of messages; choose a model that runs in this app"
        )

    def embed_many(
        self, texts: list[str], on_progress: Callable[[int, int], None] | None = None, batch_size: int | None = None
    ) -> np.ndarray:
        """`embed` for any number of messages, on a worker thread, reporting (done, total) to
        `on_progress` in this thread."""
        texts = [check_message(t, field=f"messages[{i}]") for i, t in enumerate(texts)]
        relay = (lambda progress: on_progress(*progress)) if on_progress else None
        return background.call(
            lambda emit: self.embed(texts, on_progress=lambda *p: emit(p), batch_size=batch_size),
            f"embed-{self.name}",
            on_item=relay,
        )

    def close(self) -> None:  # noqa: B027 - a default that does nothing, not an abstract method
        """Release what the classifier holds (the registry calls this when it unloads it)."""
