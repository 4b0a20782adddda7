"""The architecture's promises: one package per task named by the task table, one declaration
per parameter, no torch in the UI, no reading of another app's display text."""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipelines.core.params import default_ranges, param_infos
from pipelines.tasks import TASKS

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "diffusers")


def test_building_the_app_with_only_remote_models_imports_no_torch():
    """A thin front end (every model remote) builds its whole UI without torch, transformers or diffusers."""
    script = textwrap.dedent(
        """
        import sys
        from pipelines.studio import parse_config
        import app
        remote = {"backend": "gradio", "url": "http://127.0.0.1:9/"}
        config = parse_config({
            "classification": [{"name": "C", **remote}],
            "text": [{"name": "T", **remote}, {"name": "O", "backend": "openai", "url": "http://127.0.0.1:9", "remote_model": "m"}],
            "image": [{"name": "I", **remote}],
        })
        demo = app.enable_queue(app.build_app(config))
        loaded = [name for name in ("torch", "transformers", "diffusers") if name in sys.modules]
        print("loaded:", loaded, len(demo.fns))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("loaded: []"), result.stdout


def imports_of(path: Path) -> set[str]:
    """Top-level modules a file imports at module level (not inside functions)."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", [*sorted((ROOT / "ui").glob("*.py")), ROOT / "app.py"], ids=lambda p: p.name)
def test_ui_modules_import_no_model_library(path):
    heavy = {name for name in imports_of(path) if name.split(".")[0] in HEAVY}
    assert not heavy, f"{path.name} imports {heavy}"


@pytest.mark.parametrize("task", list(TASKS))
def test_every_task_is_one_package_with_its_contract(task):
    package = ROOT / "pipelines" / task
    for module in ("contract.py", "config.py", "pipeline.py", "remote.py"):
        assert (package / module).is_file(), f"pipelines/{task}/{module} is missing"
    row = TASKS[task]
    assert row.local.startswith(f"pipelines.{task}.") and all(
        v.startswith(f"pipelines.{task}.") for v in row.remote.values()
    )
    assert row.tabs and all((ROOT / (tab.replace(".", "/") + ".py")).is_file() for tab in row.tabs)
    # the contract and the config schema import no model library: the UI reads them
    for module in ("contract.py", "config.py"):
        assert not {n for n in imports_of(package / module) if n.split(".")[0] in HEAVY}


@pytest.mark.parametrize("task", list(TASKS))
def test_every_task_declares_its_dtype_on_an_accelerator(task):
    from pipelines.core.devices import DTYPES, choose_placement

    gpu_dtype = TASKS[task].entry.gpu_dtype  # the entry schema's: the task's pipeline passes it to choose_placement
    assert gpu_dtype in DTYPES
    assert str(choose_placement(gpu_dtype, "cpu")) == "cpu/float32"  # CPUs always get float32 for `dtype: auto`


def tab_tree(block) -> list:
    """(label, id, tabs inside) of every tab under `block`, in page order."""
    import gradio as gr

    tabs = []
    for child in getattr(block, "children", []):
        if isinstance(child, gr.Tab):
            tabs.append((child.label, child.id, tab_tree(child)))
        else:
            tabs += tab_tree(child)
    return tabs


def test_the_tables_tabs_keep_their_place():
    """app.py builds the tabs from the table only: each task's own tab in its group, then the
    tasks' other tabs (Train) at the top level, with the labels and ids the page always had."""
    import app
    from pipelines.studio import parse_config

    remote = {"backend": "gradio", "url": "http://127.0.0.1:9/"}
    config = parse_config(
        {
            "classification": [{"name": "C", **remote}],
            "text": [{"name": "T", **remote}],
            "image": [{"name": "I", **remote}],
            "training": {"base_models": [{"name": "B", "source": "/nowhere"}]},
        }
    )
    assert tab_tree(app.build_app(config)) == [
        (
            "Classification",
            "classification",
            [
                ("Single message", "classification-single", []),
                ("Batch file", "classification-batch", []),
                ("Embedding map", "classification-map", []),
            ],
        ),
        ("Generation", "generation", [("Text", "text", []), ("Image", "image", [])]),
        ("Train", "train", []),
    ]
    without_training = parse_config(
        {
            "classification": [{"name": "C", **remote}],
            "text": [{"name": "T", **remote}],
            "image": [{"name": "I", **remote}],
        }
    )
    assert [tab[1] for tab in tab_tree(app.build_app(without_training))] == ["classification", "generation"]


@pytest.mark.parametrize("task", list(TASKS))
def test_local_and_remote_classes_implement_the_tasks_interface(task):
    import importlib

    row = TASKS[task]
    for target in [row.local, *row.remote.values()]:
        module, _, name = target.partition(":")
        cls = getattr(importlib.import_module(module), name)
        assert issubclass(cls, row.interface), f"{target} does not implement {row.interface.__name__}"
        assert callable(getattr(cls, "from_entry", None))


def test_pipelines_never_read_display_text_with_regular_expressions():
    """Remote clients read the structured JSON output, not another app's Markdown."""
    for path in (ROOT / "pipelines").rglob("remote.py"):
        assert "re" not in imports_of(path), f"{path.relative_to(ROOT)} imports re"
    for path in (ROOT / "pipelines").rglob("*.py"):
        assert not any(name.split(".")[0] in ("ui", "gradio") for name in imports_of(path)), path


def test_every_parameter_is_declared_once_with_a_label_and_its_range():
    from pipelines.classification.contract import ClassificationParams
    from pipelines.image.contract import ImageParams
    from pipelines.text.contract import TextParams

    for cls in (ClassificationParams, TextParams, ImageParams):
        infos = param_infos(cls)
        assert set(infos) == {f.name for f in dataclasses.fields(cls)}, cls.__name__
        assert all(info.label for info in infos.values())
        for name, r in default_ranges(cls).items():
            default = getattr(cls(), name)
            assert r.check(name, default) == default  # the declared default lies in its range


def test_models_yaml_defaults_come_from_the_parameter_declarations():
    from pipelines.studio import load_config
    from pipelines.text.contract import TextParams

    config = load_config()
    plain = config.entry("text", "GPT-Neo 1.3B")
    assert plain.defaults.model_dump() == dataclasses.asdict(TextParams())  # models.yaml states only what differs
    sd15 = config.entry("image", "Stable Diffusion 1.5")
    assert (sd15.defaults.steps, sd15.defaults.preview_every, sd15.defaults.width) == (25, 5, 512)


@pytest.mark.parametrize("endpoint,task", [("/generate_text", "text"), ("/generate_image", "image")])
def test_api_parameters_are_the_declared_ones_with_the_models_defaults(client, tiny_config, endpoint, task):
    """Adding a field to a task's parameter dataclass (and its name to the tab) is all it takes
    to reach the API: names, order and defaults come from the declaration."""
    from pipelines.image.contract import ImageParams
    from pipelines.text.contract import TextParams

    params_cls = {"text": TextParams, "image": ImageParams}[task]
    parameters = client.view_api(return_format="dict", print_info=False)["named_endpoints"][endpoint]["parameters"]
    assert [p["parameter_name"] for p in parameters] == ["prompt", "model_name", *param_infos(params_cls)]
    entry = tiny_config.entries(task)[0]
    for p in parameters[2:]:
        expected = getattr(entry.defaults, p["parameter_name"])
        if p["component"] == "Image":  # a file input: none until one is given
            expected = None
        if p["parameter_name"] in entry.choices():
            expected = expected or entry.choices()[p["parameter_name"]][0]
        assert p["parameter_default"] == expected, p["parameter_name"]
        assert p["label"] == param_infos(params_cls)[p["parameter_name"]].label
