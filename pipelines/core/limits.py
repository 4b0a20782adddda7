"""What one request may send, and giving memory back after a large one.

The request limits are the app's (`settings` in models.yaml), checked before any expensive
work; a model's own limits (its context, its max_length) are checked by its pipeline.
"""

from __future__ import annotations

import ctypes
import gc
import os

from pipelines.core.errors import InputError

# A token never spans more than this many characters: WordPiece turns a longer word into one
# [UNK] (BERT's max_input_chars_per_word is 100), BPE vocabularies' longest tokens are shorter.
# So the first max_length * MAX_CHARS_PER_TOKEN characters of a text hold every token a model
# limited to max_length tokens reads: tokenizing more is wasted work.
MAX_CHARS_PER_TOKEN = 100
# Memory a job may leave behind before the process hands freed memory back to the OS.
TRIM_AFTER_GROWTH_MB = 64


def check_text_size(text: object, field: str, max_chars: int) -> None:
    """Refuse a text longer than `max_chars` (settings.max_text_chars) before it is tokenized."""
    if isinstance(text, str) and len(text) > max_chars:
        raise InputError(field, f"is {len(text):,} characters; the limit is {max_chars:,} (settings.max_text_chars)")


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


def give_back_memory(rss_before_mb: float) -> bool:
    """After a job that grew the process by TRIM_AFTER_GROWTH_MB or more: collect garbage and
    ask glibc to return its free heap to the OS (it otherwise keeps the arenas a large request
    grew). Cheap when nothing grew; returns whether it trimmed."""
    if rss_mb() - rss_before_mb < TRIM_AFTER_GROWTH_MB:
        return False
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
    return True
