"""The parameter walk: every field of a task's parameters, set to values other than its
default, must change what a model makes or be refused with an error that names the field.

For each field of the dataclass (`dataclasses.fields`, so a new field is walked without being
listed anywhere), the walk starts from a base request (the model's defaults with a fixed seed,
plus what the field's `only_if` needs: sampling for the sampling knobs, an initial image for
image-to-image settings), then tries the field's candidate values (`candidates`: the neighbours
of the base value, the ends of the model's range, the other choices, or a sample text) until one
changes the outcome. Each candidate's outcome is one of:

- refused naming the field (InputError with `field`): the model says it cannot honour it;
- refused naming another field: this combination is not allowed (e.g. too few steps for the
  strength), no evidence either way;
- an outcome other than the base's (the text, the token count, the images' pixels, the previews,
  or an error the base got and this value avoids, as truncate_prompt avoids a too-long prompt's):
  the value is used.

A field passes when some value is used or every value is refused; otherwise it was silently
ignored, and the walk says which values made no difference.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from pipelines.core.errors import InputError
from pipelines.core.params import declared_choices, default_ranges, param_infos


def candidates(params, name: str, ranges: dict, choices: dict, samples: dict[str, list]) -> list:
    """Values of field `name` other than its value in `params`, the most telling first."""
    current = getattr(params, name)
    kind = typing.get_type_hints(type(params))[name]
    if name in choices:
        values = list(choices[name])
    elif kind is bool:
        values = [not current]
    elif name in ranges:
        r = ranges[name]
        step = r.ui_step
        values = [current + step, current - step, r.low, r.high]
        values = [v for v in values if r.low <= v <= r.high and not (r.low_open and v == r.low)]
        if r.integer or r.multiple_of:
            values = [int(v) for v in values]
        else:
            values = [round(v, 10) for v in values]
    elif name in samples:
        values = list(samples[name])
    else:
        raise AssertionError(f"the walk cannot pick values for {name!r} ({kind}): give it samples or a range")
    unique = []
    for value in values:
        if value != current and value not in unique:
            unique.append(value)
    return unique


def with_prerequisite(params, name: str, samples: dict[str, list]):
    """`params` with what field `name` needs to take effect (its `only_if`) switched on."""
    needed = param_infos(type(params))[name].only_if
    if needed is None or getattr(params, needed):
        return params
    kind = typing.get_type_hints(type(params))[needed]
    return replace(params, **{needed: True if kind is bool else samples[needed][0]})


def outcome(run: Callable[[Any], Any], params) -> tuple:
    try:
        return ("ok", run(params))
    except InputError as err:
        return ("refused", err.field)


def walk(
    base,
    run: Callable[[Any], Any],
    ranges: dict,
    choices: dict,
    samples: dict[str, list] | None = None,
    contexts: list[Callable[[Any], Any]] | None = None,
    engine: str = "",
) -> dict[str, str]:
    """Walk every field of `base`'s dataclass; `run(params)` returns a comparable outcome (raising
    InputError when refused). `contexts` are other ways to run (e.g. with a too-long prompt),
    tried in turn when the first shows no difference. Returns {field: "used" | "refused"} and fails
    naming every field that was silently ignored."""
    samples = samples or {}
    ranges = default_ranges(type(base)) | ranges  # the model's own, where it narrows them
    choices = declared_choices(type(base)) | choices
    runs = [run, *(contexts or [])]
    first = outcome(run, base)
    assert first[0] == "ok", f"{engine}: the base request {base} was refused ({first[1]})"
    assert outcome(run, base) == first, f"{engine}: the same request gave two outcomes: a seed is not fixed"
    verdicts, ignored = {}, {}
    for f in dataclasses.fields(base):
        start = with_prerequisite(base, f.name, samples)
        values = candidates(start, f.name, ranges, choices, samples)
        assert values, f"{engine}: no value other than {getattr(start, f.name)!r} to try for {f.name}"
        tried = {}
        for attempt in runs:
            reference = outcome(attempt, start)
            for value in values:
                result = outcome(attempt, replace(start, **{f.name: value}))
                if result == ("refused", f.name):
                    tried[value] = "refused"
                elif result[0] == "refused":
                    tried.setdefault(value, f"refused naming {result[1]}")
                elif result != reference:
                    verdicts[f.name] = "used"
                    break
                else:
                    tried.setdefault(value, "same outcome as " + repr(getattr(start, f.name)))
            if f.name in verdicts:
                break
        if f.name not in verdicts:
            if tried and all(v == "refused" for v in tried.values()):
                verdicts[f.name] = "refused"
            else:
                ignored[f.name] = tried
    assert not ignored, f"{engine}: parameters silently ignored (value: what happened): {ignored}"
    return verdicts


# -- text -----------------------------------------------------------------------------------------------
SHORT_PROMPT = "Once upon a time"
# Values to try for text fields of TextParams that have no choices (none yet): a new one needs its samples here.
TEXT_SAMPLES: dict[str, list] = {}


def text_outcome(generator, prompt: str):
    """What a text request makes: its text, token count, truncation and recorded tokens."""

    def run(params):
        final = generator.generate(prompt, params)
        return json.dumps(
            {
                key: final[key]
                for key in ("text", "new_tokens", "truncated_tokens", "truncated_chars", "tokens", "tokens_unavailable")
            },
            sort_keys=True,
        )

    return run


def walk_text(generator, base=None, samples: dict[str, list] | None = None) -> dict[str, str]:
    """The walk of a text generator from its defaults (sampling) with a fixed seed, or from `base`;
    a prompt twice as long as the context is the second context (where truncate_prompt shows).
    `samples`: values to try for text fields without choices (TEXT_SAMPLES)."""
    base = base or generator.default_params(seed=7)
    samples = TEXT_SAMPLES if samples is None else samples
    too_long = SHORT_PROMPT + " " + " ".join([SHORT_PROMPT] * (generator.context_length // 2))  # ~4 tokens each
    return walk(
        base,
        text_outcome(generator, SHORT_PROMPT),
        generator.entry.ranges(),
        generator.entry.choices(),
        samples,
        contexts=[text_outcome(generator, too_long)],
        engine=f"{generator.name} ({generator.placement})",
    )
