"""Why a message looks like spam: word occlusion, for a `LocalClassifier` (it needs the tokenizer).

Each word is removed in turn and the message is scored again; a word's score is how much the
spam probability drops without it (positive: the word pushed towards spam, negative: towards
ham). All the variants go through the model in batched forward passes, so one explanation
costs about one pass over (number of words + 1) short messages. Only the part of the message
the model reads is occluded (and only it is tokenized): a message far longer than the model's
max_length tokens costs what one of max_length tokens does.
"""

from __future__ import annotations

import itertools
import re

from pipelines.classification.contract import Explanation, WordScore
from pipelines.core.limits import chars_for_tokens

WORD = re.compile(r"\S+")
# Most occlusion variants per explanation: longer messages are occluded in runs of adjacent
# words, so the cost stays bounded (about two batches of 64 through the model).
MAX_SEGMENTS = 128
# Tokens of occlusion variants one explanation may send through the model: what 128 variants of
# a 64-token SMS cost. A message the model reads more of is occluded in fewer, longer runs of
# words (at least MIN_SEGMENTS), so an explanation of 512 tokens costs about that of an SMS
# (`python -m benchmarks.hostile --only requests` times both).
TOKEN_BUDGET = 128 * 64
MIN_SEGMENTS = 8


def visible_length(classifier, text: str) -> tuple[int, bool, int]:
    """How many characters of `text` the model reads, whether it truncates the rest, and how many
    tokens it reads."""
    readable = chars_for_tokens(classifier.max_length + 1)
    encoded = classifier.tokenizer(
        text[:readable], truncation=True, max_length=classifier.max_length + 1, return_offsets_mapping=True
    )
    tokens = min(len(encoded["input_ids"]), classifier.max_length)
    truncated = len(encoded["input_ids"]) > classifier.max_length or len(text) > readable
    if not truncated:
        return len(text), False, tokens
    # the tokens kept: the limit minus the end marker ([SEP] / </s>), which has an empty span
    ends = [end for start, end in encoded["offset_mapping"][: classifier.max_length - 1] if end > start]
    return max(ends, default=len(text)), True, tokens


def word_spans(text: str, limit: int, max_segments: int = MAX_SEGMENTS) -> list[tuple[int, int]]:
    """Character spans of the words in text[:limit], merged into at most `max_segments` runs."""
    spans = [m.span() for m in itertools.takewhile(lambda m: m.start() < limit, WORD.finditer(text))]
    if len(spans) <= max_segments:
        return spans
    per_run = -(-len(spans) // max_segments)  # ceiling division
    return [(spans[i][0], spans[min(i + per_run, len(spans)) - 1][1]) for i in range(0, len(spans), per_run)]


def explain(classifier, text: str, max_segments: int | None = None) -> Explanation:
    """Per-word push towards spam.

    Returns `spam_score` (the whole message), `words` (one dict per word or run of words, in
    order: `text`, `start`, `end`, `score` = spam score change when it is removed) and
    `segments`: the whole text as (piece, score-or-None) pairs, ready for gr.HighlightedText.
    `truncated` says whether the model (and so the explanation) saw only the start.
    """
    limit, truncated, tokens = visible_length(classifier, text)
    if max_segments is None:  # within the token budget
        max_segments = max(MIN_SEGMENTS, min(MAX_SEGMENTS, TOKEN_BUDGET // max(tokens, 1) - 1))
    spans = word_spans(text, limit, max_segments)
    visible = text[: max([limit] + [end for _, end in spans[-1:]])]  # what the model reads, whole words
    variants = [visible] + [visible[:start] + visible[end:] for start, end in spans]
    scores = classifier.spam_scores(variants)
    base = scores[0]
    words = [
        WordScore(text=text[start:end], start=start, end=end, score=base - score)
        for (start, end), score in zip(spans, scores[1:])
    ]
    segments: list[tuple[str, float | None]] = []
    position = 0
    for word in words:
        if word["start"] > position:
            segments.append((text[position : word["start"]], None))
        segments.append((word["text"], word["score"]))
        position = word["end"]
    if position < len(text):
        segments.append((text[position:], None))
    return Explanation(spam_score=base, words=words, segments=segments, truncated=truncated)
