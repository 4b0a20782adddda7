"""Fine-tuning end to end on a tiny synthetic set with the tiny BERT (seconds)."""

import json
import random

import pytest
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from pipelines.classification.config import ClassificationEntry
from pipelines.classification.data import classification_metrics, normalise, read_messages, split_by_unique_text
from pipelines.classification.pipeline import LocalClassifier
from pipelines.tiny import build_classifier
from pipelines.train_classifier import main

SPAM = ["WIN a free prize now, call {}", "Free cash reward! Text WIN to {}", "URGENT: claim your bonus {} today"]
HAM = ["see you at lunch {}", "can you pick up some milk {}", "thanks for the lovely dinner {}"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A TSV like the SMS collection: unquoted text with `"` in it, and duplicated messages."""
    rng = random.Random(0)
    rows = ["label\ttext"]
    for i in range(40):
        rows.append("spam\t" + rng.choice(SPAM).format(i))
        rows.append("ham\t" + rng.choice(HAM).format(i))
    rows += ['ham\tHe said "ok" and left'] * 3 + ["spam\tWIN WIN WIN"] * 3
    path = tmp_path_factory.mktemp("data") / "train.tsv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_training_writes_a_model_the_app_serves(dataset, tmp_path, capsys):
    base = build_classifier(tmp_path / "base")
    out = tmp_path / "trained"
    code = main(
        [
            "--data",
            str(dataset),
            "--base-model",
            str(base),
            "--output",
            str(out),
            "--validation-fraction",
            "0.15",
            "--epochs",
            "4",
            "--patience",
            "4",
            "--batch-size",
            "8",
            "--learning-rate",
            "5e-3",
            "--transformer-weight",
            "1",
            "--threshold",
            "0.5",
        ]
    )  # the transformer alone, as Trainer scores it
    assert code == 0
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.id2label == {0: "ham", 1: "spam"}
    assert AutoTokenizer.from_pretrained(out)("free prize")["input_ids"]

    metrics = json.loads((out / "metrics.json").read_text())
    assert {"accuracy", "spam_precision", "spam_recall", "spam_f1", "confusion_matrix"} <= set(metrics)
    table = read_messages(dataset)
    _, val = split_by_unique_text(table.texts, table.labels, metrics["validation_fraction"], metrics["seed"])
    assert sum(map(sum, metrics["confusion_matrix"])) == len(val) == metrics["validation_messages"]
    assert metrics["epochs_run"] <= 4
    (true_ham, _), (_, true_spam) = metrics["confusion_matrix"]
    assert true_ham > 0 and true_spam > 0  # it learned to tell them apart (so a mixed-up order would show)
    assert metrics["eval_history"] and metrics["train_seconds"] > 0
    assert "source: " in capsys.readouterr().out

    served = LocalClassifier.from_entry(ClassificationEntry(name="trained", source=str(out)))
    result = served(["WIN a free prize"])[0]
    assert result["label"] in ("ham", "spam") and sum(result["scores"].values()) == pytest.approx(1.0)
    # metrics.json describes the saved model: scoring the validation split again gives the same matrix
    verdicts = served.classify_many([table.texts[i] for i in val])
    rescored = classification_metrics([table.labels[i] for i in val], [int(v["label"] == "spam") for v in verdicts])
    assert rescored["confusion_matrix"] == metrics["confusion_matrix"]
    assert metrics["spam_f1"] == pytest.approx(max(h["spam_f1"] for h in metrics["eval_history"]), abs=1e-4)


def test_duplicates_never_straddle_the_split(dataset):
    table = read_messages(dataset)
    train, val = split_by_unique_text(table.texts, table.labels, 0.15, 42)
    assert not {normalise(table.texts[i]) for i in train} & {normalise(table.texts[i]) for i in val}


def test_csv_with_named_columns_and_numeric_labels(tmp_path):
    rows = (
        ["msg,is_spam"]
        + [f'"{t.format(i)}",1' for i in range(10) for t in SPAM[:1]]
        + [f'"{t.format(i)}, ok",0' for i in range(10) for t in HAM[:1]]
    )
    data = tmp_path / "d.csv"
    data.write_text("\n".join(rows) + "\n")
    base = build_classifier(tmp_path / "base")
    code = main(
        [
            "--data",
            str(data),
            "--base-model",
            str(base),
            "--output",
            str(tmp_path / "o"),
            "--text-column",
            "msg",
            "--label-column",
            "is_spam",
            "--epochs",
            "1",
            "--validation-fraction",
            "0.15",
        ]
    )
    assert code == 0
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["train_messages"] == 17


def test_bad_data_is_reported_not_raised(tmp_path, capsys):
    data = tmp_path / "d.csv"
    data.write_text("text,label\nhello,maybe\n")
    assert main(["--data", str(data), "--base-model", "unused", "--output", str(tmp_path / "o")]) == 2
    assert "row 1: 'maybe' is not a label" in capsys.readouterr().err


def test_the_default_recipe_blends_tfidf_and_the_app_serves_its_threshold(dataset, tmp_path):
    """Trained on every message (no split), blended with TF-IDF; the folder carries the blend and
    the threshold, and the app applies both without a word in models.yaml."""
    import numpy as np

    from pipelines.classification.tfidf import TfidfScorer
    from pipelines.classification.training import SERVING_FILE, transformer_spam_probabilities
    from pipelines.studio import parse_config

    base = build_classifier(tmp_path / "base")
    out = tmp_path / "blended"
    assert (
        main(
            [
                "--data",
                str(dataset),
                "--base-model",
                str(base),
                "--output",
                str(out),
                "--epochs",
                "2",
                "--batch-size",
                "8",
                "--transformer-weight",
                "0.4",
                "--threshold",
                "0.35",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_messages"] == len(read_messages(dataset).texts) and "spam_f1" not in metrics  # no split
    assert "not this model's own score" in metrics["cross_validated_estimate"]["what"]
    serving = json.loads((out / SERVING_FILE).read_text())
    assert serving["threshold"] == 0.35 and serving["blend"]["transformer_weight"] == 0.4

    entry = parse_config(
        {
            "classification": [{"name": "blended", "source": str(out)}],
            "text": [{"name": "t", "source": "t"}],
            "image": [{"name": "i", "source": "i"}],
        }
    ).classification[0]
    assert entry.defaults.threshold == 0.35  # the model's own threshold is the default
    served = LocalClassifier.from_entry(entry)
    assert "+TF-IDF (60%)" in served.placement
    texts = ["WIN a free prize now, call 0800", "see you at lunch tomorrow"]
    results = served(texts)
    transformer = transformer_spam_probabilities(served.model, served.tokenizer, texts, served.max_length)
    tfidf = TfidfScorer.load(out).spam_probabilities(texts)
    expected = 0.4 * np.asarray(transformer) + 0.6 * tfidf
    assert [r["scores"]["spam"] for r in results] == pytest.approx(expected.tolist(), abs=1e-5)
    assert [r["label"] for r in results] == ["spam" if p >= 0.35 else "ham" for p in expected]
    assert all(r["threshold"] == 0.35 for r in results)


def test_every_epoch_is_scored_as_the_blend_it_would_be_saved_as(dataset, tmp_path):
    """The per-epoch validation scores (the Train tab's chart, the notebook's plot) measure the
    saved model, the blend at its threshold: the best epoch's are the final metrics. The
    transformer half, barely trained here, is scored alone beside them."""
    base = build_classifier(tmp_path / "base")
    out = tmp_path / "blended-validated"
    args = ["--data", str(dataset), "--base-model", str(base), "--output", str(out), "--batch-size", "8"]
    args += ["--validation-fraction", "0.25", "--epochs", "2", "--patience", "2", "--learning-rate", "1e-6"]
    args += ["--transformer-weight", "0.4", "--threshold", "0.35"]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    history = metrics["eval_history"]
    assert [h["epoch"] for h in history] == [1.0, 2.0]
    best = max(history, key=lambda h: h["spam_f1"])  # the first of equals, as training keeps it
    assert metrics["best_epoch"] == best["epoch"]
    assert (best["spam_f1"], best["accuracy"]) == pytest.approx((metrics["spam_f1"], metrics["accuracy"]), abs=1e-4)
    assert metrics["spam_f1"] > 0.9  # TF-IDF carries this easy set ...
    assert all(h["transformer_spam_f1"] < h["spam_f1"] for h in history)  # ... which the transformer alone does not


def test_epoch_scores_refuse_messages_evaluated_out_of_order():
    from types import SimpleNamespace

    import numpy as np

    from pipelines.classification.training import Recipe, _metrics_in_order

    compute = _metrics_in_order([0, 1], [0.1, 0.9], Recipe(transformer_weight=0.5, threshold=0.5))
    logits = np.array([[2.0, -2.0], [-2.0, 2.0]])
    scores = compute(SimpleNamespace(predictions=logits, label_ids=np.array([0, 1])))
    assert scores["spam_f1"] == scores["transformer_spam_f1"] == 1.0
    with pytest.raises(RuntimeError, match="out of order"):
        compute(SimpleNamespace(predictions=logits[::-1], label_ids=np.array([1, 0])))
