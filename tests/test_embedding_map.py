"""Where a message lies among others, on the tiny BERT: embeddings (/embed), the embedding map
and similar messages (/similar), the cache, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from pipelines.classification.embeddings import EmbeddingCache, check_messages, embed_file, nearest, place
from pipelines.core.errors import InputError, RemoteModelError
from ui import embedding_map

LABELLED = [
    ("ham", "Hey, are we still meeting for lunch tomorrow?"),
    ("spam", "WINNER!! You have won a free prize. Call now to claim."),
    ("ham", "I'll be home late tonight, can you pick up some milk?"),
    ("spam", "URGENT: your account has a bonus. Text WIN to 80086."),
    ("ham", ""),  # a row without text: not on the map
    ("spam", "Free entry in a weekly competition to win tickets."),
    ("ham", "Thanks for the lovely dinner yesterday, see you soon."),
]


@pytest.fixture(scope="module")
def classifier(registry, names):
    return registry.get("classification", names["classification"])


@pytest.fixture
def labelled_file(tmp_path):
    path = tmp_path / "labelled.tsv"
    path.write_text("label\ttext\n" + "".join(f"{label}\t{text}\n" for label, text in LABELLED), encoding="utf-8")
    return path


def embedded(classifier, path, cache=None, **limits):
    return embed_file(classifier, path, cache or EmbeddingCache(), max_rows=limits.pop("max_rows", 10_000), **limits)


class CountingClassifier:
    """A classifier that counts the messages it is asked to embed."""

    def __init__(self, classifier):
        self.classifier, self.name, self.embedded = classifier, classifier.name, 0

    def embed_many(self, texts, on_progress=None):
        self.embedded += len(texts)
        return self.classifier.embed_many(texts, on_progress=on_progress)


# -- embeddings ---------------------------------------------------------------------------------
def test_embeddings_have_length_one_and_do_not_depend_on_the_batch(classifier):
    texts = [text for _, text in LABELLED if text]
    together = classifier.embed_many(texts)
    alone = np.stack([classifier.embed_many([text])[0] for text in texts])
    assert together.shape == (len(texts), classifier.model.config.hidden_size) and together.dtype == np.float32
    assert np.linalg.norm(together, axis=1) == pytest.approx(1.0, abs=1e-5)
    assert together == pytest.approx(alone, abs=1e-5)  # padding to a batch's longest changes nothing
    progress = []
    classifier.embed(texts, on_progress=lambda done, total: progress.append((done, total)), batch_size=2)
    assert progress == [(2, 6), (4, 6), (6, 6)]


def test_bad_message_lists_name_the_field():
    with pytest.raises(InputError, match=r"^messages: must be a list of message texts, got str"):
        check_messages("hello", 10, 100)
    with pytest.raises(InputError, match=r"^messages: is empty"):
        check_messages([], 10, 100)
    with pytest.raises(
        InputError, match=r"^messages: has 11 messages; the limit is 10 per request \(settings.embedding_map_max_rows\)"
    ):
        check_messages(["hi"] * 11, 10, 100)
    with pytest.raises(InputError, match=r"^messages\[1\]: is empty"):
        check_messages(["hi", " "], 10, 100)
    with pytest.raises(InputError, match=r"^messages\[0\]: is 101 characters; the limit is 100"):
        check_messages(["x" * 101], 10, 100)


# -- the map and similar messages ---------------------------------------------------------------
def test_the_map_has_one_point_per_message_coloured_by_label(classifier, labelled_file):
    result, cached = embedded(classifier, labelled_file)
    filled = [(label, text) for label, text in LABELLED if text]
    assert not cached and result.points.shape == (len(filled), 2) and result.texts == [text for _, text in filled]
    assert result.labels == [label for label, _ in filled] and result.rows == [1, 2, 3, 4, 6, 7]
    position = place(result, classifier.embed_many(["a new message"])[0])
    frame = embedding_map.map_frame(result, "a new message", position)
    assert len(frame) == len(filled) + 1 and list(frame["label"]).count("your message") == 1
    yours = frame.iloc[-1]  # drawn last: on top of the file's points
    assert (yours["label"], yours["text"], (yours["x"], yours["y"])) == ("your message", "a new message", position)
    assert 0 < sum(result.explained_variance) <= 1 + 1e-6


def test_a_message_of_the_file_is_its_own_nearest_neighbour(classifier, labelled_file):
    result, _ = embedded(classifier, labelled_file)
    for row, (label, text) in enumerate(LABELLED, start=1):
        if not text:
            continue
        vector = classifier.embed_many([text])[0]
        first, *others = nearest(result, vector, k=3)
        assert (first["row"], first["text"], first["label"], first["rank"]) == (row, text, label, 1)
        assert first["similarity"] == pytest.approx(1.0, abs=1e-5)
        assert [n["similarity"] for n in others] == sorted((n["similarity"] for n in others), reverse=True)
        assert all(n["similarity"] <= first["similarity"] for n in others)
        assert place(result, vector) == pytest.approx(tuple(result.points[result.rows.index(row)]), abs=1e-4)


def test_a_file_is_embedded_once_per_model_and_content(classifier, labelled_file, tmp_path):
    counting, cache = CountingClassifier(classifier), EmbeddingCache(size=2)
    first, cached = embedded(counting, labelled_file, cache)
    again, cached_again = embedded(counting, labelled_file, cache)
    assert (cached, cached_again) == (False, True) and again is first and counting.embedded == 6
    changed = tmp_path / "changed.tsv"
    changed.write_text(labelled_file.read_text(encoding="utf-8") + "ham\tone more message\n", encoding="utf-8")
    _, cached = embedded(counting, changed, cache)
    assert not cached and counting.embedded == 13
    counting.name = "another model"
    _, cached = embedded(counting, labelled_file, cache)
    assert not cached and counting.embedded == 19


def test_a_file_without_labels_is_mapped_uncoloured(classifier, tmp_path):
    path = tmp_path / "plain.txt"
    path.write_text("hello there\nWIN a free prize now\nsee you later\n", encoding="utf-8")
    result, _ = embedded(classifier, path)
    assert result.labels is None and result.label_column is None and len(result.points) == 3
    assert set(embedding_map.map_frame(result, "hi", (0.0, 0.0))["label"]) == {"unlabelled", "your message"}


def test_your_message_is_a_series_of_its_own_colour():
    colours = embedding_map.COLOURS
    assert colours["your message"] not in {colours[label] for label in ("ham", "spam", "unlabelled")}
    assert f"path[stroke='{colours['your message']}']" in embedding_map.YOUR_POINT_CSS  # made large on the page


def test_five_thousand_messages_are_embedded_in_batches_with_progress(classifier, tmp_path):
    words = [
        "free",
        "prize",
        "call",
        "now",
        "lunch",
        "tomorrow",
        "home",
        "milk",
        "dinner",
        "weekend",
        "win",
        "cash",
        "text",
        "reply",
        "robot",
        "sky",
        "cat",
        "sun",
    ]
    texts = [
        f"{words[i % 18]} {words[i // 18 % 18]} {words[i // 324 % 18]} and {words[(i * 7) % 18]}" for i in range(5000)
    ]
    path = tmp_path / "many.csv"
    path.write_text("message\n" + "".join(f"{text}\n" for text in texts), encoding="utf-8")
    progress = []
    result, _ = embedded(classifier, path, on_progress=lambda done, total: progress.append((done, total)))
    assert result.points.shape == (5000, 2) and progress[-1] == (5000, 5000) and len(progress) > 10
    first = nearest(result, classifier.embed_many([texts[1234]])[0], k=1)[0]
    assert (first["row"], first["text"]) == (1235, texts[1234]) and first["similarity"] == pytest.approx(1, abs=1e-5)


@pytest.mark.parametrize(
    "content, limits, message",
    [
        (
            "message\nhello\nhi\nhey\n",
            {"max_rows": 2},
            r"^file: 'f.csv' has 3 messages; the embedding map takes at most 2 \(settings.embedding_map_max_rows\)",
        ),
        (
            "message\n \n\n \n",
            {},
            r"^file: 'f.csv' has a header but no messages|^file: column 'message' has no text in any row",
        ),
        ("label,message\nham, \nspam,  \n", {}, r"^file: column 'message' has no text in any row"),
        (
            "message\nhello\n" + "x" * 60 + "\n",
            {"max_cell_chars": 50},
            r"^file: row 2's message is 60 characters; the limit is 50",
        ),
    ],
)
def test_bad_files_name_the_reason(classifier, tmp_path, content, limits, message):
    path = tmp_path / "f.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        embedded(classifier, path, **limits)


def test_a_classifier_that_cannot_give_embeddings_says_so(tiny_config):
    from pipelines.classification.remote import GradioClassifier
    from pipelines.studio import parse_config

    entry = parse_config(
        {
            "classification": [{"name": "Old remote", "backend": "gradio", "url": "http://127.0.0.1:9/"}],
            "text": [{"name": "T", "source": "t"}],
            "image": [{"name": "I", "source": "i"}],
        }
    ).classification[0]
    old = GradioClassifier(entry, client=None)
    old.parameters = {"/classify": {"message"}}  # a remote app from before /embed
    with pytest.raises(
        RemoteModelError,
        match=r"Remote model 'Old remote' .*: the remote app has no /embed endpoint: embeddings .* not available",
    ):
        old.embed_many(["hello"])


# -- through the app -------------------------------------------------------------------------------
def test_similar_and_embed_endpoints(client, names, labelled_file):
    points, table, summary, result = client.predict(
        message=LABELLED[1][1],
        file=handle_file(str(labelled_file)),
        model_name=names["classification"],
        k=3,
        api_name="/similar",
    )
    assert len(points["data"]) == 6 + 1 and table["headers"] == ["rank", "similarity", "label", "row", "message"]
    yours = dict(zip(points["columns"], points["data"][-1]))
    assert (yours["label"], yours["text"]) == ("your message", LABELLED[1][1])
    first = result["neighbours"][0]
    assert (first["row"], first["label"], len(result["neighbours"])) == (2, "spam", 3) and first[
        "similarity"
    ] == pytest.approx(1, abs=1e-5)
    assert (
        result["file"]["messages"] == 6 and result["file"]["label_column"] == "label" and not result["file"]["cached"]
    )
    assert summary.startswith(
        f"**{result['file']['messages']} messages** of `{result['file']['name']}`"
    )  # the JSON's file
    again = client.predict(
        message="hello", file=handle_file(str(labelled_file)), model_name=names["classification"], api_name="/similar"
    )[-1]
    assert again["file"]["cached"] and len(again["neighbours"]) == 5  # k's default
    vectors = client.predict(messages=[LABELLED[1][1], "hello"], model_name=names["classification"], api_name="/embed")
    assert len(vectors["vectors"]) == 2 and vectors["dimensions"] == len(vectors["vectors"][0])
    assert np.dot(vectors["vectors"][0], vectors["vectors"][0]) == pytest.approx(1, abs=1e-4)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"message": "  "}, r"^message: is empty"),
        ({"file": None}, r"^file: no file was uploaded"),
        ({"k": 0}, r"^k: must be an integer in \[1, 50\], got 0"),
        ({"text_column": "nope"}, r"^text_column: 'nope' is not a column of the file"),
    ],
)
def test_bad_similar_requests_name_the_field(client, names, labelled_file, arguments, message):
    request = (
        dict(message="hello", file=handle_file(str(labelled_file)), model_name=names["classification"]) | arguments
    )
    with pytest.raises(AppError, match=message):
        client.predict(**request, api_name="/similar")
