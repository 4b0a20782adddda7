"""The OpenVINO text engine (`cpu_speedups: {engine: openvino}`) on a tiny GPT-Neo with GPT-Neo
1.3B's 256-token local-attention window: the same tokens as PyTorch past the window, through
transformers' `generate`; every parameter of the text task (the walk of tests/param_walk.py)
and generate's own options; the export cache, and the refusal when the package is missing."""

from __future__ import annotations

import dataclasses
import itertools
import sys
import threading

import pytest
import torch

from pipelines.core.errors import ConfigError
from pipelines.studio import parse_config
from pipelines.text import openvino_engine
from pipelines.text.contract import TextParams
from pipelines.text.pipeline import LocalTextGenerator, OpenVINOTextGenerator
from pipelines.tiny import build_text_model
from tests.param_walk import walk_text

WINDOW = 256  # GPT-Neo 1.3B's local attention window
UNUSED = {"source": "not-loaded"}


def config_with(text_entries: list[dict]):
    return parse_config(
        {
            "classification": [{"name": "unused", **UNUSED}],
            "image": [{"name": "unused", **UNUSED}],
            "text": text_entries,
        }
    )


@pytest.fixture(scope="module")
def neo256(tmp_path_factory):
    """A tiny GPT-Neo with a 512-token context and a 256-token window (global + local layer)."""
    return build_text_model(
        tmp_path_factory.mktemp("neo256"), context=512, window_size=WINDOW, name="neo256", initializer_range=0.2
    )


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("openvino-cache")


def entry(source, weights: str | None, cache_dir=None, **extra) -> dict:
    speedups = {} if weights is None else {"engine": "openvino", "weights": weights, "cache_dir": str(cache_dir)}
    return {"name": f"neo {weights or 'torch'}", "source": str(source), "cpu_speedups": speedups, **extra}


@pytest.fixture(scope="module")
def generators(neo256, cache_dir):
    """PyTorch float32, and OpenVINO with each weight format, from the same weights."""
    config = config_with([entry(neo256, None)] + [entry(neo256, w, cache_dir) for w in openvino_engine.WEIGHT_FORMATS])
    return {
        e.cpu_speedups.weights if e.cpu_speedups.engine == "openvino" else "torch": LocalTextGenerator.from_entry(e)
        for e in config.text
    }


def greedy(generator, max_new_tokens: int, prompt: str = "Once upon a time") -> dict:
    return generator.generate(
        prompt, generator.default_params(max_new_tokens=max_new_tokens, do_sample=False, repetition_penalty=1.0, seed=1)
    )


# -- the same tokens as PyTorch -----------------------------------------------------------------------
def greedy_ids(model, prompt_ids: list[int], new: int, **options) -> list[int]:
    """`generate`'s greedy tokens (the same call for a PyTorch and an OpenVINO model), no early stop."""
    with torch.inference_mode():
        out = model.generate(
            torch.tensor([prompt_ids]),
            attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
            max_new_tokens=new,
            do_sample=False,
            pad_token_id=0,
            eos_token_id=None,
            **options,
        )
    return out[0, len(prompt_ids) :].tolist()


def test_float32_greedy_matches_pytorch_token_for_token_past_the_window(generators, neo256):
    torch_gen, ov_gen = generators["torch"], generators["float32"]
    assert isinstance(ov_gen, OpenVINOTextGenerator) and ov_gen.placement == "cpu/openvino float32"
    assert torch_gen.model.config.window_size == WINDOW
    prompt_ids = torch_gen.tokenizer("Once upon a time")["input_ids"]
    # 320 new tokens: the last ~70 positions see only the window in the local layer
    new = 320
    reference = greedy_ids(torch_gen.model, prompt_ids, new, repetition_penalty=1.0)
    assert len(prompt_ids) + new > WINDOW + 50 and len(set(reference[WINDOW:])) > 20  # past the window, not a loop
    assert greedy_ids(ov_gen.model, prompt_ids, new, repetition_penalty=1.0) == reference
    # generate's own decoding loop (OpenVINOCausalLM.fast_sampling off) makes the same tokens
    ov_gen.model.fast_sampling = False
    try:
        assert greedy_ids(ov_gen.model, prompt_ids, new, repetition_penalty=1.0) == reference
    finally:
        ov_gen.model.fast_sampling = True

    # the window matters in this test: without it (every layer global) PyTorch's tokens change past it
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(neo256)
    config.attention_layers = ["global"] * config.num_layers
    global_only = AutoModelForCausalLM.from_pretrained(neo256, config=config).eval()
    unwindowed = greedy_ids(global_only, prompt_ids, new, repetition_penalty=1.0)
    first_difference = next(i for i, (a, b) in enumerate(zip(unwindowed, reference)) if a != b)
    assert len(prompt_ids) + first_difference > WINDOW


def test_float32_logits_match_pytorch_at_every_position_past_the_window(generators):
    torch_gen, ov_gen = generators["torch"], generators["float32"]
    ids = torch.randint(0, torch_gen.model.config.vocab_size, (1, 400), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        reference = torch_gen.model(input_ids=ids).logits[0]
    ov_gen.model.reset()
    ours = torch.stack([ov_gen.model.step([token]) for token in ids[0].tolist()])
    assert (ours - reference).abs().max() < 1e-4
    assert (ours.argmax(-1) == reference.argmax(-1)).all()


def test_app_level_greedy_text_is_the_same_as_pytorch(generators):
    assert greedy(generators["float32"], 40)["text"] == greedy(generators["torch"], 40)["text"]


@pytest.mark.parametrize("weights", ["int8", "int4"])
def test_compressed_formats_generate_with_smaller_weights(generators, weights, monkeypatch):
    config = generators[weights].generation_config  # the tiny random model may draw its end-of-text token: suppress it
    monkeypatch.setattr(config, "suppress_tokens", [config.eos_token_id])
    result = generators[weights].generate(
        "Once upon a time", generators[weights].default_params(max_new_tokens=8, seed=2)
    )
    assert result["new_tokens"] == 8 and result["text"] and generators[weights].placement == f"cpu/openvino {weights}"
    assert generators[weights].memory_mb < 0.5 * generators["float32"].memory_mb


# -- every parameter ------------------------------------------------------------------------------------
def test_same_seed_same_text_other_seed_other_text(generators):
    generator = generators["int4"]
    params = generator.default_params(max_new_tokens=20, seed=1234)
    first = generator.generate("Hello", params)
    assert first["text"] and generator.generate("Hello", params)["text"] == first["text"] and first["seed"] == 1234
    assert generator.generate("Hello", generator.default_params(max_new_tokens=20, seed=1235))["text"] != first["text"]
    random_seed = generator.generate("Hello", generator.default_params(max_new_tokens=5, seed=-1))
    replay = generator.generate("Hello", generator.default_params(max_new_tokens=5, seed=random_seed["seed"]))
    assert random_seed["seed"] >= 0 and replay["text"] == random_seed["text"]


def test_max_new_tokens_and_streamed_prefixes(generators):
    generator = generators["int8"]
    updates = list(generator.stream("Once upon a time", generator.default_params(max_new_tokens=17, seed=5)))
    texts = [u["text"] for u in updates]
    assert updates[-1]["done"] and updates[-1]["new_tokens"] == 17 and not updates[-1]["stopped"]
    assert len(texts) >= 3 and all(b.startswith(a) for a, b in itertools.pairwise(texts))
    assert updates[-1]["tokens_per_s"] > 0 and updates[-1]["ttft_s"] > 0


@pytest.mark.parametrize("weights", openvino_engine.WEIGHT_FORMATS)
def test_every_text_parameter_changes_the_output_or_is_refused(generators, weights, monkeypatch):
    config = generators[weights].generation_config  # every run makes max_new_tokens tokens
    monkeypatch.setattr(config, "suppress_tokens", [config.eos_token_id])
    verdicts = walk_text(generators[weights])
    assert verdicts == {f.name: "used" for f in dataclasses.fields(TextParams)}


def test_generate_options_work_on_the_openvino_model(generators):
    """Options TextParams does not offer (yet) work as on PyTorch: the model is a transformers one."""
    torch_gen, ov_gen = generators["torch"], generators["float32"]
    prompt_ids = torch_gen.tokenizer("Once upon a time")["input_ids"]
    for options in [
        dict(no_repeat_ngram_size=2),
        dict(repetition_penalty=1.5, suppress_tokens=[5, 6, 7]),
        dict(min_new_tokens=5, bad_words_ids=[[9]]),
        dict(use_cache=False),
    ]:
        assert greedy_ids(ov_gen.model, prompt_ids, 40, **options) == greedy_ids(
            torch_gen.model, prompt_ids, 40, **options
        ), options

    def sampled(**options):
        torch.manual_seed(3)
        return ov_gen.model.generate(
            torch.tensor([prompt_ids]), max_new_tokens=30, do_sample=True, top_k=0, pad_token_id=0, **options
        )[0].tolist()

    # typical_p and min_p, which TextParams does not have, reach the draw (same seed, other tokens)
    assert sampled() == sampled() and sampled(typical_p=0.2) != sampled() and sampled(min_p=0.5) != sampled()
    with pytest.raises(ValueError, match="does not run beam search"):
        greedy_ids(ov_gen.model, prompt_ids, 5, num_beams=2)


def test_token_view_records_the_distributions_the_tokens_were_drawn_from(generators):
    generator = generators["float32"]
    params = generator.default_params(max_new_tokens=8, seed=5, top_k=5, token_probabilities=True)
    final = generator.generate("The cat", params)
    assert final["tokens_unavailable"] is None and len(final["tokens"]) == final["new_tokens"] == 8
    assert "".join(token["text"] for token in final["tokens"]) == final["text"]
    assert final["text"] == generator.generate("The cat", params)["text"]  # recording changes nothing drawn
    for token in final["tokens"]:
        alternatives = token["alternatives"]
        assert (
            token["id"] in [a["id"] for a in alternatives] and len(alternatives) <= 5
        )  # top_k 5: nothing else possible
        assert sum(a["probability"] for a in alternatives) == pytest.approx(1, abs=1e-4)


def test_next_tokens_on_openvino_match_pytorch(generators):
    torch_next = generators["torch"].next_tokens("Once upon a time")
    ov_next = generators["float32"].next_tokens("Once upon a time")
    assert [t["id"] for t in ov_next["tokens"]] == [t["id"] for t in torch_next["tokens"]]
    for ours, reference in zip(ov_next["tokens"], torch_next["tokens"]):
        assert ours["probability"] == pytest.approx(reference["probability"], abs=1e-4)


def test_stop_ends_generation_within_a_token(generators):
    generator = generators["int4"]
    stop = threading.Event()
    steps = []
    original = generator.model.step

    def counted_step(ids):
        steps.append(len(ids))
        return original(ids)

    generator.model.step = counted_step
    try:
        updates = []
        for update in generator.stream(
            "Once upon a time", generator.default_params(max_new_tokens=200, seed=1), stop=stop
        ):
            updates.append(update)
            if len(updates) == 3:
                stop.set()  # what the Stop button does
                steps_at_stop = len(steps)
    finally:
        del generator.model.step
    final = updates[-1]
    assert final["done"] and final["stopped"] and final["new_tokens"] < 200
    assert len(steps) - steps_at_stop <= 1  # at most the step already running when Stop came
    assert not generator._lock.locked()


def test_too_long_prompt_is_refused_or_truncated_from_the_left(generators):
    generator = generators["int4"]
    long_prompt = "Once upon a time " * 160 + "the end"  # ~640 tokens: more than the 512-token context
    with pytest.raises(Exception, match=r"prompt: is \d+ tokens; .* context length of 512 tokens"):
        generator.generate(long_prompt, generator.default_params(max_new_tokens=12))
    result = generator.generate(long_prompt, generator.default_params(max_new_tokens=12, truncate_prompt=True, seed=1))
    assert result["new_tokens"] == 12 and result["truncated_tokens"] > 0
    inputs, _ = generator.prompt_inputs(long_prompt, generator.default_params(max_new_tokens=12, truncate_prompt=True))
    assert inputs["input_ids"].shape[1] == 500 and generator.tokenizer.decode(inputs["input_ids"][0]).endswith(
        "the end"
    )


def test_through_the_app_api_with_seeds_and_the_status_panel(neo256, cache_dir):
    from gradio_client import Client

    from pipelines.studio import ModelRegistry
    from tests.helpers import launch_local
    from ui import status_panel

    config = config_with([entry(neo256, "int4", cache_dir)])
    registry = ModelRegistry(config)
    demo, url = launch_local(config, registry)
    try:
        client = Client(url, verbose=False)
        args = dict(
            prompt="Once upon a time",
            model_name="neo int4",
            max_new_tokens=10,
            temperature=1.0,
            top_p=0.95,
            top_k=50,
            repetition_penalty=1.1,
            do_sample=True,
            seed=7,
            api_name="/generate_text",
        )
        first, stats, update = client.predict(**args)
        again, _, _ = client.predict(**args)
        assert (
            first
            and first == again
            and stats.startswith("10 tokens")
            and "seed 7" in stats
            and update["new_tokens"] == 10
        )
        assert "cpu/openvino int4" in status_panel.render(config, registry)
    finally:
        demo.close()


# -- the export cache ---------------------------------------------------------------------------------
def test_later_loads_reuse_the_export_and_formats_have_their_own(neo256, cache_dir, generators, monkeypatch):
    folders = sorted(p.name for p in cache_dir.iterdir() if not p.name.startswith("."))
    assert len(folders) == 3 and [f for f in folders if "int4" in f] and [f for f in folders if "float32" in f]
    monkeypatch.setattr(openvino_engine, "export", lambda *a, **k: pytest.fail("exported again"))
    again = LocalTextGenerator.from_entry(config_with([entry(neo256, "int4", cache_dir)]).text[0])
    assert again.generate("Hi", again.default_params(max_new_tokens=3))["new_tokens"] == 3


def test_a_failed_export_leaves_nothing_to_reuse(tmp_path):
    def broken(folder):
        folder.mkdir(parents=True)
        (folder / "model.xml").write_text("half")
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        openvino_engine.cached_export(tmp_path / "model", broken)
    assert not (tmp_path / "model").exists() and not (tmp_path / ".model.partial").exists()


def test_cache_key_follows_source_revision_and_format():
    key = openvino_engine.cache_key("EleutherAI/gpt-neo-1.3B", "main", "int4")
    assert key.startswith("EleutherAI-gpt-neo-1.3B-int4-")
    assert (
        len(
            {
                key,
                openvino_engine.cache_key("EleutherAI/gpt-neo-1.3B", "abc123", "int4"),
                openvino_engine.cache_key("EleutherAI/gpt-neo-1.3B", "main", "int8"),
                openvino_engine.cache_key("EleutherAI/gpt-neo-125m", "main", "int4"),
            }
        )
        == 4
    )


# -- config -------------------------------------------------------------------------------------------
def test_missing_package_refuses_the_entry_at_start_up_naming_it(neo256, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` fails, as without the package
    with pytest.raises(
        ConfigError,
        match=r"text\[0\] \('neo int4'\), field 'cpu_speedups.engine': engine openvino "
        r"needs the package\(s\) openvino, which are not installed: pip install",
    ):
        config_with([entry(neo256, "int4", "/tmp/unused")])


@pytest.mark.parametrize(
    "speedups,field,message",
    [
        ({"engine": "openvino", "quantize": "int8_dynamic"}, "cpu_speedups.quantize", "is for engine torch"),
        ({"weights": "int4"}, "cpu_speedups.weights", "is for engine openvino"),
        ({"engine": "openvino", "weights": "int2"}, "cpu_speedups.weights", "float32', 'int8' or 'int4'"),
    ],
)
def test_options_of_the_other_engine_are_refused(neo256, speedups, field, message):
    with pytest.raises(ConfigError, match=rf"field '{field}'.*{message}"):
        config_with([{"name": "n", "source": str(neo256), "cpu_speedups": speedups}])


def test_openvino_needs_float32_weights_to_export(neo256):
    with pytest.raises(ConfigError, match=r"engine openvino exports from float32 weights"):
        config_with([{"name": "n", "source": str(neo256), "dtype": "bfloat16", "cpu_speedups": {"engine": "openvino"}}])


def test_bundled_config_offers_int4_on_openvino_first():
    from pipelines.studio import load_config

    first = load_config().text[0]
    assert first.name == "GPT-Neo 1.3B (int4, CPU)" and first.source == "EleutherAI/gpt-neo-1.3B"
    assert (first.cpu_speedups.engine, first.cpu_speedups.weights) == ("openvino", "int4")
    assert "quality" in first.description.lower() and "once" in first.description.lower()


def test_jobs_run_in_their_callers_context_so_load_progress_reaches_the_request():
    import contextvars

    from pipelines.core import background

    request = contextvars.ContextVar("request")
    request.set("the Text tab's request")  # as Gradio's LocalContext.progress is set for a handler
    assert background.call(lambda emit: request.get(None), "load-test") == "the Text tab's request"
