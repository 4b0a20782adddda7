"""GPT-Neo 1.3B text generation on this CPU: plain float32 `generate`, each CPU speed-up, the OpenVINO engine's formats, and the app.

    flock /tmp/ml-heavy.lock python -m benchmarks.textgen --out /tmp/textgen.json

builds GPT-Neo 1.3B at full size from its config with random weights (no download), with EOS
suppressed so that every run generates exactly `--new-tokens` tokens, and measures per variant:

- tokens_per_s: steady decoding rate, (tokens after the first) / (time since the first token);
- ttft_s: time to first token (prompt processing + first step);
- peak_mem_mb: peak resident memory (RSS) of the process while generating: weights, KV cache,
  activations, Python and torch themselves. Each variant runs in its own process so that one
  variant's memory never counts for another; `peak_load_mb` is the peak over the whole process,
  including building and converting the model (quantizing starts from float32 weights);
- weights_mb: bytes of the weights as the model holds them (OpenVINO: the IR's .bin file);
- top1_agreement / kl_vs_fp32: quality cost, on 128 positions of a fixed random token sequence:
  how often the next-token prediction matches float32's, and the mean KL divergence of the
  next-token distributions from float32's (nats). Random weights give nearly flat distributions,
  so these are a harsh test: trained models have clearer winners.

Every variant gets its own long-lived process, started one after the other; then the timed
runs go round by round, one run of each variant per round, and each variant's best of
`--repeats` rounds counts.

The `openvino_<format>` variants run the OpenVINO engine (pipelines/text/openvino_engine.py) on
the same random model, exported once into `--openvino-cache` (reused by later runs; an export
builds the float32 model first, so its process's load peak includes it) and decoded by
transformers' `generate`, as the app does (with the engine's draw, pipelines/text/sampling.py). Their quality columns come from feeding the
same 128 tokens one at a time through the stateful model (the KV cache path the app uses). The CPU is shared with other work: interleaving makes a busy moment
slow one run of every variant instead of all runs of one, and the best run is the least
disturbed. The "app" row runs the app's `/generate_text` endpoint with the speed-up that
models.yaml gives GPT-Neo 1.3B on a CPU (the fastest): the app is launched in its own process
(`app.build_app` with a registry loader that builds the same random model and applies the
entry's speed-ups as `LocalTextGenerator.from_entry` does, instead of reading 5 GB from disk) and the
request is streamed with `gradio_client` from this process; its rate is measured on the client,
from the token counts in the streamed stats lines as they arrive.

    nice -n 10 python -m benchmarks.textgen --compare-routes int4 --new-tokens 64 --repeats 6

compares, in one process on one compiled model, the OpenVINO engine's decoding before it ran
through `generate` (the hand-written loop of commit BASELINE_COMMIT, read from git), through
`generate` as the app runs it, and through `generate`'s own sampling loop (which draws over the
whole vocabulary); the routes take turns run after run, each's best counts, and the ratios to
the loop are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.memory import PeakRss, process_peak_mb

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

# EleutherAI/gpt-neo-1.3B's config.json (the fields that shape the model), written here: no download.
GPT_NEO_1_3B = dict(
    vocab_size=50257,
    max_position_embeddings=2048,
    hidden_size=2048,
    num_layers=24,
    num_heads=16,
    attention_types=[[["global", "local"], 12]],
    window_size=256,
    intermediate_size=None,
    activation_function="gelu_new",
    bos_token_id=50256,
    eos_token_id=50256,
)
EOS_ID = 50256
# One row each besides fp32; "bf16" and "int8_dynamic+compile" only when asked (--variants): every
# variant's process stays alive for the interleaved rounds, and 24 GB must hold them all.
SPEEDUPS = ("int8_dynamic", "openvino_float32", "openvino_int8", "openvino_int4")
OPENVINO_PREFIX = "openvino_"
DEFAULT_NEW_TOKENS = 32  # generated per run; EOS is suppressed so every run makes exactly this many
DEFAULT_REPEATS = 3  # interleaved rounds of runs; each variant's best counts
QUALITY_POSITIONS = 128  # positions of the fixed token sequence compared against float32
PROMPT = (
    "Once upon a time there was a little robot who wanted to paint the sky. The quick brown fox jumps "
    "over the lazy dog while the cat sleeps in the sun."
)
# What the benchmark samples with: the GPT-Neo entries' defaults in models.yaml.
SAMPLING = dict(do_sample=True, temperature=0.8, top_p=0.95, top_k=50, repetition_penalty=1.1)
SEED = 1234


# -- inside one variant's process -------------------------------------------------------------------
def release_freed_memory() -> None:
    """Hand freed heap memory back to the OS (glibc keeps some), so RSS shows what is in use."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError):  # not glibc: RSS may then include freed memory
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def build_tokenizer():
    """GPT-2-style byte-level BPE (trained offline by pipelines.tiny) padded to GPT-Neo's 50257 ids:
    filler tokens ' w<id>' make every id the model can produce decode to visible text."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from pipelines.tiny import build_byte_level_bpe_tokenizer

    small = json.loads(build_byte_level_bpe_tokenizer(max_length=2048).backend_tokenizer.to_str())
    vocab = small["model"]["vocab"]
    vocab.pop("<|endoftext|>")
    used = set(vocab.values())
    vocab |= {f"Ġw{token_id}": token_id for token_id in range(EOS_ID) if token_id not in used}
    vocab["<|endoftext|>"] = EOS_ID
    small["model"]["vocab"] = vocab
    small["added_tokens"][0]["id"] = EOS_ID
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(small)),
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        model_max_length=2048,
    )
    assert len(tokenizer) == GPT_NEO_1_3B["vocab_size"] and tokenizer.decode(tokenizer(PROMPT)["input_ids"]) == PROMPT
    return tokenizer


def build_model(layers: int):
    """GPT-Neo 1.3B (or fewer layers, to try the benchmark quickly), random weights, float32."""
    import torch
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    config = dict(GPT_NEO_1_3B, num_layers=layers, attention_types=[[["global", "local"], max(layers // 2, 1)]])
    torch.manual_seed(0)  # the same weights in every process, so the quality columns compare like with like
    model = GPTNeoForCausalLM(GPTNeoConfig(**config)).eval()
    model.generation_config.suppress_tokens = [EOS_ID]  # never stop early: same token count every run
    model.generation_config.pad_token_id = EOS_ID
    return model


def convert(model, variant: str):
    """Apply a variant the way the app does at load (pipelines/text/speedups.py)."""
    import torch

    from pipelines.text.speedups import apply_cpu_speedups

    if variant == "bf16":
        return model.to(torch.bfloat16)
    quantize = {"int8_dynamic": "int8_dynamic", "int8_dynamic+compile": "int8_dynamic"}.get(variant, "none")
    model = apply_cpu_speedups(model, quantize=quantize)
    if variant.endswith("compile"):  # measured to justify not offering it (benchmarks/README.md)
        # dynamic=True: the sequence grows by one token per step; without it every length recompiles
        model.forward = torch.compile(model.forward, dynamic=True)
    return model


class TokenTimes:
    """A generate() streamer that records when each new token arrives."""

    def __init__(self):
        self.times: list[float] = []
        self._prompt_seen = False

    def put(self, value):
        if self._prompt_seen:
            self.times.append(time.perf_counter())
        self._prompt_seen = True

    def end(self):
        pass


def time_generation(model, input_ids, new_tokens: int) -> dict:
    """One sampled `generate` (PyTorch, or the OpenVINO engine's model, which transformers runs the same way)."""
    import torch

    streamer = TokenTimes()
    torch.manual_seed(SEED)
    started = time.perf_counter()
    with torch.inference_mode():
        model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=new_tokens,
            streamer=streamer,
            **SAMPLING,
        )
    return rate(streamer.times, started, new_tokens)


def rate(times: list[float], started: float, new_tokens: int) -> dict:
    assert len(times) == new_tokens, f"expected {new_tokens} tokens, got {len(times)}"
    return {
        "tokens_per_s": (len(times) - 1) / (times[-1] - times[0]),
        "ttft_s": times[0] - started,
        "tokens": len(times),
    }


def openvino_model(weights: str, layers: int, cache: Path):
    """The random model exported with the engine (once: cached in `cache`), compiled as the app compiles it."""
    from transformers import GPTNeoConfig

    from pipelines.text import openvino_engine as engine

    config = dict(GPT_NEO_1_3B, num_layers=layers, attention_types=[[["global", "local"], max(layers // 2, 1)]])
    key = engine.cache_key("benchmark:gpt-neo-1.3B-random", f"seed0-layers{layers}", weights)
    xml, _ = engine.cached_export(cache / key, lambda folder: engine.export(build_model(layers), folder, weights))
    release_freed_memory()  # the float32 model an export was made from
    model = engine.OpenVINOCausalLM(xml, weights, GPTNeoConfig(**config))
    model.generation_config.update(suppress_tokens=[EOS_ID], pad_token_id=EOS_ID)  # as build_model's
    return model


def next_token_log_probs(model, ids):
    """[positions, vocab] log-probabilities; the OpenVINO engine is fed one token at a time."""
    import torch

    with torch.inference_mode():
        if hasattr(model, "step"):
            model.reset()
            logits = torch.stack([model.step([token]) for token in ids[0].tolist()])
        else:
            logits = model(input_ids=ids).logits[0]
    return torch.log_softmax(logits.float(), dim=-1)


def weights_mb(model) -> float:
    from pipelines.text.speedups import model_memory_mb

    return model.weights_mb if hasattr(model, "step") else model_memory_mb(model)


def quality(model, reference_path: Path, write_reference: bool) -> dict:
    """Next-token predictions on a fixed random sequence, against float32's (saved by the fp32 run)."""
    import torch

    ids = torch.randint(0, EOS_ID, (1, QUALITY_POSITIONS), generator=torch.Generator().manual_seed(7))
    log_probs = next_token_log_probs(model, ids)
    if write_reference:
        torch.save(log_probs, reference_path)
    reference = torch.load(reference_path)
    kl = torch.sum(reference.exp() * (reference - log_probs), dim=-1).mean().item()
    agreement = (reference.argmax(-1) == log_probs.argmax(-1)).float().mean().item()
    return {"top1_agreement": round(agreement, 4), "kl_vs_fp32": round(kl, 6)}


def variant_worker(variant: str, layers: int, new_tokens: int, reference: Path, openvino_cache: Path) -> None:
    """Build and convert the model, report READY, then time one generation per "run" line on stdin."""
    started = time.perf_counter()
    tokenizer = build_tokenizer()
    if variant.startswith(OPENVINO_PREFIX):
        model = openvino_model(variant.removeprefix(OPENVINO_PREFIX), layers, openvino_cache)
    else:
        model = convert(build_model(layers), variant)
    release_freed_memory()  # the float32 weights that quantizing replaced
    ready = {
        "variant": variant,
        "prepare_s": round(time.perf_counter() - started, 1),
        "weights_mb": round(weights_mb(model), 1),
    }
    ready |= quality(model, reference, write_reference=variant == "fp32")
    input_ids = tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    time_generation(model, input_ids, 4)  # warm-up: first-call allocations, compilation
    print("READY " + json.dumps(ready), flush=True)
    with PeakRss() as rss:  # over all the timed runs (waiting between them adds nothing)
        for command in sys.stdin:
            if command.strip() != "run":
                break
            print("RUN " + json.dumps(time_generation(model, input_ids, new_tokens)), flush=True)
    print("MEM " + json.dumps({"peak_mem_mb": round(rss.mb), "peak_load_mb": round(process_peak_mb())}), flush=True)


# The commit whose decoding loop the OpenVINO engine ran before it ran through `generate`
# (pipelines/text/sampling.py's `decode_tokens`): `--compare-routes` reads it from git.
BASELINE_COMMIT = "b682541"
ROUTES = ("loop", "generate", "generate_stock")


def baseline_loop():
    """`decode_tokens` of BASELINE_COMMIT's pipelines/text/sampling.py, loaded from git history."""
    import types

    try:
        source = subprocess.run(
            ["git", "show", f"{BASELINE_COMMIT}:pipelines/text/sampling.py"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        raise SystemExit(
            f"--compare-routes needs this repository's git history (commit {BASELINE_COMMIT}): {err}"
        ) from err
    module = types.ModuleType("baseline_sampling")
    sys.modules[module.__name__] = module  # its dataclass looks itself up there
    exec(compile(source, f"{BASELINE_COMMIT}:pipelines/text/sampling.py", "exec"), module.__dict__)
    return module.decode_tokens


def time_route(route: str, model, prompt_ids: list[int], new_tokens: int, decode_tokens) -> dict:
    """One sampled generation of `new_tokens` on the OpenVINO model by `route`: "loop" (the baseline's
    own loop over `model.step`), "generate" (transformers' generate with the engine's `_sample`, what
    the app runs) or "generate_stock" (generate's own `_sample`: draws over the whole vocabulary)."""
    import threading

    import torch
    from transformers import GenerationConfig

    started = time.perf_counter()
    if route == "loop":
        config = GenerationConfig(**SAMPLING, max_new_tokens=new_tokens, eos_token_id=EOS_ID, suppress_tokens=[EOS_ID])
        model.reset()
        times = [time.perf_counter() for _ in decode_tokens(model.step, prompt_ids, config, SEED, threading.Event())]
        return rate(times, started, new_tokens)
    model.fast_sampling = route == "generate"
    try:
        streamer = TokenTimes()
        torch.manual_seed(SEED)
        model.generate(torch.tensor([prompt_ids]), max_new_tokens=new_tokens, streamer=streamer, **SAMPLING)
        return rate(streamer.times, started, new_tokens)
    finally:
        model.fast_sampling = True


def compare_routes(args) -> dict:
    """The OpenVINO engine's decoding routes, in one process on one compiled model, taking turns
    run after run (a busy moment of the shared CPU slows one run of each), best of `--repeats`."""
    weights = args.compare_routes
    decode_tokens = baseline_loop()
    enough_memory_for(args.layers, OPENVINO_PREFIX + weights, args.openvino_cache)
    model = openvino_model(weights, args.layers, Path(args.openvino_cache))
    prompt_ids = build_tokenizer()(PROMPT)["input_ids"]
    for route in ROUTES:  # warm-up
        time_route(route, model, prompt_ids, 4, decode_tokens)
    runs: dict[str, list[dict]] = {route: [] for route in ROUTES}
    for round_number in range(args.repeats):
        order = ROUTES if round_number % 2 == 0 else ROUTES[::-1]  # neither route always goes first
        for route in order:
            runs[route].append(time_route(route, model, prompt_ids, args.new_tokens, decode_tokens))
            print(f"round {round_number + 1}: {route} {runs[route][-1]['tokens_per_s']:.2f} tokens/s", flush=True)
    best = {route: max(r["tokens_per_s"] for r in runs[route]) for route in ROUTES}
    result = {
        "weights": weights,
        "layers": args.layers,
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "baseline_commit": BASELINE_COMMIT,
        "sampling": SAMPLING,
        "best_tokens_per_s": {route: round(v, 2) for route, v in best.items()},
        "runs_tokens_per_s": {route: [round(r["tokens_per_s"], 2) for r in runs[route]] for route in ROUTES},
        "generate_vs_loop": round(best["generate"] / best["loop"], 4),
        "generate_stock_vs_loop": round(best["generate_stock"] / best["loop"], 4),
    }
    # each round's runs ran side by side: the median of their ratios shrugs off a round the CPU was busy for
    for route in ("generate", "generate_stock"):
        ratios = sorted(a["tokens_per_s"] / b["tokens_per_s"] for a, b in zip(runs[route], runs["loop"]))
        result[f"{route}_vs_loop_median_of_rounds"] = round(statistics.median(ratios), 4)
    print(
        f"\nOpenVINO {weights}, {args.layers} layers, {args.new_tokens} tokens per run, best of {args.repeats} interleaved runs:"
    )
    for route in ROUTES:
        print(f"  {route:<15}{best[route]:>8.2f} tokens/s  (runs {result['runs_tokens_per_s'][route]})")
    print(
        f"best of each, generate / loop: {result['generate_vs_loop']:.4f}; generate_stock / loop: {result['generate_stock_vs_loop']:.4f}"
    )
    print(
        f"median of the rounds' ratios, generate / loop: {result['generate_vs_loop_median_of_rounds']:.4f}; "
        f"generate_stock / loop: {result['generate_stock_vs_loop_median_of_rounds']:.4f}"
    )
    return result


def speedup_options(speedup: str) -> dict:
    """The models.yaml `cpu_speedups:` of a variant name: int8_dynamic, openvino_int4, ..."""
    if speedup.startswith(OPENVINO_PREFIX):
        return {"engine": "openvino", "weights": speedup.removeprefix(OPENVINO_PREFIX)}
    return {"quantize": speedup}


def text_generator(entry, layers: int, openvino_cache: Path):
    """The 1.3B model as the app's loader makes it for `entry` (LocalTextGenerator.from_entry or
    OpenVINOTextGenerator.from_entry), minus reading weights: the same speed-ups, applied the same way."""
    from transformers import GenerationConfig

    from pipelines.core.devices import choose_placement
    from pipelines.text.pipeline import LocalTextGenerator, OpenVINOTextGenerator
    from pipelines.text.speedups import apply_cpu_speedups, describe_speedups

    tokenizer = build_tokenizer()
    tokenizer.pad_token = tokenizer.eos_token
    if entry.cpu_speedups.engine == "openvino":
        weights = entry.cpu_speedups.weights
        generation_config = GenerationConfig(eos_token_id=EOS_ID, pad_token_id=EOS_ID, suppress_tokens=[EOS_ID])
        return OpenVINOTextGenerator(
            entry,
            openvino_model(weights, layers, openvino_cache),
            tokenizer,
            generation_config,
            f"cpu/openvino {weights}",
        )
    placement = choose_placement(entry.gpu_dtype, entry.device, entry.dtype)
    model = apply_cpu_speedups(build_model(layers), quantize=entry.cpu_speedups.quantize)
    return LocalTextGenerator(entry, model, tokenizer, placement, describe_speedups(entry.cpu_speedups.quantize))


def serve_app(speedup: str, layers: int, new_tokens: int, openvino_cache: Path) -> None:
    """Launch the app with the 1.3B model under `speedup`; print its URL; serve until stdin closes."""
    from app import build_app, enable_queue
    from pipelines.studio import ModelRegistry, default_loaders, parse_config

    unused = {"source": "not-loaded"}
    config = parse_config(
        {
            "settings": {"memory_budget_mb": 64000, "idle_unload_minutes": 0},
            "classification": [{"name": "unused", **unused}],
            "text": [
                {
                    "name": "GPT-Neo 1.3B (random weights)",
                    "source": "benchmark:in-memory",
                    "defaults": dict(SAMPLING, max_new_tokens=new_tokens),
                    "cpu_speedups": speedup_options(speedup),
                }
            ],
            "image": [{"name": "unused", **unused}],
        }
    )

    def load_text(entry):
        return text_generator(entry, layers, openvino_cache)

    registry = ModelRegistry(config, loaders=default_loaders() | {"text": load_text})
    name = config.default_name("text")
    generator = registry.get("text", name)  # load before serving: loading is not what is measured
    release_freed_memory()
    for _ in generator.stream(PROMPT, generator.default_params(max_new_tokens=4, seed=SEED)):
        pass  # warm-up, as for the other variants
    demo = enable_queue(build_app(config, registry))
    with PeakRss() as rss:  # serving included
        _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
        print(f"URL {url} {name}", flush=True)
        sys.stdin.read()  # the benchmark closes stdin when its client is done
    demo.close()
    print(
        "MEM "
        + json.dumps(
            {"peak_mem_mb": round(rss.mb), "peak_load_mb": round(process_peak_mb()), "placement": generator.placement}
        ),
        flush=True,
    )


APP_POLL_S = 0.01  # client-side timing resolution of the app's streamed updates (a token takes ~0.1 s)


def time_app_request(client, name: str, new_tokens: int, **extra) -> dict:
    """One streamed /generate_text request (`extra`: more of its parameters, by name); the rate
    from the token counts of its JSON updates."""
    submitted = time.perf_counter()
    job = client.submit(
        PROMPT,
        name,
        new_tokens,
        SAMPLING["temperature"],
        SAMPLING["top_p"],
        SAMPLING["top_k"],
        SAMPLING["repetition_penalty"],
        SAMPLING["do_sample"],
        SEED,
        api_name="/generate_text",
        **extra,
    )
    arrivals = []  # (time, tokens so far)
    # Poll the streamed outputs every APP_POLL_S instead of iterating the job: gradio_client's
    # iterator wakes every millisecond, and on 2 cores that busy loop slows the server it measures.
    seen = 0
    while True:
        finished = job.done()
        outputs = job.outputs()
        now = time.perf_counter()
        for _text, _stats, update in outputs[seen:]:
            if update and update.get("new_tokens"):
                arrivals.append((now, update["new_tokens"]))
        seen = len(outputs)
        if finished:
            break
        time.sleep(APP_POLL_S)
    _text, final_stats, final = job.result()
    total = final["new_tokens"]
    assert total == new_tokens, f"the app generated {total} tokens, expected {new_tokens}: {final_stats}"
    (t_first, n_first), (t_last, n_last) = arrivals[0], arrivals[-1]
    if n_last - n_first < 2 or t_last <= t_first:
        raise RuntimeError(f"too few streamed updates to time ({arrivals}); use more --new-tokens")
    return {
        "tokens_per_s": (n_last - n_first) / (t_last - t_first),
        "ttft_s": t_first - submitted,
        "tokens": total,
        "server_stats": final_stats,
        "tokens_recorded": len(final.get("tokens") or []),
    }


class Worker:
    """A variant's process: started once, then asked for one timed run at a time."""

    def __init__(self, command: list[str], ready_prefix: str):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.textgen", *command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.read(ready_prefix)
        self.ready = json.loads(line) if ready_prefix == "READY " else line

    def read(self, prefix: str) -> str:
        for line in self.process.stdout:  # libraries may print other lines first
            if line.startswith(prefix):
                return line[len(prefix) :].rstrip("\n")
        raise RuntimeError(f"benchmark worker {self.process.args[3:5]} ended early (its errors are above)")

    def run(self) -> dict:
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        return json.loads(self.read("RUN "))

    def finish(self) -> dict:
        self.process.stdin.close()
        memory = json.loads(self.read("MEM "))
        self.process.wait(timeout=120)
        return memory

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()


def app_speedup() -> str:
    """What the app runs GPT-Neo 1.3B with on a CPU: the first text entry in models.yaml with a CPU
    speed-up, as a variant name (int8_dynamic, openvino_int4, ...)."""
    from pipelines.studio import load_config

    for entry in load_config().text:
        if entry.cpu_speedups.engine == "openvino":
            return OPENVINO_PREFIX + entry.cpu_speedups.weights
        if entry.cpu_speedups.quantize != "none":
            return entry.cpu_speedups.quantize
    raise SystemExit("models.yaml has no text entry with a CPU speed-up to measure the app with; use --no-app")


def enough_memory_for(layers: int, variant: str, openvino_cache: str) -> None:
    import psutil

    need_mb = 5400 * layers / 24 + 600  # building any variant starts from float32 weights
    if variant.startswith(OPENVINO_PREFIX):  # a cached export: its weights, compiled (about twice the file)
        from pipelines.text import openvino_engine as engine

        key = engine.cache_key(
            "benchmark:gpt-neo-1.3B-random", f"seed0-layers{layers}", variant.removeprefix(OPENVINO_PREFIX)
        )
        weights = Path(openvino_cache) / key / "model.bin"
        need_mb = 2 * weights.stat().st_size / 2**20 + 1000 if weights.is_file() else 7000 * layers / 24 + 600
    available_mb = psutil.virtual_memory().available / 2**20
    if available_mb < need_mb:
        raise SystemExit(
            f"only {available_mb:,.0f} MB of memory available; building {variant} needs ~{need_mb:,.0f} MB"
        )


def print_table(rows: list[dict], baseline: float) -> None:
    print(
        f"\n{'variant':<22}{'tokens/s':>9}{'x fp32':>8}{'TTFT s':>8}{'peak MB':>9}{'load MB':>9}{'weights MB':>11}{'top-1':>7}{'KL':>10}"
    )
    for row in rows:
        top1 = f"{row['top1_agreement']:.3f}" if "top1_agreement" in row else "-"
        kl = f"{row['kl_vs_fp32']:.5f}" if "kl_vs_fp32" in row else "-"
        print(
            f"{row['variant']:<22}{row['tokens_per_s']:>9.2f}{row['tokens_per_s'] / baseline:>8.2f}{row['ttft_s']:>8.2f}"
            f"{row['peak_mem_mb']:>9}{row['peak_load_mb']:>9}{row.get('weights_mb', '-'):>11}{top1:>7}{kl:>10}"
        )


def openvino_summary(by_name: dict[str, dict]) -> dict:
    """The fastest OpenVINO variant against int8_dynamic (issue #17's target: 1.7x) and the app against it."""
    engine_rows = [row for name, row in by_name.items() if name.startswith(OPENVINO_PREFIX)]
    if not engine_rows or "int8_dynamic" not in by_name:
        return {}
    fastest = max(engine_rows, key=lambda row: row["tokens_per_s"])
    summary = {
        "openvino_fastest": fastest["variant"],
        "openvino_fastest_vs_int8_dynamic": round(fastest["tokens_per_s"] / by_name["int8_dynamic"]["tokens_per_s"], 3),
    }
    if "app" in by_name:
        summary["app_vs_openvino_fastest"] = round(by_name["app"]["tokens_per_s"] / fastest["tokens_per_s"], 3)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.textgen", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="write the JSON results here")
    parser.add_argument(
        "--new-tokens", type=int, default=DEFAULT_NEW_TOKENS, help=f"tokens per run (default {DEFAULT_NEW_TOKENS})"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=DEFAULT_REPEATS,
        help=f"rounds of runs; each variant's best counts (default {DEFAULT_REPEATS})",
    )
    parser.add_argument(
        "--layers",
        type=int,
        default=GPT_NEO_1_3B["num_layers"],
        help="fewer (even) layers to try the benchmark quickly (default 24: the real size)",
    )
    parser.add_argument(
        "--variants",
        default=",".join(SPEEDUPS),
        help=f"speed-ups to measure besides fp32 (default {','.join(SPEEDUPS)}; also bf16, int8_dynamic+compile)",
    )
    parser.add_argument(
        "--openvino-cache",
        help="where the openvino variants' exports are kept and reused (default: the app's cache folder)",
    )
    parser.add_argument("--no-app", action="store_true", help="skip the app row")
    parser.add_argument(
        "--compare-routes",
        metavar="WEIGHTS",
        choices=["float32", "int8", "int4"],
        help="instead: the OpenVINO engine's decoding before and after it ran through generate "
        f"(the loop of commit {BASELINE_COMMIT}, generate, generate's own sampling), in one process",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one variant's process
    parser.add_argument("--reference", help=argparse.SUPPRESS)
    parser.add_argument("--serve-app", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if not args.openvino_cache:
        from pipelines.text.openvino_engine import default_cache_dir

        args.openvino_cache = str(default_cache_dir())
    if args.serve_app:
        serve_app(args.serve_app, args.layers, args.new_tokens, Path(args.openvino_cache))
        return 0
    if args.worker:
        variant_worker(args.worker, args.layers, args.new_tokens, Path(args.reference), Path(args.openvino_cache))
        return 0
    if args.compare_routes:
        result = compare_routes(args)
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=2))
        return 0

    started = time.perf_counter()
    shape = [
        "--layers",
        str(args.layers),
        "--new-tokens",
        str(args.new_tokens),
        "--openvino-cache",
        args.openvino_cache,
    ]
    variants = ["fp32", *[v for v in args.variants.split(",") if v]]
    speedup = None if args.no_app else app_speedup()
    workers: dict[str, Worker] = {}
    runs: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        reference = Path(tmp) / "fp32_log_probs.pt"
        try:
            # 1. start every variant's process, one after the other (each builds from float32 weights)
            for variant in variants:
                enough_memory_for(args.layers, variant, args.openvino_cache)
                workers[variant] = Worker(["--worker", variant, "--reference", str(reference), *shape], "READY ")
                print(f"{variant} ready: {workers[variant].ready}", flush=True)
            if speedup:
                enough_memory_for(args.layers, speedup, args.openvino_cache)
                workers["app"] = Worker(["--serve-app", speedup, *shape], "URL ")
                url, app_name = workers["app"].ready.split(" ", 1)
                from benchmarks.app_client import app_client

                client = app_client(url)
                print(f"app ready ({speedup}) at {url}", flush=True)
            # 2. interleave the timed runs, round after round: a busy moment of this shared CPU
            #    then slows one run of each variant rather than every run of one variant
            for round_number in range(args.repeats):
                for name, worker in workers.items():
                    run = time_app_request(client, app_name, args.new_tokens) if name == "app" else worker.run()
                    runs.setdefault(name, []).append(run)
                    print(f"round {round_number + 1}: {name} {run['tokens_per_s']:.2f} tokens/s", flush=True)
            memory = {name: worker.finish() for name, worker in workers.items()}
        finally:
            for worker in workers.values():
                worker.kill()
    rows = []
    for name in workers:
        best = max(runs[name], key=lambda run: run["tokens_per_s"])
        row = {
            "variant": name,
            "tokens_per_s": round(best["tokens_per_s"], 2),
            "ttft_s": round(min(r["ttft_s"] for r in runs[name]), 3),
            "tokens": best["tokens"],
            "peak_mem_mb": memory[name]["peak_mem_mb"],
            "peak_load_mb": memory[name]["peak_load_mb"],
            "runs_tokens_per_s": [round(r["tokens_per_s"], 2) for r in runs[name]],
        }
        if name == "app":
            row |= {"speedup": speedup, "placement": memory[name]["placement"], "server_stats": best["server_stats"]}
        else:
            row |= {k: v for k, v in workers[name].ready.items() if k != "variant"}
        rows.append(row)
    by_name = {row["variant"]: row for row in rows}
    if "app" in by_name and speedup in by_name:
        by_name["app"]["vs_raw_pipeline"] = round(by_name["app"]["tokens_per_s"] / by_name[speedup]["tokens_per_s"], 3)
    print_table(rows, rows[0]["tokens_per_s"])
    total_s = time.perf_counter() - started
    print(
        f"\n{args.layers} layers, {args.new_tokens} new tokens per run, best of {args.repeats} interleaved rounds; {total_s:.0f} s in all"
    )
    result = {
        "rows": rows,
        "model": "GPT-Neo 1.3B config, random weights" if args.layers == 24 else f"GPT-Neo, {args.layers} layers",
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "total_s": round(total_s, 1),
        "sampling": SAMPLING,
    }
    result |= openvino_summary(by_name)
    for key, value in openvino_summary(by_name).items():
        print(f"{key}: {value}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
