"""Text generation's contract: its request parameters (declared once, here), the updates a
generation streams, and the interface that the local model (`pipeline.LocalTextGenerator`) and
the remote clients (`remote.py`) implement. No torch here.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace

# typing_extensions' (pydantic's dependency): pydantic checks these on Python < 3.12 only in this
# form, as the UI does with the JSON a page sends back (ui.common.check_inputs).
from typing_extensions import TypedDict

from pipelines.core import background
from pipelines.core.errors import InputError
from pipelines.core.params import Range, check_params, from_defaults, param
from pipelines.core.remote import MAX_SEED, pick_seed

SEED_RANGE = Range(-1, MAX_SEED, integer=True)
# A sane minimum, not (0, 2]: the logits are divided by the temperature, and below ~1e-38 that
# overflows float32 (1e-300 gave "probability tensor contains inf or nan"). 0.05 is as close to
# greedy as sampling gets (do_sample off is greedy), and the slider's lowest stop.
TEMPERATURE_RANGE = Range(0.05, 2.0, step=0.05)


@dataclass(frozen=True)
class TextParams:
    max_new_tokens: int = param(
        64,
        "Max new tokens",
        "How many tokens (word pieces, ~3/4 of a word each) to generate at most.",
        range=Range(1, 8192, integer=True),
        passed_as="max_new_tokens",
    )
    temperature: float = param(
        0.8,
        "Temperature",
        "Below 1: the likeliest words get likelier (safer, repetitive); above 1: rarer words get likelier (surprising, less coherent).",
        range=TEMPERATURE_RANGE,
        passed_as="temperature",
        only_if="do_sample",
    )
    # 0.01, not (0, 1]: the slider's lowest stop; smaller values sample the likeliest token alone, as 0.01 does.
    top_p: float = param(
        0.95,
        "Top-p",
        "Sample only from the likeliest tokens whose probabilities add up to this (nucleus sampling).",
        range=Range(0.01, 1.0, step=0.01),
        passed_as="top_p",
        only_if="do_sample",
    )
    top_k: int = param(
        50,
        "Top-k (0 = off)",
        "Sample only from this many likeliest tokens.",
        range=Range(0, 200, integer=True),
        passed_as="top_k",
        only_if="do_sample",
    )
    repetition_penalty: float = param(
        1.1,
        "Repetition penalty",
        "Above 1 makes tokens already in the text less likely: fewer loops.",
        range=Range(1.0, 2.0, step=0.01),
        passed_as="repetition_penalty",
    )
    do_sample: bool = param(
        True,
        "Sample (off = greedy)",
        "Off: always the single likeliest token (reproducible, prone to loops).",
        passed_as="do_sample",
    )
    seed: int = param(
        -1, "Seed (-1 = random; the seed used is shown after generating)", range=SEED_RANGE, widget="number"
    )
    # A prompt too long for the context: False refuses it with a message; True drops its oldest
    # tokens (left truncation) and says how many in the update's `truncated_tokens`.
    truncate_prompt: bool = param(False, "Truncate a too-long prompt from the left (off = refuse it with a message)")
    # Off by default: recording costs a softmax and a top-k per token and makes every streamed
    # update longer (`python -m benchmarks.token_view` measures it); the updates' `tokens` are None then.
    token_probabilities: bool = param(
        False,
        "Record token probabilities (the token view)",
        "Each generated token with the probability the model gave it and its top alternatives, after temperature, top-k, top-p and the repetition penalty.",
    )


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


# Alternatives recorded per generated token (token_probabilities): the likeliest, plus the token
# chosen when it is not among them. 5 is also the most OpenAI's completions API returns.
TOP_ALTERNATIVES = 5


class TokenChoice(TypedDict):
    token: str  # the token alone, decoded (" the", "\n")
    id: int | None  # its id in the vocabulary (None where a remote server gives only the text)
    probability: float  # after temperature, top-k, top-p and the repetition penalty (0 for a token they exclude)
    rank: int  # 1 = the most likely


class TokenProbability(TokenChoice):
    """One generated token: how likely the model made it, and what else it considered."""

    text: str  # the characters it added to the text ("" while a character spans several tokens)
    most_likely: bool  # it was the most likely token (always so without sampling)
    alternatives: list[TokenChoice]  # the TOP_ALTERNATIVES likeliest, most likely first, + this token if not among them


class TextUpdate(TypedDict):
    text: str  # the whole continuation so far
    new_tokens: int
    seed: int  # the seed used (the one picked when the request asked for -1)
    ttft_s: float | None  # time to the first new token
    tokens_per_s: float | None  # tokens after the first, over the time since the first
    elapsed_s: float
    done: bool
    stopped: bool  # ended by Stop (or a client that went away) before max_new_tokens
    truncated_tokens: int  # prompt tokens dropped from the left (truncate_prompt)
    truncated_chars: int  # characters of a very long prompt dropped before it was tokenized
    params: dict  # the parameters, with the seed used
    tokens: list[TokenProbability] | None  # token_probabilities: every token so far; None when off or unavailable
    tokens_unavailable: str | None  # why a model asked for token probabilities cannot give them


@dataclass(frozen=True)
class NextTokenParams:
    """The next-token explorer: the model's distribution over the token after a prompt."""

    # 50: more bars than a chart can label legibly; the rest of the distribution is summed up
    # in `top_k_probability` and `entropy_bits`.
    top_k: int = param(
        10, "Next tokens shown", "How many of the likeliest next tokens to list.", range=Range(1, 50, integer=True)
    )
    temperature: float = param(
        1.0,
        "Temperature",
        "The model's scores are divided by it before the softmax: below 1 the distribution sharpens, above 1 it flattens.",
        range=TEMPERATURE_RANGE,
    )


class NextTokens(TypedDict):
    prompt_tokens: int
    temperature: float
    tokens: list[TokenChoice]  # the top_k likeliest next tokens, most likely first
    top_k_probability: float  # their probabilities summed: how much of the distribution they hold
    entropy_bits: float  # of the whole distribution: 0 = certain, log2(vocabulary size) = every token alike


class StreamStats:
    """Tokens and timings of a generation as it happens; the pipeline reports to it (from its
    worker thread), and the stream reads it to build each update."""

    def __init__(self, on_text=None):
        self.started = time.perf_counter()
        self.first_token_at: float | None = None
        self.new_tokens = 0
        self.text = ""
        self.tokens: list[TokenProbability] | None = None  # a list once the model records them
        self.tokens_unavailable: str | None = None
        self._on_text = on_text

    def token_recorded(self, token: TokenProbability) -> None:
        if self.tokens is None:
            self.tokens = []
        self.tokens.append(token)

    def tokens_arrived(self, total: int) -> None:
        if total > 0 and self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        self.new_tokens = max(self.new_tokens, total)

    def text_arrived(self, text: str) -> None:
        self.text = text
        if self._on_text is not None:
            self._on_text()

    def update(
        self,
        seed: int,
        params: TextParams,
        done: bool,
        stopped: bool = False,
        truncated_tokens: int = 0,
        truncated_chars: int = 0,
    ) -> TextUpdate:
        now, first = time.perf_counter(), self.first_token_at
        decode_time = now - first if first else 0.0
        rate = (self.new_tokens - 1) / decode_time if first and self.new_tokens > 1 and decode_time > 0 else None
        return TextUpdate(
            text=self.text,
            new_tokens=self.new_tokens,
            seed=seed,
            ttft_s=first - self.started if first else None,
            tokens_per_s=rate,
            elapsed_s=now - self.started,
            done=done,
            stopped=stopped,
            truncated_tokens=truncated_tokens,
            truncated_chars=truncated_chars,
            params=asdict(params) | {"seed": seed},
            tokens=None if self.tokens is None else list(self.tokens),
            tokens_unavailable=self.tokens_unavailable,
        )


def check_prompt(prompt: object) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("prompt", "is empty; type the beginning of a text for the model to continue")
    return prompt


def gpu_seconds(max_new_tokens: float = 64, **_request) -> float:
    """ZeroGPU: seconds of GPU a request needs (GPT-Neo 1.3B in bfloat16 makes ~30-60 tokens/s)."""
    return float(max_new_tokens or 0) * 0.05


class TextGenerator(ABC):
    """A causal LM that continues a prompt, streaming, local or remote. Subclasses implement
    `decode`; the checks, the seed, the timings and Stop are here, the same for all."""

    name: str
    entry: object  # its models.yaml entry (TextEntry)
    placement: str  # where it runs, as the status panel shows it
    memory_mb: float = 0.0  # weights held in this process

    def default_params(self, **overrides) -> TextParams:
        return from_defaults(TextParams, self.entry.defaults, **overrides)

    def why_no_token_probabilities(self) -> str | None:
        """Why this model cannot record token probabilities (token_probabilities=True), or None
        when it can: its updates then carry `tokens`, otherwise `tokens_unavailable` says why."""
        return f"'{self.name}' does not report token probabilities"

    def check_inputs(self, prompt: object, params: TextParams) -> TextParams:
        check_prompt(prompt)
        return check_params(params, self.entry.ranges(), self.entry.choices())

    @abstractmethod
    def decode(self, prompt: str, params: TextParams, seed: int, stats: StreamStats, stop: threading.Event) -> dict:
        """Generate (on a worker thread), reporting to `stats` as tokens and text arrive, until
        done or `stop` is set; returns what the final update adds ({"truncated_tokens": n},
        or the server's own {"new_tokens": n})."""

    def stream(
        self, prompt: str, params: TextParams | None = None, stop: threading.Event | None = None
    ) -> Iterator[TextUpdate]:
        """Yield an update each time the continuation grows, then a final one (`done`).
        Closing this iterator, or setting `stop`, ends the computation itself."""
        params = self.check_inputs(prompt, params or self.default_params())
        seed = pick_seed(params.seed)
        stop = stop or threading.Event()
        stats: list[StreamStats] = []
        unavailable = self.why_no_token_probabilities() if params.token_probabilities else None
        decoded = replace(params, token_probabilities=False) if unavailable else params

        def work(emit):
            stats.append(StreamStats(on_text=lambda: emit(None)))
            stats[0].tokens, stats[0].tokens_unavailable = ([] if decoded.token_probabilities else None), unavailable
            return self.decode(prompt, decoded, seed, stats[0], stop)

        for kind, ending in background.stream(work, f"generate-{self.name}", stop):
            if kind == "item" and not stop.is_set():  # after Stop, only the final update
                yield stats[0].update(seed, params, done=False)
            elif kind == "result":
                if "new_tokens" in ending and not stop.is_set():
                    stats[0].new_tokens = ending["new_tokens"]
                if ending.get("tokens_unavailable"):  # e.g. a server that sent no log-probabilities
                    stats[0].tokens, stats[0].tokens_unavailable = None, ending["tokens_unavailable"]
                yield stats[0].update(
                    seed,
                    params,
                    done=True,
                    stopped=stop.is_set(),
                    truncated_tokens=ending.get("truncated_tokens", 0),
                    truncated_chars=ending.get("truncated_chars", 0),
                )

    def generate(self, prompt: str, params: TextParams | None = None) -> TextUpdate:
        """The whole continuation at once (the last update of `stream`)."""
        final = None
        for update in self.stream(prompt, params):
            final = update
        return final

    def next_tokens(self, prompt: str, params: NextTokenParams | None = None) -> NextTokens:
        """The next-token explorer: the likeliest tokens to follow `prompt`, with their
        probabilities at `params.temperature` (no other sampling setting: the model's own view)."""
        check_prompt(prompt)
        params = check_params(params or NextTokenParams())
        return background.call(lambda emit: self.next_token_distribution(prompt, params), f"next-tokens-{self.name}")

    def next_token_distribution(self, prompt: str, params: NextTokenParams) -> NextTokens:
        """`next_tokens` for checked inputs, on a worker thread (models that can override this)."""
        raise InputError(
            "model", f"'{self.name}' cannot show its next-token distribution; choose a model that runs in this app"
        )

    def close(self) -> None:  # noqa: B027 - a default that does nothing, not an abstract method
        """Release what the generator holds (the registry calls this when it unloads it)."""
