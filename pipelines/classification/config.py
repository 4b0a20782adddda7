"""A `classification:` entry of models.yaml."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from pipelines.classification.contract import ClassificationParams
from pipelines.core.entry import FieldProblem, ModelEntry, Strict
from pipelines.core.params import defaults_schema

ClassificationDefaults = defaults_schema(ClassificationParams, "ClassificationDefaults")
# Written by training.py next to a model it trains: its decision threshold and, for a blended
# model, the TF-IDF half and its weight (see pipeline.py).
SERVING_FILE = "ml_studio.json"


def serving_info(source: str) -> dict:
    """The SERVING_FILE of a local model folder, or {} (a Hub model, a model trained elsewhere)."""
    path = Path(source).expanduser() / SERVING_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise FieldProblem("source", f"{path} is not readable JSON ({err}); train the model again") from None


class ClassificationCpuSpeedups(Strict):
    # bfloat16 weights and activations when the CPU has native bfloat16 (AVX512-BF16 or AMX)
    # and the entry's dtype is auto; float32 elsewhere (emulated bfloat16 is slower). Measured
    # by benchmarks/spam.py: same validation F1, batches 2.5x faster.
    bfloat16: bool = False


class ClassificationEntry(ModelEntry):
    # Maps the model's own class names (often LABEL_0/LABEL_1) to ham/spam.
    labels: dict[str, Literal["ham", "spam"]] = Field(default_factory=dict)
    max_length: int = Field(512, ge=8, le=8192, description="Tokens read per message; longer text is truncated.")
    defaults: ClassificationDefaults = ClassificationDefaults()
    cpu_speedups: ClassificationCpuSpeedups = ClassificationCpuSpeedups()

    @model_validator(mode="after")
    def _labels_cover_both_classes(self):
        if self.labels and set(self.labels.values()) != {"ham", "spam"}:
            raise ValueError("labels must map the model's classes onto both 'ham' and 'spam'")
        return self

    @model_validator(mode="after")
    def _threshold_from_the_model_folder(self):
        """A model trained here carries the decision threshold its recipe chose by cross-validation:
        it is the entry's default threshold unless the entry sets one."""
        if self.backend == "local" and "threshold" not in self.defaults.model_fields_set:
            threshold = serving_info(self.source).get("threshold")
            if threshold is not None:
                object.__setattr__(self, "defaults", ClassificationDefaults(threshold=threshold))  # entries are frozen
        return self
