"""The app's own loader: tiny models load through it, lazily, once, within a memory budget."""

import threading
import time

import pytest

from pipelines.core.errors import ModelLoadError, UnknownModelError
from pipelines.studio import DEFAULT_CONFIG_PATH, ModelRegistry, load_config


def test_each_tiny_model_loads_through_the_registry(registry, names):
    classifier = registry.get("classification", names["classification"])
    assert classifier.class_names == ["ham", "spam"]
    generator = registry.get("text", names["text"])
    assert type(generator.model).__name__ == "GPTNeoForCausalLM"
    assert generator.tokenizer.pad_token_id is not None
    image = registry.get("image", names["image"])
    assert type(image.pipe).__name__ == "StableDiffusionPipeline"
    assert {str(m.placement) for m in (classifier, generator, image)} == {"cpu/float32"}


def test_models_load_lazily_and_once(tiny_config, names):
    calls = []

    def slow_loader(entry):
        calls.append(entry.name)
        time.sleep(0.2)
        return object()

    registry = ModelRegistry(tiny_config, loaders={"classification": slow_loader})
    assert registry.status() == []  # nothing loads until a request needs it
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(registry.get("classification", names["classification"])))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [names["classification"]]
    assert len({id(r) for r in results}) == 1


def test_unknown_model_name_is_an_input_error(registry):
    with pytest.raises(UnknownModelError, match="unknown text model 'nope'"):
        registry.get("text", "nope")


def test_memory_budget_evicts_least_recently_used(tiny_config):
    class Fake:
        memory_mb = 60.0
        placement = "cpu/float32"

    config = tiny_config.model_copy(
        update={"settings": tiny_config.settings.model_copy(update={"memory_budget_mb": 100})}
    )
    registry = ModelRegistry(config, loaders={t: (lambda entry: Fake()) for t in ("classification", "text", "image")})
    registry.get("classification", config.default_name("classification"))
    registry.get("text", config.default_name("text"))
    assert [s["task"] for s in registry.status()] == ["text"]


def test_idle_models_are_unloaded(tiny_config, names):
    registry = ModelRegistry(tiny_config, loaders={"classification": lambda entry: object()})
    registry.get("classification", names["classification"])
    assert registry.unload_idle(now=time.monotonic() + 10) == []
    later = time.monotonic() + tiny_config.settings.idle_unload_minutes * 60 + 1
    assert registry.unload_idle(now=later) == [names["classification"]]
    assert not registry.is_loaded("classification", names["classification"])


def test_missing_local_path_names_model_and_fix(tiny_config, tmp_path):
    entry = tiny_config.text[0].model_copy(update={"source": str(tmp_path / "missing")})
    config = tiny_config.model_copy(update={"text": [entry]})
    with pytest.raises(ModelLoadError) as err:
        ModelRegistry(config).get("text", entry.name)
    message = str(err.value)
    assert f"Cannot load model '{entry.name}'" in message
    assert "missing" in message and "models.yaml" in message


def test_default_models_without_network_give_clear_errors(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = load_config(DEFAULT_CONFIG_PATH)
    registry = ModelRegistry(config)
    for task in ("classification", "text", "image"):
        name = config.default_name(task)
        with pytest.raises(ModelLoadError) as err:
            registry.get(task, name)
        message = str(err.value)
        assert message.startswith(f"Cannot load model '{name}'")
        assert "Hub cannot be reached" in message and "models.yaml" in message
        assert "`python -m pipelines.tiny DIR` builds tiny test models" in message
        assert "MODELS_CONFIG=DIR/models.yaml" in message
        assert "Traceback" not in message


def test_failed_load_does_not_block_other_tasks(tiny_config, tmp_path, names):
    broken = tiny_config.image[0].model_copy(update={"source": str(tmp_path / "nothing-here")})
    config = tiny_config.model_copy(update={"image": [broken]})
    registry = ModelRegistry(config)
    with pytest.raises(ModelLoadError):
        registry.get("image", broken.name)
    assert registry.get("classification", names["classification"])(["hello"])[0]["label"] in ("ham", "spam")
