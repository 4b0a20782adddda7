"""A `text:` entry of models.yaml."""

from __future__ import annotations

from importlib.util import find_spec
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from pipelines.core.entry import FieldProblem, ModelEntry, Strict
from pipelines.core.errors import InputError
from pipelines.core.params import Range, check_params, default_ranges, defaults_schema
from pipelines.text.contract import TextParams

TextDefaults = defaults_schema(TextParams, "TextDefaults")
# What `engine: openvino` imports (module -> PyPI package): openvino runs the model, nncf compresses its weights.
OPENVINO_PACKAGES = {"openvino": "openvino", "nncf": "nncf"}


def missing_engine_packages() -> list[str]:
    """The packages of the openvino engine this environment lacks (looked up without importing them)."""
    return [package for module, package in OPENVINO_PACKAGES.items() if find_spec(module) is None]


class TextLimits(Strict):
    max_new_tokens: int = Field(1024, ge=1, le=int(default_ranges(TextParams)["max_new_tokens"].high))


class TextCpuSpeedups(Strict):
    """Applied once when the model loads on a CPU (ignored on GPUs); see text/speedups.py and
    text/openvino_engine.py. bfloat16 is the entry's ordinary `dtype: bfloat16`."""

    # torch: PyTorch runs the model (with `quantize`); openvino: the model is exported once to
    # OpenVINO with `weights` compressed (GPT-Neo only; the fastest on CPUs here, with the least
    # memory: `python -m benchmarks.textgen` measures both). Needs the openvino and nncf packages.
    engine: Literal["torch", "openvino"] = "torch"
    # torch engine: int8 weights for the linear layers with PyTorch's dynamic quantization;
    # none keeps them float.
    quantize: Literal["none", "int8_dynamic"] = "none"
    # openvino engine: the weights' format (float32 is the reference; int8, int4 cost quality).
    weights: Literal["float32", "int8", "int4"] = "int4"
    # openvino engine: where exported models are kept (default $ML_STUDIO_CACHE/openvino or
    # ~/.cache/ml-studio/openvino); an export takes minutes once, later starts reuse it.
    cache_dir: str | None = None

    # Options no longer offered: an entry naming one is refused at start-up, the message saying
    # what to use instead (why each was retired: benchmarks/README.md, "Options measured and retired").
    RETIRED: ClassVar[dict[str, tuple[object, str]]] = {
        "quantize": (
            "int8_torchao",
            "quantize 'int8_torchao' is no longer offered: it ran at half the speed of "
            'int8_dynamic (benchmarks/README.md, "Text generation"); use quantize: int8_dynamic',
        ),
        "compile": (
            None,
            "compile is no longer offered: torch.compile made int8_dynamic decoding 11% slower after "
            'minutes of compiling (benchmarks/README.md, "Text generation"); remove it',
        ),
    }

    @model_validator(mode="before")
    @classmethod
    def _refuse_retired_options(cls, values):
        if isinstance(values, dict):
            for key, (value, message) in cls.RETIRED.items():
                if key in values and (value is None or values[key] == value):
                    raise ValueError(message)
        return values

    @model_validator(mode="after")
    def _options_match_the_engine(self):
        if self.engine == "openvino":
            if self.quantize != "none":
                raise FieldProblem(
                    "quantize", "is for engine torch; with engine openvino use weights: int4 | int8 | float32"
                )
            missing = missing_engine_packages()
            if missing:  # refused at start-up, not at the first request
                raise FieldProblem(
                    "engine",
                    f"engine openvino needs the package(s) {' and '.join(missing)}, which are "
                    "not installed: pip install -r requirements.txt (or use engine: torch)",
                )
        else:
            for option in ("weights", "cache_dir"):
                if option in self.model_fields_set:
                    raise FieldProblem(
                        option, "is for engine openvino (engine: openvino); the torch engine uses quantize"
                    )
        return self


class TextEntry(ModelEntry):
    gpu_dtype: ClassVar[str] = "bfloat16"  # GPT-Neo overflows (NaNs) in float16
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
        if self.cpu_speedups.engine == "openvino" and self.dtype not in ("auto", "float32"):
            raise FieldProblem(
                "cpu_speedups", "engine openvino exports from float32 weights: use dtype float32 (or auto)"
            )
        return self
