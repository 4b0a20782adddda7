"""Spam classifier benchmark: fine-tuned transformer vs a tuned TF-IDF baseline, and batch speed.

    flock /tmp/ml-heavy.lock python -m benchmarks.spam --data ../shared/data/sms_spam/train.tsv \\
        --model /tmp/spam-minilm --out /tmp/spam-bench.json

1. Splits the data exactly as `pipelines.train_classifier` did for the model (by unique text,
   with the validation fraction and seed from the model's metrics.json).
2. Baseline: word 1-2-gram + character 2-5-gram TF-IDF (fitted on the training part) into a
   linear SVM; C and class weights chosen by 5-fold cross-validation on the training part only
   (folds grouped by text, scored by spam F1), then scored once on the validation part.
3. Scores the fine-tuned model (--model) on the same validation part.
4. Speed, in the same run: --messages messages (default 5,000) through the batch path
   (`LocalClassifier.classify_many`: sorted by length, batches padded to their own longest)
   vs the single-message path (`LocalClassifier.__call__` once per message), in float32 and
   in bfloat16 (F1 measured for both); and the time of
   one word-occlusion explanation (`pipelines.explain`) for 100 validation messages.

Prints a table and writes everything as JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from pipelines import train_classifier
from pipelines.classification.data import classification_metrics, normalise, read_messages, split_by_unique_text

C_GRID = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0]  # LinearSVC regularisation strengths tried by cross-validation
CV_FOLDS = 5


def tfidf_features():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    return FeatureUnion([
        ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, lowercase=True)),
        ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2, lowercase=True)),
    ])


def train_baseline(texts: list[str], labels: list[int], seed: int):
    """TF-IDF fitted on the training part, then a linear SVM whose C and class weights are tuned
    by grouped, stratified CV on that part (the vocabulary uses no labels, so it is fitted once)."""
    from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    features = tfidf_features().fit(texts)
    search = GridSearchCV(
        LinearSVC(),
        {"C": C_GRID, "class_weight": [None, "balanced"]},
        scoring="f1",
        cv=StratifiedGroupKFold(n_splits=CV_FOLDS, shuffle=True, random_state=seed),
    )
    search.fit(features.transform(texts), labels, groups=[normalise(t) for t in texts])
    return make_pipeline(features, search.best_estimator_), search


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
        "batch_seconds": round(batch_s, 2),
        "single_seconds": round(single_s, 2),
        "batch_messages_per_s": round(len(messages) / batch_s, 1),
        "single_messages_per_s": round(len(messages) / single_s, 1),
        "speedup": round(single_s / batch_s, 2),
    }


def explanation_latency(classifier, messages: list[str]) -> dict:
    """Seconds per /explain-style occlusion explanation (one batched pass over the word variants)."""
    from pipelines.classification.explain import explain

    explain(classifier, messages[0])  # warm-up
    times = []
    for message in messages:
        started = time.perf_counter()
        explain(classifier, message)
        times.append(time.perf_counter() - started)
    times.sort()
    return {"messages": len(times), "median_s": round(times[len(times) // 2], 4), "max_s": round(times[-1], 4),
            "median_words": sorted(len(m.split()) for m in messages)[len(messages) // 2]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.spam", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="the labelled file the model was trained on")
    p.add_argument("--model", required=True, help="directory written by pipelines.train_classifier")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--messages", type=int, default=5000, help="messages for the speed comparison (default 5000)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import torch

    from pipelines.classification.pipeline import LocalClassifier
    from pipelines.classification.config import ClassificationEntry

    args = parse_args(argv)
    trained = json.loads((Path(args.model) / "metrics.json").read_text(encoding="utf-8"))
    fraction = trained.get("validation_fraction", train_classifier.VALIDATION_FRACTION)
    seed = trained.get("seed", train_classifier.SEED)

    # 1. The model's own split.
    table = read_messages(args.data)
    texts, labels = table.texts, table.labels
    train_ids, val_ids = split_by_unique_text(texts, labels, fraction, seed)
    val_texts, val_labels = [texts[i] for i in val_ids], [labels[i] for i in val_ids]

    # 2. Baseline, tuned on the training part only.
    started = time.perf_counter()
    model, search = train_baseline([texts[i] for i in train_ids], [labels[i] for i in train_ids], seed)
    baseline = classification_metrics(val_labels, model.predict(val_texts).tolist())
    baseline.update(params=search.best_params_, cv_spam_f1=round(search.best_score_, 4),
                    fit_seconds=round(time.perf_counter() - started, 1))

    # 3. The fine-tuned model on the same validation part.
    classifier = LocalClassifier.from_entry(ClassificationEntry(name="fine-tuned", source=str(args.model)))
    verdicts = classifier.classify_many(val_texts)
    fine_tuned = classification_metrics(val_labels, [int(v["label"] == "spam") for v in verdicts])

    # 4. Batch vs single-message speed on the same messages, in float32 and with the entry's
    # `cpu_speedups: {bfloat16: true}` (bfloat16 where the CPU has AMX/AVX512-BF16, else float32).
    messages = [texts[i % len(texts)] for i in range(args.messages)]
    speed = throughput(classifier, messages)
    explanations = explanation_latency(classifier, val_texts[:100])
    del classifier
    classifier_bf16 = LocalClassifier.from_entry(
        ClassificationEntry(name="fine-tuned bf16", source=str(args.model), cpu_speedups={"bfloat16": True})
    )
    verdicts = classifier_bf16.classify_many(val_texts)
    fine_tuned_bf16 = classification_metrics(val_labels, [int(v["label"] == "spam") for v in verdicts])
    speed_bf16 = throughput(classifier_bf16, messages)

    result = {
        "data": args.data, "model": args.model, "validation_messages": len(val_ids), "train_messages": len(train_ids),
        "split": {"validation_fraction": fraction, "seed": seed}, "torch_threads": torch.get_num_threads(),
        "baseline_tfidf_linear_svm": baseline, "fine_tuned": fine_tuned, "speed": speed,
        "explanations": explanations, "fine_tuned_bfloat16": fine_tuned_bf16, "speed_bfloat16": speed_bf16,
    }
    Path(args.out).write_text(json.dumps(result, indent=2), encoding="utf-8")

    print(f"validation split: {len(val_ids)} messages ({sum(val_labels)} spam), split seed {seed}")
    print(f"{'model':<34} {'accuracy':>9} {'spam P':>7} {'spam R':>7} {'spam F1':>8}")
    for name, m in (("TF-IDF + linear SVM (tuned C)", baseline), (f"fine-tuned {Path(args.model).name}", fine_tuned),
                    (f"fine-tuned {Path(args.model).name} bf16", fine_tuned_bf16)):
        print(f"{name:<34} {m['accuracy']:>9.4f} {m['spam_precision']:>7.4f} {m['spam_recall']:>7.4f} {m['spam_f1']:>8.4f}")
    print(f"baseline params {search.best_params_}, CV spam F1 {search.best_score_:.4f}")
    for dtype, sp in (("float32", speed), ("bfloat16", speed_bf16)):
        print(f"{sp['messages']} messages, {dtype}: batch {sp['batch_messages_per_s']} msg/s, single "
              f"{sp['single_messages_per_s']} msg/s -> {sp['speedup']}x")
    print(f"explanations: median {explanations['median_s']} s, max {explanations['max_s']} s "
          f"({explanations['messages']} validation messages, median {explanations['median_words']} words)")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
