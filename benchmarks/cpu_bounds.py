"""What bounds CPU speed here, and what the app's smaller CPU remedies gain: the figures behind
README's "Text generation" (4x not reached, OpenMP pools, fused GELU) and the PNG level.

    flock /tmp/ml-heavy.lock python -m benchmarks.cpu_bounds --out /tmp/cpu-bounds.json

Parts (`--parts`, default all):
- bandwidth: GB/s of summing 1 GB of float32, with 1 thread and with all.
- linear: one token's linear layers of GPT-Neo 1.3B (24 x [4 x 2048->2048, 2048->8192,
  8192->2048] + the 2048->50257 LM head) as separate full-size layers, ms per pass, per
  weight format: float32, int8 dynamic (fbgemm), int8 weight-only `_weight_int8pack_mm`
  (bfloat16 activations).
- openmp: GPT-Neo 1.3B int8 `generate` tokens/s in the main thread; in another thread while the
  main thread's idle OpenMP pool is alive; in another thread after it was released
  (pipelines/core/openmp.py).
- gelu: the same int8 model with GPT-Neo's gelu_new and with the fused GELU (alternating runs).
- png: milliseconds to write the sd-turbo benchmark image as PNG at zlib level 6 (Pillow's
  default), at the app's level, and with the app's level and strategy (`app`), and the file sizes.
- sampling: milliseconds to choose one token from GPT-Neo's 50,257 scores with the text entries'
  sampling defaults (repetition penalty, temperature, top-k, top-p, a seeded draw): transformers'
  whole processor chain then a draw over the vocabulary (generate's own loop), against the OpenVINO
  engine's draw (pipelines/text/sampling.py), which runs top-p and the draw on the top-k scores only.
Each timing is the best of `--repeats`. `--layers` shrinks GPT-Neo to try the script quickly.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import threading
import time
import warnings
from pathlib import Path

from benchmarks.textgen import GPT_NEO_1_3B, PROMPT, build_model, build_tokenizer, convert, time_generation

PARTS = ("bandwidth", "linear", "openmp", "gelu", "png", "sampling")
HIDDEN, VOCAB = GPT_NEO_1_3B["hidden_size"], GPT_NEO_1_3B["vocab_size"]


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def bandwidth(repeats: int) -> dict:
    import torch

    data = torch.ones(2**28)  # 1 GB of float32
    threads = torch.get_num_threads()
    rates = {}
    for count in (1, threads):
        torch.set_num_threads(count)
        rates[f"{count}_threads_gb_s"] = round(data.numel() * 4 / best_time(data.sum, repeats) / 1e9, 1)
    torch.set_num_threads(threads)
    return rates


def linear_shapes(layers: int, vocab: int) -> list[tuple[int, int]]:
    per_layer = [(HIDDEN, HIDDEN)] * 4 + [(HIDDEN, 4 * HIDDEN), (4 * HIDDEN, HIDDEN)]
    return per_layer * layers + [(HIDDEN, vocab)]


def linear_stack(fmt: str, layers: int):
    """(list of modules, activation dtype) for one token's linear layers in `fmt`."""
    import torch

    vocab = VOCAB
    dtype = torch.float32 if fmt in ("fp32", "int8_dynamic") else torch.bfloat16
    stack = torch.nn.Sequential(*[torch.nn.Linear(i, o) for i, o in linear_shapes(layers, vocab)]).to(dtype)
    if fmt == "int8_dynamic":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stack = torch.ao.quantization.quantize_dynamic(stack, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    elif fmt == "int8_weight_only_pack":
        stack = [Int8PackLinear(layer) for layer in stack]
    return list(stack), dtype


class Int8PackLinear:
    """aten's `_weight_int8pack_mm`: per-channel int8 weights, bfloat16 activations."""

    def __init__(self, linear):
        import torch

        weight = linear.weight.float()
        self.scales = weight.abs().amax(dim=1) / 127
        self.weight = torch.round(weight / self.scales[:, None]).to(torch.int8)
        self.scales = self.scales.to(torch.bfloat16)
        self.in_features = linear.in_features

    def __call__(self, x):
        import torch

        return torch.ops.aten._weight_int8pack_mm(x, self.weight, self.scales)


def linear(layers: int, repeats: int) -> dict:
    import torch

    rows = {}
    for fmt in ("fp32", "int8_dynamic", "int8_weight_only_pack"):
        modules, dtype = linear_stack(fmt, layers)
        inputs = {HIDDEN: torch.randn(1, HIDDEN, dtype=dtype), 4 * HIDDEN: torch.randn(1, 4 * HIDDEN, dtype=dtype)}

        def one_pass(modules=modules, inputs=inputs):
            for module in modules:
                module(inputs[module.in_features])

        with torch.inference_mode():
            rows[fmt] = {"ms_per_token": round(best_time(one_pass, repeats) * 1000, 1)}
        del modules
    return rows


def int8_model(layers: int):
    model = convert(build_model(layers), "int8_dynamic")  # apply_cpu_speedups: fused GELU included
    input_ids = build_tokenizer()(PROMPT, return_tensors="pt")["input_ids"]
    return model, input_ids


def tokens_per_s(model, input_ids, new_tokens: int) -> float:
    return time_generation(model, input_ids, new_tokens)["tokens_per_s"]


def in_thread(fn):
    result = []
    thread = threading.Thread(target=lambda: result.append(fn()))
    thread.start()
    thread.join()
    return result[0]


def openmp(layers: int, repeats: int, new_tokens: int) -> dict:
    from pipelines.core.openmp import release_openmp_pool

    model, input_ids = int8_model(layers)
    run = lambda: tokens_per_s(model, input_ids, new_tokens)  # noqa: E731
    run()  # warm-up; also gives the main thread its pool
    rows = {"main_thread": [], "other_thread_idle_pool_alive": [], "other_thread_pool_released": []}
    for _ in range(repeats):
        rows["main_thread"].append(run())  # the main thread's pool is alive after this
        rows["other_thread_idle_pool_alive"].append(in_thread(run))
        release_openmp_pool()
        rows["other_thread_pool_released"].append(in_thread(run))
    return {name: round(max(rates), 2) for name, rates in rows.items()}


def gelu(layers: int, repeats: int, new_tokens: int) -> dict:
    from transformers.activations import NewGELUActivation

    model, input_ids = int8_model(layers)
    blocks = model.transformer.h
    fused = [block.mlp.act for block in blocks]
    rates = {"gelu_new": [], "fused": []}
    tokens_per_s(model, input_ids, 4)
    for _ in range(repeats):
        for name in rates:
            for block, act in zip(blocks, fused):
                block.mlp.act = act if name == "fused" else NewGELUActivation()
            rates[name].append(tokens_per_s(model, input_ids, new_tokens))
    return {name: round(max(values), 2) for name, values in rates.items()}


def png(repeats: int) -> dict:
    from benchmarks.image import PROMPT as IMAGE_PROMPT
    from benchmarks.image import build_generator
    from pipelines.image.png import PNG_COMPRESS_LEVEL, PNG_ZLIB_STRATEGY

    generator = build_generator(
        "sd-turbo", {"bfloat16": True, "tiny_autoencoder": True, "channels_last": True}, tiny=False
    )
    [result] = generator(IMAGE_PROMPT, generator.default_params(seed=0))
    rows = {}
    settings = {  # name -> Pillow's PNG options
        "level_6": {"compress_level": 6},  # Pillow's default
        f"level_{PNG_COMPRESS_LEVEL}": {"compress_level": PNG_COMPRESS_LEVEL},
        "app": {"compress_level": PNG_COMPRESS_LEVEL, "compress_type": PNG_ZLIB_STRATEGY},
    }
    for name, options in settings.items():
        buffer = io.BytesIO()

        def save(buffer=buffer, options=options):
            buffer.seek(0)
            buffer.truncate()
            result["image"].save(buffer, format="PNG", **options)

        rows[name] = {"ms": round(best_time(save, repeats) * 1000, 1), "kb": len(buffer.getvalue()) // 1024}
    return rows


def sampling(repeats: int) -> dict:
    import torch
    from transformers import GenerationConfig, GPTNeoConfig, GPTNeoForCausalLM, LogitsProcessorList

    from pipelines.text import sampling as draw
    from pipelines.text.contract import TextParams

    defaults = TextParams()
    config = GenerationConfig(
        do_sample=True,
        temperature=defaults.temperature,
        top_k=defaults.top_k,
        top_p=defaults.top_p,
        repetition_penalty=defaults.repetition_penalty,
    )
    # the processors generate builds for GPT-Neo's vocabulary (a one-layer model of width 8 to ask)
    small = GPTNeoForCausalLM(
        GPTNeoConfig(vocab_size=VOCAB, hidden_size=8, num_layers=1, num_heads=1, attention_types=[[["global"], 1]])
    )
    processors = small._get_logits_processor(config, input_ids_seq_length=96, logits_processor=LogitsProcessorList())
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, VOCAB, (1, 96), generator=generator)  # a prompt and some tokens so far
    logits = torch.randn(1, VOCAB, generator=generator) * 3

    def whole_chain():  # what generate's own loop does after the processors: softmax and draw over all 50,257
        with draw.one_thread():
            probs = torch.softmax(processors(ids, logits)[0], dim=-1)
            torch.multinomial(probs, 1)

    def app_draw():
        draw.next_token(processors, ids, logits, True)

    rows = {
        "whole_chain_ms": best_time(lambda: [whole_chain() for _ in range(100)], repeats) * 10,
        "app_draw_ms": best_time(lambda: [app_draw() for _ in range(100)], repeats) * 10,
    }
    return {k: round(v, 3) for k, v in rows.items()} | {
        "speedup": round(rows["whole_chain_ms"] / rows["app_draw_ms"], 2)
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cpu_bounds", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="write the JSON results here")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {','.join(PARTS)}")
    parser.add_argument("--layers", type=int, default=GPT_NEO_1_3B["num_layers"], help="GPT-Neo layers (default 24)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=32)
    args = parser.parse_args(argv)
    parts = [part for part in args.parts.split(",") if part]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    started, results = time.perf_counter(), {"layers": args.layers}
    for part in parts:
        if part == "bandwidth":
            results[part] = bandwidth(args.repeats)
        elif part == "linear":
            results[part] = linear(args.layers, args.repeats)
        elif part == "openmp":
            results[part] = openmp(args.layers, args.repeats, args.new_tokens)
        elif part == "gelu":
            results[part] = gelu(args.layers, args.repeats, args.new_tokens)
        elif part == "sampling":
            results[part] = sampling(args.repeats)
        else:
            results[part] = png(args.repeats)
        print(f"{part}: {json.dumps(results[part])}", flush=True)
    results["total_s"] = round(time.perf_counter() - started, 1)
    print(f"{results['total_s']} s in all")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
