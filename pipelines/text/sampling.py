"""How the OpenVINO engine picks each token: transformers' own logits processors, then a draw,
made cheap on a CPU without changing the distribution.

`generate` builds the processors (`GenerationMixin._get_logits_processor`: repetition penalty,
no-repeat n-grams, suppressed tokens, ..., then temperature, top-k, top-p, min-p, typical-p, ...
from the generation config and the request) and the stopping criteria; the OpenVINO model's
decoding method (`openvino_engine.OpenVINOCausalLM._sample`) hands each step's logits to
`next_token` with those processors. Two things make that faster than `generate`'s own loop,
which a token at ~40 ms can feel (`python -m benchmarks.textgen --compare-routes`):

- With top-k on, top-k and the top-p right after it run on the k best scores only, not the
  whole vocabulary, and the token is drawn among those k: the same distribution (top-k leaves at
  most k tokens; ties at the k-th score take the full path), at a fraction of the cost: top-p
  sorts all 50,257 of GPT-Neo's scores, and `torch.multinomial` makes a random number per token
  (`python -m benchmarks.cpu_bounds --parts sampling` measures both draws). The processors after
  them (the token view's recorder, ...) see the whole vocabulary as usual.
- It runs on one thread: on [1, 50257] scores torch would split each operation over both cores,
  and with the engine's own threads (or anything else) busy, each such parallel region waits
  for a core.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from transformers import LogitsProcessorList, TopKLogitsWarper, TopPLogitsWarper


@contextmanager
def one_thread():
    """torch on one thread inside the block (threads started meanwhile inherit it: keep it short)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def next_token(processors: LogitsProcessorList, ids: torch.Tensor, logits: torch.Tensor, do_sample: bool) -> int:
    """The next token after `ids` ([1, length]) given the model's `logits` ([1, vocab], float32):
    `processors` in their order, then a draw from the softmax (torch's global generator: seeded
    by the caller) or, without sampling, the best score."""
    with one_thread():
        if not do_sample:
            return int(torch.argmax(processors(ids, logits)[0]))
        tokens, probs = draw_distribution(processors, ids, logits)
        choice = int(torch.multinomial(probs, 1))
        return choice if tokens is None else int(tokens[choice])


def draw_distribution(
    processors: LogitsProcessorList, ids: torch.Tensor, logits: torch.Tensor
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(tokens, probabilities): what sampling draws from after `processors`; tokens None means the
    whole vocabulary (probabilities [vocab]), otherwise the top-k ids and theirs."""
    top_k_at = next((i for i, p in enumerate(processors) if isinstance(p, TopKLogitsWarper)), None)
    if top_k_at is not None:
        among_top_k = _among_top_k(processors, top_k_at, ids, logits)
        if among_top_k is not None:
            return among_top_k
    return None, torch.softmax(processors(ids, logits)[0], dim=-1)


def _among_top_k(processors: LogitsProcessorList, top_k_at: int, ids: torch.Tensor, logits: torch.Tensor):
    """The chain's distribution with top-k, and the top-p processors right after it, computed on
    the k best scores; the processors after those see the whole vocabulary (-inf outside the k).
    None when scores tie at the k-th place (top-k keeps every tied token) or fewer than k are
    finite: the caller takes the full path."""
    scores = LogitsProcessorList(processors[:top_k_at])(ids, logits)
    k = min(processors[top_k_at].top_k, scores.shape[-1])
    best, indices = torch.topk(scores[0], k)
    if not torch.isfinite(best[-1]) or int((scores[0] >= best[-1]).sum()) != k:
        return None
    end = top_k_at + 1
    while end < len(processors) and isinstance(processors[end], TopPLogitsWarper):
        end += 1
    kept = LogitsProcessorList(processors[top_k_at + 1 : end])(ids, best.unsqueeze(0))
    rest = processors[end:]
    if rest:  # e.g. the token view's recorder: the whole vocabulary, as generate would give it
        full = torch.full_like(scores, float("-inf"))
        full[0, indices] = kept[0]
        full = LogitsProcessorList(rest)(ids, full)
        kept = full[:, indices]
        # transformers' warpers only remove tokens (-inf); should one bring back a token outside the k, draw from all
        if int(torch.isfinite(full[0]).sum()) != int(torch.isfinite(kept[0]).sum()):
            return None, torch.softmax(full[0], dim=-1)  # (not run twice: the recorder would see two steps)
    return indices, torch.softmax(kept[0], dim=-1)
