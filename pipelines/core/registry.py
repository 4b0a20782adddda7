"""Lazy, shared model loading: each model is loaded on first use, once, and reused.

The registry is the only place that creates pipelines. It
- loads a model the first time a request names it (concurrent first requests wait for
  one load instead of loading twice),
- keeps loaded models within a memory budget, evicting the least recently used,
- unloads models nobody used for `idle_unload_minutes`,
- turns every load failure into a `ModelLoadError` that names the model and says what to do.

It knows no task: its caller gives the functions that make each task's models (the app's,
from the task table, is `pipelines.studio.ModelRegistry`).
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipelines.core import background
from pipelines.core.entry import ModelEntry
from pipelines.core.errors import ModelLoadError

log = logging.getLogger(__name__)

Loader = Callable[[ModelEntry], Any]


def _says_out_of_memory(text: str) -> bool:
    # CUDA: "CUDA out of memory"; PyTorch's CPU allocator: "DefaultCPUAllocator: can't allocate memory"
    return any(phrase in text.lower() for phrase in ("out of memory", "can't allocate memory"))


def explain_load_failure(entry: ModelEntry, err: BaseException) -> str:
    """A short diagnosis and the action that fixes it, for the most common failures."""
    text = f"{type(err).__name__}: {err}".strip()
    first_line = text.splitlines()[0][:300]
    from pipelines.core.hub import hub_is_reachable, is_local_source, public_source

    if entry.backend != "local":
        return (
            f"the {entry.backend} server at {entry.url} did not answer as expected ({first_line}). "
            "Check that it is running and reachable from here, and `url`/`remote_model` in models.yaml."
        )
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError" or _says_out_of_memory(text):
        return f"out of memory ({first_line}). Close other models, pick a smaller model, or use a machine with more memory."
    if is_local_source(entry.source):
        return (
            f"the local folder '{public_source(entry.source)}' (its full path is in the server log) is missing or does not "
            f"hold a complete model ({first_line.replace(str(entry.source), public_source(entry.source))}). "
            "Check `source` in models.yaml, or rebuild it (e.g. `python -m pipelines.tiny DIR`)."
        )
    if not hub_is_reachable():
        return (
            f"'{entry.source}' is not in the local Hugging Face cache and the Hub cannot be reached ({first_line}). "
            "Connect to the internet (and unset HF_HUB_OFFLINE) to download it once, or point `source` "
            "in models.yaml at a local copy. To try the app without downloading anything, `python -m pipelines.tiny DIR` "
            "builds tiny test models (random weights) and DIR/models.yaml for them: start the app with "
            "MODELS_CONFIG=DIR/models.yaml."
        )
    return (
        f"{first_line}. Check that '{entry.source}' is a valid Hugging Face repo id or local model directory "
        "for this task, and that you can reach the Hub."
    )


@dataclass
class LoadedModel:
    task: str
    name: str
    pipeline: Any
    memory_mb: float
    placement: str
    loaded_at: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)


class ModelRegistry:
    def __init__(self, config, loaders: dict[str, Loader], remote_loader: Callable[[str, str], Loader] | None = None):
        """`loaders`: task -> function making that task's model from a local entry;
        `remote_loader(task, backend)`: the function making a client of a remote entry's server."""
        self.config = config
        self.loaders = loaders
        self.remote_loader = remote_loader
        self._loaded: OrderedDict[tuple[str, str], LoadedModel] = OrderedDict()  # LRU order
        self._lock = threading.Lock()  # guards _loaded and _load_locks
        self._load_locks: dict[tuple[str, str], threading.Lock] = {}
        # One load at a time, whatever the model: from_pretrained is not thread-safe (accelerate's
        # empty-weights init patches torch.nn.Module globally, so a concurrent load of another
        # model gets meta tensors: "Cannot copy out of meta tensor").
        self._loading = threading.Lock()
        self._reaper: threading.Thread | None = None
        self._stop_reaper = threading.Event()

    # -- public API -----------------------------------------------------------------------
    def get(self, task: str, name: str) -> Any:
        """The pipeline for the model `name` of `task`, loading it on first use."""
        entry = self.config.entry(task, name)  # raises UnknownModelError for a bad name
        key = (task, name)
        with self._lock:
            load_lock = self._load_locks.setdefault(key, threading.Lock())
        with load_lock:  # one load per model, even when requests arrive together
            with self._lock:
                loaded = self._loaded.get(key)
                if loaded is not None:
                    loaded.last_used = time.monotonic()
                    self._loaded.move_to_end(key)
                    return loaded.pipeline
            # on a worker thread, like every model computation (core/background.py)
            pipeline = background.call(lambda emit: self._load(task, entry), f"load-{name}")
            memory_mb = float(getattr(pipeline, "memory_mb", 0.0))
            with self._lock:
                self._evict_to_fit(memory_mb)
                self._loaded[key] = LoadedModel(
                    task, name, pipeline, memory_mb, str(getattr(pipeline, "placement", "?"))
                )
            return pipeline

    def is_loaded(self, task: str, name: str) -> bool:
        with self._lock:
            return (task, name) in self._loaded

    def unload(self, task: str, name: str) -> bool:
        with self._lock:
            loaded = self._loaded.pop((task, name), None)
        if loaded is None:
            return False
        self._release(loaded)
        return True

    def unload_idle(self, now: float | None = None) -> list[str]:
        """Unload models unused for longer than the configured idle timeout."""
        timeout_s = self.config.settings.idle_unload_minutes * 60
        if timeout_s <= 0:
            return []
        now = time.monotonic() if now is None else now
        with self._lock:
            idle = [key for key, m in self._loaded.items() if now - m.last_used > timeout_s]
            released = [self._loaded.pop(key) for key in idle]
        for loaded in released:
            self._release(loaded)
        return [m.name for m in released]

    def status(self) -> list[dict]:
        """What is loaded, where, and how much memory it holds (most recently used last)."""
        now = time.monotonic()
        with self._lock:
            return [
                {
                    "task": m.task,
                    "name": m.name,
                    "placement": m.placement,
                    "memory_mb": round(m.memory_mb, 1),
                    "idle_s": round(now - m.last_used, 1),
                }
                for m in self._loaded.values()
            ]

    def start_idle_reaper(self, interval_s: float = 30.0) -> None:
        if self._reaper is not None or self.config.settings.idle_unload_minutes <= 0:
            return

        def loop():
            while not self._stop_reaper.wait(interval_s):
                for name in self.unload_idle():
                    log.info("unloaded idle model %s", name)

        self._reaper = threading.Thread(target=loop, name="idle-model-reaper", daemon=True)
        self._reaper.start()

    # -- internals ------------------------------------------------------------------------
    def _load(self, task: str, entry: ModelEntry) -> Any:
        log.info("loading %s model %r from %s", task, entry.name, entry.url or entry.source)
        started = time.perf_counter()
        try:
            with self._loading:
                pipeline = self._loader_for(task, entry)(entry)
        except ModelLoadError:
            raise
        except BaseException as err:
            if isinstance(err, (KeyboardInterrupt, SystemExit)):
                raise
            message = explain_load_failure(entry, err)
            # The traceback's frames still hold whatever the failed load built (half a model after
            # an out-of-memory error): drop them and give the memory back before reporting.
            traceback.clear_frames(err.__traceback__)
            free_accelerator_memory()
            raise ModelLoadError(entry.name, message) from err
        log.info("loaded %r in %.1f s", entry.name, time.perf_counter() - started)
        return pipeline

    def _loader_for(self, task: str, entry: ModelEntry) -> Loader:
        """The task's loader for local weights; a client of the server for remote entries."""
        if entry.backend == "local":
            return self.loaders[task]
        if self.remote_loader is None:
            raise ValueError(f"this registry loads local models only, not backend {entry.backend!r}")
        return self.remote_loader(task, entry.backend)

    def _evict_to_fit(self, incoming_mb: float) -> None:
        """Drop least recently used models until the new one fits the budget (caller holds _lock)."""
        budget = self.config.settings.memory_budget_mb
        while self._loaded and sum(m.memory_mb for m in self._loaded.values()) + incoming_mb > budget:
            _, oldest = self._loaded.popitem(last=False)
            log.info("evicting %r to stay within %d MB", oldest.name, budget)
            self._release(oldest)

    @staticmethod
    def _release(loaded: LoadedModel) -> None:
        close = getattr(loaded.pipeline, "close", None)
        if callable(close):
            close()
        loaded.pipeline = None
        free_accelerator_memory()


def free_accelerator_memory() -> None:
    """Collect what a dropped model held, and give a GPU's cached blocks back (only where torch
    is already imported: a front end with only remote models never imports it)."""
    import gc
    import sys

    gc.collect()
    if "torch" in sys.modules:
        from pipelines.core.devices import empty_accelerator_caches

        empty_accelerator_caches()
