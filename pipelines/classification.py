"""Spam detection with a fine-tuned transformer encoder.

preprocess (check and tokenize) -> forward (one batched pass, dynamic padding) ->
postprocess (softmax, map the model's class names onto ham/spam, apply the threshold).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from pipelines.config import ClassificationEntry
from pipelines.hub import from_pretrained_kwargs
from pipelines.devices import Placement, choose_placement, cpu_has_native_bfloat16, module_size_mb
from pipelines.errors import InputError, ModelLoadError
from pipelines.spam_data import CLASS_NAMES, classification_metrics, read_messages

CLASSES = ("ham", "spam")
# Messages per forward pass for files and explanations: big enough to keep the CPU's matrix
# units busy, small enough that a batch of long messages stays well under a second.
FILE_BATCH_SIZE = 64


def resolve_class_names(id2label: dict[int, str], mapping: dict[str, str], model_name: str) -> list[str]:
    """The model's class ids as 'ham'/'spam', in id order.

    Hub models often call their classes LABEL_0/LABEL_1; models.yaml maps those. Models
    that already say ham/spam need no mapping. Anything else is a config error, because
    guessing which class is spam would silently invert every verdict.
    """
    names = []
    for class_id in sorted(id2label):
        raw = str(id2label[class_id])
        mapped = mapping.get(raw) or (raw.lower() if raw.lower() in CLASSES else None)
        if mapped is None:
            raise ModelLoadError(
                model_name,
                f"its class {class_id} is called {raw!r}; add `labels: {{{raw}: ham|spam, ...}}` "
                "to its entry in models.yaml so the app knows which class is spam.",
            )
        names.append(mapped)
    if sorted(names) != sorted(CLASSES):
        raise ModelLoadError(model_name, f"its classes map to {names}; exactly one 'ham' and one 'spam' are needed.")
    return names


def choose_classifier_placement(entry: ClassificationEntry) -> Placement:
    """The entry's device and dtype; float32 on CPU becomes bfloat16 where the entry's
    cpu_speedups ask for it and the CPU runs bfloat16 natively."""
    placement = choose_placement("classification", entry.device, entry.dtype)
    if placement.device == "cpu" and entry.dtype == "auto" and entry.cpu_speedups.bfloat16 and cpu_has_native_bfloat16():
        return Placement("cpu", torch.bfloat16)
    return placement


def check_message(text: object, field: str = "message") -> str:
    if not isinstance(text, str):
        raise InputError(field, f"expected text, got {type(text).__name__}")
    if not text.strip():
        raise InputError(field, "is empty; enter the text of a message to classify")
    return text


def check_threshold(threshold: object) -> float:
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise InputError("threshold", f"must be a number between 0 and 1, got {threshold!r}") from None
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise InputError("threshold", f"must be between 0 and 1, got {threshold!r}")
    return value


@dataclass
class SpamClassifier:
    name: str
    model: torch.nn.Module
    tokenizer: object
    class_names: list[str]  # class id -> "ham" | "spam"
    placement: Placement
    max_length: int

    @classmethod
    def from_entry(cls, entry: ClassificationEntry) -> "SpamClassifier":
        placement = choose_classifier_placement(entry)
        tokenizer = AutoTokenizer.from_pretrained(entry.source, **from_pretrained_kwargs(entry))
        model = AutoModelForSequenceClassification.from_pretrained(
            entry.source, **from_pretrained_kwargs(entry), dtype=placement.dtype
        )
        model.to(placement.device).eval()
        class_names = resolve_class_names(model.config.id2label, entry.labels, entry.name)
        model_limit = getattr(model.config, "max_position_embeddings", None) or entry.defaults.max_length
        max_length = min(entry.defaults.max_length, model_limit, tokenizer.model_max_length or model_limit)
        return cls(entry.name, model, tokenizer, class_names, placement, max_length)

    @property
    def memory_mb(self) -> float:
        return module_size_mb(self.model)

    # -- preprocess -> forward -> postprocess ----------------------------------------------
    def tokenize(self, texts: list[str]) -> tuple[list[dict], list[bool]]:
        """Token ids per text, cut to the model's limit, and whether each was cut.

        Tokenized once, unpadded: padding happens per batch in `collate`."""
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        features = [{k: encoded[k][i] for k in encoded} for i in range(len(texts))]
        # Only a text that fills the limit can have been cut: recount just those, to limit + 1.
        at_limit = [i for i, f in enumerate(features) if len(f["input_ids"]) >= self.max_length]
        truncated = [False] * len(texts)
        if at_limit:
            longer = self.tokenizer([texts[i] for i in at_limit], truncation=True, max_length=self.max_length + 1)
            for i, ids in zip(at_limit, longer["input_ids"]):
                truncated[i] = len(ids) > self.max_length
        return features, truncated

    def collate(self, features: list[dict]) -> dict:
        """Pad a batch to its own longest message (dynamic padding)."""
        batch = self.tokenizer.pad(features, padding=True, return_tensors="pt")
        return {k: v.to(self.placement.device) for k, v in batch.items()}

    def preprocess(self, texts: list[str]) -> tuple[dict, list[bool]]:
        features, truncated = self.tokenize(texts)
        return self.collate(features), truncated

    @torch.inference_mode()
    def forward(self, inputs: dict) -> torch.Tensor:
        return self.model(**inputs).logits.float().softmax(dim=-1).cpu()

    def postprocess(self, probs: torch.Tensor, truncated: list[bool], thresholds: list[float]) -> list[dict]:
        spam_id = self.class_names.index("spam")
        ham_id = self.class_names.index("ham")
        results = []
        for row, cut, threshold in zip(probs.tolist(), truncated, thresholds):
            spam = row[spam_id]
            results.append(
                {
                    "label": "spam" if spam >= threshold else "ham",
                    "scores": {"ham": row[ham_id], "spam": spam},
                    "truncated": cut,
                }
            )
        return results

    def __call__(self, texts: list[str], threshold: float | list[float] = 0.5) -> list[dict]:
        """Classify a batch of messages: one forward pass, padded to the longest message.

        `threshold` is one spam threshold for all, or one per message (requests that Gradio
        batched together each bring their own).
        """
        texts = [check_message(t) for t in texts]
        thresholds = threshold if isinstance(threshold, (list, tuple)) else [threshold] * len(texts)
        if len(thresholds) != len(texts):
            raise InputError("threshold", f"got {len(thresholds)} thresholds for {len(texts)} messages")
        thresholds = [check_threshold(t) for t in thresholds]
        inputs, truncated = self.preprocess(texts)
        return self.postprocess(self.forward(inputs), truncated, thresholds)

    def spam_scores(self, texts: list[str], batch_size: int = FILE_BATCH_SIZE) -> list[float]:
        """P(spam) per text, in batches (used by the explanations, which need no checks or labels)."""
        spam_id = self.class_names.index("spam")
        scores: list[float] = []
        for start in range(0, len(texts), batch_size):
            inputs, _ = self.preprocess(texts[start : start + batch_size])
            scores.extend(self.forward(inputs)[:, spam_id].tolist())
        return scores

    def classify_many(
        self,
        texts: list[str],
        threshold: float = 0.5,
        batch_size: int = FILE_BATCH_SIZE,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> list[dict]:
        """Classify any number of messages: sorted by length into batches, so that each batch is
        padded only to its own longest message (dynamic padding), then put back in input order."""
        threshold = check_threshold(threshold)
        texts = [check_message(t, field=f"message {i + 1}") for i, t in enumerate(texts)]
        features, truncated = self.tokenize(texts)
        order = sorted(range(len(texts)), key=lambda i: len(features[i]["input_ids"]))
        results: list[dict | None] = [None] * len(texts)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            probs = self.forward(self.collate([features[i] for i in chunk]))
            for i, result in zip(chunk, self.postprocess(probs, [truncated[i] for i in chunk], [threshold] * len(chunk))):
                results[i] = result
            if on_progress is not None:
                on_progress(min(start + batch_size, len(order)), len(order))
        return results


# -- batch files -------------------------------------------------------------------------------
def classify_file(
    classifier: SpamClassifier,
    path: str | Path,
    threshold: float = 0.5,
    text_column: str | None = None,
    max_rows: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Classify every message of a CSV/TSV/TXT file.

    Returns `frame` (the file's columns + `label`, `spam_score`; an original `label` column is
    kept as `true_label`), `metrics` (when the file has labels, else None), `empty_rows` (rows
    without text: not classified, left blank) and `truncated` (messages cut to the model's limit).
    """
    threshold = check_threshold(threshold)
    table = read_messages(path, text_column=text_column or None, max_rows=max_rows)
    texts = table.texts
    filled = [i for i, text in enumerate(texts) if text.strip()]
    if not filled:
        raise InputError("file", f"column {table.text_column!r} has no text in any row")
    results = classifier.classify_many([texts[i] for i in filled], threshold, on_progress=on_progress)

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
        predicted = [CLASS_NAMES.index(result["label"]) for result in results]
        metrics = classification_metrics([true_labels[i] for i in filled], predicted)
    return {
        "frame": frame,
        "metrics": metrics,
        "text_column": table.text_column,
        "label_column": table.label_column,
        "empty_rows": len(texts) - len(filled),
        "truncated": sum(result["truncated"] for result in results),
    }
