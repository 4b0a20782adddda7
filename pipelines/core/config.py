"""`models.yaml`: which models each task offers, their sources and default parameters.

The file is validated once, at start-up, with pydantic. Any problem (an unknown key, a
missing field, a bad value) raises `ConfigError` whose message names the file, the entry
and the field, so that a typo never surfaces later as a confusing runtime error.

This module knows no task: `config_model` makes the schema from the sections it is given (one
list of entries per task, each validated by that task's entry schema, and any further sections),
and `parse_config`/`load_config` take that schema. The app's own schema, one section per task of
the task table, is `pipelines.studio.AppConfig` (with its `load_config` and `parse_config`).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import ClassVar, Literal

import yaml
from pydantic import Field, PrivateAttr, ValidationError, create_model, model_validator

from pipelines.core.entry import FieldProblem, ModelEntry, Strict
from pipelines.core.errors import ConfigError, UnknownModelError

# The config used when MODELS_CONFIG is not set: the one next to app.py.
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[2] / "models.yaml"
DEFAULT_TRAINED_MODELS_DIR = "trained-models"
_adding = threading.Lock()  # models added while the app runs (trained in it): one at a time


class Settings(Strict):
    memory_budget_mb: int = Field(
        16000, ge=100, description="Loaded models beyond this are evicted, least recently used first."
    )
    idle_unload_minutes: float = Field(
        30.0, ge=0, description="Unload a model nobody used for this long; 0 keeps models forever."
    )
    # Each task's events share one queue group; these size it (others wait, seeing their place in the queue).
    # One at a time on a GPU keeps its memory bounded and gives each request the whole GPU.
    gpu_concurrency: int = Field(
        1, ge=1, description="Requests a task runs at once when its models are on a GPU (or ZeroGPU)."
    )
    # torch already spreads one request over every CPU core: running two only makes both slower.
    cpu_concurrency: int = Field(1, ge=1, description="Requests a task runs at once when its models run on the CPU.")
    # Gradio's dynamic batching for /classify: requests waiting together share one forward pass.
    classification_max_batch_size: int = Field(
        32, ge=1, le=1024, description="Most /classify requests batched into one forward pass; 1 turns batching off."
    )
    # Uploaded message files (Batch, /classify_batch): more rows than this are refused with a message.
    classification_max_file_rows: int = Field(
        20000, ge=1, description="Most messages one uploaded batch file may hold."
    )
    # The embedding map and /similar embed a whole file once (then cached): 10,000 messages take
    # tens of seconds with a MiniLM-size encoder on 2 CPU cores (`python -m benchmarks.embeddings`
    # measures 5,000), and a scatter plot of more points gets slow in a browser.
    embedding_map_max_rows: int = Field(
        10000, ge=1, description="Most messages a file for the embedding map (and /embed, /similar) may hold."
    )
    # What one request may send, checked before any expensive work (tokenizing, decoding, reading
    # a whole upload); the message names the setting. A message or prompt this long is ~25,000
    # tokens: 50x GPT-Neo's context, 200x a classifier's 512 tokens.
    max_text_chars: int = Field(100_000, ge=100, description="Longest message or prompt, in characters.")
    # Gradio refuses a larger upload while receiving it (`max_file_size` at launch). 20 MB holds
    # the 20,000-row limit of messages of 1,000 characters.
    max_upload_mb: float = Field(20.0, gt=0, le=10_000, description="Largest file an upload may be, in MB.")
    max_file_cell_chars: int = Field(5_000, ge=10, description="Longest message in an uploaded file, in characters.")
    # Where the Train tab saves the models it makes (relative: to the models file's folder). Each is
    # a complete model folder, found again at start-up and added to the classification models.
    trained_models_dir: str = Field(
        DEFAULT_TRAINED_MODELS_DIR, min_length=1, description="Folder of the models trained in the app."
    )
    # Who sees a model trained in the app. A public Space serves anonymous strangers: there
    # (`auto` on a Space, where SPACE_ID is set) a visitor's models, their metrics and downloads
    # stay with the browser session that trained them, under a name with an unguessable suffix,
    # and last until the app restarts. A local run (`auto` elsewhere) lists them to everyone.
    trained_models: Literal["auto", "shared", "per_session"] = Field(
        "auto",
        description="shared: every visitor lists every trained model; per_session: only the session that trained it.",
    )
    # Caps on what trainings may leave on disk (a model is ~90 MB with MiniLM). Per session, the
    # oldest of the visitor's models makes room for a new one; over the totals, the oldest
    # per-session model of any visitor goes, and with shared models only, a new training is refused.
    trained_models_per_session: int = Field(3, ge=1, description="Most trained models one session keeps (per_session).")
    trained_models_max: int = Field(50, ge=1, description="Most trained models the app keeps in all.")
    trained_models_max_mb: float = Field(
        5000.0, gt=0, description="Most disk, in MB, the trained models may take in all."
    )


class ConfigBase(Strict):
    """The app's config without its sections: `settings`, and the entries of the task sections
    (`task_names`, set by `config_model`) with the models added while the app runs."""

    settings: Settings = Settings()
    # The sections that are lists of model entries, one per task (their names: the tasks').
    task_names: ClassVar[tuple[str, ...]] = ()
    # Where entries' `source` may be a path relative to the models file: (section,) for a task's
    # entries, (section, field) for a list inside another section (e.g. training's base models).
    source_lists: ClassVar[tuple[tuple[str, ...], ...]] = ()
    # Models one session trained (settings.trained_models: per_session): owner -> task -> entries.
    # Listed to their owner only; a request of anyone else reaches one only by its exact name.
    _private: dict = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _names_unique_per_task(self):
        for task in self.task_names:
            names = [e.name for e in getattr(self, task)]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"{task}: duplicate model name(s) {duplicates}")
        return self

    def entries(self, task: str, owner: str | None = None) -> list[ModelEntry]:
        """The task's entries `owner` may list: models.yaml's and models trained in the app for
        everyone, then `owner`'s own (None: the shared ones only)."""
        own = self._private.get(owner, {}).get(task, []) if owner is not None else []
        return list(getattr(self, task)) + list(own)

    def names(self, task: str, owner: str | None = None) -> list[str]:
        return [e.name for e in self.entries(task, owner)]

    def entry(self, task: str, name: str, owner: str | None = None) -> ModelEntry:
        """The entry called `name`: a shared one, or a private one by its exact name (its suffix
        makes it unguessable); an unknown name is refused listing only what `owner` may list."""
        with _adding:
            private = [e for by_task in self._private.values() for e in by_task.get(task, [])]
        for e in [*getattr(self, task), *private]:
            if e.name == name:
                return e
        raise UnknownModelError(task, name, self.names(task, owner))

    def default_name(self, task: str) -> str:
        """The first entry of each task is its default."""
        return self.entries(task)[0].name

    def add_entry(self, task: str, entry: ModelEntry, owner: str | None = None) -> None:
        """Offer one more model while the app runs (one trained in it): to everyone, or only to
        `owner`'s listings. The tabs' dropdowns, the API and the registry find it by name from
        now on. The name must be new."""
        with _adding:
            taken = [e.name for e in getattr(self, task)]
            taken += [e.name for by_task in self._private.values() for e in by_task.get(task, [])]
            if entry.name in taken:
                raise ValueError(f"{task}: there is already a model called {entry.name!r}")
            if owner is None:
                getattr(self, task).append(entry)  # the section's list; the config itself stays frozen
            else:
                self._private.setdefault(owner, {}).setdefault(task, []).append(entry)

    def remove_entry(self, task: str, name: str) -> None:
        """Stop offering a model added while the app runs (a per-session model evicted)."""
        with _adding:
            for entries in [getattr(self, task), *(by_task.get(task, []) for by_task in self._private.values())]:
                entries[:] = [e for e in entries if e.name != name]


def config_model(
    tasks: dict[str, type[ModelEntry]], sections: dict[str, type[Strict]] | None = None, name: str = "AppConfig"
) -> type[ConfigBase]:
    """The schema of a models file: `settings`, then each of `sections` (a model of its own, every
    field with a default: the section may be left out), then one list of entries per task (at
    least one each), validated by the task's entry schema. A section's class may name its lists
    of entries with local sources (`local_sources`, a tuple of field names)."""
    sections = sections or {}
    model = create_model(
        name,
        __base__=ConfigBase,
        **{section: (cls, cls()) for section, cls in sections.items()},
        **{task: (list[entry], Field(min_length=1)) for task, entry in tasks.items()},
    )
    model.task_names = tuple(tasks)
    model.source_lists = tuple((task,) for task in tasks) + tuple(
        (section, field) for section, cls in sections.items() for field in getattr(cls, "local_sources", ())
    )
    return model


def _describe_problem(model: type[ConfigBase], raw: dict, error: dict) -> str:
    """pydantic's error as "entry text[0] ('GPT-Neo 1.3B'), field 'defaults.temperature': why"."""
    loc, message = tuple(error["loc"]), error["msg"]
    problem = (error.get("ctx") or {}).get("error")
    if isinstance(problem, FieldProblem):  # a check across fields that blames one of them
        loc, message = (*loc, problem.field), str(problem)
    if len(loc) >= 2 and loc[0] in model.task_names and isinstance(loc[1], int):
        task, index = loc[0], loc[1]
        try:
            name = raw[task][index].get("name", "?")
        except (KeyError, IndexError, TypeError, AttributeError):
            name = "?"
        field = ".".join(str(part) for part in loc[2:]) or "(entry)"
        return f"entry {task}[{index}] ({name!r}), field '{field}': {message}"
    return f"field '{'.'.join(str(part) for part in loc) or '(top level)'}': {message}"


def parse_config(model: type[ConfigBase], raw: object, path: str | Path = "<memory>") -> ConfigBase:
    """`raw` (models.yaml as read) validated by `model` (see `config_model`)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with keys {', '.join(model.task_names)}")
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        problems = [f"  - {_describe_problem(model, raw, e)}" for e in err.errors()]
        raise ConfigError(f"{path}: invalid model config:\n" + "\n".join(problems)) from None


def resolve_local_sources(config_dict: dict, base_dir: Path, source_lists: tuple[tuple[str, ...], ...]) -> dict:
    """Make relative local paths (`./x`, `../x`) of the entries in `source_lists` (see
    `ConfigBase.source_lists`) relative to the config file, not the cwd; so is the trained
    models' folder (given or default)."""
    for keys in source_lists:
        entries = config_dict
        for key in keys:
            entries = entries.get(key) if isinstance(entries, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and isinstance(entry.get("source"), str):
                src = entry["source"]
                if src.startswith(("./", "../")):
                    entry["source"] = str((base_dir / src).resolve())
    settings = config_dict.get("settings")
    if settings is None or isinstance(settings, dict):
        folder = (settings or {}).get("trained_models_dir", DEFAULT_TRAINED_MODELS_DIR)
        if isinstance(folder, str) and folder and not Path(folder).expanduser().is_absolute():
            config_dict["settings"] = (settings or {}) | {"trained_models_dir": str((base_dir / folder).resolve())}
    return config_dict


def load_config(model: type[ConfigBase], path: str | Path | None = None) -> ConfigBase:
    """Read the config at `path`, $MODELS_CONFIG, or the bundled models.yaml, and validate it with `model`."""
    path = Path(path or os.environ.get("MODELS_CONFIG") or DEFAULT_CONFIG_PATH)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: model config file not found (set MODELS_CONFIG or --config)") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if isinstance(raw, dict):
        raw = resolve_local_sources(raw, path.resolve().parent, model.source_lists)
    return parse_config(model, raw, path)
