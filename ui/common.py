"""Pieces every tab uses: turning pipeline errors into gr.Error, per-session Stop flags."""

from __future__ import annotations

import functools
import inspect
import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path

import gradio as gr

from pipelines.config import ConfigError
from pipelines.errors import InputError, ModelLoadError
from pipelines.openmp import release_openmp_pool

log = logging.getLogger(__name__)


def show_errors(fn):
    """Re-raise the pipelines' user-facing errors as gr.Error, so the UI shows the message
    and API clients receive it; anything unexpected gets a short message, never a trace.

    Handlers run on Gradio's long-lived worker threads: when one ends, its thread's OpenMP
    pool is released so that it does not slow the next computation (pipelines/openmp.py)."""

    def translate(err: Exception) -> gr.Error:
        if isinstance(err, gr.Error):
            return err
        if isinstance(err, (InputError, ModelLoadError, ConfigError)):
            return gr.Error(str(err), print_exception=False)
        log.exception("unexpected error in %s", fn.__name__)
        return gr.Error(f"Unexpected error in {fn.__name__}: {type(err).__name__}: {err}", print_exception=False)

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as err:  # noqa: BLE001
                raise translate(err) from None
            finally:
                release_openmp_pool()

        return generator_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001
            raise translate(err) from None
        finally:
            release_openmp_pool()

    return wrapper


class StopFlags:
    """One Stop flag per browser session and task: Stop sets it, the running job checks it."""

    def __init__(self):
        self._flags: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(request: gr.Request | None) -> str:
        return getattr(request, "session_hash", None) or "anonymous"

    def begin(self, request: gr.Request | None) -> threading.Event:
        flag = threading.Event()
        with self._lock:
            self._flags[self._key(request)] = flag
        return flag

    def stop(self, request: gr.Request | None) -> None:
        with self._lock:
            flag = self._flags.get(self._key(request))
        if flag is not None:
            flag.set()

    def end(self, request: gr.Request | None, flag: threading.Event) -> None:
        with self._lock:
            if self._flags.get(self._key(request)) is flag:
                del self._flags[self._key(request)]


# Files the tabs return (generated images, classified CSVs). Gradio copies each into its own
# cache as the request returns (that copy is what users see and download; app.py has Gradio
# delete it later), so ours are only kept this long, then deleted as newer ones are made:
# without this every request would leave a file behind for good.
OUTPUT_ROOT = Path(tempfile.gettempdir()) / "ml-studio-outputs"
OUTPUT_MAX_AGE_S = 600
_outputs_lock = threading.Lock()
_outputs_pruned_at = 0.0


def output_path(filename: str) -> Path:
    """A fresh path (in its own folder) for a file to return to Gradio."""
    _prune_outputs()
    OUTPUT_ROOT.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=OUTPUT_ROOT)) / filename


def _prune_outputs() -> None:
    global _outputs_pruned_at
    now = time.time()
    with _outputs_lock:
        if now - _outputs_pruned_at < OUTPUT_MAX_AGE_S / 10:
            return
        _outputs_pruned_at = now
    for folder in OUTPUT_ROOT.glob("*"):
        try:
            if now - folder.stat().st_mtime > OUTPUT_MAX_AGE_S:
                shutil.rmtree(folder, ignore_errors=True)
        except FileNotFoundError:  # another request pruned it first
            pass


def model_dropdown(names: list[str], label: str = "Model") -> gr.Dropdown:
    return gr.Dropdown(choices=names, value=names[0], label=label, interactive=True)


def describe_model(entry) -> str:
    source = entry.source + (f" @ {entry.revision}" if entry.revision else "")
    if entry.backend != "local":  # the weights are elsewhere: say where
        source = f"{entry.remote_model or 'default model'} on {entry.url} ({entry.backend})"
    text = f"**{entry.name}** — `{source}`"
    return text + (f"<br>{entry.description}" if entry.description else "")
