import textwrap

import pytest

from pipelines.core.errors import ConfigError, UnknownModelError
from pipelines.studio import DEFAULT_CONFIG_PATH, load_config

MINIMAL = """
classification:
  - {name: C, source: some/classifier}
text:
  - {name: T, source: some/lm}
image:
  - {name: I, source: some/diffusion}
"""


def write(tmp_path, text):
    path = tmp_path / "models.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_bundled_config_lists_the_product_defaults():
    config = load_config(DEFAULT_CONFIG_PATH)
    assert (
        config.entry("classification", config.default_name("classification")).source
        == "mrm8488/bert-tiny-finetuned-sms-spam-detection"
    )
    assert config.entry("text", config.default_name("text")).source == "EleutherAI/gpt-neo-1.3B"
    assert "EleutherAI/gpt-neo-125m" in [e.source for e in config.text]
    assert config.entry("image", config.default_name("image")).source == "stabilityai/sd-turbo"
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in [e.source for e in config.image]
    assert len(config.classification) >= 2


def test_the_core_config_takes_its_sections_from_its_caller(tmp_path):
    """pipelines.core.config knows no task: the schema is made from the sections it is given
    (the app's, from the task table, is pipelines.studio.AppConfig)."""
    from pipelines.classification.config import ClassificationEntry, TrainingConfig
    from pipelines.core import config as core

    model = core.config_model({"spam": ClassificationEntry}, {"training": TrainingConfig})
    path = tmp_path / "models.yaml"
    path.write_text("spam:\n  - {name: S, source: ./s}\ntraining:\n  base_models: [{name: B, source: ../b}]\n")
    config = core.load_config(model, path)
    assert config.names("spam") == ["S"] and config.entry("spam", "S").source == str(tmp_path / "s")
    assert config.training.base_models[0].source == str((tmp_path / "../b").resolve())
    with pytest.raises(ConfigError, match="expected a mapping with keys spam"):
        core.parse_config(model, [])
    with pytest.raises(ConfigError, match=r"entry spam\[0\] \('S'\), field 'max_length'"):
        core.parse_config(model, {"spam": [{"name": "S", "source": "x", "max_length": 1}]})
    with pytest.raises(ConfigError, match="duplicate model name"):
        core.parse_config(model, {"spam": [{"name": "S", "source": "x"}, {"name": "S", "source": "y"}]})


def test_minimal_config_gets_defaults(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    assert config.names("text") == ["T"]
    assert config.text[0].defaults.max_new_tokens == 64
    assert config.text[0].device == "auto"


def test_models_config_environment_variable_selects_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELS_CONFIG", str(write(tmp_path, MINIMAL)))
    assert load_config().names("image") == ["I"]


def test_unknown_key_names_file_entry_and_field(tmp_path):
    path = write(tmp_path, MINIMAL.replace("{name: T, source: some/lm}", "{name: T, source: some/lm, temprature: 3}"))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message
    assert "text[0] ('T')" in message
    assert "temprature" in message


def test_missing_field_is_reported(tmp_path):
    path = write(tmp_path, MINIMAL.replace("{name: I, source: some/diffusion}", "{name: I}"))
    with pytest.raises(ConfigError, match=r"image\[0\] \('I'\), field 'source'"):
        load_config(path)


def test_bad_value_is_reported(tmp_path):
    path = write(
        tmp_path,
        MINIMAL.replace("{name: T, source: some/lm}", "{name: T, source: some/lm, defaults: {temperature: -1}}"),
    )
    with pytest.raises(
        ConfigError, match=r"text\[0\] \('T'\), field 'defaults.temperature'.*greater than or equal to 0.05"
    ):
        load_config(path)


def test_bad_device_and_missing_task(tmp_path):
    path = write(tmp_path, MINIMAL.replace("{name: C, source: some/classifier}", "{name: C, source: x, device: tpu}"))
    with pytest.raises(ConfigError, match=r"classification\[0\].*field 'device'"):
        load_config(path)
    with pytest.raises(ConfigError, match="field 'image'"):
        load_config(write(tmp_path, MINIMAL.split("image:")[0]))


def test_duplicate_names_and_bad_labels_rejected(tmp_path):
    dup = MINIMAL.replace("  - {name: T, source: some/lm}", "  - {name: T, source: a}\n  - {name: T, source: b}")
    with pytest.raises(ConfigError, match="duplicate model name"):
        load_config(write(tmp_path, dup))
    labels = MINIMAL.replace(
        "{name: C, source: some/classifier}", "{name: C, source: x, labels: {LABEL_0: ham, LABEL_1: ham}}"
    )
    with pytest.raises(ConfigError, match="both 'ham' and 'spam'"):
        load_config(write(tmp_path, labels))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "text: [unclosed"))


def test_unknown_model_name_lists_choices(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    with pytest.raises(UnknownModelError, match="unknown text model 'GPT-5'; choose one of 'T'"):
        config.entry("text", "GPT-5")


def test_image_defaults_must_fit_limits(tmp_path):
    bad = MINIMAL.replace(
        "{name: I, source: some/diffusion}", "{name: I, source: x, defaults: {steps: 30}, limits: {max_steps: 4}}"
    )
    with pytest.raises(ConfigError, match="defaults.steps=30 is outside limits"):
        load_config(write(tmp_path, bad))


def test_the_backends_an_entry_may_name_are_the_task_tables(tmp_path):
    """A remote backend added to a task's row (pipelines/tasks.py) is accepted with no other change;
    one the row does not name is refused naming the field and the row's backends."""
    from pydantic import ValidationError

    from pipelines.core.entry import ModelEntry
    from pipelines.tasks import Task

    class Entry(ModelEntry):
        gpu_dtype = "float32"

    Task("t", Entry, "m:Local", {"sdapi": "m:Remote"}, gpu_seconds=lambda **_: 1.0, tabs=("ui.t",))
    assert Entry(name="R", backend="sdapi", url="http://h:7860").backend == "sdapi"
    with pytest.raises(ValidationError, match="backend 'gradio' cannot serve this task; use one of: local, sdapi"):
        Entry(name="R", backend="gradio", url="http://h:7860")
    unknown = MINIMAL.replace("{name: T, source: some/lm}", "{name: T, backend: grpc, url: http://h:1}")
    with pytest.raises(
        ConfigError,
        match=r"text\[0\] \('T'\), field 'backend': backend 'grpc' cannot serve this task; use one of: local, openai, gradio",
    ):
        load_config(write(tmp_path, unknown))
