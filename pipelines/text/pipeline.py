"""Text generation with a causal LM (GPT-Neo) in this process, streamed token by token.

1. check the inputs (the contract's checks, then the prompt's length against the context),
2. seed torch's generator, 3. `model.generate` with a streamer that reports each token and the
text so far, and a stopping criterion that checks the Stop flag before every token, so that
Stop (or a client that went away) frees the model at once. With token_probabilities, a last
logits processor records each token's distribution (`token_probabilities.py`).

An entry with `cpu_speedups: {engine: openvino}` that runs on a CPU gets `OpenVINOTextGenerator`
instead: the same checks, streaming and `generate` call, with the model exported once to
OpenVINO (text/openvino_engine.py, whose model `generate` runs like a PyTorch one).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    StoppingCriteria,
    StoppingCriteriaList,
    TextStreamer,
)

from pipelines.core.devices import Placement, choose_placement
from pipelines.core.errors import InputError
from pipelines.core.hub import from_pretrained_kwargs
from pipelines.core.limits import chars_for_tokens
from pipelines.core.params import call_kwargs, passed_fields, refuse_unsupported
from pipelines.text.config import TextEntry
from pipelines.text.contract import NextTokenParams, NextTokens, StreamStats, TextGenerator, TextParams
from pipelines.text.speedups import apply_cpu_speedups, describe_speedups, model_memory_mb
from pipelines.text.token_probabilities import (
    TokenRecorder,
    next_token_distribution,
    take_over_sampling,
    untaken_warpers,
)

log = logging.getLogger(__name__)


class _ReportingStreamer(TextStreamer):
    """Counts the new tokens as `generate` makes them and reports the text so far (TextStreamer
    decodes at word boundaries, so a multi-byte character is never shown half-made)."""

    def __init__(self, tokenizer, stats: StreamStats, recorder: TokenRecorder | None = None):
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.stats, self.new_tokens, self.text = stats, 0, ""
        self.recorder = recorder
        self._prompt_seen = False

    def put(self, value):
        if self._prompt_seen:
            self.new_tokens += value.numel()
            self.stats.tokens_arrived(self.new_tokens)
            if self.recorder is not None:  # before the text: an update then holds its tokens
                for token_id in value.reshape(-1).tolist():
                    self.recorder.chosen(token_id)
        self._prompt_seen = True
        super().put(value)

    def end(self):
        if self.recorder is not None:
            self.recorder.finish()
        super().end()

    def on_finalized_text(self, text: str, stream_end: bool = False):
        if text:
            self.text += text
            self.stats.text_arrived(self.text)


class _StopFlag(StoppingCriteria):
    def __init__(self, flag: threading.Event):
        self.flag = flag

    def __call__(self, input_ids, scores, **kwargs):
        return torch.full((input_ids.shape[0],), self.flag.is_set(), dtype=torch.bool, device=input_ids.device)


class LocalTextGenerator(TextGenerator):
    # The TextParams fields this class implements itself; the others are `passed_as` fields, which
    # `generate` receives (on PyTorch and on OpenVINO alike, so any generate option works on both).
    # A field added with neither is refused with its name (`check_inputs`) until it is implemented here.
    IMPLEMENTED = frozenset({"seed", "truncate_prompt", "token_probabilities"})

    def __init__(self, entry: TextEntry, model, tokenizer, placement: Placement, speedups: str = ""):
        self.entry, self.name = entry, entry.name
        self.model, self.tokenizer = model, tokenizer
        self.device = placement.device
        # what the status panel shows: device/dtype and the CPU speed-ups applied, e.g. "cpu/float32 +int8 dynamic"
        self.placement = f"{placement}{speedups}"
        self.context_length = int(getattr(model.config, "max_position_embeddings", 2048))
        # One generation at a time per model: the seed is set on torch's global RNG, and
        # on a CPU two concurrent generations are only slower than one after the other.
        self._lock = threading.Lock()

    @classmethod
    def from_entry(cls, entry: TextEntry) -> LocalTextGenerator:
        placement = choose_placement(entry.gpu_dtype, entry.device, entry.dtype)
        if placement.device == "cpu" and entry.cpu_speedups.engine == "openvino":
            return OpenVINOTextGenerator.from_entry(entry)
        tokenizer = AutoTokenizer.from_pretrained(entry.source, **from_pretrained_kwargs(entry))
        model = AutoModelForCausalLM.from_pretrained(
            entry.source, **from_pretrained_kwargs(entry), dtype=placement.dtype
        )
        model.to(placement.device).eval()
        if tokenizer.pad_token_id is None:  # GPT-Neo has no pad token; EOS is the standard stand-in
            tokenizer.pad_token = tokenizer.eos_token
        speedups = ""
        if placement.device == "cpu":  # CPU remedies; a GPU has the bandwidth and kernels already
            model = apply_cpu_speedups(model, quantize=entry.cpu_speedups.quantize)
            speedups = describe_speedups(quantize=entry.cpu_speedups.quantize)
        return cls(entry, model, tokenizer, placement, speedups)

    @property
    def memory_mb(self) -> float:
        return model_memory_mb(self.model)

    def check_inputs(self, prompt: object, params: TextParams) -> TextParams:
        params = super().check_inputs(prompt, params)
        return refuse_unsupported(
            params, self.IMPLEMENTED | passed_fields(type(params)), f"'{self.name}' ({self.placement})"
        )

    def why_no_token_probabilities(self) -> str | None:
        untaken = untaken_warpers(self.model.generation_config)
        return (
            f"'{self.name}' samples with {', '.join(untaken)} (its generation config), which the token view cannot record"
            if untaken
            else None
        )

    # -- 1. the prompt's length (the other checks are the contract's) ---------------------
    def prompt_inputs(self, prompt: str, params: TextParams) -> tuple[dict, dict]:
        """The prompt's token ids (its end, when truncate_prompt drops its start), and what was
        dropped: {"truncated_tokens": n, "truncated_chars": m}. A prompt that may be truncated is
        cut by characters first (to what can hold the tokens that fit), then by tokens."""
        room = self.context_length - params.max_new_tokens  # prompt tokens that fit
        dropped_chars = 0
        if params.truncate_prompt and len(prompt) > chars_for_tokens(room + 1):
            dropped_chars = len(prompt) - chars_for_tokens(room + 1)
            prompt = prompt[dropped_chars:]
        inputs = self.tokenizer(prompt, return_tensors="pt", verbose=False)  # too long is reported below, not logged
        prompt_tokens = inputs["input_ids"].shape[1]
        if prompt_tokens <= room:
            return inputs, {"truncated_tokens": 0, "truncated_chars": dropped_chars}
        if not params.truncate_prompt or room < 1:
            raise InputError(
                "prompt",
                f"is {prompt_tokens} tokens; with max_new_tokens={params.max_new_tokens} that exceeds the "
                f"model's context length of {self.context_length} tokens. Shorten the prompt to at most "
                f"{max(room, 0)} tokens, lower max_new_tokens, or turn on truncate_prompt to drop its beginning.",
            )
        kept = {key: value[:, -room:] for key, value in inputs.items()}  # keep the end: it is what gets continued
        return kept, {"truncated_tokens": prompt_tokens - room, "truncated_chars": dropped_chars}

    # -- 2.-3. generate, streaming ----------------------------------------------------------
    def decode(self, prompt: str, params: TextParams, seed: int, stats: StreamStats, stop: threading.Event) -> dict:
        inputs, dropped = self.prompt_inputs(prompt, params)
        recorder = TokenRecorder(self.tokenizer, stats.token_recorded) if params.token_probabilities else None
        kwargs = call_kwargs(params) | dict(
            input_ids=inputs["input_ids"].to(self.device),
            attention_mask=inputs["attention_mask"].to(self.device),
            pad_token_id=self.tokenizer.pad_token_id,
            streamer=_ReportingStreamer(self.tokenizer, stats, recorder),
            stopping_criteria=StoppingCriteriaList([_StopFlag(stop)]),
        )
        if recorder is not None:
            kwargs = take_over_sampling(kwargs, recorder)
        with self._lock:
            if stop.is_set():  # stopped while it waited (in the queue, or for the model): no token at all
                return dropped
            torch.manual_seed(seed)
            with torch.inference_mode():
                self.model.generate(**kwargs)
        return dropped

    def next_token_distribution(self, prompt: str, params: NextTokenParams) -> NextTokens:
        def last_logits(input_ids):
            ids = input_ids.to(self.device)
            return self.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -1]

        with self._lock:
            return next_token_distribution(last_logits, self.tokenizer, prompt, params, self.context_length)


class OpenVINOTextGenerator(LocalTextGenerator):
    """The same generator on OpenVINO (`cpu_speedups: {engine: openvino}`, CPU only): the model is
    exported and compressed once into the cache folder, then every start compiles the cached IR."""

    def __init__(self, entry: TextEntry, model, tokenizer, generation_config: GenerationConfig, placement: str):
        self.entry, self.name = entry, entry.name
        self.model, self.tokenizer = model, tokenizer  # model: openvino_engine.OpenVINOCausalLM, which `generate` runs
        model.generation_config = generation_config
        self.device = "cpu"
        self.placement = placement
        self.context_length = int(model.config.max_position_embeddings)
        self._lock = threading.Lock()

    @classmethod
    def from_entry(cls, entry: TextEntry) -> OpenVINOTextGenerator:
        from pipelines.text import openvino_engine as engine

        kwargs = from_pretrained_kwargs(entry)
        tokenizer = AutoTokenizer.from_pretrained(entry.source, **kwargs)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        config = AutoConfig.from_pretrained(entry.source, **kwargs)
        try:
            generation_config = GenerationConfig.from_pretrained(entry.source, **kwargs)
        except OSError:  # no generation_config.json: the model config's tokens
            generation_config = GenerationConfig.from_model_config(config)
        weights = entry.cpu_speedups.weights
        source = Path(entry.source).expanduser()
        fingerprint = engine.local_fingerprint(source) if source.is_dir() else ""
        key = engine.cache_key(
            entry.source, entry.revision or getattr(config, "_commit_hash", None), weights, fingerprint
        )
        root = (
            Path(entry.cpu_speedups.cache_dir).expanduser()
            if entry.cpu_speedups.cache_dir
            else engine.default_cache_dir()
        )

        def build(folder: Path) -> None:
            log.info(
                "%s: exporting to OpenVINO with %s weights into %s, once (about %s)",
                entry.name,
                weights,
                root,
                engine.EXPORT_TIME_HINT,
            )
            model = AutoModelForCausalLM.from_pretrained(entry.source, **kwargs, dtype=torch.float32).eval()
            engine.export(model, folder, weights, progress_label=entry.name)

        xml, export_s = engine.cached_export(root / key, build)
        if export_s is not None:
            log.info(
                "%s: exported to OpenVINO (%s weights) in %.0f s; later starts reuse %s",
                entry.name,
                weights,
                export_s,
                xml.parent,
            )
        model = engine.OpenVINOCausalLM(xml, weights, config)
        return cls(entry, model, tokenizer, generation_config, f"cpu/openvino {weights}")

    @property
    def generation_config(self) -> GenerationConfig:
        return self.model.generation_config

    @property
    def memory_mb(self) -> float:
        return self.model.weights_mb

    def next_token_distribution(self, prompt: str, params: NextTokenParams) -> NextTokens:
        def last_logits(input_ids):
            self.model.reset()  # a sequence of its own; each generation resets it again
            return self.model.step(input_ids[0].tolist())

        with self._lock:
            return next_token_distribution(last_logits, self.tokenizer, prompt, params, self.context_length)
