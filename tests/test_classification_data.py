"""Message files: CSV/TSV/TXT parsing, labels, the leak-free split, and every bad file."""

import pytest

from pipelines.classification.data import (
    classification_metrics,
    normalise,
    parse_label,
    read_messages,
    split_by_unique_text,
)
from pipelines.core.errors import InputError


def write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def test_csv_with_quoted_fields_commas_and_quotes(tmp_path):
    path = write(tmp_path, "m.csv", 'id,Message,label\n1,"Hi, he said ""free"" twice",ham\n2,WIN now,spam\n')
    table = read_messages(path)
    assert table.text_column == "Message" and table.label_column == "label"
    assert table.texts == ['Hi, he said "free" twice', "WIN now"]
    assert table.labels == [0, 1]
    assert list(table.frame.columns) == ["id", "Message", "label"]


def test_tsv_keeps_quotes_and_extra_tabs_in_the_text(tmp_path):
    path = write(tmp_path, "m.tsv", 'label\ttext\nham\t"quoted" start and a " stray\nspam\tWIN\tprize\n')
    table = read_messages(path)
    assert table.texts == ['"quoted" start and a " stray', "WIN\tprize"]
    assert table.labels == [0, 1]


def test_txt_one_message_per_line_or_labelled_lines(tmp_path):
    plain = read_messages(write(tmp_path, "a.txt", "first message\n\nsecond, with comma\n"))
    assert plain.texts == ["first message", "second, with comma"] and plain.labels is None
    labelled = read_messages(write(tmp_path, "b.txt", "ham\tsee you\nspam\tWIN cash\n"))
    assert labelled.texts == ["see you", "WIN cash"] and labelled.labels == [0, 1]


def test_named_columns_and_a_single_unnamed_column(tmp_path):
    path = write(tmp_path, "m.csv", "y,body_text\n1,hello\n0,bye\n")
    table = read_messages(path, text_column="body_text", label_column="y")
    assert table.texts == ["hello", "bye"] and table.labels == [1, 0]
    only = read_messages(write(tmp_path, "one.csv", "whatever\nhello\n"))
    assert only.text_column == "whatever" and only.labels is None


def test_utf8_bom_is_not_part_of_the_header(tmp_path):
    table = read_messages(write(tmp_path, "bom.csv", "\ufefftext\nhé\n"))
    assert table.text_column == "text" and table.texts == ["hé"]


@pytest.mark.parametrize("value,expected", [("ham", 0), (" SPAM ", 1), ("0", 0), ("1", 1)])
def test_labels_ham_spam_or_0_1(value, expected):
    assert parse_label(value) == expected


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("m.pdf", "x", r"has type '\.pdf'; upload a \.csv, \.tsv, \.txt file"),
        ("m", "x", r"has type '\(none\)'"),
        ("m.csv", "", "is empty"),
        ("m.csv", "   \n\n", "is empty"),
        ("m.csv", "text,label\n", "has a header but no messages"),
        ("m.csv", b"text\nbad \xff byte\n", r"not UTF-8 text \(byte 0xff at position 9\)"),
        ("m.csv", "id,number\n1,2\n", "has no text column"),
        ("m.csv", "text,label\nhi,maybe\n", r"label: row 1: 'maybe' is not a label; use ham/spam or 0/1"),
        ("m.tsv", "label\ttext\nham\n", "line 2 has 1 tab-separated fields; the header has 2"),
        ("m.csv", 'text\n"never closed\n', "is not a valid CSV file"),
    ],
)
def test_bad_files_name_the_problem(tmp_path, name, content, message):
    with pytest.raises(InputError, match=message):
        read_messages(write(tmp_path, name, content))


def test_row_limit(tmp_path):
    path = write(tmp_path, "m.txt", "\n".join(f"message {i}" for i in range(11)))
    assert len(read_messages(path, max_rows=11).texts) == 11
    with pytest.raises(InputError, match="has 11 messages; the limit is 10 per file"):
        read_messages(path, max_rows=10)


def test_unknown_column_names_the_columns(tmp_path):
    with pytest.raises(InputError, match=r"text_column: 'msg' is not a column of the file; its columns are \['text'\]"):
        read_messages(write(tmp_path, "m.csv", "text\nhi\n"), text_column="msg")


def test_split_keeps_every_copy_of_a_text_on_one_side_and_the_spam_ratio():
    texts, labels = [], []
    for i in range(200):
        copies = 1 + i % 3
        texts += [f"Message number {i}"] * copies + [f"  message NUMBER {i} "]  # same text, other case/spacing
        labels += [int(i % 5 == 0)] * (copies + 1)
    train, val = split_by_unique_text(texts, labels, validation_fraction=0.2, seed=1)
    assert sorted(train + val) == list(range(len(texts)))
    assert not {normalise(texts[i]) for i in train} & {normalise(texts[i]) for i in val}
    val_keys = {normalise(texts[i]) for i in val}
    assert len(val_keys) == 40  # 20% of the 200 unique texts
    assert sum(labels[i] for i in val) / len(val) == pytest.approx(sum(labels) / len(labels), abs=0.05)
    assert split_by_unique_text(texts, labels, 0.2, seed=1) == (train, val)  # seeded
    assert split_by_unique_text(texts, labels, 0.2, seed=2) != (train, val)


def test_metrics_count_spam_as_the_positive_class():
    metrics = classification_metrics([0, 0, 1, 1, 1], [0, 1, 1, 1, 0])
    assert metrics["confusion_matrix"] == [[1, 1], [1, 2]]
    assert metrics["accuracy"] == pytest.approx(0.6)
    assert metrics["spam_precision"] == pytest.approx(2 / 3) and metrics["spam_recall"] == pytest.approx(2 / 3)
    assert metrics["spam_f1"] == pytest.approx(2 / 3)
