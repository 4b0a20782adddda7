"""A `classification:` entry of models.yaml."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipelines.classification.contract import ClassificationParams
from pipelines.core.entry import ModelEntry, Strict
from pipelines.core.params import defaults_schema

ClassificationDefaults = defaults_schema(ClassificationParams, "ClassificationDefaults")


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
