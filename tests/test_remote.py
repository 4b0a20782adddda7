"""Remote models: a second instance of this app (gradio backend) and `transformers serve`
(openai backend) on localhost, both serving the tiny models, used through a first app."""

from __future__ import annotations

import itertools
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar

import httpx
import numpy as np
import pytest
import yaml
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

from pipelines.core.errors import ConfigError, InputError, ModelLoadError, RemoteModelError
from pipelines.studio import ModelRegistry, parse_config
from pipelines.text.contract import TextParams
from pipelines.text.remote import OpenAITextGenerator
from tests.helpers import stop_process

REPO_ROOT = Path(__file__).resolve().parent.parent
# How long a server started by these tests may take to answer its health check.
STARTUP_TIMEOUT_S = 120

REMOTE_CLASSIFIER = "Remote tiny BERT (second app)"
REMOTE_TEXT = "Remote tiny GPT-Neo (second app)"
REMOTE_IMAGE = "Remote tiny SD (second app)"
SERVED_TEXT = "Tiny GPT-Neo (transformers serve)"
DOWN_CLASSIFIER = "Classifier on a server that is down"
DOWN_TEXT = "GPT-Neo on a server that is down"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(command: list[str], log_path: Path) -> subprocess.Popen:
    with open(log_path, "wb") as log:
        return subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)


def wait_until_ready(process: subprocess.Popen, health_url: str, log_path: Path) -> None:
    """Wait until `health_url` answers 200; fail with the server's log if it dies or never does."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(health_url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"{process.args[0]} did not start: {log_path.read_text(errors='replace')[-2000:]}")


def stop_server(process: subprocess.Popen) -> None:
    stop_process(process)


@pytest.fixture(scope="module")
def served_model(tiny_config):
    """The local path of the tiny GPT-Neo: `transformers serve` knows the model by it."""
    return tiny_config.text[0].source


@pytest.fixture(scope="module")
def servers(tiny_config_path, served_model, tmp_path_factory):
    """Started together (each takes seconds to import torch): another instance of this app in its
    own process, and `transformers serve` with the tiny GPT-Neo preloaded (offline, CPU)."""
    logs = tmp_path_factory.mktemp("servers")
    app_port, serve_port = free_port(), free_port()
    urls = {"app": f"http://127.0.0.1:{app_port}/", "serve": f"http://127.0.0.1:{serve_port}"}
    commands = {
        "app": [
            sys.executable,
            "app.py",
            "--config",
            str(tiny_config_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(app_port),
            "--no-preload",
        ],
        # the `transformers` command's module, run by this interpreter (wherever pip put the script)
        "serve": [
            sys.executable,
            "-m",
            "transformers.cli.transformers",
            "serve",
            served_model,
            "--host",
            "127.0.0.1",
            "--port",
            str(serve_port),
            "--device",
            "cpu",
        ],
    }
    health = {"app": urls["app"] + "config", "serve": urls["serve"] + "/health"}
    processes = {}
    try:
        for name, command in commands.items():
            processes[name] = launch(command, logs / f"{name}.log")
        for name, process in processes.items():
            wait_until_ready(process, health[name], logs / f"{name}.log")
        yield urls
    finally:
        for process in processes.values():
            stop_server(process)


@pytest.fixture(scope="module")
def second_app_url(servers):
    return servers["app"]


@pytest.fixture(scope="module")
def transformers_serve_url(servers):
    return servers["serve"]


@pytest.fixture(scope="module")
def remote_config(tiny_config, second_app_url, transformers_serve_url, served_model):
    """A config whose every entry is remote (plus the local tiny models, to show they keep working)."""
    local = {
        task: [e.model_dump(exclude_defaults=True) for e in tiny_config.entries(task)]
        for task in ("classification", "text", "image")
    }
    down_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    raw = {
        "classification": [
            {
                "name": REMOTE_CLASSIFIER,
                "backend": "gradio",
                "url": second_app_url,
                "remote_model": tiny_config.classification[0].name,
            },
            {"name": DOWN_CLASSIFIER, "backend": "gradio", "url": down_url, "timeout_s": 5},
            *local["classification"],
        ],
        "text": [
            {
                "name": REMOTE_TEXT,
                "backend": "gradio",
                "url": second_app_url,
                "remote_model": tiny_config.text[0].name,
                "defaults": {"max_new_tokens": 24},
                "limits": {"max_new_tokens": 200},
            },
            {
                "name": SERVED_TEXT,
                "backend": "openai",
                "server": "transformers",
                "url": transformers_serve_url,
                "remote_model": served_model,
                "defaults": {"max_new_tokens": 24},
                "limits": {"max_new_tokens": 200},
            },
            {"name": DOWN_TEXT, "backend": "openai", "url": down_url, "remote_model": "gpt-neo", "timeout_s": 5},
            *local["text"],
        ],
        "image": [
            {
                "name": REMOTE_IMAGE,
                "backend": "gradio",
                "url": second_app_url,
                "remote_model": tiny_config.image[0].name,
                # what the remote entry offers and allows: the same as the model it names
                **tiny_config.image[0].model_dump(include={"defaults", "limits", "schedulers"}),
            },
            *local["image"],
        ],
    }
    return parse_config(raw)


@pytest.fixture(scope="module")
def remote_registry(remote_config):
    return ModelRegistry(remote_config)


@pytest.fixture(scope="module")
def first_app(remote_config, remote_registry):
    """The app whose models are remote, launched in this process; a client of it and one of the second app."""
    from tests.helpers import launch_local

    demo, url = launch_local(remote_config, remote_registry, max_queue=16)
    yield Client(url, verbose=False)
    demo.close()


@pytest.fixture(scope="module")
def second_app(second_app_url):
    return Client(second_app_url, verbose=False)


# -- through a second instance of the app (backend: gradio) ----------------------------------
def test_classification_through_second_app(first_app, second_app, names):
    message = "WIN a FREE prize, call now"
    label, verdict, _ = first_app.predict(message, REMOTE_CLASSIFIER, 0.5, api_name="/classify")
    direct, _, _ = second_app.predict(message, names["classification"], 0.5, api_name="/classify")
    scores = {c["label"]: c["confidence"] for c in label["confidences"]}
    assert scores == pytest.approx({c["label"]: c["confidence"] for c in direct["confidences"]})
    assert ("SPAM" if scores["spam"] >= 0.5 else "HAM") in verdict


def test_remote_classifier_takes_batches_and_files(remote_registry, second_app, names):
    classifier = remote_registry.get("classification", REMOTE_CLASSIFIER)
    assert classifier.memory_mb == 0 and "127.0.0.1" in classifier.placement
    always, never = classifier(["Free prize!", "Free prize!"], threshold=[0.0, 1.0])
    assert (always["label"], never["label"]) == ("spam", "ham") and always["scores"] == never["scores"]
    texts = [f"message number {i}, call now" for i in range(20)]
    progress = []
    results = classifier.classify_many(texts, 0.5, on_progress=lambda done, total: progress.append((done, total)))
    direct, _, _ = second_app.predict(texts[7], names["classification"], 0.5, api_name="/classify")
    assert len(results) == 20 and progress[-1] == (20, 20)
    assert results[7]["scores"]["spam"] == pytest.approx(
        {c["label"]: c["confidence"] for c in direct["confidences"]}["spam"]
    )
    assert classifier.spam_scores(texts[:3]) == pytest.approx([r["scores"]["spam"] for r in results[:3]])


def test_text_streams_through_second_app(first_app, second_app, names):
    job = first_app.submit("Once upon a time", REMOTE_TEXT, 40, 0.8, 0.95, 50, 1.1, True, 7, api_name="/generate_text")
    updates = [text for text, _stats, _details in job]
    final_text, final_stats, _final_details = job.result()
    assert len(updates) >= 3
    assert all(b.startswith(a) for a, b in itertools.pairwise(updates))
    assert "seed 7" in final_stats
    direct_text, _, _ = second_app.predict(
        "Once upon a time", names["text"], 40, 0.8, 0.95, 50, 1.1, True, 7, api_name="/generate_text"
    )
    assert final_text == direct_text  # same model, same seed: the remote did the work


def stream_and_stop_after_two_updates(generator, seed: int) -> list[dict]:
    """Ask for 200 tokens and press Stop once two updates have arrived; every update seen."""
    stop = threading.Event()
    updates = []
    for update in generator.stream(
        "Once upon a time", generator.default_params(max_new_tokens=200, seed=seed), stop=stop
    ):
        updates.append(update)
        if len(updates) == 2:
            stop.set()
    return updates


def test_text_stop_through_second_app(remote_registry):
    generator = remote_registry.get("text", REMOTE_TEXT)
    updates = stream_and_stop_after_two_updates(generator, seed=1)
    final = updates[-1]
    assert final["done"] and final["stopped"] and final["seed"] == 1
    assert final["new_tokens"] < 200
    # the remote is free again at once
    assert generator.generate("Hello", generator.default_params(max_new_tokens=5))["done"]


def test_image_through_second_app(first_app, second_app, names):
    gallery, info = first_app.predict("a cat", REMOTE_IMAGE, "", 2, 0.0, 64, 96, 2, 3, api_name="/generate_image")
    direct, _ = second_app.predict("a cat", names["image"], "", 2, 0.0, 64, 96, 2, 3, api_name="/generate_image")
    assert len(gallery) == 2 and info["seeds"] == [3, 4]
    for item, reference in zip(gallery, direct):
        with Image.open(item["image"]) as image, Image.open(reference["image"]) as expected:
            assert image.format == "PNG" and image.size == (64, 96)
            assert image.tobytes() == expected.tobytes()  # same seeds, same pixels


def test_image_to_image_through_second_app(first_app, second_app, names, tmp_path):
    from gradio_client import handle_file

    Image.new("RGB", (96, 64), (200, 120, 40)).save(tmp_path / "start.png")
    args = dict(prompt="a cat", steps=4, seed=9, strength=0.5, init_image=handle_file(str(tmp_path / "start.png")))
    gallery, info = first_app.predict(model_name=REMOTE_IMAGE, **args, api_name="/generate_image")
    direct, _ = second_app.predict(model_name=names["image"], **args, api_name="/generate_image")
    assert info["parameters"]["strength"] == 0.5 and info["parameters"]["init_image"]["original_size"] == [96, 64]
    with Image.open(gallery[0]["image"]) as image, Image.open(direct[0]["image"]) as expected:
        assert image.tobytes() == expected.tobytes()  # the remote started from the same picture


def test_image_pipeline_reports_remote_steps(remote_registry):
    generator = remote_registry.get("image", REMOTE_IMAGE)
    steps = []
    results = generator(
        "a cat", generator.default_params(steps=12, seed=5), on_step=lambda done, total: steps.append((done, total))
    )["images"]
    assert [r["seed"] for r in results] == [5] and results[0]["image"].size == (64, 64)
    assert steps[-1] == (12, 12) and all(total == 12 and 0 <= done <= 12 for done, total in steps)
    assert steps == sorted(steps)


def test_inputs_are_checked_before_the_remote_is_asked(first_app, remote_registry):
    with pytest.raises(AppError, match="message: is empty"):
        first_app.predict("   ", REMOTE_CLASSIFIER, 0.5, api_name="/classify")
    with pytest.raises(AppError, match="width: must be"):
        first_app.predict("a cat", REMOTE_IMAGE, "", 2, 0.0, 60, 64, 1, 1, api_name="/generate_image")
    with pytest.raises(InputError, match=r"max_new_tokens: must be an integer in \[1, 200\]"):
        next(remote_registry.get("text", REMOTE_TEXT).stream("Hi", TextParams(max_new_tokens=201)))


def test_prompt_truncation_goes_through_second_app(remote_registry):
    generator = remote_registry.get("text", REMOTE_TEXT)
    long_prompt = "Once upon a time there was a little robot. " * 40  # over the tiny model's 256 positions
    final = generator.generate(long_prompt, generator.default_params(max_new_tokens=8, truncate_prompt=True))
    assert final["done"] and final["truncated_tokens"] > 0
    with pytest.raises(RemoteModelError, match="prompt: is .* tokens"):  # refused by the remote, as locally
        generator.generate(long_prompt, generator.default_params(max_new_tokens=8))


def test_unknown_remote_model_fails_at_load(second_app_url):
    config = parse_config(
        {
            "classification": [
                {"name": "Wrong name", "backend": "gradio", "url": second_app_url, "remote_model": "No such model"}
            ],
            "text": [{"name": "T", "source": "unused"}],
            "image": [{"name": "I", "source": "unused"}],
        }
    )
    with pytest.raises(ModelLoadError, match="has no model 'No such model'.*offers"):
        ModelRegistry(config).get("classification", "Wrong name")


# -- `transformers serve` (backend: openai) ---------------------------------------------------
def test_served_text_streams(remote_registry):
    generator = remote_registry.get("text", SERVED_TEXT)
    assert isinstance(generator, OpenAITextGenerator) and generator.memory_mb == 0
    updates = list(generator.stream("Once upon a time", generator.default_params(max_new_tokens=30, seed=3)))
    texts = [u["text"] for u in updates]
    assert len(updates) >= 3 and updates[-1]["done"] and not updates[-1]["stopped"]
    assert all(b.startswith(a) for a, b in itertools.pairwise(texts))
    assert 0 < updates[-1]["new_tokens"] <= 30 and updates[-1]["seed"] == 3


def test_served_text_stop_ends_generation_early(remote_registry):
    generator = remote_registry.get("text", SERVED_TEXT)
    updates = stream_and_stop_after_two_updates(generator, seed=4)
    assert updates[-1]["done"] and updates[-1]["stopped"]
    assert updates[-1]["new_tokens"] < 200
    assert len(updates) <= 3  # nothing streamed after Stop


def test_served_text_error_names_the_model_and_server(remote_registry, transformers_serve_url):
    """The tiny GPT-Neo has 256 positions: the server fails a longer prompt, and says so."""
    generator = remote_registry.get("text", SERVED_TEXT)
    with pytest.raises(
        RemoteModelError,
        match=f"Remote model '{re.escape(SERVED_TEXT)}' \\(openai server at {transformers_serve_url}\\): .+",
    ):
        generator.generate("Once upon a time " * 100, generator.default_params(max_new_tokens=5))
    assert generator.generate("Hello", generator.default_params(max_new_tokens=5))["done"]  # and serves the next


def test_served_text_through_first_app(first_app):
    job = first_app.submit("Once upon a time", SERVED_TEXT, 30, 0.8, 0.95, 50, 1.1, True, 11, api_name="/generate_text")
    updates = [text for text, _stats, _details in job]
    final_text, final_stats, _final_details = job.result()
    assert len(updates) >= 2 and all(b.startswith(a) for a, b in itertools.pairwise(updates))
    assert final_text == updates[-1] and "seed 11" in final_stats


# -- a remote that is down -----------------------------------------------------------------
def test_down_remote_names_itself_and_the_rest_keeps_working(first_app, remote_config, names):
    down_url = remote_config.entry("classification", DOWN_CLASSIFIER).url
    with pytest.raises(AppError, match=f"Cannot load model '{DOWN_CLASSIFIER}'.*{down_url}.*running"):
        first_app.predict("hello", DOWN_CLASSIFIER, 0.5, api_name="/classify")
    with pytest.raises(AppError, match=f"Cannot load model '{DOWN_TEXT}'.*openai server"):
        first_app.predict("hello", DOWN_TEXT, 24, 0.8, 0.95, 50, 1.1, True, 1, api_name="/generate_text")
    # the other models of every tab still answer
    label, _, _ = first_app.predict("hello", names["classification"], 0.5, api_name="/classify")
    assert label["label"] in ("ham", "spam")
    _text, stats, _ = first_app.predict("Hello", REMOTE_TEXT, 5, 0.8, 0.95, 50, 1.1, True, 2, api_name="/generate_text")
    assert "seed 2" in stats


def test_remote_that_stops_answering_times_out_with_its_name(tiny_config):
    """A server that accepts connections but never answers (hung, or overloaded)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        config = parse_config(
            {
                "classification": [{"name": "C", "source": "unused"}],
                "image": [{"name": "I", "source": "unused"}],
                "text": [
                    {"name": "Hung server", "backend": "openai", "url": url, "remote_model": "m", "timeout_s": 0.5}
                ],
            }
        )
        with pytest.raises(ModelLoadError, match=f"Cannot load model 'Hung server'.*{url}.*[Tt]imed? ?out"):
            ModelRegistry(config).get("text", "Hung server")


# -- config and request mapping (no server needed) --------------------------------------------
MINIMAL = {
    "classification": [{"name": "C", "source": "c"}],
    "text": [{"name": "T", "source": "t"}],
    "image": [{"name": "I", "source": "i"}],
}


@pytest.mark.parametrize(
    "entry, task, error",
    [
        ({"name": "R", "backend": "gradio"}, "text", r"text\[0\] \('R'\), field 'url'.*required for backend 'gradio'"),
        (
            {"name": "R", "backend": "openai", "url": "localhost:8000", "remote_model": "m"},
            "text",
            r"field 'url'.*http://",
        ),
        ({"name": "R", "backend": "openai", "url": "http://h:8000"}, "text", r"needs `remote_model`"),
        (
            {"name": "R", "backend": "openai", "url": "http://h:8000", "remote_model": "m"},
            "image",
            r"backend 'openai' cannot serve this task",
        ),
        ({"name": "R"}, "image", r"image\[0\] \('R'\), field 'source'.*required for local models"),
    ],
)
def test_config_rejects_incomplete_remote_entries(entry, task, error):
    with pytest.raises(ConfigError, match=error):
        parse_config(MINIMAL | {task: [entry]})


def test_models_yaml_remote_examples_are_valid():
    """The commented-out remote entries in models.yaml work once uncommented."""
    text = (REPO_ROOT / "models.yaml").read_text(encoding="utf-8")
    uncommented = re.sub(r"(?m)^  # (- |  )", r"  \1", text)
    config = parse_config(yaml.safe_load(uncommented))
    remote = {
        (task, e.name, e.backend)
        for task in ("classification", "text", "image")
        for e in config.entries(task)
        if e.backend != "local"
    }
    assert {backend for _, _, backend in remote} == {"openai", "gradio"}
    assert {task for task, _, _ in remote} == {"classification", "text", "image"}


def openai_entry(server: str):
    return parse_config(
        MINIMAL
        | {"text": [{"name": "R", "backend": "openai", "url": "http://h:8000", "remote_model": "m", "server": server}]}
    ).text[0]


def test_sampling_fields_follow_the_servers_dialect():
    params = TextParams(
        max_new_tokens=10, temperature=0.7, top_p=0.9, top_k=0, repetition_penalty=1.2, do_sample=True, seed=5
    )
    vllm = OpenAITextGenerator(openai_entry("vllm"), client=None).request("Hi", params, seed=5)
    assert (
        vllm["extra_body"] == {"top_k": -1, "repetition_penalty": 1.2}
        and vllm["temperature"] == 0.7
        and vllm["max_tokens"] == 10
    )
    greedy = OpenAITextGenerator(openai_entry("openai"), client=None).request("Hi", TextParams(do_sample=False), seed=5)
    assert greedy["temperature"] == 0.0 and "extra_body" not in greedy
    served = OpenAITextGenerator(openai_entry("transformers"), client=None).request("Hi", params, seed=5)
    assert "temperature" not in served and '"top_k": 0' in served["extra_body"]["generation_config"]


def test_plain_openai_server_needs_defaults_it_can_honour():
    entry = openai_entry("openai")  # the text defaults have top_k 50 and repetition_penalty 1.1
    with pytest.raises(ModelLoadError, match=r"set `defaults: \{top_k: 0, repetition_penalty: 1.0\}`"):
        OpenAITextGenerator.from_entry(entry)


def test_plain_openai_server_refuses_fields_it_cannot_honour():
    generator = OpenAITextGenerator(openai_entry("openai"), client=None)
    with pytest.raises(InputError, match="truncate_prompt: .*shorten the prompt"):
        generator.check_inputs("Hi", TextParams(top_k=0, repetition_penalty=1.0, truncate_prompt=True))
    with pytest.raises(InputError, match="top_k: .*set it to 0"):
        generator.check_inputs("Hi", TextParams(top_k=50, repetition_penalty=1.0))
    with pytest.raises(InputError, match="repetition_penalty: .*set it to 1.0"):
        generator.check_inputs("Hi", TextParams(top_k=0, repetition_penalty=1.1))


# -- what the model considered, remotely --------------------------------------------------------
def test_token_probabilities_and_next_tokens_come_through_second_app(remote_registry, second_app, names):
    generator = remote_registry.get("text", REMOTE_TEXT)
    assert generator.why_no_token_probabilities() is None
    final = generator.generate(
        "Once upon a time", generator.default_params(max_new_tokens=10, seed=3, token_probabilities=True)
    )
    _text, _stats, direct = second_app.predict(
        "Once upon a time",
        names["text"],
        10,
        0.8,
        0.95,
        50,
        1.1,
        True,
        3,
        token_probabilities=True,
        api_name="/generate_text",
    )
    assert final["tokens"] == direct["tokens"] and len(final["tokens"]) == 10
    from pipelines.text.contract import NextTokenParams

    explored = generator.next_tokens("Once upon a time", NextTokenParams(top_k=4, temperature=0.5))
    assert explored == second_app.predict("Once upon a time", names["text"], 4, 0.5, api_name="/next_tokens")[-1]


def test_embeddings_come_through_second_app(remote_registry, second_app, names):
    classifier = remote_registry.get("classification", REMOTE_CLASSIFIER)
    texts = ["WIN a FREE prize, call now", "see you at lunch", "running late"]
    progress = []
    vectors = classifier.embed(texts, on_progress=lambda done, total: progress.append((done, total)), batch_size=2)
    direct = second_app.predict(messages=texts, model_name=names["classification"], api_name="/embed")
    assert vectors == pytest.approx(np.array(direct["vectors"]), abs=1e-6) and progress == [(2, 3), (3, 3)]


def test_a_server_without_logprobs_says_the_token_view_is_not_available(remote_registry):
    generator = remote_registry.get("text", SERVED_TEXT)
    final = generator.generate(
        "Once upon a time", generator.default_params(max_new_tokens=8, seed=3, token_probabilities=True)
    )
    assert final["text"] and final["tokens"] is None
    assert "returned no log-probabilities" in final["tokens_unavailable"] and SERVED_TEXT in final["tokens_unavailable"]
    with pytest.raises(InputError, match=r"^model: .*OpenAI-compatible server.*not the whole next-token distribution"):
        generator.next_tokens("Once upon a time")


class FakeCompletionsServer:
    """An OpenAI-compatible completions server that streams fixed tokens with `logprobs`, as vLLM does."""

    TOKENS: ClassVar[list] = [
        (" Paris", -0.2, {" Paris": -0.2, " the": -2.1, " a": -3.0}),
        (".", -1.6, {"!": -0.5, ".": -1.6, ",": -2.4}),
    ]

    def __init__(self):
        import http.server
        import json

        tokens = self.TOKENS

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # /v1/models
                body = json.dumps(
                    {"object": "list", "data": [{"id": "m", "object": "model", "created": 0, "owned_by": "me"}]}
                ).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):  # /v1/completions, streamed
                request = json.loads(self.rfile.read(int(self.headers["content-length"])))
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                for text, logprob, top in tokens:
                    logprobs = {
                        "tokens": [text],
                        "token_logprobs": [logprob],
                        "top_logprobs": [top],
                        "text_offset": [0],
                    }
                    choice = {
                        "index": 0,
                        "text": text,
                        "finish_reason": None,
                        "logprobs": logprobs if request.get("logprobs") else None,
                    }
                    chunk = {"id": "c", "object": "text_completion", "created": 0, "model": "m", "choices": [choice]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_logprobs_of_an_openai_compatible_server_become_the_token_view():
    import math

    server = FakeCompletionsServer()
    try:
        config = parse_config(
            MINIMAL | {"text": [{"name": "R", "backend": "openai", "url": server.url, "remote_model": "m"}]}
        )
        generator = OpenAITextGenerator.from_entry(config.text[0])
        final = generator.generate(
            "The capital of France is", generator.default_params(token_probabilities=True, max_new_tokens=2)
        )
        assert generator.request("Hi", generator.default_params(token_probabilities=True), seed=1)["logprobs"] == 5
    finally:
        server.server.shutdown()
    paris, stop = final["tokens"]
    assert final["text"] == " Paris." and final["tokens_unavailable"] is None
    assert (paris["token"], paris["most_likely"], paris["rank"]) == (" Paris", True, 1)
    assert paris["probability"] == pytest.approx(math.exp(-0.2))
    assert [a["token"] for a in paris["alternatives"]] == [" Paris", " the", " a"]
    assert (stop["most_likely"], stop["rank"], stop["alternatives"][0]["token"]) == (False, 2, "!")
