"""What the token view costs: GPT-Neo 1.3B decoding with token_probabilities on against off.

    flock /tmp/ml-heavy.lock python -m benchmarks.token_view --out /tmp/token_view.json

GPT-Neo 1.3B at full size from its config with random weights, EOS suppressed (every run makes
exactly `--new-tokens` tokens), built and sped up as the app's default CPU entry is (the first
text entry of models.yaml with a CPU speed-up: OpenVINO with int4 weights), with the helpers of
`benchmarks.textgen`. Two places are measured:

- pipeline: the generator's `stream` in this process; the rate is the one the app reports,
  the final update's `tokens_per_s` (tokens after the first over the time since the first);
- app: the app's `/generate_text` in its own process (`benchmarks.textgen --serve-app`), streamed
  with gradio_client, timed on the client from the token counts of the JSON updates as they
  arrive: this includes the longer updates (every token so far, with its alternatives).

Runs alternate between off and on (and which goes first) round after round, on the same prompt
and seed; each variant's best run counts, and the median of the rounds' on/off ratios is given
too: a busy moment of this shared CPU then slows one run of each variant rather than every run
of one. On a shared machine these end-to-end ratios vary by several percent from round to
round, so the recording itself is also timed alone (`recording_ms_per_token`: the recorder's
softmax, top-5 and rank on 50,257-token distributions, the decoding of the token and its
alternatives, and the copy of the token list an update makes), as a share of a token's time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from benchmarks import textgen
from benchmarks.memory import process_peak_mb
from pipelines.core.openmp import release_openmp_pool

DEFAULT_NEW_TOKENS = 64  # the default max_new_tokens of the app's GPT-Neo entries
DEFAULT_REPEATS = 8


def local_generator(layers: int, speedup: str, new_tokens: int, openvino_cache: Path):
    """The 1.3B model as the app's loader makes it under `speedup` (its models.yaml default), minus reading weights."""
    from pipelines.studio import parse_config

    entry = parse_config(
        {
            "classification": [{"name": "unused", "source": "unused"}],
            "image": [{"name": "unused", "source": "unused"}],
            "text": [
                {
                    "name": "GPT-Neo 1.3B (random weights)",
                    "source": "benchmark:in-memory",
                    "defaults": dict(textgen.SAMPLING, max_new_tokens=new_tokens, seed=textgen.SEED),
                    "cpu_speedups": textgen.speedup_options(speedup),
                }
            ],
        }
    ).text[0]
    generator = textgen.text_generator(entry, layers, openvino_cache)
    textgen.release_freed_memory()
    return generator


def time_pipeline(generator, new_tokens: int, token_probabilities: bool) -> dict:
    final = None
    for update in generator.stream(textgen.PROMPT, generator.default_params(token_probabilities=token_probabilities)):
        final = update
    assert final["new_tokens"] == new_tokens, final
    return {
        "tokens_per_s": final["tokens_per_s"],
        "ttft_s": final["ttft_s"],
        "tokens_recorded": len(final["tokens"] or []),
        "update_bytes": len(json.dumps(final)),
    }


def recording_ms_per_token(generator, tokens: int = 256) -> float:
    """What recording adds to one token, timed alone (see the module docstring)."""
    import torch

    from pipelines.text.contract import StreamStats
    from pipelines.text.token_probabilities import TokenRecorder

    stats = StreamStats()
    stats.tokens = []
    recorder = TokenRecorder(generator.tokenizer, stats.token_recorded)
    scores = torch.randn(tokens, 1, generator.model.config.vocab_size, generator=torch.Generator().manual_seed(0))
    started = time.perf_counter()
    for step in range(tokens):
        recorder(None, scores[step])
        recorder.chosen(int(scores[step].argmax()))
        list(stats.tokens)  # each update copies the list
    return (time.perf_counter() - started) / tokens * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.token_view", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="write the JSON results here")
    parser.add_argument(
        "--new-tokens", type=int, default=DEFAULT_NEW_TOKENS, help=f"tokens per run (default {DEFAULT_NEW_TOKENS})"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=DEFAULT_REPEATS,
        help=f"rounds; each variant's best counts (default {DEFAULT_REPEATS})",
    )
    parser.add_argument(
        "--layers",
        type=int,
        default=textgen.GPT_NEO_1_3B["num_layers"],
        help="fewer (even) layers to try it quickly (default 24)",
    )
    parser.add_argument("--no-app", action="store_true", help="measure the pipeline only")
    parser.add_argument("--openvino-cache", help="where OpenVINO exports are kept (default: the app's cache folder)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    from pipelines.text.openvino_engine import default_cache_dir

    quantize = textgen.app_speedup()
    openvino_cache = args.openvino_cache or str(default_cache_dir())
    textgen.enough_memory_for(args.layers, quantize, openvino_cache)
    generator = local_generator(args.layers, quantize, args.new_tokens, Path(openvino_cache))
    # Building and quantizing ran in this thread: its idle OpenMP pool would slow the worker
    # thread that generates (pipelines/core/openmp.py), as it would in the app.
    release_openmp_pool()
    time_pipeline(generator, args.new_tokens, token_probabilities=True)  # warm-up: first-call allocations
    print(f"pipeline ready ({generator.placement})", flush=True)
    app = None
    try:
        if not args.no_app:
            textgen.enough_memory_for(args.layers, quantize, openvino_cache)
            app = textgen.Worker(
                [
                    "--serve-app",
                    quantize,
                    "--layers",
                    str(args.layers),
                    "--new-tokens",
                    str(args.new_tokens),
                    "--openvino-cache",
                    openvino_cache,
                ],
                "URL ",
            )
            url, app_name = app.ready.split(" ", 1)
            from benchmarks.app_client import app_client

            client = app_client(url)
            textgen.time_app_request(client, app_name, args.new_tokens, token_probabilities=True)  # warm-up
            print(f"app ready at {url}", flush=True)
        runs: dict[str, list[dict]] = {}
        for round_number in range(args.repeats):
            order = (False, True) if round_number % 2 == 0 else (True, False)
            for where in ("pipeline", "app") if app else ("pipeline",):
                for on in order:
                    if where == "pipeline":
                        run = time_pipeline(generator, args.new_tokens, on)
                    else:
                        run = textgen.time_app_request(client, app_name, args.new_tokens, token_probabilities=on)
                    assert run["tokens_recorded"] == (args.new_tokens if on else 0), run
                    name = f"{where}, token view {'on' if on else 'off'}"
                    runs.setdefault(name, []).append(run)
                    print(f"round {round_number + 1}: {name}: {run['tokens_per_s']:.2f} tokens/s", flush=True)
        app_memory = app.finish() if app else None
    finally:
        if app:
            app.kill()
    rows = []
    for name, measured in runs.items():
        best = max(measured, key=lambda run: run["tokens_per_s"])
        rows.append(
            {
                "variant": name,
                "tokens_per_s": round(best["tokens_per_s"], 2),
                "ttft_s": round(min(r["ttft_s"] for r in measured), 3),
                "runs_tokens_per_s": [round(r["tokens_per_s"], 2) for r in measured],
            }
            | ({"final_update_bytes": best["update_bytes"]} if "update_bytes" in best else {})
        )
    by_name = {row["variant"]: row for row in rows}
    print(f"\n{'variant':<32}{'tokens/s':>9}{'on/off':>8}{'median':>8}{'TTFT s':>8}")
    for row in rows:
        where = row["variant"].split(",")[0]
        off = by_name[f"{where}, token view off"]
        row["on_vs_off"] = round(row["tokens_per_s"] / off["tokens_per_s"], 3)
        row["median_round_on_vs_off"] = round(
            statistics.median(on / off for on, off in zip(row["runs_tokens_per_s"], off["runs_tokens_per_s"])), 3
        )
        print(
            f"{row['variant']:<32}{row['tokens_per_s']:>9.2f}{row['on_vs_off']:>8.3f}{row['median_round_on_vs_off']:>8.3f}{row['ttft_s']:>8.2f}"
        )
    recording_ms = recording_ms_per_token(generator)
    token_ms = 1000 / by_name["pipeline, token view off"]["tokens_per_s"]
    print(
        f"recording alone: {recording_ms:.3f} ms per token, {recording_ms / token_ms:.2%} of a token's {token_ms:.0f} ms"
    )
    total_s = time.perf_counter() - started
    print(
        f"\n{args.layers} layers ({quantize}), {args.new_tokens} new tokens per run, best of {args.repeats} alternating rounds; {total_s:.0f} s in all"
    )
    result = {
        "rows": rows,
        "model": "GPT-Neo 1.3B config, random weights" if args.layers == 24 else f"GPT-Neo, {args.layers} layers",
        "quantize": quantize,
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "sampling": textgen.SAMPLING,
        "total_s": round(total_s, 1),
        "pipeline_peak_mb": round(process_peak_mb()),
        "app_memory": app_memory,
        "recording_ms_per_token": round(recording_ms, 4),
        "recording_share_of_a_token": round(recording_ms / token_ms, 5),
    }
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
