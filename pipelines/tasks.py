"""The task table: one row per task, naming everything that makes it up.

Config (`core/config.py`: the models.yaml sections), the registry (which class loads an entry),
devices (the dtype on a GPU), ZeroGPU (how long a request needs the GPU) and the app (which tab
module builds its tab, and where) read this table; none of them lists the tasks itself. Adding a
task is adding a package like `text/` and a row here (CONTRIBUTING.md).

Classes are named as "module:Class" strings and imported when a model of the task is first
loaded: the app starts, and a front end with only remote models runs, without importing torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

from pipelines.classification import contract as classification
from pipelines.classification.config import ClassificationEntry
from pipelines.core.entry import ModelEntry
from pipelines.image import contract as image
from pipelines.image.config import ImageEntry
from pipelines.text import contract as text
from pipelines.text.config import TextEntry


@dataclass(frozen=True)
class Task:
    name: str  # the models.yaml section, the registry's key and the concurrency group of its events
    entry: type[ModelEntry]  # the schema of one models.yaml entry
    local: str  # "module:Class" whose from_entry(entry) loads a model in this process
    remote: dict[str, str]  # backend -> "module:Class" whose from_entry(entry) connects to a server
    gpu_dtype: str  # the dtype on an accelerator for `dtype: auto` (CPUs always get float32)
    gpu_seconds: Callable[..., float]  # ZeroGPU: GPU seconds a request needs, from its parameters
    tab: str  # the ui module whose build(config, registry) makes the tab (imported by app.py only)
    tab_group: str | None = None  # the top-level tab it sits in, None: a top-level tab of its own
    interface: type = field(default=object)  # the contract its local and remote classes implement

    def __post_init__(self):
        # The entry schema accepts exactly the backends this row can load (models.yaml errors name them).
        self.entry.remote_backends = tuple(self.remote)

    def loader(self, backend: str) -> Callable[[ModelEntry], object]:
        """The function that makes this task's model for an entry of `backend`."""
        module, _, attribute = (self.local if backend == "local" else self.remote[backend]).partition(":")
        return getattr(importlib.import_module(module), attribute).from_entry


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            "classification", ClassificationEntry, "pipelines.classification.pipeline:LocalClassifier",
            {"gradio": "pipelines.classification.remote:GradioClassifier"},
            gpu_dtype="float32",  # small models: full precision costs nothing noticeable
            gpu_seconds=classification.gpu_seconds, tab="ui.classification_tab", interface=classification.Classifier,
        ),
        Task(
            "text", TextEntry, "pipelines.text.pipeline:LocalTextGenerator",
            {"openai": "pipelines.text.remote:OpenAITextGenerator", "gradio": "pipelines.text.remote:GradioTextGenerator"},
            gpu_dtype="bfloat16",  # GPT-Neo overflows (NaNs) in float16
            gpu_seconds=text.gpu_seconds, tab="ui.text_tab", tab_group="Generation", interface=text.TextGenerator,
        ),
        Task(
            "image", ImageEntry, "pipelines.image.pipeline:LocalImageGenerator",
            {"gradio": "pipelines.image.remote:GradioImageGenerator"},
            gpu_dtype="float16",  # the standard for Stable Diffusion on GPUs
            gpu_seconds=image.gpu_seconds, tab="ui.image_tab", tab_group="Generation", interface=image.ImageGenerator,
        ),
    )
}
