"""pipelines.core.openmp: a long-lived thread's OpenMP workers go away when it releases its pool."""

import os
import threading
import time

import pytest
import torch

from pipelines.core.openmp import release_openmp_pool


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.skipif(
    not os.path.exists("/proc/self/maps") or torch.get_num_threads() < 2,
    reason="needs Linux and at least 2 torch threads",
)
def test_a_thread_that_releases_its_pool_leaves_no_openmp_workers_behind():
    assert release_openmp_pool(), "torch's libgomp was not found in this process"
    counts = {}
    go_on, parked = threading.Event(), threading.Event()

    def long_lived_thread():
        big = torch.ones(4_000_000)
        (big * 2).sum()  # a parallel region: this thread gets its own pool of OpenMP workers
        counts["after_compute"] = os_threads()
        release_openmp_pool()
        deadline = time.monotonic() + 5  # the released workers take a moment to exit
        while os_threads() > counts["after_compute"] - (torch.get_num_threads() - 1) and time.monotonic() < deadline:
            time.sleep(0.01)
        counts["after_release"] = os_threads()
        parked.set()
        go_on.wait()  # stays alive, like a server's worker thread between requests

    worker = threading.Thread(target=long_lived_thread)
    worker.start()
    parked.wait(timeout=30)
    go_on.set()
    worker.join()
    assert counts["after_release"] <= counts["after_compute"] - (torch.get_num_threads() - 1)
