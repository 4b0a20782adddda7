"""The OpenVINO engine's draw (pipelines/text/sampling.py): the same distribution as transformers'
whole processor chain, which `generate` builds (`GenerationMixin._get_logits_processor`)."""

import pytest
import torch
from transformers import GenerationConfig, GPTNeoConfig, GPTNeoForCausalLM, LogitsProcessor, LogitsProcessorList

from pipelines.text import sampling

VOCAB = 1000


@pytest.fixture(scope="module")
def model():
    """Only for its `_get_logits_processor`: the processors generate builds for a config."""
    return GPTNeoForCausalLM(
        GPTNeoConfig(
            vocab_size=VOCAB,
            hidden_size=8,
            num_layers=1,
            num_heads=1,
            attention_types=[[["global"], 1]],
            max_position_embeddings=64,
        )
    )


def generate_processors(model, extra: LogitsProcessorList | None = None, **fields) -> LogitsProcessorList:
    config = GenerationConfig(do_sample=True, **fields)
    return model._get_logits_processor(config, input_ids_seq_length=30, logits_processor=extra or LogitsProcessorList())


def full_distribution(tokens, probs) -> torch.Tensor:
    return probs if tokens is None else torch.zeros(VOCAB).index_copy_(0, tokens, probs)


def chain_probs(processors, ids, logits):
    return torch.softmax(processors(ids, logits)[0], dim=-1)


@pytest.mark.parametrize(
    "fields",
    [
        dict(temperature=0.8, top_k=50, top_p=0.95, repetition_penalty=1.1),  # the text entries' defaults
        dict(temperature=1.3, top_k=7, top_p=0.5),
        dict(top_k=50),
        dict(top_k=5000, top_p=0.9),  # k above the vocabulary: every token is a candidate
        dict(top_k=20, suppress_tokens=list(range(990))),  # fewer finite scores than k: the full path
        dict(
            top_k=30, top_p=0.9, min_p=0.05, typical_p=0.9, no_repeat_ngram_size=2
        ),  # warpers after top-p: the whole vocabulary
    ],
)
def test_top_k_shortcut_draws_from_the_chains_distribution(model, fields):
    processors = generate_processors(model, **fields)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, VOCAB, (1, 30), generator=generator)
    for _ in range(20):
        logits = torch.randn(1, VOCAB, generator=generator) * 3
        tokens, probs = sampling.draw_distribution(processors, ids, logits)
        assert (tokens is None) == ("suppress_tokens" in fields)
        torch.testing.assert_close(
            full_distribution(tokens, probs), chain_probs(processors, ids, logits), atol=1e-6, rtol=1e-5
        )


def test_processors_after_top_k_see_the_whole_vocabulary(model):
    seen = []

    class Recorder(LogitsProcessor):
        def __call__(self, input_ids, scores):
            seen.append(scores.clone())
            return scores

    # as the token view passes them: temperature, top-k, top-p, then the recorder
    from pipelines.text.token_probabilities import take_over_sampling

    kwargs = take_over_sampling(dict(do_sample=True, temperature=0.7, top_k=10, top_p=0.9), Recorder())
    processors = generate_processors(model, kwargs["logits_processor"], temperature=1.0, top_k=0, top_p=1.0)
    logits = torch.randn(1, VOCAB, generator=torch.Generator().manual_seed(1))
    ids = torch.zeros(1, 1, dtype=torch.long)
    tokens, probs = sampling.draw_distribution(processors, ids, logits)
    assert tokens is not None and len(seen) == 1 and seen[0].shape == (1, VOCAB)
    torch.testing.assert_close(torch.softmax(seen[0][0], -1), full_distribution(tokens, probs))


def test_ties_at_the_kth_score_keep_every_tied_token(model):
    processors = generate_processors(model, top_k=3)
    logits = torch.zeros(1, VOCAB)
    logits[0, :2] = 5.0  # two clear winners, then 998 tokens tied at the third place
    tokens, probs = sampling.draw_distribution(processors, torch.zeros(1, 1, dtype=torch.long), logits)
    assert tokens is None and int((probs > 0).sum()) == VOCAB
    torch.testing.assert_close(probs, torch.softmax(logits[0], dim=-1))


def test_draws_follow_the_distribution_and_the_seed(model):
    processors = generate_processors(model, top_k=3, top_p=1.0)
    logits = torch.full((1, VOCAB), -10.0)
    logits[0, [10, 20, 30]] = torch.log(torch.tensor([0.6, 0.3, 0.1]))
    ids = torch.zeros(1, 1, dtype=torch.long)
    torch.manual_seed(2)
    draws = [sampling.next_token(processors, ids, logits, True) for _ in range(3000)]
    assert set(draws) == {10, 20, 30}
    assert abs(draws.count(10) / 3000 - 0.6) < 0.04 and abs(draws.count(30) / 3000 - 0.1) < 0.03
    torch.manual_seed(2)
    assert [sampling.next_token(processors, ids, logits, True) for _ in range(50)] == draws[:50]


def test_greedy_takes_the_best_score_after_the_processors(model):
    processors = model._get_logits_processor(
        GenerationConfig(do_sample=False, suppress_tokens=[7]),
        input_ids_seq_length=1,
        logits_processor=LogitsProcessorList(),
    )
    logits = torch.zeros(1, VOCAB)
    logits[0, 7], logits[0, 8] = 9.0, 8.0
    assert sampling.next_token(processors, torch.zeros(1, 1, dtype=torch.long), logits, False) == 8


def test_the_draw_runs_on_one_thread_and_restores_the_count(model):
    threads = torch.get_num_threads()
    seen = []

    class Count(LogitsProcessor):
        def __call__(self, input_ids, scores):
            seen.append(torch.get_num_threads())
            return scores

    sampling.next_token(
        LogitsProcessorList([Count()]), torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, VOCAB), True
    )
    assert seen == [1] and torch.get_num_threads() == threads
