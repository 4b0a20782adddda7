"""What the text model considered, on the tiny GPT-Neo: each generated token's probability and
alternatives (token_probabilities) and the next-token explorer (/next_tokens)."""

from __future__ import annotations

import itertools

import pytest
import torch
from gradio_client.exceptions import AppError
from transformers import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from pipelines.core.errors import InputError
from pipelines.text.contract import TOP_ALTERNATIVES, NextTokenParams
from ui import token_view

PROMPT = "Once upon a time"
SAMPLING = dict(do_sample=True, temperature=0.7, top_k=20, top_p=0.9, repetition_penalty=1.3)


@pytest.fixture(scope="module")
def generator(registry, names):
    return registry.get("text", names["text"])


def recorded(generator, prompt=PROMPT, **params):
    return generator.generate(prompt, generator.default_params(token_probabilities=True, **params))


def reference_distributions(generator, prompt: str, token_ids: list[int], params: dict) -> list[torch.Tensor]:
    """The model's own softmax at each step, through the processors generate() applies, in its order."""
    processors = LogitsProcessorList([RepetitionPenaltyLogitsProcessor(params["repetition_penalty"])])
    if params["do_sample"]:
        processors += [
            TemperatureLogitsWarper(params["temperature"]),
            TopKLogitsWarper(params["top_k"]),
            TopPLogitsWarper(params["top_p"]),
        ]
    ids = generator.tokenizer(prompt, return_tensors="pt")["input_ids"]
    distributions = []
    with torch.inference_mode():
        for token_id in token_ids:
            logits = generator.model(input_ids=ids).logits[:, -1].float()
            distributions.append(processors(ids, logits)[0].softmax(-1))
            ids = torch.cat([ids, torch.tensor([[token_id]])], dim=1)
    return distributions


# -- the token view ----------------------------------------------------------------------------------
@pytest.mark.parametrize("do_sample", [True, False], ids=["sampling", "greedy"])
def test_probabilities_are_the_models_softmax_after_the_same_processors(generator, do_sample):
    params = SAMPLING | {"do_sample": do_sample}
    final = recorded(generator, max_new_tokens=12, seed=3, **params)
    tokens = final["tokens"]
    assert len(tokens) == final["new_tokens"] == 12
    for token, expected in zip(tokens, reference_distributions(generator, PROMPT, [t["id"] for t in tokens], params)):
        assert token["probability"] == pytest.approx(expected[token["id"]].item(), rel=1e-4, abs=1e-7)
        assert sum(a["probability"] for a in token["alternatives"]) <= 1 + 1e-5
        likeliest = expected.topk(TOP_ALTERNATIVES)
        top = [a for a in token["alternatives"] if a["rank"] <= TOP_ALTERNATIVES]
        assert [a["probability"] for a in top] == pytest.approx(
            [p for p in likeliest.values.tolist() if p > 0], rel=1e-4, abs=1e-7
        )
        assert token["rank"] == int((expected > expected[token["id"]]).sum()) + 1


def test_recording_changes_nothing_that_is_generated(generator):
    for params in (SAMPLING, {"do_sample": False}, {"do_sample": True, "temperature": 1.3, "top_k": 0, "top_p": 1.0}):
        plain = generator.generate(PROMPT, generator.default_params(max_new_tokens=16, seed=9, **params))
        with_view = recorded(generator, max_new_tokens=16, seed=9, **params)
        assert with_view["text"] == plain["text"] and plain["tokens"] is None and plain["tokens_unavailable"] is None


def test_the_chosen_token_is_among_its_alternatives_and_greedy_chooses_the_likeliest(generator):
    sampled = recorded(generator, max_new_tokens=20, seed=4, do_sample=True, temperature=1.0, top_k=3, top_p=1.0)[
        "tokens"
    ]
    for token in sampled:
        chosen = [a for a in token["alternatives"] if a["id"] == token["id"]]
        assert chosen and chosen[0]["probability"] == token["probability"] and chosen[0]["rank"] == token["rank"] <= 3
        assert [a["rank"] for a in token["alternatives"]] == list(range(1, 4))  # top-3: the others have probability 0
    greedy = recorded(generator, max_new_tokens=20, do_sample=False)["tokens"]
    assert all(t["most_likely"] and t["rank"] == 1 and t["alternatives"][0]["id"] == t["id"] for t in greedy)


def test_a_token_outside_the_top_alternatives_is_added_with_its_rank(generator):
    tokens = recorded(generator, max_new_tokens=40, seed=1, do_sample=True, temperature=2.0, top_k=0, top_p=1.0)[
        "tokens"
    ]
    outside = [t for t in tokens if t["rank"] > TOP_ALTERNATIVES]
    assert outside, "a flat distribution sampled 40 times should pick some token outside its top 5"
    for token in outside:
        assert len(token["alternatives"]) == TOP_ALTERNATIVES + 1 and token["alternatives"][-1]["id"] == token["id"]
        assert (
            not token["most_likely"]
            and token["probability"] <= token["alternatives"][TOP_ALTERNATIVES - 1]["probability"]
        )


def test_tokens_spell_the_text_and_grow_with_each_streamed_update(generator):
    updates = list(
        generator.stream(PROMPT, generator.default_params(max_new_tokens=30, seed=2, token_probabilities=True))
    )
    counts = [len(u["tokens"]) for u in updates]
    assert counts == sorted(counts) and counts[-1] == 30 and len(updates) > 2
    assert "".join(t["text"] for t in updates[-1]["tokens"]) == updates[-1]["text"]
    for earlier, later in itertools.pairwise(updates):
        assert [t["id"] for t in later["tokens"][: len(earlier["tokens"])]] == [t["id"] for t in earlier["tokens"]]


def test_a_character_split_over_tokens_is_shown_by_its_last_token():
    from pipelines.text.token_probabilities import TokenRecorder

    class Bytes:  # a tokenizer whose tokens are single bytes of UTF-8
        def decode(self, ids, skip_special_tokens=False):
            return bytes(ids).decode("utf-8", errors="replace")

    reported = []
    recorder = TokenRecorder(Bytes(), reported.append, top=2)
    for byte in "a😀".encode():
        recorder(None, torch.zeros(1, 256))
        recorder.chosen(byte)
    recorder.finish()
    assert [t["text"] for t in reported] == ["a", "", "", "", "😀"]


# -- the next-token explorer -------------------------------------------------------------------
def test_next_tokens_are_sorted_reproducible_and_a_distribution(generator):
    first = generator.next_tokens(PROMPT, NextTokenParams(top_k=12, temperature=1.0))
    again = generator.next_tokens(PROMPT, NextTokenParams(top_k=12, temperature=1.0))
    probabilities = [t["probability"] for t in first["tokens"]]
    assert first == again and len(probabilities) == 12 and probabilities == sorted(probabilities, reverse=True)
    assert [t["rank"] for t in first["tokens"]] == list(range(1, 13))
    assert sum(probabilities) == pytest.approx(first["top_k_probability"], rel=1e-4) and first["top_k_probability"] <= 1
    ids = generator.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        expected = generator.model(input_ids=ids).logits[0, -1].float().softmax(-1).topk(12)
    assert [t["id"] for t in first["tokens"]] == expected.indices.tolist()
    assert probabilities == pytest.approx(expected.values.tolist(), rel=1e-4)


def test_temperature_sharpens_or_flattens_the_distribution(generator):
    cold, warm = (generator.next_tokens(PROMPT, NextTokenParams(top_k=5, temperature=t)) for t in (0.2, 1.8))
    assert [t["id"] for t in cold["tokens"]] == [t["id"] for t in warm["tokens"]]  # the same order
    assert cold["tokens"][0]["probability"] > warm["tokens"][0]["probability"]
    assert cold["entropy_bits"] < warm["entropy_bits"]


@pytest.mark.parametrize(
    "prompt, params, message",
    [
        ("   ", {}, r"^prompt: is empty"),
        (PROMPT, {"top_k": 0}, r"^top_k: must be an integer in \[1, 50\], got 0"),
        (PROMPT, {"top_k": 51}, r"^top_k: must be an integer in \[1, 50\]"),
        (PROMPT, {"temperature": 0}, r"^temperature: must be a number in \[0.05, 2\]"),
        (PROMPT, {"temperature": 1e-300}, r"^temperature: must be a number in \[0.05, 2\], got 1e-300"),
        ("word " * 400, {}, r"^prompt: is \d+ tokens; the model reads at most 256"),
    ],
)
def test_bad_explorer_requests_name_the_field(generator, prompt, params, message):
    with pytest.raises(InputError, match=message):
        generator.next_tokens(prompt, NextTokenParams(**params))


# -- through the app -------------------------------------------------------------------------------
def test_streamed_json_carries_tokens_only_when_asked(client, names):
    job = client.submit(
        prompt=PROMPT,
        model_name=names["text"],
        max_new_tokens=16,
        seed=5,
        token_probabilities=True,
        api_name="/generate_text",
    )
    updates = [update for _text, _stats, update in job]
    text, _stats, final = job.result()
    assert final["tokens"] and len(final["tokens"]) == 16 and "".join(t["text"] for t in final["tokens"]) == text
    assert any(0 < len(u["tokens"]) < 16 for u in updates)  # while streaming, too
    assert set(final["tokens"][0]) == {"token", "id", "probability", "rank", "text", "most_likely", "alternatives"}
    _text, _stats, plain = client.predict(
        prompt=PROMPT, model_name=names["text"], max_new_tokens=16, seed=5, api_name="/generate_text"
    )
    assert plain["tokens"] is None and plain["params"]["token_probabilities"] is False


def test_next_tokens_endpoint(client, names):
    chart, summary, result = client.predict(
        prompt=PROMPT, model_name=names["text"], top_k=4, temperature=0.5, api_name="/next_tokens"
    )
    assert [row[0] for row in chart["data"]] == [
        f"{t['rank']}. {token_view.visible(t['token'])}" for t in result["tokens"]
    ]
    assert len(result["tokens"]) == 4 and result["temperature"] == 0.5 and result["prompt_tokens"] > 0
    assert summary == token_view.describe_next_tokens(result)  # the summary describes the JSON result
    with pytest.raises(AppError, match=r"^top_k: must be an integer in \[1, 50\], got 99"):
        client.predict(prompt=PROMPT, model_name=names["text"], top_k=99, api_name="/next_tokens")


# -- what the page shows ---------------------------------------------------------------------------
def test_the_view_shades_tokens_and_explains_a_choice(generator):
    final = recorded(generator, max_new_tokens=8, seed=7, **SAMPLING)
    segments, note = token_view.token_segments(final)
    assert [score for _, score in segments] == [-(t["probability"] ** 0.5) for t in final["tokens"]]
    assert [piece for piece, _ in segments] == [t["text"] or t["token"] for t in final["tokens"]]
    assert note.startswith("8 tokens;")
    confidences, choice = token_view.token_alternatives(final, 0)
    token = final["tokens"][0]
    assert list(confidences.values()) == [a["probability"] for a in token["alternatives"]]
    assert sum("◀ chosen" in label for label in confidences) == 1 and "sampled" in choice
    assert token_view.token_alternatives(final, 99) == ({}, "")


def test_the_view_says_when_probabilities_are_off_or_unavailable():
    assert token_view.token_segments({"tokens": None, "tokens_unavailable": None, "text": "x"}) == (
        [],
        token_view.NOT_RECORDED,
    )
    segments, note = token_view.token_segments({"tokens": None, "tokens_unavailable": "the server sent none"})
    assert segments == [] and note == "Token probabilities are not available for this model: the server sent none."
