"""Ready for Hugging Face Spaces: front matter, command line, ZeroGPU wrapping, no CUDA in the main
process, and `python app.py` starting on CPU with the `spaces` package installed."""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from app import parse_args
from pipelines.core import zerogpu as gpu
from pipelines.studio import load_config, on_gpu, request_seconds
from pipelines.tasks import TASKS
from tests.helpers import stop_process

ROOT = Path(__file__).resolve().parent.parent
START_S = 120  # bound on the app's start-up in a subprocess; only reached if it hangs


def front_matter() -> dict:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert match, "README.md must start with Spaces front matter between --- lines"
    return yaml.safe_load(match.group(1))


def pinned(package: str) -> str:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        if name.strip().lower() == package:
            return version.strip()
    raise AssertionError(f"{package} is not pinned in requirements.txt")


def test_readme_front_matter_describes_the_space():
    meta = front_matter()
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == pinned("gradio")
    assert (ROOT / meta["app_file"]).is_file()
    assert re.fullmatch(r"3\.\d+", str(meta["python_version"]))
    assert meta["suggested_hardware"] and 0 < len(meta["short_description"]) <= 60
    bundled = load_config(ROOT / "models.yaml")
    assert meta["models"] == [bundled.entries(task)[0].source for task in TASKS]


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exited:
        parse_args(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for option in ("--config", "--host", "--port", "--share", "--max-queue", "--concurrency", "--preload"):
        assert option in out
    assert "GRADIO_SERVER_PORT" in out and "MODELS_CONFIG" in out


def test_host_and_port_default_to_what_gradio_reads_from_the_environment():
    args = parse_args([])
    assert args.host is None and args.port is None  # so GRADIO_SERVER_NAME/PORT (set by Spaces) apply
    assert args.preload is False  # off ZeroGPU models load on first use


def test_spaces_gpu_is_a_no_op_off_zero_gpu():
    if importlib.util.find_spec("spaces") is None:
        pytest.skip("the `spaces` package is not installed")
    assert gpu.spaces is not None and not gpu.zero_gpu_active()

    def handler(prompt, max_new_tokens):
        return prompt

    assert on_gpu("text")(handler) is handler


class FakeSpaces:
    """Records what `spaces.GPU` receives, as on a ZeroGPU Space."""

    def __init__(self):
        self.durations = []

    def GPU(self, fn, duration):
        def wrapped(*args, **kwargs):
            self.durations.append(duration(*args, **kwargs))
            return fn(*args, **kwargs)

        return wrapped


def test_on_gpu_asks_for_a_duration_that_fits_the_request(monkeypatch):
    fake = FakeSpaces()
    monkeypatch.setattr(gpu, "spaces", fake)

    def generate_text(prompt, model_name, request=None, **params):  # as ui/text_tab.py: parameters by keyword
        return prompt

    def generate_image(prompt, model_name, request=None, **params):
        return prompt

    text = on_gpu("text")(generate_text)
    image = on_gpu("image")(generate_image)
    assert text("a", "m", max_new_tokens=10, temperature=0.8) == "a"
    text("a", "m", max_new_tokens=1000, temperature=0.8)
    image("a", "m", negative_prompt="", steps=4, guidance_scale=0.0, width=512, height=512, num_images=1, seed=0)
    image("a", "m", steps=50, guidance_scale=7.5, width=768, height=768, num_images=4)
    image(
        "a", "m", steps="not a number", width=768, height=768, num_images=4
    )  # the task reports the bad value, not the estimate
    short_text, long_text, small_image, big_image, fallback = fake.durations
    assert (
        short_text
        == request_seconds("text", max_new_tokens=10)
        < long_text
        == request_seconds("text", max_new_tokens=1000)
    )
    assert small_image == request_seconds("image", steps=4, num_images=1) < big_image <= gpu.MAX_DURATION_S
    assert fallback == request_seconds("image")


def test_durations_grow_with_the_work_and_stay_within_the_cap():
    seconds = request_seconds
    assert seconds("text", max_new_tokens=64) < seconds("text", max_new_tokens=512) <= gpu.MAX_DURATION_S
    assert seconds("image", steps=1) < seconds("image", steps=25) < seconds("image", steps=25, num_images=4)
    assert seconds("image", steps=25, width=512, height=512) < seconds("image", steps=25, width=768, height=768)
    assert seconds("image", steps=150, num_images=16, width=2048, height=2048) == gpu.MAX_DURATION_S
    assert seconds("classification") > gpu.STARTUP_S  # every task of the table has an estimate


def test_every_event_of_a_task_runs_inside_spaces_gpu(monkeypatch, tiny_config):
    """On ZeroGPU every event in a task's queue group (what runs that task's models) is the function
    `spaces.GPU` returned, and nothing else is: the app built as on a ZeroGPU Space, its events read."""
    from app import build_app

    wrapped = {}

    class RecordingSpaces:
        def GPU(self, fn, duration):
            wrapped[id(fn)] = fn  # returned as it is: the app builds as it would off ZeroGPU
            return fn

    monkeypatch.setattr(gpu, "spaces", RecordingSpaces())
    monkeypatch.setattr(gpu, "zero_gpu_active", lambda: True)
    demo = build_app(tiny_config)
    events = [fn for fn in demo.fns.values() if fn.fn is not None]
    on_gpu = {fn.name for fn in events if calls_on_gpu(fn.fn, wrapped)}
    of_tasks = {fn.name for fn in events if fn.concurrency_id in TASKS}
    assert on_gpu == of_tasks
    assert {fn.concurrency_id for fn in events if calls_on_gpu(fn.fn, wrapped)} == set(TASKS)  # every task's models


def calls_on_gpu(fn, wrapped: dict) -> bool:
    """Whether `fn` is, or wraps (functools.wraps: the request layer's outer wrappers, which run in
    the main process), a function that `spaces.GPU` returned."""
    while fn is not None:
        if id(fn) in wrapped:
            return True
        fn = getattr(fn, "__wrapped__", None)
    return False


def test_import_and_build_never_initialise_cuda(tiny_config_path):
    """On ZeroGPU the main process must not touch CUDA: anything that would (torch.cuda.init,
    the lazy init behind every CUDA call) is made to fail while the app is imported and built."""
    script = textwrap.dedent(
        f"""
        import torch

        calls = []

        def forbidden(*args, **kwargs):  # recorded even if a caller swallows the exception
            calls.append(1)
            raise SystemExit("CUDA initialised in the main process")

        torch.cuda.init = torch.cuda._lazy_init = forbidden
        import app
        from pipelines.studio import load_config
        demo = app.build_app(load_config({str(tiny_config_path)!r}))
        assert not torch.cuda.is_initialized() and not calls
        print("ok", len(demo.fns))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=START_S)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("ok")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def launched_as_on_spaces(tiny_config_path):
    """`python app.py` with no arguments, bound where the environment says (as Spaces do)."""
    if importlib.util.find_spec("spaces") is None:
        pytest.skip("the `spaces` package is not installed")
    port = free_port()
    env = dict(
        os.environ,
        MODELS_CONFIG=str(tiny_config_path),
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_SERVER_PORT=str(port),
        HF_HUB_OFFLINE="1",
        GRADIO_ANALYTICS_ENABLED="False",
        CUDA_VISIBLE_DEVICES="",  # no GPU, even on a machine that has one
    )
    env.pop("SPACES_ZERO_GPU", None)
    process = subprocess.Popen(
        [sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + START_S
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"app.py exited with {process.returncode}:\n{process.stdout.read()[-3000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("app.py did not start listening on $GRADIO_SERVER_PORT")
                time.sleep(0.2)
        yield url
    finally:
        stop_process(process, timeout_s=20)


def test_app_with_spaces_installed_but_no_gpu_runs_every_endpoint_on_cpu(launched_as_on_spaces, names):
    from gradio_client import Client

    client = Client(launched_as_on_spaces, verbose=False)
    label, verdict, _ = client.predict(message="WIN a free prize", api_name="/classify")
    assert label["label"] in ("ham", "spam") and ("SPAM" in verdict or "HAM" in verdict)
    text, stats, _ = client.predict(prompt="Once upon a time", max_new_tokens=5, seed=1, api_name="/generate_text")
    assert isinstance(text, str) and "seed 1" in stats
    gallery, info = client.predict(prompt="a cat", seed=5, api_name="/generate_image")
    assert len(gallery) == 1 and info["seeds"] == [5] and Path(gallery[0]["image"]).is_file()
