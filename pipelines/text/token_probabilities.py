"""What a local causal LM considered: each generated token's probability and alternatives (the
token view), and the distribution over the next token of a prompt (the next-token explorer).

`generate` applies its logits processors in a fixed order: the model's own (repetition penalty,
suppressed tokens, ...), then those passed in `logits_processor`, then temperature, top-k and
top-p. A processor passed in would so see the scores *before* temperature/top-k/top-p. To record
the distribution sampling really draws from, `take_over_sampling` hands temperature, top-k and
top-p to `generate` as processors of their own (the same transformers classes, in generate's
order), followed by the recorder, and sets generate's own to "off": the same processors in the
same order, so the same samples for a seed (tests/test_token_view.py compares the texts).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from pipelines.core.errors import InputError
from pipelines.text.contract import TOP_ALTERNATIVES, NextTokenParams, NextTokens, TokenChoice, TokenProbability

# Warpers generate() would add after a recorder if the model's generation config turned them on
# (GPT-Neo's does not); with one of them on, the recorded probabilities would not be the sampled ones.
OTHER_WARPERS = {"min_p": None, "top_h": None, "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0}


def significant(value: float) -> float:
    """6 significant digits: the JSON stays short, and a tiny probability does not round to 0."""
    return float(f"{value:.6g}")


def untaken_warpers(generation_config) -> list[str]:
    """The warpers of a model's generation config that recording cannot take over."""
    return [name for name, off in OTHER_WARPERS.items() if getattr(generation_config, name, off) not in (None, off)]


def rank_of(probs: torch.Tensor, probability: float) -> int:
    """1 + how many tokens are likelier. numpy on a CPU: on busy cores torch's parallel comparison
    of 50,257 values waits for its OpenMP threads to get a core, numpy's runs in this thread alone
    (`python -m benchmarks.token_view` times the recording alone)."""
    if probs.device.type == "cpu":
        return int(np.count_nonzero(probs.numpy() > probability)) + 1
    return int((probs > probability).sum()) + 1


def take_over_sampling(kwargs: dict, recorder: TokenRecorder) -> dict:
    """`generate` keyword arguments with temperature/top-k/top-p as processors, then `recorder`."""
    processors = LogitsProcessorList()
    if kwargs.get("do_sample"):
        # generate()'s own conditions and order (GenerationMixin._get_logits_processor), one sequence
        temperature, top_k, top_p = kwargs.get("temperature"), kwargs.get("top_k"), kwargs.get("top_p")
        if temperature is not None and temperature != 1.0:
            processors.append(TemperatureLogitsWarper(temperature))
        if top_k:
            processors.append(TopKLogitsWarper(top_k=top_k, min_tokens_to_keep=1))
        if top_p is not None and top_p < 1.0:
            processors.append(TopPLogitsWarper(top_p=top_p, min_tokens_to_keep=1))
        kwargs = kwargs | {"temperature": 1.0, "top_k": 0, "top_p": 1.0}  # generate's own: off
    processors.append(recorder)
    return kwargs | {"logits_processor": processors}


class TokenRecorder(LogitsProcessor):
    """The last logits processor: keeps each step's distribution until the streamer hands over
    the token chosen from it (`chosen`), then reports the token to `report`.

    Distributions wait in a queue because on a GPU generate() streams each token one step late."""

    def __init__(self, tokenizer, report, top: int = TOP_ALTERNATIVES):
        self.tokenizer, self.report, self.top = tokenizer, report, top
        self._steps: deque = deque()
        self._ids: list[int] = []
        self._shown = ""  # the text decoded so far, given to tokens already reported
        self._tokens: list[TokenProbability] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.record(scores[0].float().softmax(dim=-1))
        return scores  # unchanged: it only looks

    def record(self, probs: torch.Tensor) -> None:
        """One step's distribution (after every processor: `generate` calls the recorder last)."""
        top = probs.topk(min(self.top, probs.numel()))
        self._steps.append((probs, top.values.tolist(), top.indices.tolist()))

    def chosen(self, token_id: int) -> None:
        probs, top_probs, top_ids = self._steps.popleft()
        probability = float(probs[token_id])
        rank = top_ids.index(token_id) + 1 if token_id in top_ids else rank_of(probs, probability)
        alternatives = [self.choice(i, p, r) for r, (i, p) in enumerate(zip(top_ids, top_probs), start=1) if p > 0]
        if token_id not in top_ids:
            alternatives.append(self.choice(token_id, probability, rank))
        token = TokenProbability(
            **self.choice(token_id, probability, rank),
            text=self.new_text(token_id),
            most_likely=rank == 1,
            alternatives=alternatives,
        )
        self._tokens.append(token)
        self.report(token)

    def choice(self, token_id: int, probability: float, rank: int) -> TokenChoice:
        return TokenChoice(
            token=self.tokenizer.decode([token_id]), id=int(token_id), probability=significant(probability), rank=rank
        )

    def new_text(self, token_id: int) -> str:
        """What this token adds to the decoded text; "" while it holds part of a character."""
        self._ids.append(token_id)
        text = self.tokenizer.decode(self._ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # a character split over tokens: its last token shows it
            return ""
        piece, self._shown = text[len(self._shown) :], text
        return piece

    def finish(self) -> None:
        """Give a character still incomplete at the end (shown as \ufffd) to the last token."""
        text = self.tokenizer.decode(self._ids, skip_special_tokens=True)
        if self._tokens and len(text) > len(self._shown):
            self._tokens[-1]["text"] += text[len(self._shown) :]
            self._shown = text


@torch.inference_mode()
def next_token_distribution(
    last_logits, tokenizer, prompt: str, params: NextTokenParams, context_length: int
) -> NextTokens:
    """The model's distribution over the token after `prompt` at `params.temperature`;
    `last_logits(input_ids)` runs the model (PyTorch or OpenVINO) and returns the last position's logits."""
    input_ids = tokenizer(prompt, return_tensors="pt", verbose=False)["input_ids"]
    if input_ids.shape[1] > context_length:
        raise InputError(
            "prompt", f"is {input_ids.shape[1]} tokens; the model reads at most {context_length}. Shorten it."
        )
    logits = last_logits(input_ids).float()
    log_probs = torch.log_softmax(logits / params.temperature, dim=-1)
    probs = log_probs.exp()
    entropy_bits = float(-(probs * log_probs).nansum()) / math.log(2)  # nansum: 0 * log 0 counts as 0
    top = probs.topk(min(params.top_k, probs.numel()))
    tokens = [
        TokenChoice(token=tokenizer.decode([i]), id=i, probability=significant(p), rank=rank)
        for rank, (i, p) in enumerate(zip(top.indices.tolist(), top.values.tolist()), start=1)
    ]
    return NextTokens(
        prompt_tokens=int(input_ids.shape[1]),
        temperature=params.temperature,
        tokens=tokens,
        top_k_probability=significant(float(top.values.sum())),
        entropy_bits=round(entropy_bits, 4),
    )
