"""Text generation with a causal LM (GPT-Neo), streamed token by token.

`TextGenerator.stream` runs `model.generate` in a background thread and yields the text
as it grows. Stopping is real: a stopping criterion checks a flag before every token, and
closing the stream (Stop in the UI, a client that went away) sets that flag, so the
model is free for the next request at once.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import asdict, dataclass
from typing import Iterator

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from pipelines.config import TextEntry
from pipelines.cpu_speedups import apply_cpu_speedups, describe_speedups, model_memory_mb
from pipelines.hub import from_pretrained_kwargs
from pipelines.devices import Placement, choose_placement
from pipelines.errors import InputError

MAX_SEED = 2**32 - 1

# Named sampling presets offered in the Text tab. Each sets these fields; the others (and
# max_new_tokens) keep the model's defaults from models.yaml.
PRESETS: dict[str, dict] = {
    # the most likely token every time: reproducible, factual-sounding, prone to loops
    "Precise (greedy)": dict(do_sample=False, repetition_penalty=1.2),
    # mild sampling: coherent yet varied; close to most models' defaults
    "Balanced": dict(do_sample=True, temperature=0.7, top_p=0.9, top_k=40, repetition_penalty=1.1),
    # wide sampling: surprising word choices, drifts off topic sooner
    "Creative": dict(do_sample=True, temperature=1.1, top_p=0.98, top_k=0, repetition_penalty=1.05),
}


@dataclass(frozen=True)
class TextParams:
    max_new_tokens: int = 64
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 50
    repetition_penalty: float = 1.1
    do_sample: bool = True
    seed: int = -1  # -1 picks a random seed; the one used is reported back
    # A prompt too long for the context: False refuses it with a message; True drops its
    # oldest tokens (left truncation) and says how many in the result's `truncated_tokens`.
    truncate_prompt: bool = False

    @classmethod
    def from_defaults(cls, entry: TextEntry, **overrides) -> "TextParams":
        values = entry.defaults.model_dump()
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @classmethod
    def from_preset(cls, entry: TextEntry, preset: str, **overrides) -> "TextParams":
        """The model's defaults with a named preset's sampling fields on top."""
        if preset not in PRESETS:
            raise InputError("preset", f"unknown preset {preset!r}; choose one of {', '.join(map(repr, PRESETS))}")
        return cls.from_defaults(entry, **(PRESETS[preset] | overrides))


def _number(field: str, value: object, low: float, high: float, integer: bool = False, low_open: bool = False) -> float:
    """Check a numeric field against its range; NaN, infinities and non-numbers are rejected."""
    kind = "an integer" if integer else "a number"
    bracket = "(" if low_open else "["
    allowed = f"{bracket}{low:.10g}, {high:.10g}]"  # .10g: the seed limit 4294967295 in full, not 4.29497e+09
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(field, f"must be {kind} in {allowed}, got {value!r}")
    if integer and value != int(value):
        raise InputError(field, f"must be an integer in {allowed}, got {value!r}")
    if value < low or value > high or (low_open and value == low):
        raise InputError(field, f"must be in {allowed}, got {value!r}")
    return int(value) if integer else float(value)


def check_params(params: TextParams, max_new_tokens_limit: int) -> TextParams:
    _number("max_new_tokens", params.max_new_tokens, 1, max_new_tokens_limit, integer=True)
    _number("temperature", params.temperature, 0, 5, low_open=True)
    _number("top_p", params.top_p, 0, 1, low_open=True)
    _number("top_k", params.top_k, 0, 1000, integer=True)
    _number("repetition_penalty", params.repetition_penalty, 1, 3)
    _number("seed", params.seed, -1, MAX_SEED, integer=True)
    for flag in ("do_sample", "truncate_prompt"):
        if not isinstance(getattr(params, flag), bool):
            raise InputError(flag, f"must be true or false, got {getattr(params, flag)!r}")
    return TextParams(**{k: (int(v) if isinstance(v, float) and k in ("max_new_tokens", "top_k", "seed") else v)
                         for k, v in asdict(params).items()})


class _CountingStreamer(TextIteratorStreamer):
    """A TextIteratorStreamer that also records how many tokens arrived and when the first did."""

    def __init__(self, tokenizer, **kwargs):
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True, **kwargs)
        self.new_tokens = 0
        self.first_token_at: float | None = None
        self._prompt_seen = False

    def put(self, value):
        if self._prompt_seen:
            if self.first_token_at is None:
                self.first_token_at = time.perf_counter()
            self.new_tokens += value.numel()
        self._prompt_seen = True
        super().put(value)


class _StopFlag(StoppingCriteria):
    def __init__(self, flag: threading.Event):
        self.flag = flag

    def __call__(self, input_ids, scores, **kwargs):
        return torch.full((input_ids.shape[0],), self.flag.is_set(), dtype=torch.bool, device=input_ids.device)


class TextGenerator:
    def __init__(self, name: str, model, tokenizer, placement: Placement, entry: TextEntry, speedups: str = ""):
        self.name = name
        self.model = model
        self.tokenizer = tokenizer
        self.placement = placement
        # what the status panel shows: device/dtype and the CPU speed-ups applied, e.g. "cpu/float32 +int8 dynamic"
        self.placement_label = f"{placement}{speedups}"
        self.entry = entry
        self.context_length = int(getattr(model.config, "max_position_embeddings", 2048))
        # One generation at a time per model: the seed is set on torch's global RNG, and
        # on a CPU two concurrent generations are only slower than one after the other.
        self._lock = threading.Lock()

    @classmethod
    def from_entry(cls, entry: TextEntry) -> "TextGenerator":
        placement = choose_placement("text", entry.device, entry.dtype)
        tokenizer = AutoTokenizer.from_pretrained(entry.source, **from_pretrained_kwargs(entry))
        model = AutoModelForCausalLM.from_pretrained(entry.source, **from_pretrained_kwargs(entry), dtype=placement.dtype)
        model.to(placement.device).eval()
        if tokenizer.pad_token_id is None:  # GPT-Neo has no pad token; EOS is the standard stand-in
            tokenizer.pad_token = tokenizer.eos_token
        speedups = ""
        if placement.device == "cpu":  # CPU remedies; a GPU has the bandwidth and kernels already
            options = entry.cpu_speedups
            model = apply_cpu_speedups(model, quantize=options.quantize)
            speedups = describe_speedups(quantize=options.quantize)
        return cls(entry.name, model, tokenizer, placement, entry, speedups)

    @property
    def memory_mb(self) -> float:
        return model_memory_mb(self.model)

    def default_params(self, **overrides) -> TextParams:
        return TextParams.from_defaults(self.entry, **overrides)

    # -- 1. check inputs ------------------------------------------------------------------
    def check_inputs(self, prompt: object, params: TextParams) -> tuple[dict, TextParams]:
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError("prompt", "is empty; type the beginning of a text for the model to continue")
        params = check_params(params, self.entry.limits.max_new_tokens)
        inputs = self.tokenizer(prompt, return_tensors="pt", verbose=False)  # too long is reported below, not logged
        prompt_tokens = inputs["input_ids"].shape[1]
        room = self.context_length - params.max_new_tokens  # prompt tokens that fit
        if prompt_tokens > room:
            if not params.truncate_prompt or room < 1:
                raise InputError(
                    "prompt",
                    f"is {prompt_tokens} tokens; with max_new_tokens={params.max_new_tokens} that exceeds the "
                    f"model's context length of {self.context_length} tokens. Shorten the prompt to at most "
                    f"{max(room, 0)} tokens, lower max_new_tokens, or turn on truncate_prompt to drop its beginning.",
                )
            inputs = {key: value[:, -room:] for key, value in inputs.items()}  # keep the end: it is what gets continued
        return inputs, params

    # -- 2. generate, streaming -------------------------------------------------------------
    def stream(self, prompt: str, params: TextParams | None = None, stop: threading.Event | None = None) -> Iterator[dict]:
        """Yield {"text", "new_tokens", "seed", "done", ...} as the continuation grows.

        Closing this generator (or setting `stop`) ends the computation itself.
        """
        inputs, params = self.check_inputs(prompt, params or self.default_params())
        truncated = 0
        if params.truncate_prompt:  # report how many prompt tokens check_inputs dropped
            truncated = len(self.tokenizer(prompt, verbose=False)["input_ids"]) - inputs["input_ids"].shape[1]
        seed = params.seed if params.seed >= 0 else random.randint(0, MAX_SEED)
        stop = stop or threading.Event()
        streamer = _CountingStreamer(self.tokenizer, timeout=None)
        generate_kwargs = self._generate_kwargs(inputs, params, streamer, stop)
        error: list[BaseException] = []

        def run():
            try:
                with self._lock:
                    torch.manual_seed(seed)
                    with torch.inference_mode():
                        self.model.generate(**generate_kwargs)
            except BaseException as err:  # noqa: BLE001 - reported to the consumer below
                error.append(err)
                streamer.end()

        started = time.perf_counter()
        worker = threading.Thread(target=run, name=f"generate-{self.name}", daemon=True)
        worker.start()
        text = ""
        try:
            for piece in streamer:
                text += piece
                if piece:
                    yield self._update(text, streamer, started, seed, params, truncated, done=False)
            worker.join()
            if error:
                raise RuntimeError(f"generation with '{self.name}' failed: {error[0]}") from error[0]
            yield self._update(text, streamer, started, seed, params, truncated, done=True, stopped=stop.is_set())
        finally:
            stop.set()  # the consumer went away (Stop, disconnect): end the computation too
            worker.join(timeout=30)

    def generate(self, prompt: str, params: TextParams | None = None) -> dict:
        """The whole continuation at once (the last update of `stream`)."""
        final = None
        for final in self.stream(prompt, params):
            pass
        return final

    def _generate_kwargs(self, inputs: dict, params: TextParams, streamer, stop: threading.Event) -> dict:
        kwargs = dict(
            input_ids=inputs["input_ids"].to(self.placement.device),
            attention_mask=inputs["attention_mask"].to(self.placement.device),
            pad_token_id=self.tokenizer.pad_token_id,
            max_new_tokens=params.max_new_tokens,
            repetition_penalty=params.repetition_penalty,
            do_sample=params.do_sample,
            streamer=streamer,
            stopping_criteria=StoppingCriteriaList([_StopFlag(stop)]),
        )
        if params.do_sample:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k)
        else:  # greedy: unset the sampling knobs so generate does not warn they are unused
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs

    @staticmethod
    def _update(text, streamer: _CountingStreamer, started: float, seed: int, params: TextParams, truncated: int,
                done: bool, stopped: bool = False) -> dict:
        now = time.perf_counter()
        first = streamer.first_token_at
        ttft = (first - started) if first else None
        decode_time = (now - first) if first else 0.0
        # tokens after the first, over the time since the first: the steady decoding rate
        rate = (streamer.new_tokens - 1) / decode_time if first and streamer.new_tokens > 1 and decode_time > 0 else None
        return {
            "text": text,
            "new_tokens": streamer.new_tokens,
            "seed": seed,
            "ttft_s": ttft,
            "tokens_per_s": rate,
            "elapsed_s": now - started,
            "done": done,
            "stopped": stopped,
            "truncated_tokens": truncated,  # prompt tokens dropped from the left (truncate_prompt)
            "params": asdict(params) | {"seed": seed},
        }
