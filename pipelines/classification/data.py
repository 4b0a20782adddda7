"""Message files for the spam classifier: reading CSV/TSV/TXT, labels, a leak-free split.

Shared by training (`training.py`), the Batch part of the Classification tab (`files.py`) and
`benchmarks/spam.py`, so that all three read a file the same way and score the same split.

- `.csv`: comma-separated with a header; fields may be quoted ("..."), as spreadsheets write them.
- `.tsv`: tab-separated with a header; fields are NOT quoted (a `"` is part of the text, as in the
  SMS Spam Collection); a line with more tabs than the header keeps the extra tabs in its last field.
- `.txt`: one message per line, no header; or `label<TAB>text` lines (the original collection's
  format) when every line starts with a ham/spam label and a tab.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipelines.core.errors import InputError
from pipelines.core.files import read_regular_file

FILE_TYPES = (".csv", ".tsv", ".txt")
# Column names tried, in order, when the caller does not name the text / label column.
TEXT_COLUMN_NAMES = ("text", "message", "sms", "body", "content", "v2")
LABEL_COLUMN_NAMES = ("label", "labels", "class", "category", "target", "v1")
LABEL_VALUES = {"ham": 0, "spam": 1, "0": 0, "1": 1}


@dataclass
class MessageTable:
    """A file's rows as strings, and which column holds the text (and the labels, if any)."""

    frame: pd.DataFrame  # every original column, as str
    text_column: str
    label_column: str | None = None
    sha256: str = ""  # of the file's bytes as read (the embedding map's cache key)

    @property
    def texts(self) -> list[str]:
        return self.frame[self.text_column].tolist()

    @property
    def labels(self) -> list[int] | None:
        """0 (ham) / 1 (spam) per row, or None when the file has no label column."""
        if self.label_column is None:
            return None
        return [
            parse_label(v, row=i + 1, column=self.label_column) for i, v in enumerate(self.frame[self.label_column])
        ]


def parse_label(value: object, row: int | None = None, column: str = "label") -> int:
    """'ham'/'spam' or '0'/'1' (any case, surrounding spaces ignored) -> 0/1."""
    key = str(value).strip().lower()
    if key not in LABEL_VALUES:
        where = f"row {row}: " if row is not None else ""
        raise InputError(column, f"{where}{value!r} is not a label; use ham/spam or 0/1")
    return LABEL_VALUES[key]


def decode_utf8(data: bytes, name: str = "file") -> str:
    try:
        return data.decode("utf-8-sig")  # -sig: spreadsheets often start UTF-8 files with a BOM
    except UnicodeDecodeError as err:
        raise InputError(
            name, f"is not UTF-8 text (byte 0x{data[err.start]:02x} at position {err.start}); save it as UTF-8"
        ) from None


def _read_csv(text: str) -> pd.DataFrame:
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skip_blank_lines=True)
    except (pd.errors.ParserError, csv.Error) as err:
        raise InputError("file", f"is not a valid CSV file: {err}") from None


def _read_tsv(text: str) -> pd.DataFrame:
    lines = [line for line in text.splitlines() if line.strip()]
    header = lines[0].split("\t")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t", len(header) - 1)  # extra tabs stay in the last field (the text)
        if len(fields) < len(header):
            raise InputError(
                "file", f"line {number} has {len(fields)} tab-separated fields; the header has {len(header)}"
            )
        rows.append(fields)
    return pd.DataFrame(rows, columns=header, dtype=str)


LABELLED_LINE = re.compile(r"^(ham|spam|0|1)\t", re.IGNORECASE)


def _read_txt(text: str) -> pd.DataFrame:
    lines = [line for line in text.splitlines() if line.strip()]
    if lines and all(LABELLED_LINE.match(line) for line in lines):
        return pd.DataFrame([line.split("\t", 1) for line in lines], columns=["label", "text"], dtype=str)
    return pd.DataFrame({"text": lines}, dtype=str)


READERS = {".csv": _read_csv, ".tsv": _read_tsv, ".txt": _read_txt}


def _find_column(frame: pd.DataFrame, wanted: str | None, candidates: tuple[str, ...], what: str) -> str | None:
    columns = [str(c) for c in frame.columns]
    if wanted:
        if wanted not in columns:
            raise InputError(f"{what}_column", f"{wanted!r} is not a column of the file; its columns are {columns}")
        return wanted
    by_lower = {c.strip().lower(): c for c in columns}
    for name in candidates:
        if name in by_lower:
            return by_lower[name]
    return None


def read_messages(
    path: str | Path,
    text_column: str | None = None,
    label_column: str | None = None,
    max_rows: int | None = None,
    max_bytes: int | None = None,
) -> MessageTable:
    """Read a .csv/.tsv/.txt message file; every problem raises InputError naming it.

    Without `text_column` the text is the first column called text/message/sms/... (any case),
    or the only column; the label column is found the same way and is optional.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in READERS:
        raise InputError(
            "file", f"{path.name!r} has type {suffix or '(none)'!r}; upload a {', '.join(FILE_TYPES)} file"
        )
    # Regular files only, their size checked before the read (a FIFO or /dev/zero never ends)
    data = read_regular_file(path, "file", max_bytes, "settings.max_upload_mb")
    text = decode_utf8(data)
    if not text.strip():
        raise InputError("file", f"{path.name!r} is empty")
    frame = READERS[suffix](text)
    frame.columns = [str(c) for c in frame.columns]
    if frame.empty:
        raise InputError("file", f"{path.name!r} has a header but no messages")
    if max_rows is not None and len(frame) > max_rows:
        raise InputError("file", f"{path.name!r} has {len(frame):,} messages; the limit is {max_rows:,} per file")

    found_text = _find_column(frame, text_column, TEXT_COLUMN_NAMES, "text")
    found_label = _find_column(frame, label_column, LABEL_COLUMN_NAMES, "label")
    if found_text is None:
        others = [c for c in frame.columns if c != found_label]
        if len(others) != 1:
            raise InputError(
                "file",
                f"has no text column: name one of {list(TEXT_COLUMN_NAMES)} or choose it; its columns are {list(frame.columns)}",
            )
        found_text = others[0]
    table = MessageTable(frame, found_text, found_label, hashlib.sha256(data).hexdigest())
    table.labels  # noqa: B018 - check every label now, so a bad one is reported before any work
    return table


# -- a validation split without leaks -----------------------------------------------------------
def normalise(text: str) -> str:
    """The key under which two messages count as the same text (case and spacing ignored)."""
    return " ".join(text.split()).casefold()


def split_by_unique_text(
    texts: list[str], labels: list[int], validation_fraction: float = 0.15, seed: int = 42
) -> tuple[list[int], list[int]]:
    """Row indices (train, validation): every copy of a text lands on the same side.

    Stratified by label over the unique texts, so both sides keep the spam ratio.
    """
    from sklearn.model_selection import train_test_split

    groups: dict[str, list[int]] = {}
    for index, text in enumerate(texts):
        groups.setdefault(normalise(text), []).append(index)
    keys = list(groups)
    # A text labelled both ways (rare) is stratified by its first label; all copies stay together.
    key_labels = [labels[groups[k][0]] for k in keys]
    train_keys, val_keys = train_test_split(keys, test_size=validation_fraction, random_state=seed, stratify=key_labels)
    train = sorted(i for k in train_keys for i in groups[k])
    val = sorted(i for k in val_keys for i in groups[k])
    return train, val


def classification_metrics(labels: list[int], predictions: list[int]) -> dict:
    """Accuracy, spam precision/recall/F1 and the confusion matrix (rows: true ham, spam)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predictions, labels=[1], average=None, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "spam_precision": float(precision[0]),
        "spam_recall": float(recall[0]),
        "spam_f1": float(f1[0]),
        "confusion_matrix": confusion_matrix(labels, predictions, labels=[0, 1]).tolist(),
        "support": {"ham": int(sum(1 for y in labels if y == 0)), "spam": int(sum(1 for y in labels if y == 1))},
    }


# -- checks before training -----------------------------------------------------------------------
# Fewer distinct messages of a class than this and a model neither learns it nor can be measured
# on it (a 15% validation share of 10 messages holds one or two of them). models.yaml
# `training: min_messages_per_class` and the CLI's --min-messages-per-class change it.
MIN_MESSAGES_PER_CLASS = 10


def check_cell_sizes(texts: list[str], max_cell_chars: int | None) -> None:
    """Refuse a file with a message longer than settings.max_file_cell_chars (before any work)."""
    if max_cell_chars is None:
        return
    for row, text in enumerate(texts, start=1):
        if len(text) > max_cell_chars:
            raise InputError(
                "file",
                f"row {row}'s message is {len(text):,} characters; the limit is "
                f"{max_cell_chars:,} per message in a file (settings.max_file_cell_chars)",
            )


def check_training_data(table: MessageTable, min_per_class: int = MIN_MESSAGES_PER_CLASS) -> dict:
    """Refuse a file that training cannot learn from, naming what is wrong; returns its counts:
    messages, ham, spam, and distinct texts of each class."""
    if table.label_column is None:
        raise InputError(
            "label_column",
            f"the file has no label column: name one of {list(LABEL_COLUMN_NAMES)} "
            f"(values ham/spam or 0/1), or choose it; its columns are {list(table.frame.columns)}",
        )
    texts, labels = table.texts, table.labels
    for row, text in enumerate(texts, start=1):
        if not text.strip():
            raise InputError(
                "file", f"row {row} has no text in column {table.text_column!r}; fill it in or remove the row"
            )
    distinct: dict[int, set[str]] = {0: set(), 1: set()}
    for text, label in zip(texts, labels):
        distinct[label].add(normalise(text))
    if not distinct[0] or not distinct[1]:
        only = "ham" if distinct[0] else "spam"
        raise InputError("file", f"every message is labelled {only!r}; training needs both ham and spam messages")
    for label, name in ((0, "ham"), (1, "spam")):
        if len(distinct[label]) < min_per_class:
            raise InputError(
                "file",
                f"has {len(distinct[label])} distinct {name} message(s); training needs at least "
                f"{min_per_class} of each class (min_messages_per_class)",
            )
    return {
        "messages": len(texts),
        "ham": labels.count(0),
        "spam": labels.count(1),
        "distinct_ham": len(distinct[0]),
        "distinct_spam": len(distinct[1]),
    }


def validation_split(
    texts: list[str], labels: list[int], validation_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Row indices (train, validation) as training uses them: all rows and none without a
    validation share, else `split_by_unique_text`; a share too small to hold both classes is
    refused naming `validation_fraction`."""
    if validation_fraction <= 0:
        return list(range(len(texts))), []
    try:
        return split_by_unique_text(texts, labels, validation_fraction, seed)
    except ValueError as err:  # sklearn: too few texts on one side to stratify
        distinct = len({normalise(t) for t in texts})
        raise InputError(
            "validation_fraction",
            f"{validation_fraction:g} of {distinct:,} distinct messages cannot hold "
            f"both classes on each side ({err}); choose a larger share, or 0 for no validation",
        ) from None
