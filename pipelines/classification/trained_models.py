"""The models trained in the app: a folder of complete model folders (settings.trained_models_dir).

A training writes into a hidden `.partial-*` folder of its own and, only once everything is
written, renames it to its final name (one atomic rename on the same file system) with
`trained.json` inside (its display name, base model, data and time). So the list never holds a
half-written model: a stopped, failed or crashed training leaves at most a `.partial-*` folder,
which nothing lists and the next start-up deletes. At start-up every model found is offered in
the Classification tab again (`register_all`), like an entry of models.yaml pointing at it.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipelines.classification.config import ClassificationEntry

log = logging.getLogger(__name__)

TASK = "classification"
INFO_FILE = "trained.json"  # written last, just before the folder gets its final name
PARTIAL_PREFIX = ".partial-"
NAME_CHARS = 100  # longest model name (it is shown in dropdowns)


@dataclass(frozen=True)
class TrainedModel:
    name: str
    folder: Path
    info: dict  # trained.json: name, base_model, base_source, data, created, params
    metrics: dict  # metrics.json, as training wrote it


def folder_of(config) -> Path:
    return Path(config.settings.trained_models_dir).expanduser()


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def find(folder: Path) -> list[TrainedModel]:
    """Every complete trained model in `folder`, oldest first; unreadable ones are logged and skipped."""
    if not folder.is_dir():
        return []
    found = []
    for child in folder.iterdir():
        if child.name.startswith(".") or not (child / INFO_FILE).is_file():
            continue
        try:
            info = _read_json(child / INFO_FILE)
            metrics = _read_json(child / "metrics.json") if (child / "metrics.json").is_file() else {}
            found.append(TrainedModel(str(info["name"]), child, info, metrics))
        except (OSError, ValueError, KeyError) as err:
            log.warning("skipping trained model folder %s: %s", child, err)
    return sorted(found, key=lambda m: (m.info.get("created", ""), m.name))


def remove_partials(folder: Path) -> None:
    """Delete what trainings that never finished left behind (a crash, a killed process)."""
    for partial in folder.glob(PARTIAL_PREFIX + "*") if folder.is_dir() else []:
        shutil.rmtree(partial, ignore_errors=True)


def describe(model: TrainedModel) -> str:
    m = model.metrics
    text = f"Fine-tuned in this app from {model.info.get('base_model', '?')} on {model.info.get('data', '?')}"
    text += f" ({m.get('train_messages', '?')} messages, {model.info.get('created', '?')})"
    if "spam_f1" in m:
        text += f"; validation spam F1 {m['spam_f1']:.3f}, accuracy {m['accuracy']:.3f} ({m.get('validation_messages')} messages)"
    return text + "."


def entry_for(model: TrainedModel) -> ClassificationEntry:
    """Its classification entry: a local source (the folder's own threshold is its default)."""
    return ClassificationEntry(name=model.name, source=str(model.folder), description=describe(model))


def register_all(config) -> list[str]:
    """At start-up: offer every trained model found in the folder (names already taken by
    models.yaml are skipped with a warning); returns the names added."""
    folder = folder_of(config)
    remove_partials(folder)
    added = []
    for model in find(folder):
        if model.name in config.names(TASK):
            if str(config.entry(TASK, model.name).source) != str(model.folder):
                log.warning("trained model %r in %s: the name is taken in models.yaml; not offered", model.name, model.folder)
            continue
        config.add_entry(TASK, entry_for(model))
        added.append(model.name)
    return added


def new_partial(folder: Path) -> Path:
    """A fresh hidden folder for a training to write into."""
    folder.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=PARTIAL_PREFIX, dir=folder))


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:80] or "model"


def publish(partial: Path, info: dict) -> TrainedModel:
    """Give a completely written model folder its final name (atomically) and return it."""
    (partial / INFO_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")
    base = slug(info["name"])
    for attempt in range(1, 1000):
        final = partial.parent / (base if attempt == 1 else f"{base}-{attempt}")
        try:
            final.mkdir()  # claims the name; the rename below replaces this empty folder
        except FileExistsError:
            continue
        partial.replace(final)
        return TrainedModel(info["name"], final, info, _read_json(final / "metrics.json"))
    raise RuntimeError(f"no free folder name for {info['name']!r} in {partial.parent}")


def zip_model(model: TrainedModel, destination: Path) -> Path:
    """The model folder as a zip (unzipped, it is a `source` for models.yaml anywhere)."""
    archive = shutil.make_archive(str(destination.with_suffix("")), "zip", root_dir=model.folder.parent, base_dir=model.folder.name)
    return Path(archive)


def yaml_snippet(model: TrainedModel) -> str:
    """The models.yaml lines that serve this model elsewhere (`source`: where its folder is there)."""
    entry = {"name": model.name, "source": str(model.folder), "description": describe(model)}
    return "classification:\n" + yaml.safe_dump([entry], sort_keys=False, allow_unicode=True, width=100)


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def table_rows(models: list[TrainedModel]) -> list[list]:
    """One row per model for the Train tab's list (newest first)."""
    rows = []
    for model in reversed(models):
        m = model.metrics
        rows.append([
            model.name, model.info.get("base_model", ""), model.info.get("data", ""), m.get("train_messages"),
            round(m["spam_f1"], 4) if "spam_f1" in m else None, round(m["accuracy"], 4) if "accuracy" in m else None,
            m.get("best_epoch"), m.get("train_seconds"), model.info.get("created", ""),
        ])
    return rows


TABLE_HEADERS = ["model", "base", "data", "training messages", "validation spam F1", "validation accuracy",
                 "best epoch", "training s", "created"]
