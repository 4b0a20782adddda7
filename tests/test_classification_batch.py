"""Batched classification of many messages and files, and the word-occlusion explanations."""

import math

import pandas as pd
import pytest

from pipelines.classification.explain import explain
from pipelines.classification.files import classify_file
from pipelines.core.errors import InputError


@pytest.fixture
def classifier(registry, names):
    return registry.get("classification", names["classification"])


def test_classify_many_matches_one_by_one_in_input_order(classifier):
    texts = ["short", "a much longer message about a free prize " * 3, "mid length text here", "x"] * 20
    progress = []
    many = classifier.classify_many(
        texts, 0.5, batch_size=8, on_progress=lambda done, total: progress.append((done, total))
    )
    assert len(many) == len(texts)
    for text, result in zip(texts[:4], many[:4]):
        single = classifier([text])[0]
        assert result["scores"]["spam"] == pytest.approx(single["scores"]["spam"], abs=1e-5)
        assert result["label"] == single["label"]
    assert progress[-1] == (80, 80) and len(progress) == 10


def test_one_threshold_per_message(classifier):
    low, high = classifier(["same text", "same text"], threshold=[0.0, 1.0])
    assert low["label"] == "spam" and high["label"] == "ham"
    assert low["scores"] == pytest.approx(high["scores"])
    with pytest.raises(InputError, match="threshold: got 1 thresholds for 2 messages"):
        classifier(["a", "b"], threshold=[0.5])


def test_file_with_labels_gets_predictions_and_metrics(classifier, tmp_path):
    path = tmp_path / "msgs.csv"
    path.write_text('id,text,label\n1,"WIN a ""free"" prize, now",spam\n2,see you at lunch,ham\n3,,ham\n4,call me,0\n')
    result = classify_file(classifier, path, threshold=0.5)
    frame = result["frame"]
    assert list(frame.columns) == ["id", "text", "true_label", "label", "spam_score"]
    assert frame["text"].tolist()[0] == 'WIN a "free" prize, now'
    assert frame["label"].tolist()[3] in ("ham", "spam") and frame["label"].tolist()[2] == ""
    assert math.isnan(frame["spam_score"].tolist()[2]) and 0 <= frame["spam_score"].tolist()[0] <= 1
    assert result["empty_rows"] == 1 and result["label_column"] == "label"
    metrics = result["metrics"]
    assert sum(map(sum, metrics["confusion_matrix"])) == 3  # the empty row is not scored
    assert metrics["support"] == {"ham": 2, "spam": 1}
    predicted = [int(label == "spam") for label in frame["label"].tolist()[:2] + frame["label"].tolist()[3:]]
    assert metrics["accuracy"] == pytest.approx(sum(p == y for p, y in zip(predicted, [1, 0, 0])) / 3)


def test_file_without_labels_has_no_metrics_and_roundtrips_as_csv(classifier, tmp_path):
    path = tmp_path / "msgs.txt"
    path.write_text("hello there\nWIN cash now\n")
    result = classify_file(classifier, path, threshold=0.0)
    assert result["metrics"] is None
    assert result["frame"]["label"].tolist() == ["spam", "spam"]  # threshold 0: everything is spam
    out = tmp_path / "out.csv"
    result["frame"].to_csv(out, index=False)
    assert list(pd.read_csv(out).columns) == ["text", "label", "spam_score"]


def test_long_messages_in_a_file_are_counted_as_truncated(classifier, tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("text\n" + "free prize " * 400 + "\nshort\n")
    assert classify_file(classifier, path)["truncated"] == 1


@pytest.mark.parametrize(
    "content,kwargs,message",
    [
        ("text\n\n   \n", {}, "has a header but no messages"),
        ("text,label\n ,ham\n", {}, "column 'text' has no text in any row"),
        ("text\na\nb\nc\n", {"max_rows": 2}, "has 3 messages; the limit is 2"),
        ("text\nhi\n", {"threshold": 2}, r"threshold: must be a number in \[0, 1\]"),
    ],
)
def test_bad_batch_requests(classifier, tmp_path, content, kwargs, message):
    path = tmp_path / "m.csv"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        classify_file(classifier, path, **kwargs)


def test_explanation_scores_every_word_in_place(classifier):
    text = "WIN a  FREE prize:\tcall 0800 now!"
    result = explain(classifier, text)
    words = result["words"]
    assert [w["text"] for w in words] == text.split()
    assert all(text[w["start"] : w["end"]] == w["text"] for w in words)
    assert "".join(piece for piece, _ in result["segments"]) == text
    assert [score for _, score in result["segments"] if score is not None] == [w["score"] for w in words]
    without_first = classifier([text[words[0]["end"] :]])[0]["scores"]["spam"]
    assert words[0]["score"] == pytest.approx(result["spam_score"] - without_first, abs=1e-5)
    assert result["spam_score"] == pytest.approx(classifier([text])[0]["scores"]["spam"], abs=1e-5)
    assert result["truncated"] is False


def test_explanation_of_a_long_message_covers_what_the_model_reads(classifier):
    text = " ".join(f"word{i}" for i in range(2000))
    result = explain(classifier, text, max_segments=16)
    assert result["truncated"] is True and len(result["words"]) <= 16
    assert "".join(piece for piece, _ in result["segments"]) == text
    assert result["words"][-1]["end"] < len(text) // 2  # the unread tail is not occluded


def test_explaining_nothing_is_an_input_error(classifier):
    with pytest.raises(InputError, match="message: is empty"):
        classifier.explain(" \n ")


def test_bfloat16_speedup_only_where_the_cpu_runs_it_natively(tiny_config):
    import torch

    from pipelines.classification.pipeline import choose_classifier_placement
    from pipelines.core.devices import cpu_has_native_bfloat16

    entry = tiny_config.classification[0]
    assert choose_classifier_placement(entry).dtype == torch.float32
    fast = entry.model_copy(update={"cpu_speedups": entry.cpu_speedups.model_copy(update={"bfloat16": True})})
    expected = torch.bfloat16 if cpu_has_native_bfloat16() else torch.float32
    assert choose_classifier_placement(fast).dtype == expected
    pinned = fast.model_copy(update={"dtype": "float32"})  # an explicit dtype wins
    assert choose_classifier_placement(pinned).dtype == torch.float32


def test_a_long_message_is_explained_in_fewer_runs_of_words_within_the_token_budget(classifier):
    """The explanation's cost is bounded: (runs + 1) variants of what the model reads stay within TOKEN_BUDGET."""
    from pipelines.classification.explain import MIN_SEGMENTS, TOKEN_BUDGET

    short = explain(classifier, "WIN a free prize now, call 0800 123 456 to claim it today")
    assert len(short["words"]) == 13  # a short message: one run per word
    long = explain(classifier, " ".join(f"word{i}" for i in range(10_000)))
    read = classifier.max_length
    assert len(long["words"]) >= MIN_SEGMENTS and (len(long["words"]) + 1) * read <= TOKEN_BUDGET + read
