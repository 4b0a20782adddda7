"""A token-by-token decoding loop for engines without transformers' `generate` (OpenVINO).

It makes the same choices `generate` makes from the same parameters, with transformers' own
logits processors: the repetition penalty (greedy too), the model's suppressed tokens, then,
when sampling, temperature, top-k and top-p in `generate`'s order, and a draw from the resulting
distribution with a generator seeded from the request's seed (the same seed, the same text).
It stops at the end-of-text token, after max_new_tokens, or when the Stop flag is set (checked
before every token). Each step's token comes with the distribution it was drawn from (after
every processor: what a per-token probability display shows).

The processors run on one thread: on [1, 50257] scores torch would split each operation over
both cores, and with the engine's own threads (or anything else) busy, each such parallel region
waits for a core; top-p took 60 ms per token on two busy threads against 5 ms on one.

With top-k on, top-p and the draw run on the k best scores only, not the whole vocabulary: the
same distribution (top-k leaves at most k tokens; ties at the k-th score take the full path), at
a fraction of the cost (`python -m benchmarks.cpu_bounds --parts sampling`).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from transformers import (
    GenerationConfig, LogitsProcessorList, RepetitionPenaltyLogitsProcessor, SuppressTokensLogitsProcessor,
    TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper,
)


@dataclass
class Step:
    token: int
    probs: torch.Tensor  # [vocab]: the distribution the token was drawn from (greedy: its argmax)


def logits_processors(config: GenerationConfig) -> LogitsProcessorList:
    """The processors `generate` would apply for `config` (the subset our parameters reach)."""
    processors = LogitsProcessorList()
    if config.repetition_penalty is not None and config.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(config.repetition_penalty))
    if config.suppress_tokens:
        processors.append(SuppressTokensLogitsProcessor(config.suppress_tokens))
    if config.do_sample:
        if config.temperature is not None and config.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(config.temperature))
        if config.top_k:
            processors.append(TopKLogitsWarper(top_k=config.top_k))
        if config.top_p is not None and config.top_p < 1.0:
            processors.append(TopPLogitsWarper(top_p=config.top_p))
    return processors


@contextmanager
def _one_thread():
    """torch on one thread inside the block (threads started meanwhile inherit it: keep it short)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def next_token(processors: LogitsProcessorList, ids: torch.Tensor, logits: torch.Tensor, do_sample: bool,
               generator: torch.Generator) -> Step:
    with _one_thread():
        top_k_at = _top_k_position(processors) if do_sample else None
        if top_k_at is not None:
            step = _sample_among_top_k(processors, top_k_at, ids, logits, generator)
            if step is not None:
                return step
        scores = processors(ids, logits.unsqueeze(0))[0]
        probs = torch.softmax(scores, dim=-1)
        token = int(torch.multinomial(probs, 1, generator=generator)) if do_sample else int(torch.argmax(scores))
    return Step(token, probs)


def _top_k_position(processors: LogitsProcessorList) -> int | None:
    """Where top-k is in the chain, if only top-p may follow it (what makes the shortcut exact)."""
    for i, processor in enumerate(processors):
        if isinstance(processor, TopKLogitsWarper):
            rest = processors[i + 1 :]
            return i if all(isinstance(r, TopPLogitsWarper) for r in rest) else None
    return None


def _sample_among_top_k(processors: LogitsProcessorList, top_k_at: int, ids: torch.Tensor, logits: torch.Tensor,
                        generator: torch.Generator) -> Step | None:
    """The chain's distribution and draw, with what follows top-k computed on the k best scores:
    top-p then sorts k values instead of the vocabulary. None when scores tie at the k-th place
    (top-k keeps every tied token) or fewer than k are finite: the caller takes the full path."""
    scores = LogitsProcessorList(processors[:top_k_at])(ids, logits.unsqueeze(0))[0]
    k = min(processors[top_k_at].top_k, scores.numel())
    best, indices = torch.topk(scores, k)
    if not torch.isfinite(best[-1]) or int((scores >= best[-1]).sum()) != k:
        return None
    kept = LogitsProcessorList(processors[top_k_at + 1 :])(ids, best.unsqueeze(0))[0]
    kept_probs = torch.softmax(kept, dim=-1)
    token = int(indices[torch.multinomial(kept_probs, 1, generator=generator)])
    return Step(token, torch.zeros_like(scores).index_copy_(0, indices, kept_probs))


def decode_tokens(step: Callable[[list[int]], torch.Tensor], prompt_ids: list[int], config: GenerationConfig,
                  seed: int, stop: threading.Event) -> Iterator[Step]:
    """Yield the new tokens one by one. `step(ids)` feeds ids to the model (whose cache holds
    what came before) and returns the next token's logits; `config` holds max_new_tokens,
    do_sample and the sampling fields, eos_token_id and suppress_tokens."""
    processors = logits_processors(config)
    generator = torch.Generator().manual_seed(seed)
    eos = config.eos_token_id if isinstance(config.eos_token_id, (list, tuple)) else [config.eos_token_id]
    ids = torch.tensor([prompt_ids], dtype=torch.long)
    logits = step(prompt_ids)
    for _ in range(config.max_new_tokens):
        if stop.is_set():
            return
        chosen = next_token(processors, ids, logits, config.do_sample, generator)
        yield chosen
        token = chosen.token
        if token in eos:
            return
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
        if ids.shape[1] - len(prompt_ids) < config.max_new_tokens:
            logits = step([token])
