"""OpenVINO CPU-plugin settings for GPT-Neo 1.3B: which is fastest here, and where a token's time goes.

    flock /tmp/ml-heavy.lock python -m benchmarks.openvino_settings --weights int4 --out /tmp/ov-settings.json

Uses the export `python -m benchmarks.textgen` caches (GPT-Neo 1.3B at full size, random weights;
made here first if missing) and compiles it once per setting in one process:
- f32 / bf16: `INFERENCE_PRECISION_HINT` (OpenVINO's default is bf16 on CPUs with native bfloat16);
- dq0 / dq128: dynamic quantization of activations off / per 128 inputs (default 32);
- 1 thread: `INFERENCE_NUM_THREADS` 1 instead of torch's thread count.
Then decodes 48 tokens with the app's `generate`, the settings taking turns round after round
(a busy moment of the shared CPU then slows one run of each), best of `--repeats`; and prints, for
the app's setting, the kernels that run (`PERF_COUNT`) with their milliseconds per token.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

from benchmarks.textgen import SAMPLING, SEED, openvino_model

NEW_TOKENS = 48
PROMPT_IDS = list(range(100, 130))


def settings(weights: str) -> dict[str, dict]:
    from pipelines.text.openvino_engine import cpu_properties

    app = cpu_properties(weights)
    return {
        "app": app,
        "bf16": app | {"INFERENCE_PRECISION_HINT": "bf16"},
        "dq0": app | {"DYNAMIC_QUANTIZATION_GROUP_SIZE": "0"},
        "dq128": app | {"DYNAMIC_QUANTIZATION_GROUP_SIZE": "128"},
        "1_thread": app | {"INFERENCE_NUM_THREADS": "1"},
    }


def tokens_per_s(model) -> float:
    import torch

    from benchmarks.textgen import TokenTimes

    times = TokenTimes()
    torch.manual_seed(SEED)
    model.generate(
        torch.tensor([PROMPT_IDS]),
        max_new_tokens=NEW_TOKENS,
        streamer=times,
        eos_token_id=50256,
        pad_token_id=50256,
        suppress_tokens=[50256],
        **SAMPLING,
    )
    return (len(times.times) - 1) / (times.times[-1] - times.times[0])


def profile(model, steps: int = 20) -> dict[str, float]:
    """Milliseconds per token by (layer type, kernel), from OpenVINO's per-node counters."""
    model.reset()
    model.step(PROMPT_IDS)
    totals: dict[str, float] = collections.defaultdict(float)
    for token in range(steps):
        model.step([token + 5])
        for node in model.request.profiling_info:
            totals[f"{node.node_type} ({node.exec_type})"] += node.real_time.total_seconds() * 1000 / steps
    return {name: round(ms, 2) for name, ms in sorted(totals.items(), key=lambda item: -item[1]) if ms >= 0.2}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.openvino_settings", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--weights", default="int4", choices=["float32", "int8", "int4"])
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--openvino-cache", help="the exports' folder (default: the app's cache folder)")
    parser.add_argument("--out", help="write the JSON results here")
    args = parser.parse_args(argv)

    from pipelines.text import openvino_engine as engine

    cache = Path(args.openvino_cache) if args.openvino_cache else engine.default_cache_dir()
    reference = openvino_model(args.weights, 24, cache)  # exports once if needed
    models = {
        name: engine.OpenVINOCausalLM(reference.path, args.weights, reference.config, properties)
        for name, properties in settings(args.weights).items()
    }
    runs: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            runs[name].append(round(tokens_per_s(model), 2))
    profiled = engine.OpenVINOCausalLM(
        reference.path, args.weights, reference.config, settings(args.weights)["app"] | {"PERF_COUNT": "YES"}
    )
    result = {
        "weights": args.weights,
        "new_tokens": NEW_TOKENS,
        "tokens_per_s": {name: {"best": max(rates), "runs": rates} for name, rates in runs.items()},
        "settings": settings(args.weights),
        "app_ms_per_token": profile(profiled),
    }
    for name, rates in runs.items():
        print(f"{name:<10}{max(rates):>8.2f} tokens/s  (runs {rates})")
    print("\nthe app's setting, ms per token by kernel:")
    for name, ms in result["app_ms_per_token"].items():
        print(f"{ms:>8.2f}  {name}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
