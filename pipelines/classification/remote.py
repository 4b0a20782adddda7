"""A classifier served by another instance of this app (or a Space): its /classify and /explain."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pipelines.classification.contract import ClassificationResult, Classifier, Explanation, decide
from pipelines.core.errors import RemoteModelError
from pipelines.core.remote import GradioRemote

# Classification requests sent to a remote app at once (its queue is bounded; it batches them).
IN_FLIGHT = 16
# Messages per /embed request to a remote app: progress every few seconds, requests of a few MB.
EMBED_CHUNK = 256


class GradioClassifier(GradioRemote, Classifier):
    """`/classify` of a remote app, one request per message; several are in flight at once so
    that the remote can batch them (its /classify batches concurrent requests)."""

    endpoint = "/classify"
    task = "classification"

    def __init__(self, entry, client):
        super().__init__(entry, client)
        self.max_length = entry.max_length  # until the remote reports its own

    def predict(
        self,
        texts: list[str],
        thresholds: list[float],
        on_progress: Callable[[int, int], None] | None = None,
        batch_size: int | None = None,
    ) -> list[ClassificationResult]:
        """`batch_size` (default IN_FLIGHT) requests at a time (a remote's queue is bounded), results in order."""
        in_flight = batch_size or IN_FLIGHT
        results: list[ClassificationResult] = []
        for start in range(0, len(texts), in_flight):
            chunk = list(zip(texts[start : start + in_flight], thresholds[start : start + in_flight]))
            jobs = [self.submit(message=text, threshold=threshold) for text, threshold in chunk]
            for job, (_, threshold) in zip(jobs, chunk):
                for _ in self.follow(job):
                    pass
                _label, _verdict, details = self.result(job)
                results.append(self.to_result(details, threshold))
            if on_progress is not None:
                on_progress(len(results), len(texts))
        return results

    def to_result(self, details: dict, threshold: float) -> ClassificationResult:
        """The remote's JSON result, the label decided here (the same threshold rule)."""
        scores = {name: float(score) for name, score in (details.get("scores") or {}).items()}
        if set(scores) != {"ham", "spam"}:
            raise RemoteModelError(
                self.entry, details.get("error") or f"expected ham/spam scores, got {sorted(scores)}"
            )
        self.max_length = int(details.get("max_length") or self.max_length)
        return decide(scores, threshold, bool(details.get("truncated")), self.max_length)

    def explain_one(self, text: str) -> Explanation:
        if "/explain" not in self.parameters:
            raise RemoteModelError(
                self.entry, "the remote app has no /explain endpoint: word explanations are not available for it"
            )
        _highlighted, _note, details = self.call("/explain", message=text)
        return Explanation(
            spam_score=float(details["spam_score"]),
            words=details["words"],
            segments=[tuple(segment) for segment in details["segments"]],
            truncated=bool(details["truncated"]),
        )

    def embed(
        self, texts: list[str], on_progress: Callable[[int, int], None] | None = None, batch_size: int | None = None
    ) -> np.ndarray:
        """The remote app's /embed, EMBED_CHUNK messages per request."""
        if "/embed" not in self.parameters:
            raise RemoteModelError(
                self.entry,
                "the remote app has no /embed endpoint: embeddings (the map, similar messages) are not available for it",
            )
        chunk_size = batch_size or EMBED_CHUNK
        vectors = []
        for start in range(0, len(texts), chunk_size):
            result = self.call("/embed", messages=texts[start : start + chunk_size])
            vectors.extend(result["vectors"])
            if on_progress is not None:
                on_progress(len(vectors), len(texts))
        return np.asarray(vectors, dtype=np.float32)
