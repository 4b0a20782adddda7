"""The app's pipelines: what `pipelines/core/` provides, for the tasks of the task table.

`core/` knows no task; this module gives it the table's (`pipelines/tasks.py`):
- `AppConfig`, `parse_config`, `load_config`: the models.yaml schema, one list of entries per
  task (validated by its entry schema) and each task's further sections (`training:`);
- `ModelRegistry`, `default_loaders`: the registry loading each task's local and remote classes;
- `on_gpu`, `request_seconds`: ZeroGPU durations from each task's own estimate, by task name.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.core import config as core_config
from pipelines.core import registry as core_registry
from pipelines.core import zerogpu
from pipelines.core.config import DEFAULT_CONFIG_PATH, ConfigBase, config_model
from pipelines.core.registry import Loader
from pipelines.tasks import TASKS

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "AppConfig",
    "ModelRegistry",
    "default_loaders",
    "load_config",
    "on_gpu",
    "parse_config",
    "request_seconds",
]

# One list of entries per task of the table, each validated by that task's schema; the tasks'
# further sections (settings first, then those, then the tasks: the order models.yaml uses).
AppConfig: type[ConfigBase] = config_model(
    {name: task.entry for name, task in TASKS.items()},
    {section: schema for task in TASKS.values() for section, schema in task.sections.items()},
)


def parse_config(raw: object, path: str | Path = "<memory>") -> AppConfig:
    return core_config.parse_config(AppConfig, raw, path)


def load_config(path: str | Path | None = None) -> AppConfig:
    """Read and validate the config at `path`, $MODELS_CONFIG, or the bundled models.yaml."""
    return core_config.load_config(AppConfig, path)


def default_loaders() -> dict[str, Loader]:
    """Task -> function building that task's local model from a config entry (the task table's
    `local` class, imported on first use: transformers and diffusers take seconds to import)."""
    return {name: (lambda entry, task=task: task.loader("local")(entry)) for name, task in TASKS.items()}


def remote_loader(task: str, backend: str) -> Loader:
    """The function making a client of a remote entry's server (the table's `remote` class)."""
    return TASKS[task].loader(backend)


class ModelRegistry(core_registry.ModelRegistry):
    """The registry of the table's tasks: `loaders` (task -> loader) replaces the local loaders
    of some or all tasks (tests, benchmarks); remote entries get the table's clients."""

    def __init__(self, config, loaders: dict[str, Loader] | None = None):
        super().__init__(config, loaders or default_loaders(), remote_loader)


def request_seconds(task: str, **request) -> int:
    """GPU seconds to ask for a request of `task` with these parameters (zerogpu.request_seconds
    with the task's `gpu_seconds`)."""
    return zerogpu.request_seconds(TASKS[task].gpu_seconds, **request)


def on_gpu(task: str):
    """Decorator: the handler runs inside `spaces.GPU`, for as long as a request of `task` needs
    (zerogpu.on_gpu with the task's `gpu_seconds`); a no-op off ZeroGPU."""
    return zerogpu.on_gpu(TASKS[task].gpu_seconds)
