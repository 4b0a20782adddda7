"""What one request may send, and giving memory back after a large one.

The request limits are the app's (`settings` in models.yaml), checked before any expensive
work; a model's own limits (its context, its max_length) are checked by its pipeline.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import re
import threading

from pipelines.core.errors import InputError

# A token never spans more than this many characters: WordPiece turns a longer word into one
# [UNK] (BERT's max_input_chars_per_word is 100), BPE vocabularies' longest tokens are shorter.
# So the first max_length * MAX_CHARS_PER_TOKEN characters of a text hold every token a model
# limited to max_length tokens reads: tokenizing more is wasted work.
MAX_CHARS_PER_TOKEN = 100
# Memory a job may leave behind before the process hands freed memory back to the OS at once,
# and how long the process must be idle before it hands back what a steady load of small jobs
# left in glibc's arenas (without it RSS creeps under a steady load: `python -m benchmarks.load
# --rounds 10` reads it after every round).
TRIM_AFTER_GROWTH_MB = 64
TRIM_WHEN_IDLE_S = 1.0

_trim_lock = threading.Lock()
# In a Python str every surrogate code point is a lone one (a valid pair decodes to one character).
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def check_text(text: object, field: str, max_chars: int | None) -> None:
    """Refuse, before it is tokenized, a text longer than `max_chars` (settings.max_text_chars; None:
    no limit, for a text that is cut instead) or one holding a lone surrogate (JSON's "\\ud800"
    decodes to one; no tokenizer, encoder or JSON answer takes it)."""
    if not isinstance(text, str):
        return
    if max_chars is not None and len(text) > max_chars:
        raise InputError(field, f"is {len(text):,} characters; the limit is {max_chars:,} (settings.max_text_chars)")
    surrogate = _LONE_SURROGATE.search(text)
    if surrogate:
        raise InputError(
            field,
            f"contains a lone surrogate (U+{ord(surrogate.group()):04X}) at character "
            f"{surrogate.start() + 1:,}; send valid Unicode text",
        )


def chars_for_tokens(tokens: int) -> int:
    """Characters that certainly hold `tokens` tokens' worth of text (see MAX_CHARS_PER_TOKEN)."""
    return tokens * MAX_CHARS_PER_TOKEN


def rss_mb() -> float:
    """This process's resident memory, from the kernel (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def trim_heap(collect: bool = False) -> None:
    """Ask glibc to return its free heap (every arena) to the OS (slow beside a large model's
    weights, but without the GIL); `collect`: a full garbage collection first (with the GIL)."""
    with _trim_lock:
        if collect:
            gc.collect()
        with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def give_back_memory(rss_before_mb: float) -> bool:
    """After a job that grew the process by TRIM_AFTER_GROWTH_MB or more: trim the heap at once.
    Cheap when nothing grew; returns whether it trimmed. No garbage collection here: with models
    loaded a full collection walks every object they hold with the GIL held, while the request
    that just finished still has to write its answer (`python -m benchmarks.image --models
    sd-turbo-img2img` measures the app against the raw pipeline); glibc's trim releases the GIL.
    The IdleTrimmer collects once jobs stop."""
    if rss_mb() - rss_before_mb < TRIM_AFTER_GROWTH_MB:
        return False
    trim_heap(collect=False)
    return True


class IdleTrimmer:
    """Collects garbage and trims the heap once the process has run no job for TRIM_WHEN_IDLE_S:
    one sleeping thread, woken when a job ends; it does nothing while jobs keep coming, or while
    nothing happens."""

    def __init__(self, idle_s: float = TRIM_WHEN_IDLE_S):
        self.idle_s = idle_s
        self._active = 0
        self._lock = threading.Condition()
        self._dirty = False  # a job ended since the last trim
        self._thread: threading.Thread | None = None

    def job_started(self) -> None:
        with self._lock:
            self._active += 1

    def job_ended(self) -> None:
        with self._lock:
            self._active -= 1
            self._dirty = True
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="heap-trimmer", daemon=True)
                self._thread.start()
            self._lock.notify()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._dirty:
                    self._lock.wait()
                # wait until no job has ended for idle_s and none runs
                while self._lock.wait(self.idle_s) or self._active:
                    pass
                self._dirty = False
            trim_heap(collect=True)  # idle: a full collection first frees what cycles hold
