"""The models trained in the app: a folder of complete model folders (settings.trained_models_dir).

A training writes into a hidden `.partial-*` folder of its own and, only once everything is
written, renames it to its final name (one atomic rename on the same file system) with
`trained.json` inside (its display name, base model, data and time). So the list never holds a
half-written model: a stopped, failed or crashed training leaves at most a `.partial-*` folder,
which nothing lists and the next start-up deletes. At start-up every model found is offered in
the Classification tab again (`register_all`), like an entry of models.yaml pointing at it.

On a shared deployment (settings.trained_models: per_session, the default on a Space) a model
belongs to the browser session that trained it (`owner`, a hash of the session id, in
trained.json): only that session lists and downloads it, and its name carries an unguessable
suffix, so nobody else can name it either. Such models last until the app restarts, within
the caps of `settings` (`make_room`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipelines.classification.config import ClassificationEntry
from pipelines.core.errors import InputError

log = logging.getLogger(__name__)

TASK = "classification"
INFO_FILE = "trained.json"  # written last, just before the folder gets its final name
PARTIAL_PREFIX = ".partial-"
NAME_CHARS = 100  # longest model name (it is shown in dropdowns)
# Letters of other scripts drawn like Latin ones (a subset of Unicode's confusables, UTS #39):
# "spаm" with a Cyrillic "а" must not pass for another model's "spam".
LOOKALIKES = str.maketrans(
    {
        "а": "a",
        "в": "b",
        "е": "e",
        "ё": "e",
        "һ": "h",
        "н": "h",
        "і": "i",
        "ї": "i",
        "ј": "j",
        "к": "k",
        "ӏ": "l",
        "м": "m",
        "о": "o",
        "р": "p",
        "ԛ": "q",
        "с": "c",
        "ѕ": "s",
        "т": "t",
        "у": "y",
        "ү": "y",
        "х": "x",
        "ԝ": "w",
        "ԁ": "d",
        "α": "a",
        "β": "b",
        "ε": "e",
        "η": "n",
        "ι": "i",
        "κ": "k",
        "ν": "v",
        "ο": "o",
        "ρ": "p",
        "τ": "t",
        "υ": "u",
        "χ": "x",
        "γ": "y",
        "0": "o",
        "1": "l",
        "|": "l",
        "ı": "i",
    }
)
OWNER_FILE_KEY = "owner"  # in trained.json: the session that trained a per-session model


@dataclass(frozen=True)
class TrainedModel:
    name: str
    folder: Path
    info: dict  # trained.json: name, base_model, base_source, data, created, params, owner (per session)
    metrics: dict  # metrics.json, as training wrote it

    @property
    def owner(self) -> str | None:
        return self.info.get(OWNER_FILE_KEY)


def folder_of(config) -> Path:
    return Path(config.settings.trained_models_dir).expanduser()


def per_session(config) -> bool:
    """Whether trained models stay with the session that trained them (settings.trained_models;
    `auto`: on a Hugging Face Space, which sets SPACE_ID)."""
    mode = config.settings.trained_models
    return mode == "per_session" or (mode == "auto" and bool(os.environ.get("SPACE_ID")))


def owner_of(config, session_id: str | None) -> str | None:
    """The owner key of a session's models (None when models are shared): a hash, so that the
    session id itself (which lets anyone act as that session) is never written to disk."""
    if not per_session(config):
        return None
    return hashlib.sha256(f"ml-studio-owner:{session_id or 'anonymous'}".encode()).hexdigest()[:32]


# -- names --------------------------------------------------------------------------------------
def normalise_name(name: str) -> str:
    """A name as it is stored: NFKC (full-width letters, ligatures and the like as their plain
    forms), runs of spaces as one. Lone surrogates are refused first (`check_name`)."""
    return " ".join(unicodedata.normalize("NFKC", name).split())


def skeleton(name: str) -> str:
    """What a name looks like: case, lookalike letters of other scripts and spacing ignored."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().translate(LOOKALIKES).split())


def check_name(name: str, taken: list[str], field: str = "save_as") -> str:
    """`name` normalised, or InputError(field): it must be valid, printable Unicode of at most
    NAME_CHARS characters that does not look like any name in `taken`."""
    surrogate = next((c for c in name if 0xD800 <= ord(c) <= 0xDFFF), None)
    if surrogate is not None:
        raise InputError(field, f"contains a lone surrogate (U+{ord(surrogate):04X}); send valid Unicode text")
    name = normalise_name(name)
    hidden = next((c for c in name if not c.isprintable()), None)
    if hidden is not None:
        raise InputError(
            field,
            f"contains an invisible or control character (U+{ord(hidden):04X}); use letters, digits, "
            "spaces and punctuation",
        )
    if len(name) > NAME_CHARS:
        raise InputError(field, f"is {len(name)} characters; the limit is {NAME_CHARS}")
    lookalike = next((other for other in taken if skeleton(other) == skeleton(name)), None)
    if lookalike == name:
        raise InputError(field, f"there is already a classification model called {name!r}; choose another name")
    if lookalike is not None:
        raise InputError(
            field, f"{name!r} looks the same as the existing classification model {lookalike!r}; choose another name"
        )
    return name


def private_name(name: str) -> str:
    """A per-session model's name: the chosen one and 8 random characters (40 bits), so that no
    other visitor can name it in a request."""
    return f"{name} #{base64.b32encode(secrets.token_bytes(5)).decode().lower()}"


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
            name = str(info["name"])
            if not (child / "config.json").is_file():
                raise ValueError("it holds no model (config.json is missing)")
            if check_name(name, [], "name") != name:
                raise ValueError(f"its name {name!r} is not in normal form")
            found.append(TrainedModel(name, child, info, metrics))
        except (OSError, ValueError, KeyError, TypeError, InputError) as err:
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


def on_start(config) -> list[str]:
    """At start-up (the classification row's `on_start` in the task table), with a Train tab
    (models.yaml `training: base_models:`): the models trained here before, offered again like
    models.yaml entries (`register_all`); returns the names added."""
    return register_all(config) if config.training.enabled else []


def register_all(config) -> list[str]:
    """At start-up: offer every trained model found in the folder; returns the names added.
    Skipped with a log line: a model that cannot be read or served, or whose name is taken in
    models.yaml. Per-session models are deleted: the sessions that owned them ended with the
    last run."""
    folder = folder_of(config)
    remove_partials(folder)
    added = []
    for model in find(folder):
        if model.owner is not None:
            remove(config, model)
            continue
        if model.name in config.names(TASK):
            if str(config.entry(TASK, model.name).source) != str(model.folder):
                log.warning(
                    "trained model %r in %s: the name is taken in models.yaml; not offered", model.name, model.folder
                )
            continue
        try:
            config.add_entry(TASK, entry_for(model))
        except (ValueError, OSError) as err:  # pydantic's ValidationError is a ValueError
            log.warning("skipping trained model folder %s: %s", model.folder, str(err).splitlines()[0])
            continue
        added.append(model.name)
    return added


def visible(config, owner: str | None) -> list[TrainedModel]:
    """The trained models `owner` may list and download: the shared ones and their own."""
    return [m for m in find(folder_of(config)) if m.owner is None or m.owner == owner]


def remove(config, model: TrainedModel) -> None:
    """Stop offering a model and delete its folder (a request still using it finishes: the
    files stay readable until closed)."""
    config.remove_entry(TASK, model.name)
    shutil.rmtree(model.folder, ignore_errors=True)
    log.info("removed trained model %r (%s)", model.name, model.folder.name)


def folder_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20 if folder.is_dir() else 0.0


def make_room(config, owner: str | None, on_removed=None) -> None:
    """Before a training: keep within settings' caps. The owner's oldest models beyond
    trained_models_per_session - 1 go; over the totals (count, MB), the oldest per-session model
    of anyone goes; what is still over (shared models only) refuses the training."""
    settings, folder = config.settings, folder_of(config)
    models = find(folder)
    if owner is not None:
        own = [m for m in models if m.owner == owner]
        for model in own[: max(0, len(own) - (settings.trained_models_per_session - 1))]:
            remove(config, model)
            on_removed and on_removed(model)
    while True:
        models = find(folder)
        over_count = len(models) >= settings.trained_models_max
        over_disk = folder_mb(folder) >= settings.trained_models_max_mb
        if not (over_count or over_disk):
            return
        evictable = [m for m in models if m.owner is not None]
        if not evictable:
            limit = (
                f"{settings.trained_models_max} models (settings.trained_models_max)"
                if over_count
                else f"{settings.trained_models_max_mb:g} MB (settings.trained_models_max_mb)"
            )
            raise InputError(
                "save_as",
                f"the app already keeps the most trained models it may: {limit}; "
                "an operator must remove some from the trained models' folder first",
            )
        remove(config, evictable[0])
        on_removed and on_removed(evictable[0])


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
    archive = shutil.make_archive(
        str(destination.with_suffix("")), "zip", root_dir=model.folder.parent, base_dir=model.folder.name
    )
    return Path(archive)


def yaml_snippet(model: TrainedModel) -> str:
    """The models.yaml lines that serve this model elsewhere: `source` is the unzipped folder
    next to that models.yaml (no path of this server)."""
    entry = {"name": model.name, "source": f"./{model.folder.name}", "description": describe(model)}
    return "classification:\n" + yaml.safe_dump([entry], sort_keys=False, allow_unicode=True, width=100)


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def table_rows(models: list[TrainedModel]) -> list[list]:
    """One row per model for the Train tab's list (newest first)."""
    rows = []
    for model in reversed(models):
        m = model.metrics
        rows.append(
            [
                model.name,
                model.info.get("base_model", ""),
                model.info.get("data", ""),
                m.get("train_messages"),
                round(m["spam_f1"], 4) if "spam_f1" in m else None,
                round(m["accuracy"], 4) if "accuracy" in m else None,
                m.get("best_epoch"),
                m.get("train_seconds"),
                model.info.get("created", ""),
            ]
        )
    return rows


TABLE_HEADERS = [
    "model",
    "base",
    "data",
    "training messages",
    "validation spam F1",
    "validation accuracy",
    "best epoch",
    "training s",
    "created",
]
