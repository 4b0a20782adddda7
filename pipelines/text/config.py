"""A `text:` entry of models.yaml."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from pipelines.core.entry import FieldProblem, ModelEntry, Strict
from pipelines.core.errors import InputError
from pipelines.core.params import Range, check_params, default_ranges, defaults_schema
from pipelines.text.contract import TextParams

TextDefaults = defaults_schema(TextParams, "TextDefaults")


class TextLimits(Strict):
    max_new_tokens: int = Field(1024, ge=1, le=int(default_ranges(TextParams)["max_new_tokens"].high))


class TextCpuSpeedups(Strict):
    """Applied once when the model loads on a CPU (ignored on GPUs); see text/speedups.py.
    bfloat16 is the entry's ordinary `dtype: bfloat16`."""

    # int8 weights for the linear layers with PyTorch's dynamic quantization (the fastest here);
    # none keeps them float.
    quantize: Literal["none", "int8_dynamic"] = "none"

    # Options that earlier versions offered and measurements retired: the message says what to use.
    RETIRED: ClassVar[dict[str, tuple[object, str]]] = {
        "quantize": ("int8_torchao", "quantize 'int8_torchao' is no longer offered: it ran at half the speed of "
                     "int8_dynamic (benchmarks/README.md, \"Text generation\"); use quantize: int8_dynamic"),
        "compile": (None, "compile is no longer offered: torch.compile made int8_dynamic decoding 11% slower after "
                    "minutes of compiling (benchmarks/README.md, \"Text generation\"); remove it"),
    }

    @model_validator(mode="before")
    @classmethod
    def _refuse_retired_options(cls, values):
        if isinstance(values, dict):
            for key, (value, message) in cls.RETIRED.items():
                if key in values and (value is None or values[key] == value):
                    raise ValueError(message)
        return values


class TextEntry(ModelEntry):
    defaults: TextDefaults = TextDefaults()
    limits: TextLimits = TextLimits()
    cpu_speedups: TextCpuSpeedups = TextCpuSpeedups()

    def ranges(self) -> dict[str, Range]:
        return default_ranges(TextParams) | {
            "max_new_tokens": default_ranges(TextParams)["max_new_tokens"].within(high=self.limits.max_new_tokens),
        }

    @model_validator(mode="after")
    def _defaults_within_limits(self):
        try:
            check_params(TextParams(**self.defaults.model_dump()), self.ranges())
        except InputError as err:
            value = getattr(self.defaults, err.field)
            raise FieldProblem("defaults", f"defaults.{err.field}={value!r} is outside limits ({err})") from None
        if self.cpu_speedups.quantize == "int8_dynamic" and self.dtype not in ("auto", "float32"):
            raise FieldProblem("cpu_speedups", "quantize int8_dynamic needs dtype float32 (or auto)")
        return self
