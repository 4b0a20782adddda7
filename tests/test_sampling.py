"""The decoding loop's top-k shortcut: the same distribution as transformers' whole processor chain."""

import pytest
import torch
from transformers import GenerationConfig

from pipelines.text import sampling

VOCAB = 1000


def chain_probs(processors, ids, logits):
    return torch.softmax(processors(ids, logits.unsqueeze(0))[0], dim=-1)


@pytest.mark.parametrize("fields", [
    dict(temperature=0.8, top_k=50, top_p=0.95, repetition_penalty=1.1),  # the text entries' defaults
    dict(temperature=1.3, top_k=7, top_p=0.5),
    dict(top_k=50),
    dict(top_k=5000, top_p=0.9),  # k above the vocabulary: every token is a candidate
    dict(top_k=20, suppress_tokens=list(range(990))),  # fewer finite scores than k: the full path
])
def test_top_k_shortcut_draws_from_the_chains_distribution(fields):
    config = GenerationConfig(do_sample=True, **fields)
    processors = sampling.logits_processors(config)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, VOCAB, (1, 30), generator=generator)
    for _ in range(20):
        logits = torch.randn(VOCAB, generator=generator) * 3
        step = sampling.next_token(processors, ids, logits, True, generator)
        torch.testing.assert_close(step.probs, chain_probs(processors, ids, logits), atol=1e-6, rtol=1e-5)
        assert step.probs[step.token] > 0


def test_ties_at_the_kth_score_keep_every_tied_token():
    processors = sampling.logits_processors(GenerationConfig(do_sample=True, top_k=3))
    logits = torch.zeros(VOCAB)
    logits[:2] = 5.0  # two clear winners, then 998 tokens tied at the third place
    step = sampling.next_token(processors, torch.zeros(1, 1, dtype=torch.long), logits, True, torch.Generator().manual_seed(1))
    assert int((step.probs > 0).sum()) == VOCAB
    torch.testing.assert_close(step.probs, torch.softmax(logits, dim=-1))


def test_draws_follow_the_distribution():
    processors = sampling.logits_processors(GenerationConfig(do_sample=True, top_k=3, top_p=1.0))
    logits = torch.full((VOCAB,), -10.0)
    logits[[10, 20, 30]] = torch.log(torch.tensor([0.6, 0.3, 0.1]))
    generator = torch.Generator().manual_seed(2)
    ids = torch.zeros(1, 1, dtype=torch.long)
    counts = {10: 0, 20: 0, 30: 0}
    for _ in range(3000):
        counts[sampling.next_token(processors, ids, logits, True, generator).token] += 1
    assert abs(counts[10] / 3000 - 0.6) < 0.04 and abs(counts[30] / 3000 - 0.1) < 0.03
