"""benchmarks/memory.py: the peak inside a block, and the whole process's peak kept across resets."""

import numpy as np

from benchmarks.memory import PeakRss, process_peak_mb


def touch_mb(mb: int) -> None:
    block = np.ones(mb * 2**20 // 8)  # written, so resident
    del block


def test_peak_inside_a_block_sees_memory_freed_before_it_ends_and_not_what_came_before():
    touch_mb(600)  # before the block: must not count inside it
    with PeakRss() as outside_peak:
        pass
    with PeakRss() as peak:
        touch_mb(200)
    assert peak.mb >= outside_peak.mb + 150  # the 200 MB was resident, then freed, inside the block
    assert peak.mb < outside_peak.mb + 500  # the 600 MB from before is not counted
    assert process_peak_mb() >= outside_peak.mb + 500  # but the process's own peak keeps it
