"""benchmarks/request_overhead.py: its stand-in generator goes through the real image tab."""

from benchmarks.request_overhead import measure


def test_overheads_are_measured_per_request_through_the_app():
    overheads = measure(work_s=0.01, requests=2)
    assert len(overheads) == 2
    # the stand-in's fixed time is taken off: what is left is the app's, and a request costs something
    assert all(0 < overhead < 30 for overhead in overheads)
