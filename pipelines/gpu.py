"""ZeroGPU: GPU work runs inside `spaces.GPU`, with a duration that fits the request.

On a ZeroGPU Space (where the `spaces` package sees SPACES_ZERO_GPU=true) a GPU is attached
only while a function decorated with `spaces.GPU(duration=...)` runs, in a forked worker
process; the main process must never initialise CUDA. Everywhere else `spaces.GPU` returns
the function unchanged (read in spaces/zero/decorator.py: `if not Config.zero_gpu: return
task`), and without the `spaces` package `on_gpu` does the same itself, so the app runs as
is on a laptop, a GPU server or a CPU-only machine.

Generators are supported by `spaces.GPU`: it streams each yielded value back from the worker
and closes the worker's generator when the consumer stops (Stop in the UI, a cancelled job).

Importing this module imports `spaces` (when installed) before any model is loaded: on
ZeroGPU it patches torch at import time and refuses to work if CUDA was initialised first.
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Callable

try:
    import spaces
except ImportError:  # not installed: plain local runs
    spaces = None

log = logging.getLogger(__name__)

# Estimates of GPU seconds per request, on the GPUs ZeroGPU lends (A10G/H200 class). ZeroGPU
# schedules by the requested duration: too short and the job is killed, too long and the
# visitor's quota runs out sooner and the request waits longer in the queue.
STARTUP_S = 10.0  # attaching the GPU, moving the weights to it, first-call warm-up
TEXT_S_PER_TOKEN = 0.05  # GPT-Neo 1.3B in bfloat16 makes ~30-60 tokens/s
IMAGE_S_PER_STEP = 0.25  # one UNet step of one 512x512 image (SD 1.5 fp16 ~0.1 s on an A10G)
IMAGE_DECODE_S = 1.0  # VAE decode and PNG encoding of one image
IMAGE_REFERENCE_PIXELS = 512 * 512  # the image size IMAGE_S_PER_STEP was estimated for
CLASSIFICATION_S = 5.0  # a batch of short messages through a BERT/RoBERTa classifier
MAX_DURATION_S = 300  # never ask ZeroGPU for more than this per request


def _seconds(estimate: float) -> int:
    return int(min(MAX_DURATION_S, max(1.0, STARTUP_S + estimate)))


def text_generation_seconds(max_new_tokens: float = 64) -> int:
    return _seconds(float(max_new_tokens or 0) * TEXT_S_PER_TOKEN)


def image_generation_seconds(steps: float = 25, num_images: float = 1, width: float = 512, height: float = 512) -> int:
    images = max(1.0, float(num_images or 1))
    size_factor = max(1.0, float(width or 0) * float(height or 0) / IMAGE_REFERENCE_PIXELS)
    per_image = float(steps or 1) * IMAGE_S_PER_STEP * size_factor + IMAGE_DECODE_S
    return _seconds(images * per_image)


def classification_seconds() -> int:
    return _seconds(CLASSIFICATION_S)


def zero_gpu_active() -> bool:
    """True on a ZeroGPU Space (as decided by the `spaces` package itself)."""
    if spaces is None:
        return False
    from spaces.config import Config

    return bool(Config.zero_gpu)


def on_gpu(estimate: Callable[..., float]) -> Callable[[Callable], Callable]:
    """Decorator: run the function inside `spaces.GPU(duration=...)` when `spaces` is installed
    (a no-op off ZeroGPU); without it, return the function unchanged.

    `estimate` names the request parameters it needs (e.g. `max_new_tokens`); they are taken
    from each call's arguments by name, so the duration follows the request.
    """

    def decorate(fn: Callable) -> Callable:
        if spaces is None:
            return fn
        signature = inspect.signature(fn)
        wanted = list(inspect.signature(estimate).parameters)

        @functools.wraps(estimate)
        def duration(*args, **kwargs) -> int:
            arguments = signature.bind_partial(*args, **kwargs).arguments
            try:
                return estimate(**{name: arguments[name] for name in wanted if name in arguments})
            except (TypeError, ValueError):  # a bad value: the task's own checks report it
                return estimate()

        return spaces.GPU(fn, duration=duration)

    return decorate


def task_uses_accelerator(config, task: str) -> bool:
    """Whether any local model of `task` will run on a GPU (decided without initialising CUDA)."""
    if zero_gpu_active():
        return True
    from pipelines.devices import best_available_device  # imports torch; is_available() does not init CUDA

    auto = best_available_device()
    local = [e for e in config.entries(task) if getattr(e, "backend", "local") == "local"]
    return any((auto if e.device == "auto" else e.device) != "cpu" for e in local)


def concurrency_limit(config, task: str) -> int:
    """How many requests of `task` run at once; the rest wait in the queue (models.yaml `settings`)."""
    settings = config.settings
    return settings.gpu_concurrency if task_uses_accelerator(config, task) else settings.cpu_concurrency
