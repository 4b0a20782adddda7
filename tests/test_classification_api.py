"""The Classification tab's API through gradio_client: /classify (batched), /explain, /classify_batch."""

from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from ui.classification_tab import classify_requests


def classify_file(client, names, path, threshold=0.5, text_column=""):
    return client.predict(handle_file(str(path)), names["classification"], threshold, text_column, api_name="/classify_batch")


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
        if i == 5:  # alone in its batch: an AppError; batched with others: its own error verdict
            text = str(result) if isinstance(result, AppError) else result[1]
            assert "message: is empty" in text and (isinstance(result, AppError) or not result[0])
        else:
            label, verdict, details = result
            assert label["label"] in ("ham", "spam") and label["label"].upper() in verdict


def test_batched_requests_each_get_their_own_result_or_error(registry, names):
    name = names["classification"]
    scores, verdicts, details = classify_requests(
        registry, ["free prize", "", "hello", "hi"], [name, name, "no-such-model", name], [0.0, 0.5, 0.5, 1.0]
    )
    assert scores[0] and scores[3] and scores[1] is None and scores[2] is None
    assert verdicts[0].startswith("**SPAM**") and verdicts[3].startswith("**HAM**")  # thresholds 0 and 1
    assert verdicts[1] == "**Error** — message: is empty; enter the text of a message to classify"
    assert verdicts[2].startswith("**Error** — model: unknown classification model 'no-such-model'")


def test_a_batch_where_all_fail_alike_raises_the_message(registry, names):
    import gradio as gr

    with pytest.raises(gr.Error, match=r"threshold: must be a number in \[0, 1\]"):
        classify_requests(registry, ["a", "b"], [names["classification"]] * 2, [2.0, 2.0])


def test_explain_aligns_words_with_the_message(client, names):
    message = 'WIN a "free" prize:  call 0800 now'
    highlighted, note, _ = client.predict(message, names["classification"], api_name="/explain")
    assert "".join(item["token"] for item in highlighted) == message
    words = [item for item in highlighted if item["class_or_confidence"] is not None]
    assert [w["token"] for w in words] == message.split()
    assert max(abs(w["class_or_confidence"]) for w in words) == pytest.approx(1.0)  # scaled to the strongest
    assert "Towards spam most" in note or "No word pushed" in note


def test_explain_rejects_empty_text(client, names):
    with pytest.raises(AppError, match="message: is empty"):
        client.predict(" ", names["classification"], api_name="/explain")


def test_batch_file_with_labels(client, names, tmp_path):
    path = tmp_path / "labelled.csv"
    path.write_text('id,message,label\n1,"WIN a ""free"" prize, call now",spam\n2,see you at 7,ham\n3,ok,0\n')
    csv_path, table, summary, details = classify_file(client, names, path, threshold=0.0)
    result = pd.read_csv(csv_path)
    assert list(result.columns) == ["id", "message", "true_label", "label", "spam_score"]
    assert result["message"][0] == 'WIN a "free" prize, call now' and result["label"].tolist() == ["spam"] * 3
    assert table["headers"] == list(result.columns) and len(table["data"]) == 3
    assert "accuracy 0.333" in summary and "spam precision 0.333, recall 1.000" in summary
    assert "| **true ham** | 0 | 2 |" in summary and "| **true spam** | 0 | 1 |" in summary


def test_batch_tsv_and_txt_without_labels(client, names, tmp_path):
    tsv = tmp_path / "m.tsv"
    tsv.write_text('text\tsender\nHe said "hi\tBob\nWIN now\tX\n')
    csv_path, _, summary, _ = classify_file(client, names, tsv)
    result = pd.read_csv(csv_path)
    assert result["text"].tolist() == ['He said "hi', "WIN now"] and result["sender"].tolist() == ["Bob", "X"]
    assert "accuracy" not in summary and "**2 row(s)**" in summary
    txt = tmp_path / "m.txt"
    txt.write_text("first\n\nsecond\nthird\n")
    csv_path, _, _, _ = classify_file(client, names, txt)
    assert pd.read_csv(csv_path)["text"].tolist() == ["first", "second", "third"]


def test_batch_file_text_column_can_be_named(client, names, tmp_path):
    path = tmp_path / "named.csv"
    path.write_text("a,b\n1,hello there\n2,WIN cash\n")
    with pytest.raises(AppError, match="file: has no text column"):
        classify_file(client, names, path)
    csv_path, _, summary, _ = classify_file(client, names, path, text_column="b")
    assert len(pd.read_csv(csv_path)) == 2 and "text column `b`" in summary


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
