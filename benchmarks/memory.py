"""Peak resident memory of this process over a stretch of work, from the kernel's own count.

Linux keeps each process's high-water mark of resident memory (VmHWM in /proc/self/status)
and resets it to the current RSS when "5" is written to /proc/self/clear_refs. That measures
every page touched, however briefly, without a sampling thread (a thread that wakes every few
ms costs ~2% of decoding speed on 2 cores, by taking a core from torch's OpenMP workers).
Elsewhere it falls back to the whole process's peak (getrusage), which includes loading.
The reset also resets getrusage's ru_maxrss, so the whole-process peak is kept here across resets.
"""

from __future__ import annotations

import resource
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


_peak_before_resets_mb = 0.0  # the process's peak up to the last reset


def process_peak_mb() -> float:
    """The peak RSS over the whole life of this process (loading and converting included)."""
    return max(_peak_before_resets_mb, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # kB on Linux


class PeakRss:
    """`with PeakRss() as peak: ...` then `peak.mb`: the peak RSS (MB) while the block ran."""

    def __init__(self):
        self.mb = 0.0
        self.since_start_of_process = False  # True where the peak could not be reset

    def __enter__(self):
        global _peak_before_resets_mb
        _peak_before_resets_mb = process_peak_mb()
        try:
            _CLEAR_REFS.write_text("5")  # VmHWM (and ru_maxrss) := current RSS
        except OSError:
            self.since_start_of_process = True
        return self

    def __exit__(self, *exc):
        self.mb = self.read_mb()

    def read_mb(self) -> float:
        """The peak so far (inside the block, or up to its end)."""
        if not self.since_start_of_process:
            for line in _STATUS.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return process_peak_mb()
