"""Why a message looks like spam: word occlusion, for a `LocalClassifier` (it needs the tokenizer).

Each word is removed in turn and the message is scored again; a word's score is how much the
spam probability drops without it (positive: the word pushed towards spam, negative: towards
ham). All the variants go through the model in batched forward passes, so one explanation
costs about one pass over (number of words + 1) short messages.
"""

from __future__ import annotations

import re

from pipelines.classification.contract import Explanation, WordScore

WORD = re.compile(r"\S+")
# Most occlusion variants per explanation: longer messages are occluded in runs of adjacent
# words, so the cost stays bounded (about two batches of 64 through the model).
MAX_SEGMENTS = 128


def visible_length(classifier, text: str) -> tuple[int, bool]:
    """How many characters of `text` the model reads, and whether it truncates the rest."""
    encoded = classifier.tokenizer(
        text, truncation=True, max_length=classifier.max_length + 1, return_offsets_mapping=True
    )
    truncated = len(encoded["input_ids"]) > classifier.max_length
    if not truncated:
        return len(text), False
    # the tokens kept: the limit minus the end marker ([SEP] / </s>), which has an empty span
    ends = [end for start, end in encoded["offset_mapping"][: classifier.max_length - 1] if end > start]
    return max(ends, default=len(text)), True


def word_spans(text: str, limit: int, max_segments: int = MAX_SEGMENTS) -> list[tuple[int, int]]:
    """Character spans of the words in text[:limit], merged into at most `max_segments` runs."""
    spans = [m.span() for m in WORD.finditer(text) if m.start() < limit]
    if len(spans) <= max_segments:
        return spans
    per_run = -(-len(spans) // max_segments)  # ceiling division
    return [(spans[i][0], spans[min(i + per_run, len(spans)) - 1][1]) for i in range(0, len(spans), per_run)]


def explain(classifier, text: str, max_segments: int = MAX_SEGMENTS) -> Explanation:
    """Per-word push towards spam.

    Returns `spam_score` (the whole message), `words` (one dict per word or run of words, in
    order: `text`, `start`, `end`, `score` = spam score change when it is removed) and
    `segments`: the whole text as (piece, score-or-None) pairs, ready for gr.HighlightedText.
    `truncated` says whether the model (and so the explanation) saw only the start.
    """
    limit, truncated = visible_length(classifier, text)
    spans = word_spans(text, limit, max_segments)
    variants = [text] + [text[:start] + text[end:] for start, end in spans]
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
