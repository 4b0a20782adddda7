"""The launched app, driven through gradio_client on its public endpoints."""

import itertools
import re

import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from pipelines.core.params import field_types
from pipelines.tasks import named


def test_only_public_endpoints_are_listed_with_descriptions(client, public_endpoints):
    """view_api() lists exactly the events the app declares public (none of the page's private ones)."""
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert set(endpoints) == public_endpoints
    for name, endpoint in endpoints.items():
        assert len(endpoint["description"]) > 20, f"{name} has no api_description"
        assert all(p["label"] for p in endpoint["parameters"]) and endpoint["returns"], name


# What each endpoint cannot do without; every other parameter has a default, so that
# `client.predict(main_input, api_name=...)` works the way the README's examples call it.
REQUIRED_INPUTS = {
    "/classify": ["message"],
    "/explain": ["message"],
    "/classify_batch": ["file"],
    "/similar": ["message", "file"],
    "/embed": ["messages"],
    "/generate_text": ["prompt"],
    "/next_tokens": ["prompt"],
    "/generate_image": ["prompt"],
    "/train_classifier": ["file"],
    "/list_models": [],
}


def test_only_the_main_inputs_are_required(client, public_endpoints):
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert set(REQUIRED_INPUTS) == public_endpoints
    for name, endpoint in endpoints.items():
        required = [p["parameter_name"] for p in endpoint["parameters"] if not p["parameter_has_default"]]
        assert required == REQUIRED_INPUTS[name], name


# The parameter declarations of each endpoint with numeric parameters (pipelines/*/contract.py, training.py).
DECLARED = {
    "/classify": "pipelines.classification.contract:ClassificationParams",
    "/classify_batch": "pipelines.classification.contract:ClassificationParams",
    "/similar": "pipelines.classification.contract:SimilarParams",
    "/generate_text": "pipelines.text.contract:TextParams",
    "/next_tokens": "pipelines.text.contract:NextTokenParams",
    "/generate_image": "pipelines.image.contract:ImageParams",
    "/train_classifier": "pipelines.classification.training:TrainParams",
}
GRADIO_MADE_UP = re.compile(r"(value|parameter)_\d+|\d+(st|nd|rd|th)")  # an unlabelled component's name in view_api()


def test_view_api_names_every_value_and_types_whole_numbers_as_integers(client):
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    for name, endpoint in endpoints.items():
        for value in endpoint["parameters"] + endpoint["returns"]:
            assert value["label"] and not GRADIO_MADE_UP.fullmatch(value["label"]), (name, value["label"])
        numeric = {
            p["parameter_name"]: p["type"]["type"]
            for p in endpoint["parameters"]
            if p["type"].get("type") in ("number", "integer")
        }
        if not numeric:
            continue
        types = field_types(named(DECLARED[name]))
        assert numeric == {field: "integer" if types[field] is int else "number" for field in numeric}, name
    image_parameters = {p["parameter_name"]: p for p in endpoints["/generate_image"]["parameters"]}
    assert image_parameters["width"]["python_type"]["type"] == "int"  # as view_api() prints it


def test_classify_batch_with_the_file_alone(client, tmp_path):
    path = tmp_path / "messages.tsv"
    path.write_text("label\ttext\nspam\tWIN a FREE prize, call now\nham\tsee you at dinner\n", encoding="utf-8")
    _csv, table, _summary, details = client.predict(handle_file(str(path)), api_name="/classify_batch")
    assert len(table["data"]) == 2 and details["counts"]["ham"] + details["counts"]["spam"] == 2
    assert details["rows"] == 2 and details["label_column"] == "label" and details["threshold"] == 0.5  # the defaults


def test_classify(client, names):
    label, _verdict, details = client.predict(
        "WIN a FREE prize, call now", names["classification"], 0.5, api_name="/classify"
    )
    assert {c["label"] for c in label["confidences"]} == {"ham", "spam"}
    assert sum(c["confidence"] for c in label["confidences"]) == pytest.approx(1.0, abs=1e-5)
    assert details["label"] == label["label"] and details["model"] == names["classification"]
    assert details["label"] == ("spam" if details["scores"]["spam"] >= details["threshold"] == 0.5 else "ham")


def test_generate_text_streams_growing_prefixes(client, names):
    job = client.submit("Once upon a time", names["text"], 40, 0.8, 0.95, 50, 1.1, True, 7, api_name="/generate_text")
    updates = [text for text, _stats, _details in job]
    final_text, _final_stats, final_details = job.result()
    assert len(updates) >= 3
    assert all(b.startswith(a) for a, b in itertools.pairwise(updates))
    assert final_text.startswith(updates[0]) and final_text == final_details["text"]
    assert final_details["done"] and final_details["seed"] == 7 and final_details["tokens_per_s"] > 0


def test_generate_image_returns_png_of_requested_size(client, names):
    gallery, info = client.predict("a cat", names["image"], "", 2, 0.0, 64, 96, 2, 3, api_name="/generate_image")
    assert len(gallery) == 2 and info["seeds"] == [3, 4]
    for item in gallery:
        with Image.open(item["image"]) as image:
            assert image.format == "PNG" and image.size == (64, 96)
            assert '"seed"' in image.info["parameters"]


def test_bad_input_reaches_client_as_message(client, names):
    with pytest.raises(AppError, match="message: is empty"):
        client.predict("   ", names["classification"], 0.5, api_name="/classify")
    with pytest.raises(AppError, match="width: must be"):
        client.predict("a cat", names["image"], "", 2, 0.0, 60, 64, 1, 1, api_name="/generate_image")
    # the server is still up and serving
    label, _, details = client.predict("hello", names["classification"], 0.5, api_name="/classify")
    assert label["label"] == details["label"] in ("ham", "spam")


def test_enable_queue_slows_gradios_polling_loops_it_really_reads(tiny_config):
    """enable_queue tunes two attributes of Gradio's private Queue: fail loudly if Gradio stops using them."""
    import inspect

    from gradio import queueing

    from app import PROGRESS_POLL_S, QUEUE_POLL_S, build_app, enable_queue

    assert "self.sleep_when_free" in inspect.getsource(queueing.Queue.start_processing)
    assert "self.progress_update_sleep_when_free" in inspect.getsource(queueing.Queue.start_progress_updates)
    demo = enable_queue(build_app(tiny_config), max_size=5)
    assert demo._queue.limits.backlog_of("classification") == 5  # --max-queue: per queue group (tests/test_queue.py)
    assert (demo._queue.sleep_when_free, demo._queue.progress_update_sleep_when_free) == (QUEUE_POLL_S, PROGRESS_POLL_S)
