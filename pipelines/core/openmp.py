"""Keep one OpenMP thread pool alive at a time, so the one computing runs at full speed.

torch's CPU kernels run on OpenMP (GNU libgomp in the PyPI wheels). libgomp gives every
thread that runs a parallel region its own pool of worker threads, kept until that thread
exits. While it manages more threads than the machine has CPUs, it stops spinning between
parallel regions and puts its workers to sleep instead (GOMP's "throttled" spin count), and
decoding runs hundreds of short parallel regions per token, each then paying a wake-up.

A server computes on several long-lived threads (a model loaded in one, a classification
batch in another, image generation in a worker pool, a text generation in its own thread),
so after the first request every model would run throttled: `python -m benchmarks.cpu_bounds
--parts openmp` measures GPT-Neo 1.3B int8 in the main thread, in another thread while the main
thread's idle pool is alive, and once that pool is released.

`release_openmp_pool()` is therefore called when a long-lived thread finishes a piece of
work (a model load, a request). It frees the calling thread's pool through the standard
OpenMP 5.0 call `omp_pause_resource_all`; the thread's next parallel region starts a new pool
(about 0.1 ms). Where torch does not use libgomp (macOS, other OpenMP runtimes) it does nothing.
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path

log = logging.getLogger(__name__)

OMP_PAUSE_SOFT = 1  # omp_pause_resource_t: free the threads, keep nothing else


_libgomp = None  # found once torch has loaded it


def _loaded_libgomp():
    """The libgomp that this process has loaded (torch's own copy), or None (not loaded yet, or none)."""
    global _libgomp
    if _libgomp is not None:
        return _libgomp
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:  # not Linux
        return None
    paths = {line.split()[-1] for line in maps.splitlines() if "libgomp" in line.rsplit("/", 1)[-1]}
    for path in sorted(paths):
        try:
            library = ctypes.CDLL(path)  # already loaded: the same handle, no second copy
            library.omp_pause_resource_all.argtypes = [ctypes.c_int]
        except (OSError, AttributeError):  # an old libgomp without OpenMP 5.0's pause API
            continue
        _libgomp = library
        return library
    return None


def release_openmp_pool() -> bool:
    """Free the calling thread's OpenMP worker threads. True if there was a libgomp to ask."""
    library = _loaded_libgomp()
    if library is None:
        return False
    if library.omp_pause_resource_all(OMP_PAUSE_SOFT) != 0:  # inside a parallel region: not allowed
        log.debug("omp_pause_resource_all refused; the pool stays")
    return True
