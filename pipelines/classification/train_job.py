"""Training inside the app: what the Train tab and /train_classifier run.

The same `training.train` as `python -m pipelines.train_classifier`, with the same defaults
(TrainParams; models.yaml `training: defaults:` changes them for the app), wrapped for a
server that keeps serving while it trains:

- the file is read and checked as the Batch tab and the CLI read it (`data.py`), within the
  request limits in `settings`, before any model is loaded;
- it runs on a background worker that steps aside between steps while other requests compute
  (`core/background.py`), one training at a time in the process;
- progress arrives as `TrainUpdate` dicts (steps, epoch, time left, the loss and metric
  histories, a log line per epoch), the last one with the saved model's name and metrics;
- `stop` (the Stop button) ends training at the next step and keeps the best epoch so far;
  closing the update stream (a cancelled API job, a client gone) abandons the training:
  nothing is saved;
- the model is written into a hidden folder and published by one rename (`trained_models.py`),
  then offered at once in the Classification tab and /classify (`config.add_entry`).
"""

from __future__ import annotations

import argparse
import shutil
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TypedDict

from pipelines.classification import trained_models
from pipelines.classification.data import check_cell_sizes, check_training_data, read_messages, validation_split
from pipelines.classification.training import TrainParams, train
from pipelines.core import background
from pipelines.core.errors import InputError, ModelLoadError, UserFacingError
from pipelines.core.hub import public_source
from pipelines.core.params import check_params
from pipelines.core.zerogpu import zero_gpu_active

# How often (seconds) the update stream yields while nothing happens: bounds how long closing it
# (a cancelled job) waits, and how stale the time-left estimate gets.
HEARTBEAT_S = 0.5
PREVIEW_ROWS = 10  # rows of the uploaded file shown before training


class TrainUpdate(TypedDict):
    state: str  # starting | reading | tfidf | loading | training | saving | done
    step: int
    max_steps: int | None
    epoch: float
    epochs: float  # planned
    elapsed_s: float
    eta_s: float | None  # estimated seconds of training left
    device: str | None
    data: dict | None  # messages, train_messages, train_spam, validation_messages, validation_spam
    train_loss: list[dict]  # {step, epoch, loss} per logging step
    # per epoch: {step, epoch, loss (the transformer's)} and training.EPOCH_METRICS: the saved model's
    # accuracy, spam_precision, spam_recall, spam_f1 (what `metrics` reports), and for a blend the
    # transformer half's transformer_accuracy and transformer_spam_f1
    validation: list[dict]
    log: list[str]
    stopped: bool  # Stop or the time limit ended training early (the best epoch so far is kept)
    done: bool
    model: str | None  # the saved model's name, once done
    metrics: dict | None  # its metrics.json, once done


class TrainingError(UserFacingError):
    """A training that failed for a reason the user can act on (out of memory, ...)."""


class _Either:
    """Set when either event is: `train` stops at the Stop button and at a cancel alike."""

    def __init__(self, *events: threading.Event):
        self.events = events

    def is_set(self) -> bool:
        return any(e.is_set() for e in self.events)


def duration(seconds: float | None) -> str:
    """Seconds as people read them: "42 s", "3 min 05 s" ("…" while unknown)."""
    if seconds is None:
        return "…"
    seconds = round(seconds)
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def check_data(
    config,
    file: str | None,
    text_column: str | None = None,
    label_column: str | None = None,
    validation_fraction: float = 0.0,
    seed: int = 42,
) -> dict:
    """Read and check an uploaded training file as training will (the request limits of
    `settings`, the checks of `data.py`); the counts, the split that will be used and the first rows."""
    settings = config.settings
    if not file:
        raise InputError("file", "no file was uploaded; choose a .csv, .tsv or .txt file of labelled messages")
    table = read_messages(
        file,
        text_column=text_column or None,
        label_column=label_column or None,
        max_rows=settings.classification_max_file_rows,
        max_bytes=int(settings.max_upload_mb * 2**20),
    )
    check_cell_sizes(table.texts, settings.max_file_cell_chars)
    counts = check_training_data(table, config.training.min_messages_per_class)
    _, val = validation_split(table.texts, table.labels, validation_fraction, seed)
    labels = table.labels
    return counts | {
        "file": Path(file).name,
        "text_column": table.text_column,
        "label_column": table.label_column,
        "validation_fraction": validation_fraction,
        "seed": seed,
        "train_messages": len(labels) - len(val),
        "validation_messages": len(val),
        "validation_spam": sum(labels[i] for i in val),
        "preview": [
            {"label": ("ham", "spam")[labels[i]], "text": table.texts[i]} for i in range(min(PREVIEW_ROWS, len(labels)))
        ],
    }


class Progress:
    """Turns training events into TrainUpdates: histories, time left, a log line per epoch."""

    def __init__(self, params: TrainParams, base_name: str = ""):
        self.params, self.base_name = params, base_name
        self.started = time.monotonic()
        self.training_started: float | None = None
        self.update: TrainUpdate = TrainUpdate(
            state="starting",
            step=0,
            max_steps=None,
            epoch=0.0,
            epochs=params.epochs,
            elapsed_s=0.0,
            eta_s=None,
            device=None,
            data=None,
            train_loss=[],
            validation=[],
            log=[],
            stopped=False,
            done=False,
            model=None,
            metrics=None,
        )

    def say(self, line: str) -> None:
        elapsed = round(time.monotonic() - self.started)
        self.update["log"].append(f"[{elapsed // 60}:{elapsed % 60:02d}] {line}")

    def add(self, event: dict) -> None:
        kind, u = event["event"], self.update
        if kind == "data":
            u["state"], u["data"] = "reading", {k: v for k, v in event.items() if k != "event"}
            self.say(
                f"{event['messages']:,} messages: {event['train_messages']:,} to train on ({event['train_spam']:,} spam), "
                f"{event['validation_messages']:,} held out for validation ({event['validation_spam']:,} spam)"
            )
        elif kind == "loading":
            u["state"] = "loading"
            self.say(f"loading the base model {self.base_name or event['base_model']}")
        elif kind == "training":
            u["state"], u["max_steps"], u["device"] = "training", event["max_steps"], event["device"]
            self.training_started = time.monotonic()
            self.say(
                f"training on {event['device']}: {event['max_steps']:,} steps of {self.params.batch_size} messages, "
                f"{self.params.epochs:g} epoch(s)"
            )
        elif kind == "step":
            finished_epoch = int(event["epoch"] + 1e-9) > int(u["epoch"] + 1e-9)
            u["step"], u["max_steps"], u["epoch"] = event["step"], event["max_steps"], event["epoch"]
            if finished_epoch and not self.params.validation_fraction:  # with validation, its results make the line
                self.say(f"epoch {int(event['epoch'] + 1e-9)}: training loss {self._last_loss()}")
        elif kind == "train_loss":
            u["train_loss"].append({k: event[k] for k in ("step", "epoch", "loss")})
        elif kind == "validation":
            row = {k: v for k, v in event.items() if k != "event"}
            best = all(row.get("spam_f1", 0) > v.get("spam_f1", 0) for v in u["validation"])
            u["validation"].append(row)
            self.say(
                f"epoch {row['epoch']:g}: training loss {self._last_loss()} · validation loss {row['loss']:.4f} · "
                f"accuracy {row.get('accuracy', 0):.4f} · spam F1 {row.get('spam_f1', 0):.4f}"
                + (" (best so far)" if best else "")
                + (
                    f" · the transformer alone: spam F1 {row['transformer_spam_f1']:.4f}"
                    if "transformer_spam_f1" in row
                    else ""
                )
            )
        elif kind == "halted":
            u["stopped"] = True
            why = "time limit reached" if event["reason"] == "time limit" else "stopped"
            if event.get("stage") == "tfidf":
                self.say(f"{why} during the TF-IDF search: keeping the best setting found so far")
            else:
                self.say(f"{why} at step {event['step']} (epoch {event['epoch']:.2f}): keeping the best epoch so far")
        elif kind == "tfidf":
            u["state"] = "tfidf"
            self.say("fitting the TF-IDF half on the training messages")
        elif kind == "saving":
            u["state"] = "saving"
            self.say("saving the model")

    def _last_loss(self) -> str:
        losses = self.update["train_loss"]
        return f"{losses[-1]['loss']:.4f}" if losses else "n/a"

    def current(self) -> TrainUpdate:
        u, now = self.update, time.monotonic()
        u["elapsed_s"] = round(now - self.started, 1)
        if self.training_started is not None and u["step"] and u["max_steps"] and u["state"] == "training":
            per_step = (now - self.training_started) / u["step"]
            u["eta_s"] = round(per_step * max(0, u["max_steps"] - u["step"]), 1)
        elif u["state"] != "training":
            u["eta_s"] = None if u["max_steps"] is None else 0.0  # unknown until the transformer starts
        return TrainUpdate(
            **{**u, "train_loss": list(u["train_loss"]), "validation": list(u["validation"]), "log": list(u["log"])}
        )

    def finish(self, model: trained_models.TrainedModel) -> TrainUpdate:
        u = self.update
        u["state"], u["done"], u["model"], u["metrics"], u["eta_s"] = "done", True, model.name, model.metrics, 0.0
        self.say(
            f"saved as {model.name!r} in {duration(model.metrics.get('train_seconds', 0))}; "
            "it is now in the Classification tab's model list"
        )
        return self.current()


@contextmanager
def torch_threads(threads: int):
    """Train on `threads` CPU threads (0: leave torch's setting, every core), restored afterwards."""
    if not threads:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class TrainingRunner:
    """Trains for the app, one training at a time (the Gradio queue already runs one; this also
    holds for a training abandoned but still finishing its step when the next starts)."""

    def __init__(self, config):
        self.config = config
        self._one_at_a_time = threading.Lock()

    def new_name(self, save_as: str | None, base_name: str, file: str, owner: str | None = None) -> str:
        """The model's name: `save_as` checked (trained_models.check_name) against the names
        `owner` can see, or one made of the file, base model and time; a per-session model's
        gets its private suffix."""
        names = self.config.names(trained_models.TASK, owner)
        if save_as and save_as.strip():
            name = trained_models.check_name(save_as, names)
        else:
            stem = trained_models.normalise_name(Path(file).stem)
            stem = stem if stem.isprintable() and not any(0xD800 <= ord(c) <= 0xDFFF for c in stem) else "data"
            name = f"{stem[:40]} · {base_name} · {trained_models.now()}"
            candidate, n = name, 1
            while any(trained_models.skeleton(candidate) == trained_models.skeleton(other) for other in names):
                n += 1
                candidate = f"{name} ({n})"
            name = candidate
        return trained_models.private_name(name) if owner is not None else name

    def run(
        self,
        file: str | None,
        base_model: str | None,
        save_as: str | None,
        text_column: str | None,
        label_column: str | None,
        params: TrainParams,
        stop: threading.Event | None = None,
        owner: str | None = None,
    ) -> Iterator[TrainUpdate]:
        """Check everything, train, publish: TrainUpdates as it goes, the last one `done`. Every
        check fails before any model loads; a stream closed early abandons the training. `owner`:
        the session the model will belong to (trained_models.owner_of; None: everyone's)."""
        section = self.config.training
        params = check_params(params, section.ranges())
        base = section.base(base_model or section.base_models[0].name)
        data = check_data(self.config, file, text_column, label_column, params.validation_fraction, params.seed)
        name = self.new_name(save_as, base.name, file, owner)
        progress = Progress(params, base.name)
        trained_models.make_room(
            self.config,
            owner,
            on_removed=lambda m: progress.say(
                f"removed your oldest model {m.name!r} to stay within settings.trained_models_per_session"
                if m.owner == owner
                else "removed the oldest model of another session to stay within the app's caps"
            ),
        )
        abort = threading.Event()  # set by closing the stream below: nobody waits for this training
        folder = trained_models.folder_of(self.config)
        partial = trained_models.new_partial(folder)
        args = argparse.Namespace(
            data=str(file),
            base_model=base.source,
            output=str(partial),
            text_column=data["text_column"],
            label_column=data["label_column"],
            min_messages_per_class=section.min_messages_per_class,
            cpu=zero_gpu_active(),  # ZeroGPU: CUDA must not start in this process; its GPU calls are short
            **asdict(params),
        )

        def work(report):
            def on_event(event: dict) -> None:
                if abort.is_set():  # nobody waits for this training any more (between two steps: see step_aside)
                    raise background.Abandoned()
                report(event)

            with self._one_at_a_time, torch_threads(section.threads):
                return train(args, stop=_Either(abort, stop or threading.Event()), on_event=on_event)

        published = False
        try:
            yield progress.current()
            with closing(
                background.stream(
                    work, f"train-{name}", stop=abort, idle_every_s=HEARTBEAT_S, steps_aside=section.step_aside
                )
            ) as events:
                try:
                    for kind, payload in events:
                        if kind == "item":
                            progress.add(payload)
                        if kind != "result":
                            yield progress.current()
                except Exception as err:
                    raise self._explain(err, base, progress.update["state"]) from None
            info = {
                "name": name,
                "base_model": base.name,
                "base_source": public_source(base.source),
                "data": data["file"],
                "created": trained_models.now(),
                "params": asdict(params),
            } | ({"owner": owner} if owner else {})
            # Everything about the model is validated before it is published: a folder that
            # cannot be served must never be left where the next start-up finds it.
            trained_models.entry_for(trained_models.TrainedModel(name, partial, info, {}))
            model = trained_models.publish(partial, info)
            try:
                self.config.add_entry(trained_models.TASK, trained_models.entry_for(model), owner=owner)
            except BaseException:
                shutil.rmtree(model.folder, ignore_errors=True)
                raise
            published = True
            yield progress.finish(model)
        finally:
            if not published:
                shutil.rmtree(partial, ignore_errors=True)

    @staticmethod
    def _explain(err: Exception, base, state: str) -> Exception:
        """A failure as the user should read it: the base model that cannot load, memory, or as it is."""
        from pipelines.core.registry import _says_out_of_memory, explain_load_failure, free_accelerator_memory

        if isinstance(err, UserFacingError):
            return err
        text = f"{type(err).__name__}: {err}"
        traceback.clear_frames(err.__traceback__)  # what the failed training built goes with the frames
        free_accelerator_memory()
        if state == "loading":
            return ModelLoadError(
                base.name, explain_load_failure(base, err), prefix=f"Cannot load base model '{base.name}'"
            )
        if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError" or _says_out_of_memory(text):
            return TrainingError(
                f"Training ran out of memory ({text.splitlines()[0][:200]}); try a smaller batch size "
                "or max length, or a smaller base model. The app keeps serving."
            )
        return err
