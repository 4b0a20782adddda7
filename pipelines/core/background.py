"""Where model computation runs: long-lived worker threads, one job at a time each.

Every pipeline call (a model load, a batch of classifications, a text or image generation,
local or remote) runs here, through `call` (wait for the result, relaying the job's progress
to the caller's thread) or `stream` (iterate the job's progress as it happens). Why:

- Gradio can only close a streaming handler (Stop, a client that went away) while it waits at
  a `yield`, and a model call blocks for seconds: so the handler waits on the job here, wakes
  up with every update (or every `idle_every_s`), and closing it sets the job's Stop flag.
- Long-lived threads keep a warm memory arena (a fresh thread per request slows the app
  against the raw pipeline, which `python -m benchmarks.image` measures), and each releases its
  OpenMP pool after every job, so that no idle pool slows the thread computing next (`openmp.py`).
- A job runs in its caller's context (`contextvars`): Gradio's tqdm tracking (the Text tab's
  progress bar while a first load exports a model) finds the request it reports to.
- A thread is renamed after the job it runs (e.g. `generate-GPT-Neo 1.3B`), so py-spy and
  `threading.enumerate()` tell what is running.
- A long job that should not slow the others down (a training) runs with `steps_aside=True`:
  in a thread of its own at the lowest CPU priority, and calling `step_aside()` often (a
  training: before each linear layer, forward and backward), where it waits while any other
  job runs; so a /classify during a training has the CPU's cores almost as if idle
  (`python -m benchmarks.train_sharing`).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pipelines.core.limits import IdleTrimmer, give_back_memory, rss_mb
from pipelines.core.openmp import release_openmp_pool

T = TypeVar("T")
Emit = Callable[[Any], None]

# More than the jobs that can run at once (Gradio runs one request per task by default, and a
# stopped job may still finish its current step while the next one starts): threads start lazily.
MAX_WORKERS = 16
IDLE_NAME = "pipeline-worker (idle)"
# How long closing a stream waits for its job to notice the Stop flag (one token, one
# denoising step, one poll of a remote): the model is free again when it returns.
STOP_WAIT_S = 30.0

# Between two of its steps a job that steps aside waits at most this long for the others: under
# a steady stream of requests it still makes progress (a step every STEP_ASIDE_MAX_S at worst).
STEP_ASIDE_MAX_S = 10.0
# ... and it runs at this CPU priority (Linux nice, 19 the lowest): whenever a request's threads
# (HTTP, the queue, the model) want a core, the scheduler gives it to them. Pausing alone is not
# enough: most of a request's time is outside its model job (`python -m benchmarks.train_sharing`
# measures /classify during a training).
STEP_ASIDE_NICE = 19

_trimmer = IdleTrimmer()  # hands freed memory back to the OS once the jobs stop coming
_pool: ThreadPoolExecutor | None = None
_pool_pid: int | None = None
_pool_lock = threading.Lock()
_on_worker = threading.local()
_others = threading.Condition()  # guards _running_others, the jobs that do not step aside
_running_others = 0


def _workers() -> ThreadPoolExecutor:
    """This process's pool. A forked child (ZeroGPU runs requests in one) gets a new pool: the
    parent's threads do not exist there."""
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="pipeline-worker")
            _pool_pid = os.getpid()
        return _pool


def _count_others(change: int) -> None:
    global _running_others
    with _others:
        _running_others += change
        _others.notify_all()


class Abandoned(Exception):
    """Raised by step_aside() in a job whose stream was closed (nobody waits for its result)."""


def step_aside(max_wait_s: float = STEP_ASIDE_MAX_S) -> float:
    """Called often by a job that steps aside (a training): wait while any other job runs, up to
    `max_wait_s`; returns the seconds waited (0 at once when nothing else runs, or when called
    from a job that others count, which would wait for itself). Raises Abandoned once the job's
    `stop` is set, so that a closed stream ends it within one of its small pieces of work."""
    if not getattr(_on_worker, "steps_aside", False):
        return 0.0 if getattr(_on_worker, "active", False) else _wait_for_others(max_wait_s, None)
    return _wait_for_others(max_wait_s, _on_worker.stop)


def _wait_for_others(max_wait_s: float, stop: threading.Event | None) -> float:
    started = time.monotonic()
    abandoned = (lambda: stop.is_set()) if stop is not None else (lambda: False)
    with _others:
        _others.wait_for(lambda: _running_others == 0 or abandoned(), timeout=max_wait_s)
    if abandoned():
        raise Abandoned()
    return time.monotonic() - started


def _run_job(
    work: Callable[[Emit], T],
    events: queue.Queue,
    label: str,
    steps_aside: bool = False,
    stop: threading.Event | None = None,
) -> None:
    if not steps_aside:
        _run_job_here(work, events, label, steps_aside, stop)
        return
    # A thread of its own, at the lowest CPU priority (its OpenMP workers inherit it): the priority
    # goes with the thread, since an unprivileged process cannot raise it again for the next job.
    own = threading.Thread(
        target=contextvars.copy_context().run,
        args=(_run_job_here, work, events, label, steps_aside, stop),
        name=label,
        daemon=True,
    )
    own.start()
    own.join()


def _lower_this_threads_priority() -> None:
    # Not Linux, or not allowed: the pauses before each layer remain.
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), STEP_ASIDE_NICE)  # Linux: this thread only


def _run_job_here(
    work: Callable[[Emit], T], events: queue.Queue, label: str, steps_aside: bool, stop: threading.Event | None
) -> None:
    thread = threading.current_thread()
    thread.name, _on_worker.active, _on_worker.steps_aside, _on_worker.stop = label, True, steps_aside, stop
    rss_before = rss_mb()
    _trimmer.job_started()
    if steps_aside:
        _lower_this_threads_priority()
    else:
        _count_others(+1)
    try:
        events.put(("result", work(lambda item: events.put(("item", item)))))
    except BaseException as err:
        events.put(("error", err))
    finally:
        if not steps_aside:
            _count_others(-1)
        release_openmp_pool()  # this thread idles until its next job: free its OpenMP workers
        give_back_memory(rss_before)  # a large job's freed memory goes back to the OS at once
        _trimmer.job_ended()
        thread.name, _on_worker.active, _on_worker.steps_aside, _on_worker.stop = IDLE_NAME, False, False, None


def stream(
    work: Callable[[Emit], T],
    label: str,
    stop: threading.Event | None = None,
    idle_every_s: float | None = None,
    steps_aside: bool = False,
) -> Iterator[tuple[str, Any]]:
    """Run `work(emit)` on a worker; yield ("item", x) for each `emit(x)`, ("idle", None) when
    nothing came for `idle_every_s`, and finally ("result", what work returned). The job's
    exception is raised here. Closing this iterator early sets `stop` and waits (up to
    STOP_WAIT_S) for the job to end. `steps_aside`: the job calls `step_aside()` often, other jobs
    go first there, and once `stop` is set it raises Abandoned there."""
    events: queue.Queue = queue.Queue()
    if getattr(_on_worker, "active", False):  # already on a worker (a job calling a pipeline): run inline
        future = None
        _run_inline(work, events)
    else:
        future = _workers().submit(contextvars.copy_context().run, _run_job, work, events, label, steps_aside, stop)
    finished = False
    try:
        while True:
            try:
                kind, payload = events.get(timeout=idle_every_s)
            except queue.Empty:
                yield "idle", None
                continue
            if kind == "error":
                finished = True
                raise payload
            if kind == "result":
                finished = True
            yield kind, payload
            if finished:
                return
    finally:
        if not finished and stop is not None:
            stop.set()  # the consumer went away (Stop, a client gone): end the computation too
        if future is not None and not finished:
            with contextlib.suppress(Exception):
                future.result(timeout=STOP_WAIT_S)


def _run_inline(work: Callable[[Emit], T], events: queue.Queue) -> None:
    try:
        events.put(("result", work(lambda item: events.put(("item", item)))))
    except BaseException as err:
        events.put(("error", err))


def call(
    work: Callable[[Emit], T],
    label: str,
    on_item: Callable[[Any], None] | None = None,
    stop: threading.Event | None = None,
) -> T:
    """Run `work(emit)` on a worker and return its result; each `emit(x)` calls `on_item(x)`
    in this thread (progress bars, previews)."""
    for kind, payload in stream(work, label, stop):
        if kind == "item" and on_item is not None:
            on_item(payload)
        elif kind == "result":
            return payload
    raise RuntimeError("unreachable: a job ends with its result or its error")
