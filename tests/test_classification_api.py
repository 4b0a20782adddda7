"""The Classification tab's API through gradio_client: /classify (batched), /explain, /classify_batch."""

from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from ui.classification_tab import classify, explain_message
from ui.handlers import TabState, bind


def classify_file(client, names, path, threshold=0.5, text_column=""):
    return client.predict(
        handle_file(str(path)), names["classification"], threshold, text_column, api_name="/classify_batch"
    )


def test_classify_is_batched_with_the_configured_size(tiny_config):
    import app as app_module

    demo = app_module.build_app(tiny_config)
    (fn,) = [f for f in demo.fns.values() if f.api_name == "classify"]
    assert fn.batch and fn.max_batch_size == tiny_config.settings.classification_max_batch_size == 32
    assert fn.concurrency_id == "classification"


def test_concurrent_requests_share_batches_and_a_bad_one_fails_alone(app_url, names):
    messages = [f"message number {i}, call me" for i in range(12)]
    messages[5] = "   "

    def send(message):
        try:
            return Client(app_url, verbose=False).predict(message, names["classification"], 0.5, api_name="/classify")
        except AppError as err:
            return err

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(send, messages))
    for i, result in enumerate(results):
        if i == 5:  # alone in its batch: an AppError; batched with others: its own error as its result
            error = str(result) if isinstance(result, AppError) else result[2]["error"]
            assert error.startswith("message: is empty") and (isinstance(result, AppError) or not result[0])
        else:
            label, _verdict, details = result
            assert details["label"] == label["label"] in ("ham", "spam") and details["model"] == names["classification"]


@pytest.fixture(scope="module")
def batched_classify(tiny_config, registry):
    """/classify's handler as the app binds it (the request layer's checks included), called with a batch."""
    return bind(classify, TabState(tiny_config, registry, "classification"))


def test_batched_requests_each_get_their_own_result_or_error(batched_classify, names):
    name = names["classification"]
    scores, _verdicts, details = batched_classify(
        ["free prize", "", "hello", "hi", "x" * 10**6],
        [name, name, "no-such-model", name, name],
        [0.0, 0.5, 0.5, 1.0, 0.5],
    )
    assert scores[0] and scores[3] and scores[1] is None and scores[2] is None and scores[4] is None
    assert (details[0]["label"], details[3]["label"]) == ("spam", "ham")  # thresholds 0 and 1
    assert details[0]["scores"] == scores[0] and details[0]["model"] == name
    assert details[1] == {"error": "message: is empty; enter the text of a message to classify"}
    assert details[2]["error"].startswith("model: unknown classification model 'no-such-model'")
    assert details[4]["error"].startswith(
        "message: is 1,000,000 characters; the limit is"
    )  # the request layer's text limit


def test_a_batch_where_all_fail_alike_raises_the_message(batched_classify, names):
    import gradio as gr

    with pytest.raises(gr.Error, match=r"threshold: must be a number in \[0, 1\]"):
        batched_classify(["a", "b"], [names["classification"]] * 2, [2.0, 2.0])


def test_explain_aligns_words_with_the_message(client, names):
    message = 'WIN a "free" prize:  call 0800 now'
    highlighted, note, explanation = client.predict(message, names["classification"], api_name="/explain")
    assert "".join(item["token"] for item in highlighted) == message
    words = [item for item in highlighted if item["class_or_confidence"] is not None]
    assert [w["token"] for w in words] == message.split()
    assert max(abs(w["class_or_confidence"]) for w in words) == pytest.approx(1.0)  # scaled to the strongest
    strongest = max(explanation["words"], key=lambda w: w["score"])
    assert [w["text"] for w in explanation["words"]] == message.split()
    towards_spam, towards_ham = note.split("<br>")[:2]
    assert (f"`{strongest['text']}`" in towards_spam) == (strongest["score"] > 0)  # the word pushing most
    weakest = min(explanation["words"], key=lambda w: w["score"])
    assert (f"`{weakest['text']}`" in towards_ham) == (weakest["score"] < 0)


class FixedExplanations:
    """A registry whose every classifier explains any message with the same word scores."""

    def __init__(self, scores: dict[str, float]):
        self.scores = scores

    def get(self, task, name):
        return self

    def explain(self, message):
        words, start = [], 0
        for text, score in self.scores.items():
            start = message.index(text, start)
            words.append({"text": text, "start": start, "end": start + len(text), "score": score})
            start += len(text)
        segments = [(w["text"], w["score"]) for w in words]
        return {"spam_score": 0.99998, "words": words, "segments": segments, "truncated": False}


def explain_with(tiny_config, scores: dict[str, float]) -> str:
    tab = TabState(tiny_config, FixedExplanations(scores), "classification")
    message = " ".join(scores)
    _highlighted, note, _details = bind(explain_message, tab)(message, "any")
    return note


def test_the_explanation_lists_the_words_pushing_each_way_with_meaningful_figures(tiny_config):
    # A confident model: removing any one word moves its spam score by far less than 0.001.
    scores = {"WINNER!!": 1.3512e-5, "won": 4.29e-6, "see": 0.0, "dinner": -2.214e-6, "tonight": -0.0123}
    towards_spam, towards_ham = explain_with(tiny_config, scores).split("<br>")
    assert towards_spam == "Towards spam most: `WINNER!!` (+1.35e-05), `won` (+4.29e-06)"
    assert towards_ham == "Towards ham most: `tonight` (-0.0123), `dinner` (-2.21e-06)"  # strongest first


def test_the_explanation_says_when_no_word_pushes_one_way(tiny_config):
    note = explain_with(tiny_config, {"free": 0.25, "prize": 0.125})
    assert note.split("<br>") == [
        "Towards spam most: `free` (+0.25), `prize` (+0.125)",
        "No word pushed this message towards ham.",
    ]


def test_explain_rejects_empty_text(client, names):
    with pytest.raises(AppError, match="message: is empty"):
        client.predict(" ", names["classification"], api_name="/explain")


def test_batch_file_with_labels(client, names, tmp_path):
    path = tmp_path / "labelled.csv"
    path.write_text('id,message,label\n1,"WIN a ""free"" prize, call now",spam\n2,see you at 7,ham\n3,ok,0\n')
    csv_path, table, _summary, details = classify_file(client, names, path, threshold=0.0)
    result = pd.read_csv(csv_path)
    assert list(result.columns) == ["id", "message", "true_label", "label", "spam_score"]
    assert result["message"][0] == 'WIN a "free" prize, call now' and result["label"].tolist() == ["spam"] * 3
    # the table shows the verdict first, then the message, the file's label and its other columns
    assert table["headers"] == ["label", "spam_score", "message", "true_label", "id"] and len(table["data"]) == 3
    shown = pd.DataFrame(table["data"], columns=table["headers"])
    assert shown[list(result.columns)].astype(str).values.tolist() == result.astype(str).values.tolist()
    metrics = details["metrics"]
    assert (details["rows"], details["label_column"], details["counts"]) == (3, "label", {"ham": 0, "spam": 3})
    assert metrics["accuracy"] == pytest.approx(1 / 3) and metrics["spam_precision"] == pytest.approx(1 / 3)
    assert metrics["spam_recall"] == 1 and metrics["confusion_matrix"] == [[0, 2], [0, 1]]


def test_batch_tsv_and_txt_without_labels(client, names, tmp_path):
    tsv = tmp_path / "m.tsv"
    tsv.write_text('text\tsender\nHe said "hi\tBob\nWIN now\tX\n')
    csv_path, _, _, details = classify_file(client, names, tsv)
    result = pd.read_csv(csv_path)
    assert result["text"].tolist() == ['He said "hi', "WIN now"] and result["sender"].tolist() == ["Bob", "X"]
    assert details["metrics"] is None and details["rows"] == 2
    txt = tmp_path / "m.txt"
    txt.write_text("first\n\nsecond\nthird\n")
    csv_path, _, _, _ = classify_file(client, names, txt)
    assert pd.read_csv(csv_path)["text"].tolist() == ["first", "second", "third"]


def test_batch_file_text_column_can_be_named(client, names, tmp_path):
    path = tmp_path / "named.csv"
    path.write_text("a,b\n1,hello there\n2,WIN cash\n")
    with pytest.raises(AppError, match="file: has no text column"):
        classify_file(client, names, path)
    csv_path, _, _, details = classify_file(client, names, path, text_column="b")
    assert len(pd.read_csv(csv_path)) == 2 and details["text_column"] == "b"


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("bad.csv", b"message\nhello \xff\xfe\n", r"^file: is not UTF-8 text"),
        ("empty.csv", b"", r"^file: 'empty.*\.csv' is empty"),
        ("header.csv", b"text,label\n", "has a header but no messages"),
        ("nums.csv", b"id,n\n1,2\n", "^file: has no text column"),
        ("labels.csv", b"text,label\nhi,perhaps\n", r"^label: row 1: 'perhaps' is not a label"),
        ("photo.png", b"\x89PNG\r\n", r"Invalid file type.*\.csv"),
    ],
)
def test_bad_batch_files_name_the_problem(client, names, tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AppError, match=message):
        classify_file(client, names, path)


def test_batch_file_over_the_row_limit(client, names, tiny_config, tmp_path):
    limit = tiny_config.settings.classification_max_file_rows
    path = tmp_path / "big.txt"
    path.write_text("\n".join(f"message {i}" for i in range(limit + 1)))
    with pytest.raises(AppError, match=f"has {limit + 1:,} messages; the limit is {limit:,} per file"):
        classify_file(client, names, path)


def test_no_file_is_a_clear_error(client, names):
    with pytest.raises(AppError, match="file: no file was uploaded"):
        client.predict(None, names["classification"], 0.5, "", api_name="/classify_batch")
