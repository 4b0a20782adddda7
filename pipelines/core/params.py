"""Request parameters, declared once per task.

Each task's parameters are a frozen dataclass (`TextParams`, `ImageParams`, ...) whose fields
are made with `param(...)`: the default, the allowed range, the label and one line of help,
and the keyword of the model call that receives the value. Everything else is derived from
that one declaration:

- `defaults_schema(Params)`: the pydantic model of a models.yaml entry's `defaults:` (the same
  ranges; an entry states only what differs from the dataclass' defaults);
- `check_params(params, ranges)`: the request checks, each message naming the field and the
  range (`ranges` are the dataclass' ranges narrowed by the entry's `limits:`);
- `call_kwargs(params)`: the keyword arguments the model call receives;
- `refuse_unsupported(params, supported, who)`: a model that does not implement a field refuses
  a value other than its default, naming the field and the model, instead of ignoring it;
- the UI controls (`ui.common.controls`) and the API parameters and their defaults (Gradio reads
  them from those controls).

Nothing here imports torch: the UI reads these declarations without loading any model.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from pipelines.core.errors import InputError

Widget = Literal["slider", "number", "checkbox", "dropdown", "textbox", "image"]


@dataclass(frozen=True)
class Range:
    """The values a numeric parameter may take: [low, high], or (low, high] when low_open."""

    low: float
    high: float
    integer: bool = False
    low_open: bool = False
    multiple_of: int | None = None
    step: float | None = None  # the UI slider's step (default: 1 for integers, 1/100 of the span otherwise)

    def describe(self) -> str:
        # .10g: the seed limit 4294967295 in full, not 4.29497e+09
        return f"{'(' if self.low_open else '['}{self.low:.10g}, {self.high:.10g}]"

    def expected(self) -> str:
        """What a value must be, e.g. "an integer in [32, 256], a multiple of 8"."""
        kind = "an integer" if self.integer or self.multiple_of else "a number"
        return f"{kind} in {self.describe()}" + (f", a multiple of {self.multiple_of}" if self.multiple_of else "")

    def check(self, name: str, value: object) -> int | float:
        """`value` as an int or float; NaN, infinities, booleans and non-numbers are refused."""
        whole = self.integer or self.multiple_of
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or (whole and value != int(value))
            or value < self.low
            or value > self.high
            or (self.low_open and value == self.low)
        ):
            raise InputError(name, f"must be {self.expected()}, got {value!r}")
        if self.multiple_of and int(value) % self.multiple_of:
            raise InputError(name, f"must be a multiple of {self.multiple_of} in {self.describe()}, got {value!r}")
        return int(value) if whole else float(value)

    def within(self, low: float | None = None, high: float | None = None) -> Range:
        """This range with an entry's own limits (models.yaml `limits:`) in place of its bounds."""
        return replace(self, low=self.low if low is None else low, high=self.high if high is None else high)

    @property
    def ui_step(self) -> float:
        if self.step is not None:
            return self.step
        if self.multiple_of:
            return self.multiple_of
        return 1 if self.integer else (self.high - self.low) / 100


@dataclass(frozen=True)
class ParamInfo:
    """What a parameter is, besides its default: stored in the dataclass field's metadata."""

    label: str  # the UI label and the API parameter's label
    info: str = ""  # one line of help in plain words, shown under the control
    range: Range | None = None  # numbers only
    widget: Widget | None = None  # how the value is entered; None: by its type (slider, checkbox, textbox)
    passed_as: str | None = None  # keyword of the model call that receives the value (None: used otherwise)
    # takes effect only when this other parameter is set (a boolean true, a text or file given):
    # sampling knobs only when sampling (a passed_as one is then passed as None, the model's
    # default), image-to-image settings only with an initial image
    only_if: str | None = None
    choices: tuple[str, ...] | None = None  # text values allowed (a model's entry may narrow them)


def param(
    default: Any,
    label: str,
    info: str = "",
    *,
    range: Range | None = None,
    widget: Widget | None = None,
    passed_as: str | None = None,
    only_if: str | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A dataclass field with its ParamInfo (see the module docstring)."""
    return field(
        default=default, metadata={"param": ParamInfo(label, info, range, widget, passed_as, only_if, choices)}
    )


def declared_choices(cls) -> dict[str, list[str]]:
    return {name: list(info.choices) for name, info in param_infos(cls).items() if info.choices}


def param_infos(cls) -> dict[str, ParamInfo]:
    """Field name -> ParamInfo, in declaration order (the order of the API's parameters)."""
    return {f.name: f.metadata["param"] for f in fields(cls) if "param" in f.metadata}


def default_ranges(cls) -> dict[str, Range]:
    return {name: info.range for name, info in param_infos(cls).items() if info.range is not None}


def field_types(cls) -> dict[str, type]:
    return typing.get_type_hints(cls)


def check_params(params, ranges: dict[str, Range] | None = None, choices: dict[str, list[str]] | None = None):
    """`params` with every field checked and normalised (3.0 -> 3 for integers, "" -> the first
    choice); InputError names the first bad field. `ranges` and `choices` are a model's own
    (its entry's `ranges()` and `choices()`); numbers default to the declared ranges."""
    ranges = default_ranges(type(params)) | (ranges or {})
    choices = declared_choices(type(params)) | (choices or {})
    types = field_types(type(params))
    values = {}
    for f in fields(params):
        value = getattr(params, f.name)
        if f.name in ranges:
            value = ranges[f.name].check(f.name, value)
        elif types[f.name] is bool and not isinstance(value, bool):
            raise InputError(f.name, f"must be true or false, got {value!r}")
        elif types[f.name] is str and not isinstance(value, str):
            raise InputError(f.name, f"must be text, got {type(value).__name__}")
        if f.name in choices:
            value = value or choices[f.name][0]
            if value not in choices[f.name]:
                raise InputError(f.name, f"must be one of {', '.join(choices[f.name])} for this model, got {value!r}")
        values[f.name] = value
    return replace(params, **values)


def with_overrides(params, **overrides):
    """`params` with the given fields replaced; None means "keep the default" (an API client
    that leaves a parameter out, a seed of None)."""
    known = {f.name for f in fields(params)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise InputError(unknown[0], f"is not a parameter; the parameters are {', '.join(sorted(known))}")
    return replace(params, **{k: v for k, v in overrides.items() if v is not None})


def call_kwargs(params) -> dict:
    """The model call's keyword arguments: each `passed_as` parameter's value, or None (the
    model's own default) when its `only_if` parameter is false."""
    kwargs = {}
    for name, info in param_infos(type(params)).items():
        if info.passed_as:
            enabled = info.only_if is None or getattr(params, info.only_if)
            kwargs[info.passed_as] = getattr(params, name) if enabled else None
    return kwargs


def passed_fields(cls) -> set[str]:
    """The fields that reach the model call by keyword (`passed_as`)."""
    return {name for name, info in param_infos(cls).items() if info.passed_as}


def refuse_unsupported(params, supported: set[str], who: str):
    """`params` if every field outside `supported` has its declared default; otherwise InputError
    naming the first other field and `who` ("'GPT-Neo 1.3B' (cpu/openvino int4)", "'X' runs on
    an OpenAI-compatible server that"): a value a model would ignore is refused, never dropped."""
    for f in fields(params):
        if f.name not in supported and getattr(params, f.name) != f.default:
            raise InputError(f.name, f"{who} does not take it; leave it at {f.default!r}")
    return params


def as_dict(params) -> dict:
    return dataclasses.asdict(params)


def defaults_schema(cls, name: str) -> type[BaseModel]:
    """The pydantic model of a models.yaml `defaults:` mapping for `cls`: every field optional
    (the dataclass' default), unknown keys refused, numbers within the declared ranges."""
    types = field_types(cls)
    ranges = default_ranges(cls)
    schema = {}
    for f in fields(cls):
        constraints = {}
        if f.name in ranges:
            r = ranges[f.name]
            constraints = {"gt" if r.low_open else "ge": r.low, "le": r.high}
            if r.multiple_of:
                constraints["multiple_of"] = r.multiple_of
        schema[f.name] = (types[f.name], Field(f.default, description=f.metadata["param"].label, **constraints))
    config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    return create_model(name, __config__=config, **schema)


def from_defaults(cls, defaults: BaseModel, **overrides):
    """A `cls` instance: the entry's `defaults:` with the request's overrides on top."""
    return with_overrides(cls(**defaults.model_dump()), **overrides)
