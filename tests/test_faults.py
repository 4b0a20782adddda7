"""Faults: broken or missing model files, a load that runs out of memory, two loads of one
model at once, a client that goes away mid-stream. Each gives a clear error (naming the
model), and the app keeps serving everything else."""

from __future__ import annotations

import gc
import json
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
import weakref

import httpx
import pytest
import torch
from gradio_client import Client
from gradio_client.exceptions import AppError

from pipelines.core.errors import ModelLoadError
from pipelines.studio import ModelRegistry, default_loaders
from tests.helpers import generates_at_once

CORRUPT = "Corrupt BERT (truncated weights)"
NO_WEIGHTS = "GPT-Neo without weights"
NOWHERE = "GPT-Neo from a missing folder"
OOM = "SD that runs out of memory"
SLOW = "Slow GPT-Neo"
SECONDS_PER_TOKEN = 0.1  # the slow model: 200 tokens take 20 s unless the generation is stopped
STOP_WITHIN_S = 8  # a generation whose client went away must end within this


def generation_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"generate-{name}" and t.is_alive()]


def wait_until(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture(scope="module")
def faulty_config(tiny_config, tmp_path_factory):
    """The tiny config plus broken entries: truncated weights, no weights, no folder, and
    entries whose loader runs out of memory or whose generation is slow."""
    root = tmp_path_factory.mktemp("faulty-models")
    corrupt = shutil.copytree(tiny_config.classification[0].source, root / "corrupt-bert")
    weights = corrupt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    no_weights = shutil.copytree(tiny_config.text[0].source, root / "no-weights-neo")
    (no_weights / "model.safetensors").unlink()
    classification, text, image = tiny_config.classification[0], tiny_config.text[0], tiny_config.image[0]
    return tiny_config.model_copy(
        update={
            "classification": [
                classification,
                classification.model_copy(update={"name": CORRUPT, "source": str(corrupt)}),
            ],
            "text": [
                text,
                text.model_copy(update={"name": NO_WEIGHTS, "source": str(no_weights)}),
                text.model_copy(update={"name": NOWHERE, "source": str(root / "nothing-here")}),
                text.model_copy(update={"name": SLOW}),
            ],
            "image": [image, image.model_copy(update={"name": OOM})],
        }
    )


def faulty_loaders() -> dict:
    loaders = default_loaders()
    load_text, load_image = loaders["text"], loaders["image"]

    def text(entry):
        generator = load_text(entry)
        if entry.name == SLOW:
            forward = generator.model.forward

            def slow_forward(*args, **kwargs):
                time.sleep(SECONDS_PER_TOKEN)
                return forward(*args, **kwargs)

            generator.model.forward = slow_forward
        return generator

    def image(entry):
        if entry.name == OOM:
            raise torch.OutOfMemoryError("CUDA error: tried to allocate 20.00 GiB (GPU 0; 7.79 GiB total capacity)")
        return load_image(entry)

    return loaders | {"text": text, "image": image}


@pytest.fixture(scope="module")
def faulty_app(faulty_config):
    from tests.helpers import launch_local

    registry = ModelRegistry(faulty_config, loaders=faulty_loaders())
    demo, url = launch_local(faulty_config, registry)
    yield url, registry
    demo.close()


@pytest.fixture(scope="module")
def faulty_client(faulty_app):
    client = Client(faulty_app[0], verbose=False)
    yield client
    client.close()


def other_models_still_serve(client, names) -> None:
    label, _, _ = client.predict(message="see you at 7", model_name=names["classification"], api_name="/classify")
    assert label["label"] in ("ham", "spam")
    text, stats, _ = client.predict(
        prompt="Once upon a time", model_name=names["text"], max_new_tokens=5, seed=1, api_name="/generate_text"
    )
    assert isinstance(text, str) and "seed 1" in stats
    gallery, _ = client.predict(prompt="a cat", model_name=names["image"], seed=1, api_name="/generate_image")
    assert len(gallery) == 1


# -- broken files -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "endpoint, field, model, why",
    [
        ("/classify", "message", CORRUPT, r"does not hold a complete model"),
        ("/generate_text", "prompt", NO_WEIGHTS, r"does not hold a complete model"),
        ("/generate_text", "prompt", NOWHERE, r"nothing-here' \(its full path is in the server log\) is missing"),
    ],
    ids=["truncated-safetensors", "no-weights-file", "no-folder"],
)
def test_broken_model_gives_clear_error_and_the_rest_keeps_serving(faulty_client, names, endpoint, field, model, why):
    for _ in range(2):  # a failed load is not cached as a success, and fails the same way again
        with pytest.raises(AppError, match=rf"^Cannot load model '{re.escape(model)}': .*{why}.*models\.yaml"):
            faulty_client.predict(api_name=endpoint, model_name=model, **{field: "hello there"})
    other_models_still_serve(faulty_client, names)


# -- out of memory -------------------------------------------------------------------------------
def test_out_of_memory_load_gives_clear_error_through_the_app(faulty_client, names):
    with pytest.raises(AppError, match=rf"^Cannot load model '{OOM}': out of memory .*smaller model"):
        faulty_client.predict(prompt="a cat", model_name=OOM, api_name="/generate_image")
    other_models_still_serve(faulty_client, names)


@pytest.mark.parametrize(
    "error",
    [
        MemoryError(),
        torch.OutOfMemoryError("tried to allocate 20.00 GiB"),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to allocate 21474836480 bytes"
        ),
    ],
    ids=["MemoryError", "torch.OutOfMemoryError", "cpu-allocator"],
)
def test_out_of_memory_load_releases_what_it_allocated(tiny_config, names, error):
    allocated = []

    def loader(entry):
        weights = torch.ones(4 * 2**20)  # 16 MB the failed load had already built
        allocated.append(weakref.ref(weights))
        raise error

    registry = ModelRegistry(tiny_config, loaders={"classification": loader})
    with pytest.raises(ModelLoadError) as err:
        registry.get("classification", names["classification"])
    assert str(err.value).startswith(f"Cannot load model '{names['classification']}': out of memory")
    gc.collect()
    assert allocated[0]() is None, "the failed load's tensors are still alive"
    assert not registry.is_loaded("classification", names["classification"])


# -- the same model twice at once ----------------------------------------------------------------
def test_concurrent_first_requests_load_each_real_model_once(tiny_config, names):
    loads = []
    real = default_loaders()

    def counting(task):
        def load(entry):
            loads.append(entry.name)
            return real[task](entry)

        return load

    registry = ModelRegistry(tiny_config, loaders={task: counting(task) for task in real})
    results: dict[str, list] = {task: [] for task in real}
    errors = []

    def get(task):
        try:
            results[task].append(registry.get(task, names[task]))
        except Exception as err:
            errors.append(err)

    threads = [threading.Thread(target=get, args=(task,)) for task in real for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(loads) == sorted(names.values())
    assert all(len(r) == 4 and len({id(p) for p in r}) == 1 for r in results.values())


def test_concurrent_requests_for_a_broken_model_all_get_the_error(faulty_client, names):
    jobs = [faulty_client.submit(message=f"hi {i}", model_name=CORRUPT, api_name="/classify") for i in range(4)]
    for job in jobs:
        with pytest.raises(AppError, match=rf"^Cannot load model '{re.escape(CORRUPT)}'"):
            job.result(timeout=60)
    other_models_still_serve(faulty_client, names)


# -- a client that goes away mid-stream ------------------------------------------------------------
def generate_text_request(client: Client, fn_index: int, prompt: str) -> list:
    """The positional data of a /generate_text call on the slow model: 200 new tokens."""
    params = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/generate_text"]["parameters"]
    values = {p["parameter_name"]: p["parameter_default"] for p in params if p["parameter_has_default"]}
    values |= {"prompt": prompt, "model_name": SLOW, "max_new_tokens": 200}
    return [values[p["parameter_name"]] for p in params]


def test_closing_the_stream_mid_generation_stops_it(faulty_app, faulty_client):
    url, registry = faulty_app
    fn_index = faulty_client.endpoints[faulty_client._infer_fn_index("/generate_text", None)].fn_index
    session = uuid.uuid4().hex
    body = {
        "data": generate_text_request(faulty_client, fn_index, "Once upon a time"),
        "fn_index": fn_index,
        "session_hash": session,
        "event_data": None,
        "trigger_id": None,
    }
    assert httpx.post(f"{url}gradio_api/queue/join", json=body, timeout=30).status_code == 200
    with httpx.stream("GET", f"{url}gradio_api/queue/data", params={"session_hash": session}, timeout=60) as stream:
        for line in stream.iter_lines():  # read until the text has started to stream, then hang up
            if line.startswith("data:") and json.loads(line[5:]).get("msg") == "process_generating":
                break
        assert generation_threads(SLOW), "the generation should be running while the client listens"
    assert wait_until(lambda: not generation_threads(SLOW), STOP_WITHIN_S), (
        "the generation kept running without its client"
    )
    assert generates_at_once(registry.get("text", SLOW)), "the model is still held"


CLIENT_SCRIPT = """
import sys
from gradio_client import Client
client = Client(sys.argv[1], verbose=False)
job = client.submit(prompt="Once upon a time", model_name=sys.argv[2], max_new_tokens=200, api_name="/generate_text")
for update in job:
    print("streaming", flush=True)
"""


def test_killed_client_process_does_not_leave_a_generation_running(faulty_app):
    url, registry = faulty_app
    client = subprocess.Popen([sys.executable, "-c", CLIENT_SCRIPT, url, SLOW], stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout.readline().strip() == "streaming"
        assert generation_threads(SLOW)
    finally:
        client.kill()
        client.wait()
    assert wait_until(lambda: not generation_threads(SLOW), STOP_WITHIN_S), (
        "the generation kept running after its client was killed"
    )
    assert generates_at_once(registry.get("text", SLOW)), "the model is still held"


# -- one visitor cannot break the app or read another's models (issue 28) ----------------------------------
TRAIN_FAST = dict(epochs=1, transformer_weight=1.0, batch_size=8, learning_rate=5e-3)


def test_a_lone_surrogate_name_is_refused_and_pages_and_restarts_still_work(
    app_url, client, tiny_config_path, tiny_config, tmp_path
):
    """gradio_client cannot send a lone surrogate (httpx encodes JSON as UTF-8); raw HTTP can, as an escape."""
    from app import build_app
    from pipelines.classification import trained_models
    from pipelines.studio import load_config
    from tests.test_train_job import write_messages

    data = write_messages(tmp_path / "messages.tsv")
    folder = trained_models.folder_of(tiny_config)
    before = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    uploaded = httpx.post(f"{app_url}gradio_api/upload", files={"files": data.open("rb")}, timeout=30).json()[0]
    parameters = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/train_classifier"][
        "parameters"
    ]
    values = (
        {p["parameter_name"]: p["parameter_default"] for p in parameters}
        | TRAIN_FAST
        | {"file": {"path": uploaded, "meta": {"_type": "gradio.FileData"}}, "save_as": "b\udfff"}
    )
    body = json.dumps({"data": [values[p["parameter_name"]] for p in parameters]})  # "\udfff" travels as a JSON escape
    event = httpx.post(
        f"{app_url}gradio_api/call/train_classifier",
        content=body,
        headers={"content-type": "application/json"},
        timeout=30,
    ).json()["event_id"]
    answer = httpx.get(f"{app_url}gradio_api/call/train_classifier/{event}", timeout=60).text
    assert "event: error" in answer and "save_as: contains a lone surrogate (U+DFFF)" in answer
    assert httpx.get(app_url, timeout=30).status_code == 200  # pages still load
    assert (sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []) == before  # nothing published
    restarted = load_config(tiny_config_path)
    build_app(restarted)  # the next start-up
    assert restarted.names("classification")[0] == tiny_config.names("classification")[0]


def test_one_sessions_trained_model_is_neither_listed_used_nor_downloaded_by_another(per_session_app, tmp_path):
    from gradio_client import handle_file

    from tests.helpers import call_event, fn_index_of
    from tests.test_train_job import write_messages

    demo, url, config = per_session_app
    alice, bob = Client(url, verbose=False), Client(url, verbose=False)
    data = write_messages(tmp_path / "messages.tsv")
    *_, final = alice.predict(
        file=handle_file(str(data)), save_as="Alice's model", api_name="/train_classifier", **TRAIN_FAST
    )
    name = final["model"]
    assert re.fullmatch(r"Alice's model #[a-z2-7]{8}", name)

    # Alice lists, uses and downloads it
    label, _, _ = alice.predict(message="WIN a prize", model_name=name, api_name="/classify")
    assert label["label"] in ("ham", "spam")
    listing = fn_index_of(demo, "trained_list")
    outcome, (table, chosen, snippet) = call_event(url, listing, [], alice.session_hash)
    assert outcome == "complete" and [row[0] for row in table["data"]] == [name] and "source: ./" in snippet
    zipping = fn_index_of(demo, "zip_chosen")
    outcome, (archive,) = call_event(url, zipping, [name], alice.session_hash)
    assert outcome == "complete" and archive["path"].endswith(".zip")
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(httpx.get(archive["url"], timeout=30).content)) as unzipped:
        saved = {n: unzipped.read(n).decode() for n in unzipped.namelist() if n.endswith(".json")}
    base_folder = config.training.base_models[0].source
    assert saved and not any(
        base_folder in text or str(data.parent) in text or "/tmp/" in text for text in saved.values()
    )

    # Bob: not in his lists, not by its shown name, no download, and no trace of it in his errors
    outcome, (table, chosen, snippet) = call_event(url, listing, [], bob.session_hash)
    assert outcome == "complete" and not table["data"] and chosen.get("choices") == [] and not snippet
    dropdown = fn_index_of(demo, "list_models")
    outcome, (update,) = call_event(url, dropdown, [], bob.session_hash)
    assert name not in json.dumps(update) and config.default_name("classification") in json.dumps(update)
    with pytest.raises(AppError, match=r"unknown classification model \"Alice's model\"") as refused:
        bob.predict(message="WIN a prize", model_name="Alice's model", api_name="/classify")
    assert name not in str(refused.value)
    outcome, message = call_event(url, zipping, [name], bob.session_hash)
    assert outcome == "error" and (
        "Choose one of your trained models first" in message or "not in the list of choices" in message
    )
    outcome, (update,) = call_event(url, dropdown, [], alice.session_hash)
    assert name in json.dumps(update)


# -- request bodies are bounded before they are read (issue 28) --------------------------------------
def send_raw(url: str, head: str, chunks=()) -> tuple[int, str]:
    """Send an HTTP request's head (and `chunks` of its body) on a socket, without finishing the
    body, and read the answer: (status, body). A server waiting for the rest times out (failing)."""
    import socket
    from urllib.parse import urlsplit

    host, port = urlsplit(url).hostname, urlsplit(url).port
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
        for chunk in chunks:
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        answer = b""
        while not answered(answer) and (data := sock.recv(65536)):
            answer += data
    head_part, _, body = answer.partition(b"\r\n\r\n")
    return int(head_part.split()[1]), body.decode()


def answered(answer: bytes) -> bool:
    """Whether `answer` holds an HTTP response's head and its whole Content-Length body."""
    head, separator, body = answer.partition(b"\r\n\r\n")
    length = re.search(rb"content-length: *(\d+)", head, re.I)
    return bool(separator and length and len(body) >= int(length.group(1)))


def test_an_over_limit_json_body_gets_413_before_it_is_read(app_url, tiny_config):
    from ui.request_limits import json_body_limit

    limit = json_body_limit(tiny_config.settings.max_text_chars)
    head = "POST /gradio_api/queue/join HTTP/1.1\nHost: x\nContent-Type: application/json\n"
    # a declared length over the limit: refused with none of the body sent
    status, body = send_raw(app_url, head + f"Content-Length: {10 * limit}\n")
    assert status == 413 and f"over {limit:,} bytes, the most a request may send" in json.loads(body)["detail"]
    # no declared length (chunked): refused once the body read so far passes the limit, though it never ends
    chunk = b"x" * 65536
    status, body = send_raw(app_url, head + "Transfer-Encoding: chunked\n", [chunk] * (limit // len(chunk) + 1))
    assert status == 413 and "the most a request may send" in json.loads(body)["detail"]
    # through gradio_client: an HTTP error, not a hang; the server keeps serving
    with pytest.raises(httpx.HTTPStatusError, match="413"):
        Client(app_url, verbose=False).predict(message="x" * (limit + 1), api_name="/classify")
    assert httpx.get(f"{app_url}config", timeout=30).status_code == 200


def test_the_body_limit_holds_the_longest_request_and_leaves_uploads_to_theirs(
    app_url, client, names, tiny_config, tmp_path
):
    from ui.request_limits import json_body_limit

    limit, longest = (
        json_body_limit(tiny_config.settings.max_text_chars),
        "\U0001f600" * tiny_config.settings.max_text_chars,
    )
    parameters = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/generate_image"][
        "parameters"
    ]
    values = {p["parameter_name"]: p["parameter_default"] for p in parameters} | {
        "prompt": longest,
        "negative_prompt": longest,
    }
    body = {"data": [values[p["parameter_name"]] for p in parameters], "fn_index": 99, "session_hash": "x" * 64}
    assert len(json.dumps(body)) < limit  # two longest texts, each character a 12-byte escape (as httpx sends it)
    label, _, _ = client.predict(
        message=longest, model_name=names["classification"], api_name="/classify"
    )  # 1.2 MB of JSON
    assert label["label"] in ("ham", "spam")
    upload = tmp_path / "messages.csv"
    upload.write_text("text\n" + "hello there\n" * (limit // 12 + 1000), encoding="utf-8")  # over the JSON limit
    assert upload.stat().st_size > limit
    answer = httpx.post(f"{app_url}gradio_api/upload", files={"files": upload.open("rb")}, timeout=60)
    assert answer.status_code == 200 and len(answer.json()) == 1
