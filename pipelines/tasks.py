"""The task table: one row per task, naming everything that makes it up.

What the app assembles from it (`pipelines/studio.py`: the models.yaml schema, the registry's
loaders, ZeroGPU's estimates) and the app itself (`app.py`: the tabs, and where they sit; what
runs at start-up) read this table; none of them lists the tasks itself, and `pipelines/core/`
knows none of them. Adding a task is adding a package like `text/` and a row here
(CONTRIBUTING.md).

Classes are named as "module:Class" strings and imported when a model of the task is first
loaded: the app starts, and a front end with only remote models runs, without importing torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipelines.classification import contract as classification
from pipelines.classification.config import ClassificationEntry, TrainingConfig
from pipelines.core.entry import ModelEntry, Strict
from pipelines.image import contract as image
from pipelines.image.config import ImageEntry
from pipelines.text import contract as text
from pipelines.text.config import TextEntry


def named(target: str) -> Any:
    """What a "module:attribute" string names, its module imported now."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class Task:
    name: str  # the models.yaml section, the registry's key and the concurrency group of its events
    entry: type[ModelEntry]  # the schema of one models.yaml entry (its gpu_dtype: the dtype on an accelerator)
    local: str  # "module:Class" whose from_entry(entry) loads a model in this process
    remote: dict[str, str]  # backend -> "module:Class" whose from_entry(entry) connects to a server
    gpu_seconds: Callable[..., float]  # ZeroGPU: GPU seconds a request needs, from its parameters
    # The ui modules whose build(config, registry) make the task's tabs (imported by app.py only).
    # The first is the task's own tab, in `tab_group`; the others (e.g. Train) come after every
    # task's own tab, each a top-level tab, in the table's order.
    tabs: tuple[str, ...]
    tab_group: str | None = None  # the top-level tab its own tab sits in, None: a top-level tab of its own
    interface: type = field(default=object)  # the contract its local and remote classes implement
    # Further top-level sections of models.yaml the task owns: name -> schema (every field with a
    # default, so that the section may be left out), e.g. classification's `training:`.
    sections: dict[str, type[Strict]] = field(default_factory=dict)
    # "module:function"s app.py calls with the config once at start-up, before building the tabs.
    on_start: tuple[str, ...] = ()

    def __post_init__(self):
        # The entry schema accepts exactly the backends this row can load (models.yaml errors name them).
        self.entry.remote_backends = tuple(self.remote)

    def loader(self, backend: str) -> Callable[[ModelEntry], object]:
        """The function that makes this task's model for an entry of `backend`."""
        return named(self.local if backend == "local" else self.remote[backend]).from_entry


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            "classification",
            ClassificationEntry,
            "pipelines.classification.pipeline:LocalClassifier",
            {"gradio": "pipelines.classification.remote:GradioClassifier"},
            gpu_seconds=classification.gpu_seconds,
            tabs=("ui.classification_tab", "ui.train_tab"),
            interface=classification.Classifier,
            # Training in the app: what the Train tab may fine-tune (models.yaml `training:`), and
            # the models trained here before, offered again at start-up like models.yaml entries.
            sections={"training": TrainingConfig},
            on_start=("pipelines.classification.trained_models:on_start",),
        ),
        Task(
            "text",
            TextEntry,
            "pipelines.text.pipeline:LocalTextGenerator",
            {
                "openai": "pipelines.text.remote:OpenAITextGenerator",
                "gradio": "pipelines.text.remote:GradioTextGenerator",
            },
            gpu_seconds=text.gpu_seconds,
            tabs=("ui.text_tab",),
            tab_group="Generation",
            interface=text.TextGenerator,
        ),
        Task(
            "image",
            ImageEntry,
            "pipelines.image.pipeline:LocalImageGenerator",
            {"gradio": "pipelines.image.remote:GradioImageGenerator"},
            gpu_seconds=image.gpu_seconds,
            tabs=("ui.image_tab",),
            tab_group="Generation",
            interface=image.ImageGenerator,
        ),
    )
}
