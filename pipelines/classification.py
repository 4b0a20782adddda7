"""Spam detection with a fine-tuned transformer encoder.

preprocess (check and tokenize) -> forward (one batched pass, dynamic padding) ->
postprocess (softmax, map the model's class names onto ham/spam, apply the threshold).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from pipelines.config import ClassificationEntry
from pipelines.hub import from_pretrained_kwargs
from pipelines.devices import Placement, choose_placement, module_size_mb
from pipelines.errors import InputError, ModelLoadError

CLASSES = ("ham", "spam")


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
        placement = choose_placement("classification", entry.device, entry.dtype)
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
    def preprocess(self, texts: list[str]) -> tuple[dict, list[bool]]:
        encoded = self.tokenizer(
            texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt"
        )
        # A message was cut if it still has tokens past the limit (counted up to limit + 1).
        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=True, max_length=self.max_length + 1)["input_ids"]]
        truncated = [n > self.max_length for n in lengths]
        return {k: v.to(self.placement.device) for k, v in encoded.items()}, truncated

    @torch.inference_mode()
    def forward(self, inputs: dict) -> torch.Tensor:
        return self.model(**inputs).logits.float().softmax(dim=-1).cpu()

    def postprocess(self, probs: torch.Tensor, truncated: list[bool], threshold: float) -> list[dict]:
        spam_id = self.class_names.index("spam")
        ham_id = self.class_names.index("ham")
        results = []
        for row, cut in zip(probs.tolist(), truncated):
            spam = row[spam_id]
            results.append(
                {
                    "label": "spam" if spam >= threshold else "ham",
                    "scores": {"ham": row[ham_id], "spam": spam},
                    "truncated": cut,
                }
            )
        return results

    def __call__(self, texts: list[str], threshold: float = 0.5) -> list[dict]:
        """Classify a batch of messages: one forward pass, padded to the longest message."""
        texts = [check_message(t) for t in texts]
        threshold = check_threshold(threshold)
        inputs, truncated = self.preprocess(texts)
        return self.postprocess(self.forward(inputs), truncated, threshold)
