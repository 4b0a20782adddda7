"""A `classification:` entry of models.yaml, and the `training:` section (what the Train tab fine-tunes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from pipelines.classification.contract import ClassificationParams
from pipelines.classification.data import MIN_MESSAGES_PER_CLASS
from pipelines.classification.training import SERVING_FILE, TrainParams
from pipelines.core.entry import FieldProblem, ModelEntry, Strict
from pipelines.core.errors import InputError
from pipelines.core.params import Range, default_ranges, defaults_schema

ClassificationDefaults = defaults_schema(ClassificationParams, "ClassificationDefaults")


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
    # and the entry's dtype is auto; float32 elsewhere (emulated bfloat16 is slower). Same
    # validation F1, batches ~2.5x faster (`python -m benchmarks.spam --model DIR`).
    bfloat16: bool = False


class ClassificationEntry(ModelEntry):
    gpu_dtype: ClassVar[str] = "float32"  # small models: full precision costs nothing noticeable
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


# -- the `training:` section: what the Train tab and /train_classifier may fine-tune ---------------
TrainDefaults = defaults_schema(TrainParams, "TrainDefaults")


class BaseModel(Strict):
    """An encoder the Train tab offers to fine-tune (always local weights: a Hub id or a folder)."""

    name: str = Field(min_length=1, description="Shown in the Train tab's base-model dropdown and used by API clients.")
    source: str = Field(
        min_length=1, description="Hugging Face repo id or local directory of an encoder (BERT, MiniLM, ...)."
    )
    description: str = ""
    # what registry.explain_load_failure reads to say why a base cannot be loaded
    backend: ClassVar[str] = "local"
    url: ClassVar[None] = None


class TrainingConfig(Strict):
    """The models file's `training:` section (declared in the task table's classification row)."""

    base_models: list[BaseModel] = Field(
        default_factory=list, description="The first is the default; none: no Train tab."
    )
    # Its lists whose entries' `source` may be relative to the models file (core/config.py resolves them).
    local_sources: ClassVar[tuple[str, ...]] = ("base_models",)
    # Only what differs from TrainParams' defaults (the CLI's), e.g. a validation share for the curves.
    defaults: TrainDefaults = TrainDefaults()
    # A training holds the machine (one at a time): bound what one request may ask for.
    max_minutes: float = Field(60.0, gt=0, description="The longest time_limit_minutes a training may ask for.")
    min_messages_per_class: int = Field(
        MIN_MESSAGES_PER_CLASS, ge=2, description="Fewer distinct ham or spam messages are refused."
    )
    # How a training shares the machine with requests (`python -m benchmarks.train_sharing`):
    # stepping aside = training at the lowest CPU priority and waiting before each of its linear
    # layers (forward and backward) while a request computes; threads = the torch threads it
    # trains on (0: all), leaving the other cores to requests (measured no better on 2 cores).
    step_aside: bool = Field(
        True, description="Train at the lowest CPU priority, pausing while other requests compute."
    )
    threads: int = Field(0, ge=0, description="CPU threads a training uses; 0 = all of them.")

    @model_validator(mode="after")
    def _consistent(self):
        names = [b.name for b in self.base_models]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise FieldProblem("base_models", f"duplicate base model name(s) {duplicates}")
        if self.defaults.time_limit_minutes > self.max_minutes:
            raise FieldProblem(
                "defaults",
                f"time_limit_minutes {self.defaults.time_limit_minutes:g} is above max_minutes {self.max_minutes:g}",
            )
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.base_models)

    def base(self, name: str) -> BaseModel:
        for base in self.base_models:
            if base.name == name:
                return base
        raise InputError(
            "base_model",
            f"unknown base model {name!r}; choose one of {', '.join(repr(b.name) for b in self.base_models)}",
        )

    def ranges(self) -> dict[str, Range]:
        """TrainParams' ranges, the time limit narrowed to max_minutes (the tab's controls use these too)."""
        return {"time_limit_minutes": default_ranges(TrainParams)["time_limit_minutes"].within(high=self.max_minutes)}

    def choices(self) -> dict[str, list[str]]:
        return {}
