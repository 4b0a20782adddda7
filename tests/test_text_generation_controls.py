"""Text generation on the tiny GPT-Neo: seeds, presets, long prompts, Stop, CPU speed-ups, status panel."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
import torch
from gradio_client.exceptions import AppError

from pipelines.core.errors import ConfigError, InputError
from pipelines.core.params import check_params
from pipelines.studio import ModelRegistry, parse_config
from pipelines.text.contract import PRESETS
from pipelines.text.pipeline import LocalTextGenerator
from pipelines.text.speedups import apply_cpu_speedups, model_memory_mb
from tests.helpers import SlowSteps, generates_at_once, launch_local, settles, slow_text_registry, wait_until
from ui import status_panel, text_tab
from ui.common import markdown_text

LONG_PROMPT = "Once upon a time " * 80  # ~320 tokens: more than the tiny model's 256-token context


def text_args(name, prompt="Once upon a time", max_new_tokens=12, seed=11, do_sample=True, **extra):
    return dict(
        prompt=prompt,
        model_name=name,
        max_new_tokens=max_new_tokens,
        temperature=1.0,
        top_p=0.95,
        top_k=50,
        repetition_penalty=1.1,
        do_sample=do_sample,
        seed=seed,
        **extra,
    )


# -- seeds ------------------------------------------------------------------------------------------
def test_same_seed_same_text_through_the_api(client, names):
    first = client.predict(**text_args(names["text"], seed=11), api_name="/generate_text")
    again = client.predict(**text_args(names["text"], seed=11), api_name="/generate_text")
    other = client.predict(**text_args(names["text"], seed=12), api_name="/generate_text")
    assert first[0] == again[0] == first[2]["text"] and first[0] and first[2]["seed"] == again[2]["seed"] == 11
    assert other[2]["seed"] == 12


def test_random_seed_is_reported_and_reproduces_the_text(client, names):
    text, _, update = client.predict(**text_args(names["text"], seed=-1), api_name="/generate_text")
    used = update["seed"]
    assert 0 <= used < 2**32
    replay, _, replayed = client.predict(**text_args(names["text"], seed=used), api_name="/generate_text")
    assert replay == text and replayed["seed"] == used


# -- long prompts -----------------------------------------------------------------------------------
def test_too_long_prompt_is_refused_with_a_message(client, names):
    with pytest.raises(AppError, match=r"prompt: is \d+ tokens; .* context length of 256 tokens.*truncate_prompt"):
        client.predict(**text_args(names["text"], prompt=LONG_PROMPT), api_name="/generate_text")


def test_too_long_prompt_is_truncated_from_the_left_on_request(client, registry, names):
    generator = registry.get("text", names["text"])
    expected = len(generator.tokenizer(LONG_PROMPT, verbose=False)["input_ids"]) - (generator.context_length - 12)
    text, _, update = client.predict(
        **text_args(names["text"], prompt=LONG_PROMPT, truncate_prompt=True), api_name="/generate_text"
    )
    assert text and update["new_tokens"] == 12 and update["truncated_tokens"] == expected > 0


def test_truncation_keeps_the_end_of_the_prompt(registry, names):
    generator = registry.get("text", names["text"])
    inputs, dropped = generator.prompt_inputs(
        LONG_PROMPT + "the end", generator.default_params(max_new_tokens=16, truncate_prompt=True)
    )
    kept = inputs["input_ids"][0]
    assert len(kept) == generator.context_length - 16 and generator.tokenizer.decode(kept).endswith("the end")
    assert inputs["attention_mask"].shape == inputs["input_ids"].shape and dropped["truncated_tokens"] > 0


# -- presets ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", list(PRESETS))
def test_presets_set_valid_sampling_controls(tiny_config, names, preset):
    entry = tiny_config.entry("text", names["text"])
    params = check_params(text_tab.preset_params(entry, preset), entry.ranges())
    values = {field: getattr(params, field) for field in text_tab.SAMPLING}
    assert params.max_new_tokens == entry.defaults.max_new_tokens  # presets leave the length alone
    assert all(values[field] == value for field, value in PRESETS[preset].items())
    assert set(PRESETS[preset]) <= set(text_tab.SAMPLING)  # the preset's fields are the ones it updates


def test_greedy_preset_is_deterministic_and_model_defaults_restore(tiny_config, registry, names):
    generator = registry.get("text", names["text"])
    greedy = dataclasses.replace(text_tab.preset_params(generator.entry, "Precise (greedy)"), max_new_tokens=8)
    assert greedy.do_sample is False
    texts = {generator.generate("Once upon a time", dataclasses.replace(greedy, seed=s))["text"] for s in (1, 2)}
    assert len(texts) == 1  # greedy ignores the seed
    defaults = text_tab.preset_params(generator.entry, text_tab.MODEL_DEFAULTS)
    d = generator.entry.defaults
    assert [getattr(defaults, f) for f in text_tab.SAMPLING] == [
        d.temperature,
        d.top_p,
        d.top_k,
        d.repetition_penalty,
        d.do_sample,
    ]
    with pytest.raises(InputError, match="preset: unknown preset 'Wild'"):
        text_tab.preset_params(generator.entry, "Wild")


# -- generate is called cleanly ---------------------------------------------------------------------
def test_generate_warns_about_nothing(registry, names, capfd, recwarn):
    generator = registry.get("text", names["text"])
    for do_sample in (True, False):
        result = generator.generate(
            "Hello there", generator.default_params(max_new_tokens=6, do_sample=do_sample, seed=3)
        )
        assert result["new_tokens"] == 6
    stderr = capfd.readouterr().err.lower()
    assert "attention mask" not in stderr and "pad_token" not in stderr and "pad token" not in stderr
    assert not [w for w in recwarn if "generat" in str(w.message).lower()]


def test_stats_count_the_generated_tokens(registry, names):
    generator = registry.get("text", names["text"])
    result = generator.generate("Hello there", generator.default_params(max_new_tokens=10, seed=4))
    produced = len(generator.tokenizer(result["text"])["input_ids"])
    assert result["new_tokens"] == 10 and result["done"] and not result["stopped"] and result["truncated_tokens"] == 0
    assert "prompt truncated" not in text_tab.format_stats(result)
    assert 0 < result["ttft_s"] <= result["elapsed_s"] and result["tokens_per_s"] > 0
    assert produced >= 1  # the text decodes from those tokens (re-tokenizing may merge some)


# -- Stop -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slow_app(tiny_config):
    """An app whose text model takes 0.05 s per token: 200 tokens would take 10 s."""
    from gradio_client import Client

    hook = SlowSteps()
    registry = slow_text_registry(tiny_config, hook)
    demo, url = launch_local(tiny_config, registry)
    yield Client(url, verbose=False), registry, hook
    demo.close()


def test_cancelled_api_job_stops_generate_and_frees_the_model(slow_app, names):
    client, _registry, hook = slow_app
    job = client.submit(**text_args(names["text"], max_new_tokens=200), api_name="/generate_text")
    assert wait_until(lambda: len(job.outputs()) >= 2), "no streamed update arrived"
    steps = hook.calls
    assert wait_until(lambda: hook.calls > steps), "not generating"
    job.cancel()
    assert settles(lambda: hook.calls), "generate() still runs after the job was cancelled"
    steps_when_stopped = hook.calls
    assert steps_when_stopped < 150  # stopped mid-way, not at the end of its 200 tokens
    # the next request starts at once and runs to its end
    text, _, update = client.predict(**text_args(names["text"], max_new_tokens=5), api_name="/generate_text")
    assert text and update["done"] and update["new_tokens"] == 5 and not update["stopped"]
    assert hook.calls - steps_when_stopped <= 5 + 2  # the cancelled generation did not resume


def test_stop_flag_ends_generation_with_a_stopped_result(slow_app, names):
    _, registry, hook = slow_app
    generator = registry.get("text", names["text"])
    stop = threading.Event()
    updates = []
    for update in generator.stream("Once upon a time", generator.default_params(max_new_tokens=200, seed=1), stop=stop):
        updates.append(update)
        if len(updates) == 3:
            stop.set()  # what the Stop button does (ui.common.StopFlags.stop)
    final = updates[-1]
    assert final["done"] and final["stopped"] and final["new_tokens"] < 200
    calls = hook.calls
    time.sleep(0.2)
    assert hook.calls == calls  # no step ran after the stream ended


def test_closing_the_stream_frees_the_model_at_once(slow_app, names):
    _, registry, hook = slow_app
    generator = registry.get("text", names["text"])
    stream = generator.stream("Once upon a time", generator.default_params(max_new_tokens=200, seed=1))
    next(stream), next(stream)
    stream.close()  # what Gradio does when a client cancels or disconnects
    calls = hook.calls
    time.sleep(0.2)
    assert hook.calls == calls  # no step ran after close() returned
    assert generates_at_once(generator)  # the model is free: no waiting for the closed stream's 198 steps (~10 s)


# -- CPU speed-ups ----------------------------------------------------------------------------------
@pytest.mark.parametrize("quantize", ["none", "int8_dynamic"])
def test_each_speedup_still_generates(tiny_config, names, quantize):
    entry = tiny_config.entry("text", names["text"])
    entry = entry.model_copy(update={"cpu_speedups": entry.cpu_speedups.model_copy(update={"quantize": quantize})})
    generator = LocalTextGenerator.from_entry(entry)
    result = generator.generate("Once upon a time", generator.default_params(max_new_tokens=8, seed=2))
    assert result["new_tokens"] == 8 and result["text"]
    again = generator.generate("Once upon a time", generator.default_params(max_new_tokens=8, seed=2))
    assert again["text"] == result["text"]
    lm_head = generator.model.lm_head
    if quantize == "int8_dynamic":
        assert isinstance(lm_head, torch.ao.nn.quantized.dynamic.Linear) and lm_head.weight().dtype == torch.qint8
        assert generator.placement == "cpu/float32 +int8 dynamic"
    else:
        assert type(lm_head) is torch.nn.Linear and generator.placement == "cpu/float32"


def test_int8_weights_take_about_a_quarter_of_the_memory():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 256))
    before = model_memory_mb(model)
    reference = model(torch.ones(1, 256))
    model = apply_cpu_speedups(model, quantize="int8_dynamic")
    assert 0.24 < model_memory_mb(model) / before < 0.35  # int8 weights, float scales and biases
    assert torch.allclose(model(torch.ones(1, 256)), reference, atol=0.05)


def test_gpt_neo_gets_the_fused_gelu_with_the_same_outputs(tiny_config, names):
    from transformers import AutoModelForCausalLM
    from transformers.activations import GELUTanh, NewGELUActivation

    from pipelines.text.speedups import fuse_gelu

    model = AutoModelForCausalLM.from_pretrained(tiny_config.entry("text", names["text"]).source).eval()
    ids = torch.arange(1, 17).unsqueeze(0)
    with torch.inference_mode():
        reference = model(input_ids=ids).logits
        assert fuse_gelu(model) == model.config.num_layers
        fused = model(input_ids=ids).logits
    assert not any(isinstance(m, NewGELUActivation) for m in model.modules())
    assert sum(isinstance(m, GELUTanh) for m in model.modules()) == model.config.num_layers
    assert torch.allclose(fused, reference, atol=1e-5)
    loaded = ModelRegistry(tiny_config).get("text", names["text"]).model  # the app's loader applies it
    assert not any(isinstance(m, NewGELUActivation) for m in loaded.modules())


def test_int8_dynamic_with_bfloat16_is_a_config_error(tiny_config):
    raw = tiny_config.model_dump(mode="json")
    raw["text"][0] |= {"dtype": "bfloat16", "cpu_speedups": {"quantize": "int8_dynamic"}}
    with pytest.raises(ConfigError, match=r"text\[0\].*int8_dynamic needs dtype float32"):
        parse_config(raw)
    raw["text"][0]["cpu_speedups"] = {"quantize": "int4"}
    with pytest.raises(ConfigError, match=r"cpu_speedups.quantize"):
        parse_config(raw)


@pytest.mark.parametrize(
    "retired,advice",
    [
        ({"quantize": "int8_torchao"}, "use quantize: int8_dynamic"),
        ({"compile": True}, "remove it"),
        ({"compile": False}, "remove it"),
    ],
)
def test_retired_speedups_are_refused_with_what_to_do(tiny_config, retired, advice):
    raw = tiny_config.model_dump(mode="json")
    raw["text"][0]["cpu_speedups"] = retired
    with pytest.raises(ConfigError, match=rf"text\[0\].*cpu_speedups.*no longer offered.*{advice}"):
        parse_config(raw)


def test_bundled_config_offers_the_int8_entry():
    from pipelines.studio import load_config

    config = load_config()
    int8 = [e for e in config.text if e.cpu_speedups.quantize != "none"]
    assert [e.name for e in int8] == ["GPT-Neo 1.3B (int8, CPU)"] and int8[0].source == "EleutherAI/gpt-neo-1.3B"
    assert "quality" in int8[0].description.lower()


# -- status panel -----------------------------------------------------------------------------------
def test_status_panel_lists_loaded_models(tiny_config, names):
    registry = ModelRegistry(tiny_config)
    empty = status_panel.render(tiny_config, registry)
    assert "**Loaded models:** 0" in empty and "No model loaded yet" in empty
    registry.get("text", names["text"])
    panel = status_panel.render(tiny_config, registry)
    row = next(line for line in panel.splitlines() if markdown_text(names["text"]) in line)  # the name as text
    assert "| text |" in row and "cpu/float32" in row and " MB |" in row
    assert "**Loaded models:** 1" in panel and "of the 2,000 MB budget" in panel and "resident" in panel
    registry.unload("text", names["text"])
    assert "No model loaded yet" in status_panel.render(tiny_config, registry)
