"""Giving memory back after a job: at once without a garbage collection (which holds the GIL while
the finished request still writes its answer), and a full collection only once jobs stop coming."""

from __future__ import annotations

import threading

from pipelines.core import limits


def test_a_job_that_grew_the_process_is_trimmed_at_once_without_a_collection(monkeypatch):
    calls = []
    monkeypatch.setattr(limits, "trim_heap", lambda collect=False: calls.append(collect))
    grew = limits.rss_mb() - 2 * limits.TRIM_AFTER_GROWTH_MB  # as if the job had added twice the threshold
    assert limits.give_back_memory(grew) is True
    assert calls == [False]


def test_a_job_that_did_not_grow_the_process_is_left_alone(monkeypatch):
    calls = []
    monkeypatch.setattr(limits, "trim_heap", lambda collect=False: calls.append(collect))
    assert limits.give_back_memory(limits.rss_mb()) is False
    assert calls == []


def test_the_idle_trimmer_collects_once_no_job_has_run_for_a_while(monkeypatch):
    trimmer = limits.IdleTrimmer(idle_s=0.05)
    collected = threading.Event()

    def trim_heap(collect=False):
        if threading.current_thread() is trimmer._thread:  # not the app-wide trimmer of other tests' jobs
            assert collect, "an idle trim collects garbage first"
            collected.set()

    monkeypatch.setattr(limits, "trim_heap", trim_heap)
    trimmer.job_started()
    trimmer.job_started()
    trimmer.job_ended()  # one of two jobs ended: the other still runs
    assert not collected.wait(0.3)
    trimmer.job_ended()
    assert collected.wait(5.0)
