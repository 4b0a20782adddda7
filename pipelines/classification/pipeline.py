"""Spam detection with a fine-tuned transformer encoder, in this process.

preprocess (tokenize once, unpadded) -> forward (batches sorted by length, each padded to its
own longest message) -> postprocess (softmax, map the model's class names onto ham/spam, apply
the threshold). Explanations are word occlusion (`explain.py`); embeddings are the encoder's
hidden states, mean-pooled (`embed`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from pipelines.classification.config import ClassificationEntry, serving_info
from pipelines.classification.contract import CLASSES, ClassificationResult, Classifier, Explanation, decide
from pipelines.core.devices import Placement, choose_placement, cpu_has_native_bfloat16, module_size_mb
from pipelines.core.errors import ModelLoadError
from pipelines.core.hub import from_pretrained_kwargs
from pipelines.core.limits import chars_for_tokens

# Messages per forward pass: big enough to keep the CPU's matrix units busy, small enough that
# a batch of long messages stays well under a second.
BATCH_SIZE = 64


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
    placement = choose_placement(entry.gpu_dtype, entry.device, entry.dtype)
    if (
        placement.device == "cpu"
        and entry.dtype == "auto"
        and entry.cpu_speedups.bfloat16
        and cpu_has_native_bfloat16()
    ):
        return Placement("cpu", torch.bfloat16)
    return placement


class LocalClassifier(Classifier):
    def __init__(
        self,
        entry: ClassificationEntry,
        model: torch.nn.Module,
        tokenizer,
        class_names: list[str],
        placement: Placement,
        max_length: int,
    ):
        self.entry, self.name = entry, entry.name
        self.model, self.tokenizer = model, tokenizer
        self.class_names = class_names  # class id -> "ham" | "spam"
        self.device = placement.device
        self.placement = str(placement)
        self.max_length = max_length
        self.tfidf, self.transformer_weight = None, 1.0  # a blended model's classical half (from_entry)

    @classmethod
    def from_entry(cls, entry: ClassificationEntry) -> LocalClassifier:
        placement = choose_classifier_placement(entry)
        tokenizer = AutoTokenizer.from_pretrained(entry.source, **from_pretrained_kwargs(entry))
        model = AutoModelForSequenceClassification.from_pretrained(
            entry.source, **from_pretrained_kwargs(entry), dtype=placement.dtype
        )
        model.to(placement.device).eval()
        class_names = resolve_class_names(model.config.id2label, entry.labels, entry.name)
        model_limit = getattr(model.config, "max_position_embeddings", None) or entry.max_length
        max_length = min(entry.max_length, model_limit, tokenizer.model_max_length or model_limit)
        classifier = cls(entry, model, tokenizer, class_names, placement, max_length)
        blend = serving_info(entry.source).get("blend") if entry.backend == "local" else None
        if blend:  # trained here as transformer + TF-IDF (training.py): P(spam) is their weighted mean
            from pipelines.classification.tfidf import TfidfScorer

            classifier.tfidf = TfidfScorer.load(entry.source)
            classifier.transformer_weight = float(blend["transformer_weight"])
            classifier.placement += f" +TF-IDF ({1 - classifier.transformer_weight:.0%})"
        return classifier

    @property
    def memory_mb(self) -> float:
        return module_size_mb(self.model)

    # -- preprocess -> forward -> postprocess ----------------------------------------------
    def tokenize(self, texts: list[str]) -> tuple[list[dict], list[bool]]:
        """Token ids per text, cut to the model's limit, and whether each was cut.

        Tokenized once, unpadded: padding happens per batch in `collate`. Only the characters
        that can hold max_length tokens are tokenized: the cost stays bounded however long a text."""
        readable = chars_for_tokens(self.max_length + 1)
        cut = [len(text) > readable for text in texts]
        texts = [text[:readable] for text in texts]
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        features = [{k: encoded[k][i] for k in encoded} for i in range(len(texts))]
        # Only a text that fills the limit can have been cut: recount just those, to limit + 1.
        at_limit = [i for i, f in enumerate(features) if len(f["input_ids"]) >= self.max_length]
        truncated = list(cut)
        if at_limit:
            longer = self.tokenizer([texts[i] for i in at_limit], truncation=True, max_length=self.max_length + 1)
            for i, ids in zip(at_limit, longer["input_ids"]):
                truncated[i] = truncated[i] or len(ids) > self.max_length
        return features, truncated

    def collate(self, features: list[dict]) -> dict:
        """Pad a batch to its own longest message (dynamic padding)."""
        batch = self.tokenizer.pad(features, padding=True, return_tensors="pt")
        return {k: v.to(self.device) for k, v in batch.items()}

    @torch.inference_mode()
    def forward(self, inputs: dict, texts: list[str]) -> torch.Tensor:
        """Class probabilities (in the model's class order) of a batch; a blended model mixes the
        transformer's P(spam) with its TF-IDF half's."""
        probs = self.model(**inputs).logits.float().softmax(dim=-1).cpu()
        if self.tfidf is not None:
            spam_id, ham_id = self.class_names.index("spam"), self.class_names.index("ham")
            tfidf = torch.as_tensor(self.tfidf.spam_probabilities(texts), dtype=torch.float32)
            probs[:, spam_id] = self.transformer_weight * probs[:, spam_id] + (1 - self.transformer_weight) * tfidf
            probs[:, ham_id] = 1 - probs[:, spam_id]
        return probs

    def postprocess(
        self, probs: torch.Tensor, truncated: list[bool], thresholds: list[float]
    ) -> list[ClassificationResult]:
        spam_id, ham_id = self.class_names.index("spam"), self.class_names.index("ham")
        return [
            decide({"ham": row[ham_id], "spam": row[spam_id]}, threshold, cut, self.max_length)
            for row, cut, threshold in zip(probs.tolist(), truncated, thresholds)
        ]

    def sorted_batches(
        self, features: list[dict], batch_size: int | None, on_progress: Callable[[int, int], None] | None
    ) -> Iterator[tuple[list[int], dict]]:
        """(indices, padded inputs) of batches sorted by length, so that each is padded only to
        its own longest message; reports (done, total) once each batch is used."""
        batch_size = batch_size or BATCH_SIZE
        order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            yield chunk, self.collate([features[i] for i in chunk])
            if on_progress is not None:
                on_progress(min(start + batch_size, len(order)), len(order))

    def predict(
        self,
        texts: list[str],
        thresholds: list[float],
        on_progress: Callable[[int, int], None] | None = None,
        batch_size: int | None = None,
    ) -> list[ClassificationResult]:
        """In batches sorted by length, then put back in input order."""
        features, truncated = self.tokenize(texts)
        results: list[ClassificationResult | None] = [None] * len(texts)
        for chunk, inputs in self.sorted_batches(features, batch_size, on_progress):
            probs = self.forward(inputs, [texts[i] for i in chunk])
            for i, result in zip(
                chunk, self.postprocess(probs, [truncated[i] for i in chunk], [thresholds[i] for i in chunk])
            ):
                results[i] = result
        return results

    def embed(
        self, texts: list[str], on_progress: Callable[[int, int], None] | None = None, batch_size: int | None = None
    ) -> np.ndarray:
        """The encoder's pooled embeddings (contract.POOLING), in batches sorted by length."""
        features, _ = self.tokenize(texts)
        vectors = None
        for chunk, inputs in self.sorted_batches(features, batch_size, on_progress):
            pooled = self.pooled(inputs)
            if vectors is None:
                vectors = np.empty((len(texts), pooled.shape[1]), dtype=np.float32)
            vectors[chunk] = pooled
        return vectors

    @torch.inference_mode()
    def pooled(self, inputs: dict) -> np.ndarray:
        """Mean pooling (as sentence-transformers does for MiniLM): it works for every encoder,
        where [CLS] only means something after fine-tuning, and only for some architectures."""
        hidden = self.model.base_model(**inputs).last_hidden_state.float()
        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        return torch.nn.functional.normalize(mean, dim=-1).cpu().numpy()

    def spam_scores(self, texts: list[str]) -> list[float]:
        """P(spam) per text, unchecked (explanations score variants that may be empty)."""
        spam_id = self.class_names.index("spam")
        scores: list[float] = []
        for start in range(0, len(texts), BATCH_SIZE):
            chunk = texts[start : start + BATCH_SIZE]
            features, _ = self.tokenize(chunk)
            scores.extend(self.forward(self.collate(features), chunk)[:, spam_id].tolist())
        return scores

    def explain_one(self, text: str) -> Explanation:
        from pipelines.classification.explain import explain

        return explain(self, text)
