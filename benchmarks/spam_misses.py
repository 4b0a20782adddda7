"""The messages both the recipe and the baseline miss, and whether a near-copy could have taught them.

    python -m benchmarks.spam_misses --data ../shared/data/sms_spam/train.tsv --cv-result /tmp/spam-cv.json

Reads what `python -m benchmarks.spam --cv K --out FILE` saved (each fold's held-out messages and
both models' predictions) and, for every held-out message, finds its nearest message in the
fold's training part by cosine similarity of character 3-5-gram TF-IDF vectors. If the shared
misses had near-copies in training, a nearest-neighbour override could fix them; if every message
that has a near-copy is already right, it cannot.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from benchmarks.spam import transformer
from pipelines.classification import training
from pipelines.classification.data import read_messages

NEAR_COPY = 0.6  # cosine at or above which two messages count as near-copies (a template with a changed name or number)


def nearest_in_training(texts: list[str], test: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """For each held-out message: its highest cosine to a training message, and that message's index."""
    # IDF from every message, held-out ones included: no label is read, and one vector space
    # makes the five folds' similarities comparable.
    vectors = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True).fit_transform(texts)
    train = np.setdiff1d(np.arange(len(texts)), test)
    similarity = (vectors[test] @ vectors[train].T).toarray()
    return similarity.max(axis=1), train[similarity.argmax(axis=1)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="the file the --cv run used")
    p.add_argument("--cv-result", required=True, help="the --out file of `python -m benchmarks.spam --cv K`")
    p.add_argument(
        "--epochs",
        type=int,
        default=training.EPOCHS,
        help=f"the transformer after this many epochs (default {training.EPOCHS}, the recipe's)",
    )
    args = p.parse_args(argv)
    texts = read_messages(args.data).texts
    result = json.loads(Path(args.cv_result).read_text(encoding="utf-8"))
    recipe = training.Recipe()
    epochs, seed = str(args.epochs), str(result["seeds"][0])
    if epochs not in result["folds"][0]["transformer_by_seed"][seed]:
        p.error(f"--epochs {epochs}: the --cv run recorded epochs 1 to {result['max_epochs']} only")
    shared, near_right, near_total = [], 0, 0
    for fold in result["folds"]:
        similarity, neighbour = nearest_in_training(texts, fold["test"])
        scores = training.blend(transformer(fold, epochs, [seed]), fold["tfidf"], recipe.transformer_weight)
        for k, (i, label, score, svm) in enumerate(
            zip(fold["test"], fold["labels"], scores, fold["baseline_predictions"])
        ):
            recipe_right = int(score >= recipe.threshold) == label
            if similarity[k] >= NEAR_COPY:
                near_total += 1
                near_right += recipe_right
            if not recipe_right and svm != label:
                shared.append((label, similarity[k], texts[i], texts[neighbour[k]]))
    closest = [sim for _, sim, _, _ in shared]
    print(
        f"missed by both: {len(shared)}"
        + (f"; their nearest training message: cosine {min(closest):.2f}-{max(closest):.2f}" if shared else "")
    )
    print(
        f"held-out messages with a near-copy in training (cosine >= {NEAR_COPY}): {near_total}, "
        f"{near_right} of them right by the recipe"
    )
    for label, sim, text, nearest in sorted(shared, key=lambda row: -row[1]):
        print(f"  labelled {'spam' if label else 'ham'}, cosine {sim:.2f}: {text[:90]!r}  nearest: {nearest[:50]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
