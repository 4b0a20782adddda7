"""benchmarks.spam --cv on a tiny synthetic set with the tiny BERT: the rows the README quotes exist,
each scored on every fold, with its paired difference from the baseline (seconds)."""

import json
import random
import statistics

import pytest

from benchmarks import spam
from pipelines.tiny import build_classifier

SPAM = ["WIN a free prize now, call {}", "Free cash reward! Text WIN to {}", "URGENT: claim your bonus {} today"]
HAM = ["see you at lunch {}", "can you pick up some milk {}", "thanks for the lovely dinner {}"]


@pytest.fixture(scope="module")
def cv_result(tmp_path_factory):
    rng = random.Random(1)
    rows = ["label\ttext"] + [
        f"{label}\t" + rng.choice(pool).format(i) for i in range(30) for label, pool in (("spam", SPAM), ("ham", HAM))
    ]
    folder = tmp_path_factory.mktemp("cv")
    data = folder / "train.tsv"
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    base = build_classifier(folder / "base")
    out = folder / "cv.json"
    assert (
        spam.main(
            [
                "--data",
                str(data),
                "--cv",
                "3",
                "--seeds",
                "2",
                "--max-epochs",
                "1",
                "--fold-seed",
                "5",
                "--base-model",
                str(base),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    return json.loads(out.read_text())


def test_cross_validation_scores_every_row_on_every_fold(cv_result):
    rows = cv_result["rows"]
    assert cv_result["seeds"] == [42, 43] and cv_result["fold_seed"] == 5
    assert {
        "baseline: TF-IDF + linear SVM",
        "TF-IDF + logistic regression @0.5",
        "transformer alone, seed 42, 1 epochs @0.5",
        "transformer alone, mean of 2 seeds, 1 epochs @0.5",
        "blend chosen on the other folds (nested)",
    } <= set(rows)
    for name, row in rows.items():
        assert len(row["folds"]) == 3, name
        assert 0.0 <= row["mean"] <= 1.0, name
    assert rows["baseline: TF-IDF + linear SVM"]["minus_baseline"] == {"mean": 0.0, "std": 0.0}


def test_folds_never_share_a_text_and_cover_the_file(cv_result):
    tests = [set(fold["test"]) for fold in cv_result["folds"]]
    assert sum(len(t) for t in tests) == 60 and len(set().union(*tests)) == 60
    for fold in cv_result["folds"]:
        assert set(fold["transformer_by_seed"]) == {"42", "43"}
        assert len(fold["transformer_by_seed"]["42"]["1"]) == len(fold["test"])
        assert len(fold["transformer_soup"]) == len(fold["test"])  # the weight-averaged model scored too


def test_the_either_right_ceiling_misses_only_what_both_models_miss():
    labels = [1, 1, 1, 1, 0, 0, 0, 0]
    first = [1, 1, 0, 0, 0, 0, 1, 1]  # misses messages 2, 3, 6, 7
    second = [1, 0, 1, 0, 0, 1, 0, 1]  # misses 1, 3, 5, 7; both miss 3 (a spam) and 7 (a ham)
    # the oracle: 3 spam found, 1 missed, 1 false alarm -> precision 3/4, recall 3/4
    assert spam.either_right_f1(labels, first, second) == pytest.approx(0.75)
    assert spam.either_right_f1(labels, first, first) == pytest.approx(spam.f1(labels, first, 0.5))


def test_nearest_training_message_is_found_outside_the_held_out_part():
    from benchmarks.spam_misses import nearest_in_training

    texts = ["win a free prize now", "see you at lunch", "win a free prize today", "pick up some milk"]
    similarity, neighbour = nearest_in_training(texts, [2, 3])
    assert neighbour[0] == 0 and neighbour[1] in {0, 1}  # the prize template's copy; never another held-out message
    assert similarity[0] > 0.6 > similarity[1]


def test_shared_misses_are_listed_from_a_saved_cv_run(cv_result, tmp_path, capsys):
    from benchmarks import spam_misses

    saved = tmp_path / "cv.json"
    saved.write_text(json.dumps(cv_result), encoding="utf-8")
    with pytest.raises(SystemExit):  # the tiny run recorded 1 epoch, not the recipe's 3
        spam_misses.main(["--data", cv_result["data"], "--cv-result", str(saved)])
    assert "--epochs 3: the --cv run recorded epochs 1 to 1 only" in capsys.readouterr().err
    assert spam_misses.main(["--data", cv_result["data"], "--cv-result", str(saved), "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    held_out = sum(len(fold["test"]) for fold in cv_result["folds"])
    assert out.startswith("missed by both: ") and "held-out messages with a near-copy in training" in out
    assert int(out.split("near-copy in training (cosine >= 0.6): ")[1].split(",")[0]) <= held_out


def test_the_recipe_estimate_pools_every_partitions_folds_and_pairs_them_with_the_baseline():
    def saved(fold_seed, recipe, baseline):
        return {
            "k": 2,
            "fold_seed": fold_seed,
            "rows": {
                "baseline: TF-IDF + linear SVM": {"folds": baseline},
                "recipe blend, seed 42: 3 epochs, weight 0.3, threshold 0.5": {"folds": recipe},
            },
        }

    estimate = spam.recipe_estimate([saved(7, [0.9, 1.0], [0.8, 0.9]), saved(11, [0.8, 0.9], [0.8, 0.8])])
    assert estimate["folds"] == [0.9, 1.0, 0.8, 0.9]
    assert estimate["spam_f1_mean"] == pytest.approx(0.9)
    assert estimate["baseline_tfidf_svm_mean"] == pytest.approx(0.825)
    assert estimate["minus_baseline_mean"] == pytest.approx(0.075)
    assert "--fold-seed 7" in estimate["what"] and "--fold-seed 11" in estimate["what"]
    with pytest.raises(ValueError, match="no recipe row"):
        spam.recipe_estimate([{"data": "x.tsv", "rows": {"baseline: TF-IDF + linear SVM": {"folds": [0.9]}}}])


def test_the_shipped_recipe_estimate_is_what_the_benchmark_writes():
    from pipelines.classification import training

    estimate = json.loads(training.RECIPE_ESTIMATE_FILE.read_text(encoding="utf-8"))
    assert estimate["spam_f1_mean"] == pytest.approx(statistics.mean(estimate["folds"]), abs=1e-4)
    assert set(estimate) == set(
        spam.recipe_estimate(
            [
                {
                    "k": 2,
                    "fold_seed": 1,
                    "rows": {
                        "baseline: TF-IDF + linear SVM": {"folds": [0.9, 0.8]},
                        "recipe blend, seed 42": {"folds": [0.9, 1.0]},
                    },
                }
            ]
        )
    )
