"""Every hostile input a user or script could send, through the API of the launched app.

For each: a clear error message (naming the field or the problem) or a correct result,
and the server keeps serving (an autouse fixture sends a normal request after every test).

gradio_client refuses to send NaN and infinities (they are not JSON), but a script can:
those go through Gradio's plain HTTP API (`/gradio_api/call/<api_name>`) as `NaN`/`Infinity`.
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError, ValidationError

from pipelines.tasks import TASKS


@functools.cache
def public_events() -> dict:
    """The app's public events by endpoint, read from the app itself: built (as app.py builds it, no
    model loaded) from the bundled models.yaml, whose events are the tiny app's."""
    from app import build_app
    from pipelines.studio import load_config

    demo = build_app(load_config())
    return {f"/{fn.api_name}": fn for fn in demo.fns.values() if fn.api_visibility == "public"}


# Every public endpoint and the task whose models it offers (None: it names no model): the queue
# group its events run in, which is their task's for the task table's tasks.
ENDPOINTS = {
    endpoint: fn.concurrency_id if fn.concurrency_id in TASKS else None for endpoint, fn in public_events().items()
}
# The text arguments each endpoint declares to the request layer (ui/handlers.py), its main one first.
TEXTS = {
    endpoint: list(fn.fn.request_declaration.texts)
    for endpoint, fn in public_events().items()
    if fn.fn.request_declaration.texts
}
TEXT_FIELD = {endpoint: texts[0] for endpoint, texts in TEXTS.items()}
MEGABYTE_OF_TEXT = ("WIN a free prize now! " * 50_000)[: 2**20]
# Control characters, ANSI escapes, emoji (incl. ZWJ sequences and skin tones), right-to-left
# scripts and bidi overrides, combining marks, a lone surrogate's replacement, NUL.
STRANGE_TEXTS = {
    "control characters": "call\x00 now\x07\x08\x1b[31m FREE\x1b[0m \x7f\u0085\u2028prize\r\n\x0c",
    "emoji": "🚀🔥 WIN 💰💰 now 👩🏽‍💻👨‍👩‍👧 🏳️‍🌈 reply YES ✅",
    "right-to-left": "مبروك! لقد ربحت جائزة \u202eezirp eerf\u202c שלום עולם",
    "combining marks": "Z̴̢̛a̷͇͝l̶̰̈́g̸̣̈o̵̱͝ free p̵r̷i̸z̶e̴",
}


def normal_request_succeeds(client, names) -> None:
    label, _, _ = client.predict(
        message="hello, see you at 7", model_name=names["classification"], api_name="/classify"
    )
    assert label["label"] in ("ham", "spam")


@pytest.fixture(autouse=True)
def server_keeps_serving(client, names):
    yield
    normal_request_succeeds(client, names)


@pytest.fixture(scope="module")
def api(client):
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert set(ENDPOINTS) == set(endpoints)  # the tiny app's API is the bundled one's
    return endpoints


@pytest.fixture(scope="module")
def messages_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("files") / "messages.csv"
    path.write_text("message\nhello there\nWIN a free prize now\n", encoding="utf-8")
    return path


def call_args(api, names, endpoint: str, file=None, **overrides) -> dict:
    """Every parameter of `endpoint` by name: its default (the UI's initial value), a normal
    text for the message/prompt (a file for /classify_batch), the tiny model, and `overrides`."""
    args = {
        p["parameter_name"]: p["parameter_default"] for p in api[endpoint]["parameters"] if p["parameter_has_default"]
    }
    if ENDPOINTS[endpoint]:
        args["model_name"] = names[ENDPOINTS[endpoint]]
    if endpoint in TEXT_FIELD:
        args[TEXT_FIELD[endpoint]] = "a cat sat on the mat"
    for p in api[endpoint]["parameters"]:
        if p["component"] == "File":
            args[p["parameter_name"]] = handle_file(str(file)) if file else None
        elif p["parameter_name"] not in args and p["component"] == "Textbox":
            args[p["parameter_name"]] = ""  # e.g. /classify_batch's text column: blank picks it
        elif p["parameter_name"] not in args and p["python_type"]["type"] == "list[str]":
            args[p["parameter_name"]] = ["a cat sat on the mat"]  # /embed's messages
    return args | overrides


def upload(app_url: str, value):
    """A handle_file() value as Gradio's FileData, uploaded first (what gradio_client does)."""
    if not (isinstance(value, dict) and value.get("meta", {}).get("_type") == "gradio.FileData"):
        return value
    with open(value["path"], "rb") as f:
        response = httpx.post(f"{app_url}gradio_api/upload", files={"files": f}, timeout=30)
    response.raise_for_status()
    return {"path": response.json()[0], "orig_name": value["orig_name"], "meta": {"_type": "gradio.FileData"}}


def raw_call(app_url: str, api, endpoint: str, args: dict) -> tuple[str, object]:
    """Gradio's plain HTTP API, with any JSON (NaN included), files uploaded first: ("complete",
    outputs), ("error", message) or ("rejected", HTTP body)."""
    return raw_call_as_is(
        app_url, endpoint, [upload(app_url, args[p["parameter_name"]]) for p in api[endpoint]["parameters"]]
    )


def numeric_fields(api) -> list[tuple[str, str]]:
    return [
        (endpoint, p["parameter_name"])
        for endpoint, info in api.items()
        for p in info["parameters"]
        if p["python_type"]["type"] in ("float", "int")
    ]


# -- text -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text", ["", " ", "\n\t  \r\n", "\u3000\u00a0\u2003"], ids=["empty", "space", "newlines", "unicode-spaces"]
)
@pytest.mark.parametrize("endpoint", list(TEXT_FIELD))
def test_empty_or_whitespace_text_is_rejected_naming_the_field(client, api, names, endpoint, text):
    field = TEXT_FIELD[endpoint]
    with pytest.raises(AppError, match=rf"^{field}: is empty"):
        client.predict(api_name=endpoint, **call_args(api, names, endpoint, **{field: text}))


def test_megabyte_texts_are_refused_before_any_work_naming_the_limit(client, api, names, tiny_config):
    limit = tiny_config.settings.max_text_chars
    refused = rf"is 1,048,576 characters; the limit is {limit:,} \(settings.max_text_chars\)"
    with pytest.raises(AppError, match=rf"^message: {refused}"):
        client.predict(message=MEGABYTE_OF_TEXT, model_name=names["classification"], api_name="/classify")
    with pytest.raises(AppError, match=rf"^message: {refused}"):
        client.predict(message=MEGABYTE_OF_TEXT, model_name=names["classification"], api_name="/explain")
    with pytest.raises(AppError, match=rf"^prompt: {refused}"):
        client.predict(api_name="/generate_text", **call_args(api, names, "/generate_text", prompt=MEGABYTE_OF_TEXT))
    for field in ("prompt", "negative_prompt"):
        with pytest.raises(AppError, match=rf"^{field}: {refused}"):
            client.predict(
                api_name="/generate_image", **call_args(api, names, "/generate_image", **{field: MEGABYTE_OF_TEXT})
            )


def test_long_message_within_the_limit_is_classified_and_said_to_be_truncated(client, names, tiny_config):
    message = MEGABYTE_OF_TEXT[: tiny_config.settings.max_text_chars]
    label, _verdict, result = client.predict(message=message, model_name=names["classification"], api_name="/classify")
    assert label["label"] == result["label"] in ("ham", "spam") and result["truncated"]


def test_a_prompt_that_may_be_truncated_is_cut_whatever_its_length(client, api, names):
    """truncate_prompt: a 2 MB prompt is cut by characters, then by tokens, and the result says so."""
    prompt = MEGABYTE_OF_TEXT * 2
    _text, _stats, update = client.predict(
        api_name="/generate_text",
        **call_args(api, names, "/generate_text", prompt=prompt, truncate_prompt=True, max_new_tokens=4),
    )
    assert update["done"] and update["truncated_chars"] > 0 and update["truncated_tokens"] > 0


def test_long_image_prompt_within_the_limit_still_gives_an_image(client, api, names, tiny_config):
    prompt = MEGABYTE_OF_TEXT[: tiny_config.settings.max_text_chars]
    gallery, info = client.predict(
        api_name="/generate_image", **call_args(api, names, "/generate_image", prompt=prompt)
    )
    assert len(gallery) == 1 and len(info["seeds"]) == 1


def test_explaining_10000_words_explains_what_the_model_reads(client, names):
    message = " ".join(f"word{i}" for i in range(10_000))
    _highlighted, note, explanation = client.predict(
        message=message, model_name=names["classification"], api_name="/explain"
    )
    assert explanation["truncated"] and "Only the start" in note
    assert explanation["words"][-1]["end"] < len(message) // 4  # the unread tail is neither occluded nor tokenized
    assert "".join(piece for piece, _ in explanation["segments"]) == message


@pytest.mark.parametrize("kind", list(STRANGE_TEXTS))
def test_strange_text_gives_correct_results_everywhere(client, api, names, kind):
    text = STRANGE_TEXTS[kind]
    label, _, result = client.predict(message=text, model_name=names["classification"], api_name="/classify")
    assert label["label"] == result["label"] in ("ham", "spam")
    continuation, _, update = client.predict(
        api_name="/generate_text", **call_args(api, names, "/generate_text", prompt=text, seed=1)
    )
    assert isinstance(continuation, str) and continuation == update["text"] and update["seed"] == 1
    gallery, _ = client.predict(
        api_name="/generate_image",
        **call_args(
            api, names, "/generate_image", prompt=text, negative_prompt=text, guidance_scale=2.0, seed=1
        ),  # guidance: it is read
    )
    assert len(gallery) == 1


# -- numbers ----------------------------------------------------------------------------------
# What a clear message for a bad number looks like: the pipelines' own check ("seed: must be an
# integer in [-1, 4294967295], got nan"), Gradio's slider bounds ("Value 1e+30 is greater than
# maximum value 1.0."), or, for values Gradio cannot even convert (NaN into an integer field),
# its processing error, which names the input's position, the component and the value.
def assert_clear_number_error(message: str | None, field: str, index: int, value) -> None:
    assert message, f"{field}={value!r}: the client got an error without a message"
    patterns = [
        rf"^{field}: must be",
        r"^Value -?(\d|inf|nan)\S* is (less|greater) than (minimum|maximum) value",
        rf"^Could not preprocess input component at index {index} .*value passed to the event handler was: {re.escape(repr(value))}",
    ]
    assert any(re.search(p, message, re.S) for p in patterns), f"{field}={value!r}: unclear message {message!r}"


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), float("-inf"), -1e9, 1e30, 2**70],
    ids=["nan", "inf", "-inf", "negative", "huge", "huge-int"],
)
def test_bad_numbers_in_every_numeric_field_get_clear_errors(app_url, api, names, messages_file, value):
    fields = numeric_fields(api)
    assert len(fields) >= 13  # 2 thresholds; 6 text and 5 image parameters
    for endpoint, field in fields:
        args = call_args(api, names, endpoint, file=messages_file, **{field: value})
        outcome, payload = raw_call(app_url, api, endpoint, args)
        assert outcome == "error", f"{endpoint} {field}={value!r} was accepted: {str(payload)[:200]}"
        index = [p["parameter_name"] for p in api[endpoint]["parameters"]].index(field)
        assert_clear_number_error(payload, field, index, value)


@pytest.mark.parametrize(
    "value", [None, "abc", [1, 2], {"a": 1}, True, False], ids=["null", "string", "list", "object", "true", "false"]
)
def test_non_numbers_in_numeric_fields_get_errors_with_messages(app_url, api, names, messages_file, value):
    for endpoint, field in numeric_fields(api):
        outcome, payload = raw_call(
            app_url, api, endpoint, call_args(api, names, endpoint, file=messages_file, **{field: value})
        )
        if value is None and outcome == "complete":  # None means "the default" (seed=None: a random seed)
            assert payload and payload[0] is not None
            continue
        assert outcome == "error" and payload, f"{endpoint} {field}={value!r}: error without a message"
        if value is not None:  # refused by our checks, naming the field and its range (True is not 1)
            assert re.match(rf"^{field}: must be (an integer|a number) in [[(]", payload), (
                f"{endpoint} {field}={value!r}: {payload}"
            )


def test_negative_and_huge_numbers_through_gradio_client(client, api, names):
    with pytest.raises(AppError, match=r"^threshold: must be a number in \[0, 1\], got -0.5"):
        client.predict(message="hi", model_name=names["classification"], threshold=-0.5, api_name="/classify")
    with pytest.raises(AppError, match=r"^seed: must be an integer"):
        client.predict(api_name="/generate_image", **call_args(api, names, "/generate_image", seed=2**40))
    with pytest.raises(AppError, match=r"^seed: must be .*\[-1, 4294967295\], got -7"):  # the bound in full
        client.predict(api_name="/generate_text", **call_args(api, names, "/generate_text", seed=-7))
    with pytest.raises(AppError, match=r"^width: must be a multiple of 8"):
        client.predict(api_name="/generate_image", **call_args(api, names, "/generate_image", width=65))


def test_bad_request_batched_with_good_ones_fails_alone(client, names):
    """/classify batches concurrent requests: an empty message among them gets its own error
    (as an error or as its verdict), and the others still get their results."""
    messages = ["hello there", "", "WIN a free prize now", "see you at 7"] * 4
    jobs = [client.submit(message=m, model_name=names["classification"], api_name="/classify") for m in messages]
    for message, job in zip(messages, jobs):
        if message:
            label, _, result = job.result(timeout=60)
            assert label["label"] == result["label"] in ("ham", "spam")
        else:
            try:
                error = job.result(timeout=60)[2]["error"]
            except AppError as err:
                error = str(err)
            assert error.startswith("message: is empty")


# -- models ----------------------------------------------------------------------------------
@pytest.mark.parametrize("endpoint", [endpoint for endpoint, task in ENDPOINTS.items() if task])
def test_wrong_model_name_is_rejected_listing_the_choices(client, app_url, api, names, messages_file, endpoint):
    # Gradio's dropdown refuses it, or (an API-only endpoint such as /embed, or classification, whose
    # list grows as the Train tab adds models) the registry
    with pytest.raises(
        AppError,
        match=r"no-such-model.*(not in the list of choices|choose one of).*" + re.escape(names[ENDPOINTS[endpoint]]),
    ):
        client.predict(
            api_name=endpoint, **call_args(api, names, endpoint, file=messages_file, model_name="no-such-model")
        )
    outcome, message = raw_call(
        app_url, api, endpoint, call_args(api, names, endpoint, file=messages_file, model_name=None)
    )
    assert outcome == "error" and message.startswith("model: unknown"), message


# -- cancellation ------------------------------------------------------------------------------
def text_generation_threads() -> list[str]:
    """The per-request threads text generations run in ("generate-<model>"). (The image tab's pool
    threads, "generate-image_N", live on idle between requests by design.)"""
    return [
        t.name
        for t in threading.enumerate()
        if t.name.startswith("generate-") and not t.name.startswith("generate-image") and t.is_alive()
    ]


def test_many_requests_cancelled_midway_leave_nothing_running(client, api, names, app_registry):
    from tests.helpers import SlowSteps, settles

    steps = SlowSteps(delay_s=0)  # counts the text model's and the image model's forward passes
    hooks = [
        app_registry.get("text", names["text"]).model.register_forward_pre_hook(steps),
        app_registry.get("image", names["image"]).pipe.unet.register_forward_pre_hook(steps),
    ]
    try:
        jobs = []
        for i in range(8):
            jobs.append(
                client.submit(
                    api_name="/generate_text", **call_args(api, names, "/generate_text", max_new_tokens=200, seed=i)
                )
            )
            jobs.append(client.submit(message=f"message {i}", model_name=names["classification"], api_name="/classify"))
            jobs.append(
                client.submit(api_name="/generate_image", **call_args(api, names, "/generate_image", steps=20, seed=i))
            )
        time.sleep(0.3)  # let some of them start
        cancelled = [job.cancel() for job in jobs]
        assert any(cancelled)  # queued jobs were cancelled
        for job, was_cancelled in zip(jobs, cancelled):
            if not was_cancelled:  # it had started: it ends normally (Job.cancel() only cancels queued jobs)
                assert job.result(timeout=120)[0] is not None
        # and no generation is left running: no text thread, and neither model takes another step
        deadline = time.monotonic() + 30
        while text_generation_threads() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not text_generation_threads()
        assert steps.calls and settles(lambda: steps.calls, quiet_s=0.5, timeout_s=30), "a model still computes"
    finally:
        for hook in hooks:
            hook.remove()


# -- files (/classify_batch) -------------------------------------------------------------------
@pytest.fixture
def batch_endpoint(api):
    if "/classify_batch" not in api:
        pytest.skip(
            "/classify_batch (issue 3: batch files) does not exist yet; its hostile-file tests run once it does"
        )
    return "/classify_batch"


def batch_args(api, names, endpoint: str, path) -> dict:
    return call_args(api, names, endpoint, file=path)


def output_rows(result) -> int:
    """Rows of the CSV that /classify_batch returns (among its outputs)."""
    import pandas as pd

    outputs = result if isinstance(result, (list, tuple)) else [result]
    for out in outputs:
        path = out.get("path") if isinstance(out, dict) else out
        if isinstance(path, str) and path.endswith(".csv"):
            return len(pd.read_csv(path))
    raise AssertionError(f"no CSV among the outputs: {str(result)[:300]}")


def test_file_with_invalid_utf8_is_rejected_naming_the_encoding(client, api, names, batch_endpoint, tmp_path):
    path = tmp_path / "messages.csv"
    path.write_bytes(b"message\nhello there\n\xff\xfe broken \xc3\x28 bytes\n")
    with pytest.raises(AppError, match=r"^file: .*UTF-8"):
        client.predict(api_name=batch_endpoint, **batch_args(api, names, batch_endpoint, path))


def test_file_with_control_characters_emoji_and_rtl_is_classified(client, api, names, batch_endpoint, tmp_path):
    path = tmp_path / "messages.csv"
    rows = [STRANGE_TEXTS[kind].replace("\n", " ").replace("\r", " ").replace('"', "") for kind in STRANGE_TEXTS]
    path.write_text("message\n" + "".join(f'"{row}"\n' for row in rows), encoding="utf-8")
    assert output_rows(client.predict(api_name=batch_endpoint, **batch_args(api, names, batch_endpoint, path))) == len(
        rows
    )


def test_file_of_the_wrong_type_is_rejected_clearly(client, api, names, batch_endpoint, tmp_path):
    from PIL import Image

    path = tmp_path / "photo.png"
    Image.new("RGB", (8, 8)).save(path)
    with pytest.raises(AppError, match=r"(?i)csv|tsv|txt|file type|invalid file"):
        client.predict(api_name=batch_endpoint, **batch_args(api, names, batch_endpoint, path))


def test_upload_over_the_size_limit_is_refused_naming_it(
    client, app_url, api, names, batch_endpoint, tiny_config, tmp_path
):
    limit = int(tiny_config.settings.max_upload_mb * 2**20)
    path = tmp_path / "huge.csv"
    with open(path, "w", encoding="utf-8") as f:
        f.write("message\n")
        f.truncate(limit + 2**20)  # sparse: a file over the limit without writing it
    with pytest.raises(
        ValueError, match=rf"exceeds the maximum file size of {limit} bytes"
    ):  # gradio_client checks first
        client.predict(api_name=batch_endpoint, **batch_args(api, names, batch_endpoint, path))
    with open(path, "rb") as f:  # a script that skips that check is refused by the server while it uploads
        response = httpx.post(f"{app_url}gradio_api/upload", files={"files": f}, timeout=60)
    assert response.status_code >= 400 and f"maximum allowed size of {limit} bytes" in response.text


def test_file_with_a_message_over_the_cell_limit_is_refused_naming_it(
    client, api, names, batch_endpoint, tiny_config, tmp_path
):
    limit = tiny_config.settings.max_file_cell_chars
    path = tmp_path / "long.csv"
    path.write_text("message\nhello\n" + "x" * (limit + 1) + "\n", encoding="utf-8")
    with pytest.raises(AppError, match=rf"^file: row 2's message is {limit + 1:,} characters; the limit is {limit:,}"):
        client.predict(api_name=batch_endpoint, **batch_args(api, names, batch_endpoint, path))


def test_csv_with_100000_rows_is_classified_or_refused_with_the_limit(client, api, names, batch_endpoint, tmp_path):
    path = tmp_path / "big.csv"
    buffer = io.StringIO()
    buffer.write("message\n")
    for i in range(100_000):
        buffer.write(f"message number {i}, call me later\n")
    path.write_text(buffer.getvalue(), encoding="utf-8")
    try:
        result = client.predict(api_name=batch_endpoint, **batch_args(api, names, batch_endpoint, path))
    except AppError as err:
        assert re.search(r"100[,.]?000|rows|messages|limit|at most", str(err), re.I), str(err)
    else:
        assert output_rows(result) == 100_000


# -- file reads (issue 28) ---------------------------------------------------------------------
# Only uploads (and the app's own results) are read or served. A raw client can name any path in
# any file input (Gradio checks that it is an upload only when the value carries FileData's
# `meta`) and in any event, public or private. ui/uploads.py is the check.
REPO = Path(__file__).resolve().parents[1]
FILE_META = {"_type": "gradio.FileData"}


def not_an_upload(field: str) -> str:
    from ui.uploads import NOT_AN_UPLOAD

    return f"{field}: {NOT_AN_UPLOAD}"


def assert_refused(answer, field: str) -> None:
    """Refused by our check (ui/uploads.py), or by Gradio's own: a path outside the upload folder
    with FileData's meta, a File input's value without it or of another file type."""
    from ui.uploads import NOT_AN_UPLOAD

    allowed = (
        f"^{re.escape(not_an_upload(field))}$",
        f"^That {re.escape(NOT_AN_UPLOAD)}$",
        "^Cannot move .* not uploaded by a user",
        "The 'meta' field must be",
        "^Invalid file type",
    )
    assert isinstance(answer, str) and any(re.search(pattern, answer) for pattern in allowed), answer


def secret_files() -> dict[str, bytes]:
    """Files of the server that no request may return: the app's code and config, git's, the system's."""
    candidates = [
        REPO / "app.py",
        REPO / "models.yaml",
        REPO / ".git" / "HEAD",
        REPO / ".git" / "config",
        Path("/etc/hostname"),
    ]
    return {str(path): path.read_bytes() for path in candidates if path.is_file()}


def hostile_paths() -> list[str]:
    return ["app.py", str(REPO / "models.yaml"), "../" * 12 + "etc/hostname", str(REPO / ".git" / "HEAD")]


def file_payloads(path: str) -> list:
    """What a raw client may send for a file, an image or a gallery: a bare path, FileData without
    and with its meta, gallery items."""
    return [
        path,
        {"path": path},
        {"path": path, "meta": FILE_META},
        [{"image": {"path": path}, "caption": None}],
        [{"image": {"path": path, "meta": FILE_META}, "caption": None}],
    ]


def assert_no_secret_in(app_url: str, answer) -> None:
    """Neither the answer nor any file it names (a /file= URL or a server path) holds a secret file's content."""
    text = json.dumps(answer, default=str)
    secrets = secret_files()
    for name, content in secrets.items():
        start = content.decode("utf-8", "replace").strip()[:200]
        assert len(start) < 8 or start not in text, f"{name}'s content in the answer: {text[:300]}"
    named = set(re.findall(r'"(?:path|url)": "([^"]+)"', text)) | set(re.findall(r"/gradio_api/file=[^\"\s]+", text))
    for item in named:
        if item.startswith("http"):
            url = item
        elif item.startswith("/gradio_api/"):
            url = app_url.rstrip("/") + item
        else:
            url = f"{app_url}gradio_api/file={item}"
        response = httpx.get(url, timeout=30)
        assert response.status_code != 200 or response.content not in secrets.values(), f"{url} serves a secret file"


def raw_call_as_is(app_url: str, endpoint: str, data: list) -> tuple[str, object]:
    """Gradio's plain HTTP API with `data` sent as it is (NaN included; nothing uploaded first):
    ("complete", outputs), ("error", message) or ("rejected", HTTP body)."""
    base = f"{app_url}gradio_api/call{endpoint}"
    body = json.dumps({"data": data}, allow_nan=True)
    response = httpx.post(base, content=body, headers={"content-type": "application/json"}, timeout=30)
    if response.status_code != 200:
        return "rejected", response.text
    event, payload = None, None
    with httpx.stream("GET", f"{base}/{response.json()['event_id']}", timeout=120) as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line.removeprefix("event:").strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                payload = json.loads(line.removeprefix("data:"))
    return event, ((payload or {}).get("error") if event == "error" else payload)


def endpoint_data(api, names, endpoint: str, **overrides) -> list:
    """The data list of a plain HTTP call: `call_args`, then `overrides` (a file field's raw value too)."""
    args = call_args(api, names, endpoint) | overrides
    return [args[p["parameter_name"]] for p in api[endpoint]["parameters"]]


@pytest.fixture(scope="module")
def dependencies(app_url) -> dict[int, dict]:
    """The app's events as /config lists them to any client, by fn_index."""
    return {d["id"]: d for d in httpx.get(f"{app_url}config", timeout=30).json()["dependencies"]}


def fn_index_named(dependencies, api_name: str) -> int:
    return next(index for index, d in dependencies.items() if d.get("api_name") == api_name)


def new_session() -> str:
    return uuid.uuid4().hex[:11]


@pytest.fixture
def not_uploads():
    """Things inside Gradio's upload folder that no one uploaded: symlinks out of it (to app.py),
    FIFOs (a read would block), a directory."""
    import shutil

    from gradio.utils import get_upload_folder

    folder = Path(get_upload_folder()) / f"issue28-{new_session()}"
    folder.mkdir(parents=True)
    for suffix in (".png", ".csv"):
        (folder / f"link{suffix}").symlink_to(REPO / "app.py")
        os.mkfifo(folder / f"pipe{suffix}")
        (folder / f"folder{suffix}").mkdir()
    yield folder
    shutil.rmtree(folder)


def test_use_as_input_returns_only_this_sessions_own_image(app_url, dependencies):
    """The issue's repro: use_as_input sent a gallery of app.py. Its inputs are server-side state
    (the session's last result, the selected index), so what a client sends is ignored: nothing to
    use before the session has generated an image, then that image, whatever the client sends."""
    from gradio_client import Client

    from tests.helpers import call_event

    use = fn_index_named(dependencies, "use_as_input")
    assert dependencies[use]["api_visibility"] == "private" and not dependencies[use]["queue"]
    outcome, answer = call_event(app_url, use, [[{"image": {"path": "app.py"}, "caption": None}], None], new_session())
    assert_no_secret_in(app_url, answer)  # the issue's repro (it gave app.py's URL)
    for path in hostile_paths():
        for payload in file_payloads(path):
            outcome, answer = call_event(app_url, use, [payload, 0], new_session(), timeout_s=30)
            assert_no_secret_in(app_url, answer)
            assert (outcome, answer) == ("error", "There is no image to use yet: generate one first."), (
                payload,
                answer,
            )
    alice = Client(app_url, verbose=False)
    alice.predict(prompt="a cat", seed=3, api_name="/generate_image")
    for path in hostile_paths():
        outcome, answer = call_event(
            app_url, use, [[{"image": {"path": path}, "caption": None}], 5], alice.session_hash, timeout_s=30
        )
        assert outcome == "complete", answer
        url = answer[0]["url"]
        image = httpx.get(url if url.startswith("http") else app_url.rstrip("/") + url, timeout=30)
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")  # alice's own image
        assert_no_secret_in(app_url, answer)


@pytest.mark.parametrize(
    "where",
    ["/dev/zero", "/proc/self/fd/1", "/etc/hostname", "app.py", "/tmp", "missing.png", "symlink out", "fifo", "folder"],
)
def test_init_image_not_uploaded_gets_one_error_and_nothing_is_read(app_url, client, api, names, not_uploads, where):
    """Devices, a pipe, the app's files, a directory, a symlink out of the upload folder, a FIFO in
    it: one `init_image: ...` error, the same whether the path exists or not, before anything is
    opened (through raw HTTP without FileData's meta, and gradio_client)."""
    path = {
        "symlink out": not_uploads / "link.png",
        "fifo": not_uploads / "pipe.png",
        "folder": not_uploads / "folder.png",
    }.get(where, where)
    data = endpoint_data(api, names, "/generate_image", init_image={"path": str(path)}, strength=0.0)
    assert raw_call_as_is(app_url, "/generate_image", data) == ("error", not_an_upload("init_image"))
    with pytest.raises(AppError, match=rf"^{re.escape(not_an_upload('init_image'))}$"):
        client.predict(
            prompt="a cat",
            model_name=names["image"],
            init_image={"path": str(path)},
            strength=0.0,
            api_name="/generate_image",
        )


@pytest.mark.parametrize("endpoint", ["/generate_image", "/classify_batch", "/similar", "/train_classifier"])
def test_no_public_file_input_reads_what_was_not_uploaded(app_url, api, names, not_uploads, endpoint):
    """Every public file input, given the app's files, git's, the system's, a symlink out of the upload
    folder or a FIFO in it, with and without FileData's meta: refused (by our check, or Gradio's for a
    path outside the upload folder), and no answer holds or links to their content."""
    field = next(p["parameter_name"] for p in api[endpoint]["parameters"] if p["component"] in ("File", "Image"))
    suffix = ".png" if endpoint == "/generate_image" else ".csv"
    for path in [*hostile_paths(), str(not_uploads / f"link{suffix}"), str(not_uploads / f"pipe{suffix}")]:
        for payload in ({"path": path}, {"path": path, "meta": FILE_META}):
            # strength 0 would give an image back as it is; one epoch, were a training to start
            overrides = (
                {"strength": 0.0}
                if endpoint == "/generate_image"
                else {"epochs": 1}
                if endpoint == "/train_classifier"
                else {}
            )
            outcome, answer = raw_call_as_is(
                app_url, endpoint, endpoint_data(api, names, endpoint, **{field: payload}, **overrides)
            )
            assert outcome == "error", (endpoint, payload, outcome, str(answer)[:300])
            assert_refused(answer, field)
            assert_no_secret_in(app_url, answer)


def test_no_private_event_reads_or_returns_a_path_a_client_sends(app_url, dependencies, not_uploads):
    """Every private event that has a server function, every input given each hostile file payload:
    no answer holds a secret file's content or links to one. (The Embedding map takes the Batch
    file's upload in the browser: that event has no server function to call.)"""
    from tests.helpers import call_event

    private = {
        i: d
        for i, d in dependencies.items()
        if d.get("api_visibility") == "private" and d["inputs"] and d["backend_fn"]
    }
    assert {"use_as_input", "preview", "zip_chosen", "snippet_of"} <= {d["api_name"] for d in private.values()}
    for index, dependency in private.items():
        if dependency["api_name"].startswith("next_tokens"):  # a text generation: no file input
            continue
        for path in [*hostile_paths()[:3], str(not_uploads / "link.csv")]:
            for payload in file_payloads(path):
                _outcome, answer = call_event(
                    app_url, index, [payload] * len(dependency["inputs"]), new_session(), timeout_s=30
                )
                assert_no_secret_in(app_url, answer)


def test_train_preview_of_what_was_not_uploaded_is_refused(app_url, dependencies, not_uploads):
    from tests.helpers import call_event

    preview = fn_index_named(dependencies, "preview")
    for path in (
        "app.py",
        str(not_uploads / "link.csv"),
        str(not_uploads / "pipe.csv"),
        str(not_uploads / "folder.csv"),
    ):
        payload = {"path": path, "meta": FILE_META}
        outcome, answer = call_event(app_url, preview, [payload, "", "", 0.15, 42], new_session(), timeout_s=30)
        assert outcome == "error" or not_an_upload("file") in answer[0], (path, answer)
        assert_no_secret_in(app_url, answer)


def test_another_sessions_upload_cannot_be_found(app_url, client, api, names, tmp_path):
    """An upload lives at <upload folder>/<sha256 of the server's secret seed and its bytes>/<name>:
    a client that knows a file's content (say, a public data set) still cannot compute its path,
    and naming the upload folder, a folder in it or a pattern instead of a file is refused like any
    other path. (Whoever is given an upload's path can read it, as Gradio's /file= route allows.)"""
    import hashlib

    from gradio.utils import get_upload_folder

    content = b"message\nWIN a free prize now, session A's own text\n"
    (tmp_path / "alice.csv").write_bytes(content)
    with open(tmp_path / "alice.csv", "rb") as f:
        uploaded = Path(httpx.post(f"{app_url}gradio_api/upload", files={"files": f}, timeout=30).json()[0])
    folder = uploaded.parent
    assert len(folder.name) == 64 and folder.name != hashlib.sha256(content).hexdigest()
    for guess in (get_upload_folder(), str(folder), str(folder / "*"), f"{folder}/", f"{folder}/../{folder.name}"):
        for endpoint, field in (("/classify_batch", "file"), ("/generate_image", "init_image")):
            for payload in ({"path": guess}, {"path": guess, "meta": FILE_META}):
                outcome, answer = raw_call_as_is(
                    app_url, endpoint, endpoint_data(api, names, endpoint, **{field: payload})
                )
                assert outcome == "error", (guess, payload, answer)
                assert_refused(answer, field)
                assert content.decode() not in json.dumps(answer)


def test_a_folder_named_as_a_file_is_refused_before_gradio_keeps_it(app_url, api, names, dependencies, not_uploads):
    """Gradio notes every input file already in its cache for deletion; a folder there (the upload
    folder itself) would end its scheduled clean-up at the first try. Refused in any input, public
    or private, a JSON value's included."""
    from gradio.utils import get_upload_folder

    from tests.helpers import call_event
    from ui.uploads import NOT_AN_UPLOAD

    refused = ("error", f"That {NOT_AN_UPLOAD}")
    for folder in (get_upload_folder(), str(not_uploads / "folder.csv"), str(not_uploads / "pipe.csv")):
        payload = {"path": folder, "meta": FILE_META}
        for endpoint, field in (("/classify_batch", "file"), ("/generate_image", "init_image")):
            assert raw_call_as_is(app_url, endpoint, endpoint_data(api, names, endpoint, **{field: payload})) == refused
        after_training = fn_index_named(dependencies, "after_training")  # its input is a JSON value
        assert call_event(app_url, after_training, [{"model": payload}], new_session(), timeout_s=30) == refused


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "folder", "over the limit"])
def test_the_pipelines_read_regular_files_only_and_within_their_limit(tmp_path, kind):
    """Called directly (the notebook, the command line), the readers stat the path before opening
    it and read no more than their limit: a device, a FIFO or a folder is refused, never read."""
    from pipelines.classification.data import read_messages
    from pipelines.core.errors import InputError
    from pipelines.image.init_image import load_init_image

    readers = {
        ".png": (
            "init_image",
            "limits.max_init_image_mb",
            lambda path: load_init_image(path, 64, 64, "crop", 10**6, 2**20),
        ),
        ".csv": ("file", "settings.max_upload_mb", lambda path: read_messages(path, max_bytes=2**20)),
    }
    for suffix, (field, setting, read) in readers.items():
        path = tmp_path / f"input{suffix}"
        if kind == "/dev/zero":
            path.symlink_to("/dev/zero")
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "folder":
            path.mkdir()
        else:
            with open(path, "wb") as f:
                f.truncate(3 * 2**19)  # 1.5 MB
        reason = (
            rf"is 1\.5 MB; the limit is 1\.0 MB \({re.escape(setting)}\)"
            if kind == "over the limit"
            else "is not a regular file"
        )
        with pytest.raises(InputError, match=rf"^{field}: 'input{re.escape(suffix)}' {reason}$"):
            read(path)


# -- smaller points of issue 28 ------------------------------------------------------------------
# Each gets an error naming the field (never "Unexpected error", never HTTP 500, never a silent
# fix). The request-shape checks at the door are ui/request_checks.py.
LONE_SURROGATE = "a\ud800"  # json.dumps writes it as "a\\ud800"; gradio_client cannot send it at all (it encodes UTF-8)


def test_a_temperature_near_zero_is_refused_with_the_range(client, app_url, api, names):
    refused = r"^temperature: must be a number in \[0\.05, 2\], got 1e-300$"
    for endpoint in ("/generate_text", "/next_tokens"):
        outcome, message = raw_call(app_url, api, endpoint, call_args(api, names, endpoint, temperature=1e-300))
        assert outcome == "error" and re.match(refused, message), (endpoint, message)
        with pytest.raises(AppError, match=refused):
            client.predict(api_name=endpoint, **call_args(api, names, endpoint, temperature=1e-300))
    # the sliders (generation's, the explorer's) start at the minimum: what the page sends is accepted
    components = httpx.get(f"{app_url}config", timeout=30).json()["components"]
    sliders = [c["props"] for c in components if c["type"] == "slider" and c["props"].get("label") == "Temperature"]
    assert len(sliders) == 2 and all(s["minimum"] == 0.05 and s["step"] == 0.05 for s in sliders)


@pytest.mark.parametrize("endpoint, field", [(endpoint, field) for endpoint, texts in TEXTS.items() for field in texts])
def test_a_lone_surrogate_is_refused_naming_the_field(app_url, api, names, messages_file, endpoint, field):
    for truncate in (False, True) if endpoint == "/generate_text" else (None,):  # a prompt cut to fit is checked too
        extra = {} if truncate is None else {"truncate_prompt": truncate}
        args = call_args(api, names, endpoint, file=messages_file, **{field: LONE_SURROGATE}, **extra)
        outcome, message = raw_call(app_url, api, endpoint, args)
        assert (outcome, message) == (
            "error",
            f"{field}: contains a lone surrogate (U+D800) at character 2; send valid Unicode text",
        )


def test_a_lone_surrogate_in_a_list_of_messages_is_refused_naming_it(app_url, api, names):
    outcome, message = raw_call(
        app_url, api, "/embed", call_args(api, names, "/embed", messages=["hello", LONE_SURROGATE])
    )
    assert (outcome, message) == (
        "error",
        "messages[1]: contains a lone surrogate (U+D800) at character 2; send valid Unicode text",
    )


def test_booleans_are_not_taken_as_numbers(client, api, names):
    for endpoint in ("/generate_text", "/generate_image"):
        with pytest.raises(AppError, match=r"^seed: must be an integer in \[-1, 4294967295\], got True$"):
            client.predict(api_name=endpoint, **call_args(api, names, endpoint, seed=True))
    with pytest.raises(
        AppError, match=r"^seed: must be an integer in \[-1, 4294967295\], got 1\.5$"
    ):  # not rounded to 2
        client.predict(api_name="/generate_text", **call_args(api, names, "/generate_text", seed=1.5))
    with pytest.raises(AppError, match=r"^threshold: must be a number in \[0, 1\], got False$"):
        client.predict(message="hi", model_name=names["classification"], threshold=False, api_name="/classify")


def test_an_unknown_keyword_argument_is_refused_listing_the_arguments(client, app_url, api, names):
    # gradio_client refuses it itself, before sending (gradio_client/utils.py, construct_args)
    with pytest.raises(TypeError, match=r"Parameter `stop` is not a valid key-word argument"):
        client.predict(api_name="/generate_text", stop="\n", **call_args(api, names, "/generate_text"))
    # a raw client's keywords (/gradio_api/call/v2/<name>): the server names it (Gradio 6.31 answered a bare 500)
    arguments = [p["parameter_name"] for p in api["/generate_text"]["parameters"]]
    response = httpx.post(
        f"{app_url}gradio_api/call/v2/generate_text",
        timeout=30,
        json=call_args(api, names, "/generate_text") | {"stop": "\n"},
    )
    assert response.status_code == 422, response.text
    assert (
        response.json()["error"]
        == f"stop: is not an argument of /generate_text; its arguments are {', '.join(arguments)}"
    )
    response = httpx.post(
        f"{app_url}gradio_api/call/v2/generate_text", json=call_args(api, names, "/generate_text"), timeout=30
    )
    assert response.status_code == 200 and response.json()["event_id"]  # the same request without it is taken


def test_a_value_beyond_the_arguments_is_refused(client, app_url, api, names):
    """A positional value past the last argument (Gradio 6.31 dropped it without a word)."""
    takes = r"/classify takes 3 values \(message, model_name, threshold\), 4 were sent"
    with pytest.raises(ValidationError, match=rf"argument 4: 'EXTRA' is not one of its arguments: {takes}"):
        client.predict("hello", names["classification"], 0.5, "EXTRA", api_name="/classify")
    response = httpx.post(
        f"{app_url}gradio_api/call/classify",
        json={"data": ["hello", names["classification"], 0.5, "EXTRA"]},
        timeout=30,
    )
    assert response.status_code == 422 and re.match(
        rf"^argument 4: 'EXTRA' is not one of its arguments: {takes}$", response.json()["error"]
    )


def test_a_request_with_too_few_values_fails_alone(app_url, names):
    """/classify batches concurrent requests: one with a value missing used to fail every request
    batched with it; now it is refused at the door and the others are answered."""
    base = f"{app_url}gradio_api/call/classify"
    short = httpx.post(base, json={"data": ["hello", names["classification"]]}, timeout=30)
    assert short.status_code == 422 and short.json()["error"].startswith(
        "threshold: is missing: /classify takes 3 values"
    )

    def classify(results: list) -> None:
        event = httpx.post(base, json={"data": ["hello", names["classification"], 0.5]}, timeout=30).json()["event_id"]
        with httpx.stream("GET", f"{base}/{event}", timeout=60) as stream:
            results.append([line for line in stream.iter_lines() if line.startswith("event:")][-1])

    results = []
    threads = [threading.Thread(target=classify, args=(results,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    httpx.post(base, json={"data": ["hello", names["classification"]]}, timeout=30)  # among them
    for thread in threads:
        thread.join()
    assert results == ["event: complete"] * 8


JUNK = [None, "x", 10**6, {"a": 1}, [[1]], {"tokens": [1, 2]}, True]
JUNK_EVENT_DATA = [{"index": 10**6, "value": "x"}, {"index": "x", "value": "x"}, {"index": "x"}]  # and None


def test_private_events_answer_junk_without_http_500(app_url):
    """Every event a page calls on its own (private or undocumented: the token view, presets, model
    descriptions, the examples, ...), called directly with junk values and event data: a clear
    error (HTTP 4xx with a message) or a harmless answer, never HTTP 500."""
    config = httpx.get(f"{app_url}config", timeout=30).json()
    events = [dep for dep in config["dependencies"] if dep.get("api_visibility") != "public"]
    assert len(events) >= 20
    failures = []
    for event in events:
        for junk, event_data in [(junk, None) for junk in JUNK] + [
            (None, event_data) for event_data in JUNK_EVENT_DATA
        ]:
            body = {
                "data": [junk] * len(event["inputs"]),
                "fn_index": event["id"],
                "event_data": event_data,
                "session_hash": "junk-session",
            }
            response = httpx.post(f"{app_url}gradio_api/run/predict", json=body, timeout=60)
            answer = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
            if response.status_code >= 500 or (
                response.status_code >= 400 and not (answer.get("error") or answer.get("detail"))
            ):
                failures.append((event.get("api_name"), junk, event_data, response.status_code, response.text[:200]))
    assert not failures, failures[:10]


def test_a_clear_error_of_a_direct_call_is_not_http_500(app_url, names):
    """A direct call (what the page does for unqueued events) whose values a handler refuses gets
    422 and the message; Gradio answers every error of a direct call with 500."""
    config = httpx.get(f"{app_url}config", timeout=30).json()
    show_model = next(dep for dep in config["dependencies"] if dep.get("api_name") == "show_model")
    body = {"data": ["no-such-model"], "fn_index": show_model["id"], "session_hash": "junk-session"}
    response = httpx.post(f"{app_url}gradio_api/run/predict", json=body, timeout=30)
    assert response.status_code == 422 and "no-such-model" in response.json()["error"]
    body["data"] = [names["text"]]
    response = httpx.post(f"{app_url}gradio_api/run/predict", json=body, timeout=30)
    assert response.status_code == 200 and response.json()["data"][0].startswith("**Tiny GPT\\-Neo")


def test_no_server_path_reaches_a_page_or_a_client(app_url, tiny_config_path):
    """The tiny models are local folders: the page shows them by their folder's name only."""
    folder = str(Path(tiny_config_path).parent)
    page, config = httpx.get(app_url, timeout=30).text, httpx.get(f"{app_url}config", timeout=30).text
    assert folder not in page and folder not in config
    assert "the local folder" in config


def test_model_descriptions_show_no_path_and_no_markup():
    from pipelines.classification.config import ClassificationEntry
    from ui.common import describe_model

    markup = '<img src=x onerror="alert(1)"> **bold** [link](https://example.com) | cell'
    text = describe_model(
        ClassificationEntry(name=markup, source="/srv/app/trained-models/my-model", description=markup)
    )
    assert "/srv" not in text and "`my-model`" in text
    assert "<img" not in text and "**bold**" not in text and "](" not in text and " | " not in text
    hub = describe_model(ClassificationEntry(name="BERT", source="mrm8488/bert-tiny", revision="v1"))
    assert hub == "**BERT** — `mrm8488/bert-tiny @ v1`"


@pytest.mark.parametrize(
    "text",
    [
        "<img src=x onerror=alert(1)>",
        "**bold** _it_ `code`",
        "[a](javascript:x)",
        "a | b",
        "$$x^2$$",
        "# title",
        "1. item",
        "line\nbreak",
        "&lt;already&gt;",
        "back\\slash",
    ],
)
def test_markdown_text_renders_as_the_text_itself(text):
    import html as html_module

    import markdown_it

    from ui.common import markdown_text

    html = markdown_it.MarkdownIt("commonmark").enable("table").renderInline(markdown_text(text))
    shown = re.sub(r"<[^>]+>", "", html)  # a tag here would be markup that the text made
    assert "<" not in html.replace("&lt;", "") and html.count("&lt;") == text.count("<")
    assert html_module.unescape(shown) == text.replace("\n", " ")


def test_the_status_panel_shows_model_names_as_text(tiny_config):
    from ui import status_panel

    class Registry:
        @staticmethod
        def status():
            return [
                {
                    "task": "classification",
                    "name": "<b>x</b> | y",
                    "placement": "cpu / float32",
                    "memory_mb": 1.0,
                    "idle_s": 3,
                }
            ]

    rendered = status_panel.render(tiny_config, Registry())
    assert "<b>" not in rendered and "&lt;b&gt;x&lt;/b&gt; \\| y" in rendered.replace("\\/", "/")
