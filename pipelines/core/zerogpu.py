"""ZeroGPU: GPU work runs inside `spaces.GPU`, with a duration that fits the request.

On a ZeroGPU Space (where the `spaces` package sees SPACES_ZERO_GPU=true) a GPU is attached
only while a function decorated with `spaces.GPU(duration=...)` runs, in a forked worker
process; the main process must never initialise CUDA. Everywhere else `spaces.GPU` returns
the function unchanged (read in spaces/zero/decorator.py: `if not Config.zero_gpu: return
task`), and without the `spaces` package `on_gpu` does the same itself, so the app runs as
is on a laptop, a GPU server or a CPU-only machine.

Generators are supported by `spaces.GPU`: it streams each yielded value back from the worker
and closes the worker's generator when the consumer stops (Stop in the UI, a cancelled job).

It knows no task: the caller gives each handler's estimate of its GPU seconds (the app's, from
the task table by task name, is `pipelines.studio.on_gpu`).

Importing this module imports `spaces` (when installed) before any model is loaded: on
ZeroGPU it patches torch at import time and refuses to work if CUDA was initialised first.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable

try:
    import spaces
except ImportError:  # not installed: plain local runs
    spaces = None

log = logging.getLogger(__name__)

# ZeroGPU schedules by the requested duration: too short and the job is killed, too long and
# the visitor's quota runs out sooner and the request waits longer in the queue. Each task's
# estimate of its own work is its `gpu_seconds` (named in the task table); this adds the fixed costs.
STARTUP_S = 10.0  # attaching the GPU, moving the weights to it, first-call warm-up
MAX_DURATION_S = 300  # never ask ZeroGPU for more than this per request


def request_seconds(estimate: Callable[..., float], **request) -> int:
    """GPU seconds to ask for a request with these parameters, from the task's `estimate` of its
    own work (unknown parameters are ignored; a bad value gets the default estimate: the task's
    own checks report it)."""
    try:
        seconds = estimate(**request)
    except (TypeError, ValueError):
        seconds = estimate()
    return int(min(MAX_DURATION_S, max(1.0, STARTUP_S + seconds)))


def zero_gpu_active() -> bool:
    """True on a ZeroGPU Space (as decided by the `spaces` package itself)."""
    if spaces is None:
        return False
    from spaces.config import Config

    return bool(Config.zero_gpu)


def on_gpu(estimate: Callable[..., float]) -> Callable[[Callable], Callable]:
    """Decorator: run the handler inside `spaces.GPU(duration=...)` when `spaces` is installed
    (a no-op off ZeroGPU); without it, return the handler unchanged. The duration follows each
    call's own parameters (the handler's arguments by name, keyword parameters included), given
    to `estimate` (see `request_seconds`)."""

    def decorate(fn: Callable) -> Callable:
        if spaces is None:
            return fn
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def duration(*args, **kwargs) -> int:
            arguments = dict(signature.bind_partial(*args, **kwargs).arguments)
            for name, parameter in signature.parameters.items():  # a **params handler: its keyword values
                if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                    arguments |= arguments.pop(name, {})
            return request_seconds(estimate, **arguments)

        return spaces.GPU(fn, duration=duration)

    return decorate


def task_uses_accelerator(config, task: str) -> bool:
    """Whether any local model of `task` will run on a GPU (decided without initialising CUDA)."""
    if zero_gpu_active():
        return True
    local = [e for e in config.entries(task) if e.backend == "local"]
    if not local:  # only remote models: no torch needed in this process
        return False
    from pipelines.core.devices import best_available_device  # imports torch; is_available() does not init CUDA

    auto = best_available_device()
    return any((auto if e.device == "auto" else e.device) != "cpu" for e in local)


def concurrency_limit(config, task: str) -> int:
    """How many requests of `task` run at once; the rest wait in the queue (models.yaml `settings`)."""
    settings = config.settings
    return settings.gpu_concurrency if task_uses_accelerator(config, task) else settings.cpu_concurrency
