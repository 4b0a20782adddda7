"""Seconds per 512x512 image on this CPU: plain float32 vs each speed-up vs the running app.

    flock /tmp/ml-heavy.lock python -m benchmarks.image --out /tmp/image-bench.json

builds the sd-turbo (Stable Diffusion 2.1 architecture) and Stable Diffusion 1.5 UNet, VAE and
CLIP text encoder at full size from their configs, with random weights (no download; speed
does not depend on the weights' values), and times one image each: 1 step without guidance
for sd-turbo, 20 steps with guidance 7.5 for SD 1.5, and sd-turbo image to image (2 steps at
strength 0.5, from a 512x512 picture: one denoising step, plus the autoencoder's encode). Variants:

- fp32: the plain float32 pipeline;
- one row per speed-up of models.yaml's `cpu_speedups` (bfloat16, channels_last,
  tiny_autoencoder: an AutoencoderTiny with taesd's architecture), and their combination;
- app: the app's /generate_image endpoint through gradio_client, the app running the fastest
  combination (the pipeline is injected through a registry loader instead of saved to disk).

Each variant runs in a process of its own; `peak_mem_mb` is that process's peak resident memory
while it generates (weights included), the kernel's high-water mark (benchmarks/memory.py). Each
row is the best of up to `repeats` timed images (fewer once 10 s were timed) after one untimed
warm-up image (none for SD 1.5, whose 20 steps amortise first-call costs). The app and the
fastest variant, the raw pipeline it runs, take turns image by image for APP_ROUNDS (8) rounds, so
that the machine's changing speed (it is shared) falls on both; the app's process also times
the pipeline called directly there just before each request (`app_vs_raw` in the JSON). `--tiny`
runs the same on tiny configs, to try the script quickly.
Writes {"rows": [{"model", "variant", "seconds_per_image", "peak_mem_mb"}, ...]}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.memory import PeakRss

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

PROMPT = "A photo of an astronaut riding a horse on the moon, highly detailed"
SIZE = 512  # image side in pixels (64 with --tiny)
SEED = 0
ENOUGH_TIMED_S = 10.0  # stop repeating a variant once its timed images took this long
APP_ROUNDS = 8  # images of the app and of the fastest variant, taking turns; best of each (the app varies more: HTTP, client polling)

# Per model: steps, guidance, timed repeats, and the variants measured (name -> speed-ups).
FASTEST = {"bfloat16": True, "tiny_autoencoder": True, "channels_last": True}
FASTEST_NAME = "bf16+tiny_vae+channels_last"  # the app runs this; the two take turns, image by image
MODELS = {
    "sd-turbo": {
        "steps": 1,
        "guidance_scale": 0.0,
        "warm_up": True,
        "repeats": 2,
        "variants": {
            "fp32": {},
            "channels_last": {"channels_last": True},
            "bf16": {"bfloat16": True},
            "tiny_vae": {"tiny_autoencoder": True},
            "bf16+tiny_vae": {"bfloat16": True, "tiny_autoencoder": True},
            FASTEST_NAME: FASTEST,
            "app": FASTEST,
        },
    },
    "sd-1.5": {
        "steps": 20,
        "guidance_scale": 7.5,
        "warm_up": False,
        "repeats": 1,
        "variants": {"fp32": {}, FASTEST_NAME: FASTEST},
    },
    # image to image with sd-turbo: 2 steps at strength 0.5 (one denoising step), from a 512x512 picture
    "sd-turbo-img2img": {
        "architecture": "sd-turbo",
        "steps": 2,
        "guidance_scale": 0.0,
        "strength": 0.5,
        "warm_up": True,
        "repeats": 2,
        "variants": {"fp32": {}, FASTEST_NAME: FASTEST, "app": FASTEST},
    },
}


def architecture(model: str) -> str:
    """The architecture a benchmark row builds ("sd-turbo-img2img" is sd-turbo's)."""
    return MODELS[model].get("architecture", model)


def init_image_file() -> str:
    """A SIZE x SIZE picture to start image-to-image rows from (smooth gradients, like a photo)."""
    import numpy as np
    from PIL import Image

    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"benchmark-init-{SIZE}.png"
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    Image.fromarray(np.stack([x * 255 // SIZE, y * 255 // SIZE, (x + y) * 127 // SIZE], axis=-1).astype(np.uint8)).save(
        path
    )
    return str(path)


def request_params(model: str) -> dict:
    """The parameters of a row's requests besides the prompt: its steps and guidance, and for
    image to image the initial picture and the strength."""
    spec = MODELS[model]
    params = {"steps": spec["steps"], "guidance_scale": spec["guidance_scale"], "seed": SEED}
    if "strength" in spec:
        params |= {"init_image": init_image_file(), "strength": spec["strength"]}
    return params


# --with-compile: minutes of warm-up; alone, and on top of the fastest combination
OPTIONAL_VARIANTS = {
    "sd-turbo": {"torch_compile": {"torch_compile": True}, f"{FASTEST_NAME}+compile": FASTEST | {"torch_compile": True}}
}


# -- the architectures, at full size (or tiny with --tiny) -------------------------------------
def unet_config(model: str, tiny: bool) -> dict:
    common = dict(
        sample_size=SIZE // 8,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(320, 640, 1280, 1280),
        act_fn="silu",
        norm_num_groups=32,
        norm_eps=1e-5,
        flip_sin_to_cos=True,
        freq_shift=0,
        downsample_padding=1,
        mid_block_scale_factor=1,
    )
    if (
        architecture(model) == "sd-turbo"
    ):  # SD 2.1: linear projections, head dims growing with the width, OpenCLIP-H context
        common |= dict(attention_head_dim=(5, 10, 20, 20), cross_attention_dim=1024, use_linear_projection=True)
    else:  # SD 1.5: 8 heads everywhere, CLIP ViT-L context
        common |= dict(attention_head_dim=8, cross_attention_dim=768)
    if tiny:
        common |= dict(
            block_out_channels=(32, 32, 64, 64),
            norm_num_groups=8,
            layers_per_block=1,
            attention_head_dim=8,
            cross_attention_dim=text_config(model, tiny)["hidden_size"],
        )
    return common


def text_config(model: str, tiny: bool) -> dict:
    if architecture(model) == "sd-turbo":  # OpenCLIP ViT-H/14 text tower (penultimate layer: 23 of 24 layers)
        config = dict(
            hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16, hidden_act="gelu"
        )
    else:  # OpenAI CLIP ViT-L/14 text tower
        config = dict(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            hidden_act="quick_gelu",
        )
    if tiny:
        config |= dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    return config | dict(vocab_size=49408, max_position_embeddings=77, layer_norm_eps=1e-5, projection_dim=512)


def vae_config(tiny: bool) -> dict:
    return dict(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=2,
        sample_size=SIZE,
        scaling_factor=0.18215,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 16, 32, 32) if tiny else (128, 256, 512, 512),
        norm_num_groups=8 if tiny else 32,
    )


def build_pipeline(model: str, tiny: bool):
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from pipelines.tiny import build_clip_tokenizer

    torch.manual_seed(SEED)
    tokenizer = build_clip_tokenizer()  # cost does not depend on the vocabulary's content
    ids = dict(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    spacing = "trailing" if architecture(model) == "sd-turbo" else "leading"
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, timestep_spacing=spacing
    )
    return StableDiffusionPipeline(
        unet=UNet2DConditionModel(**unet_config(model, tiny)),
        vae=AutoencoderKL(**vae_config(tiny)),
        text_encoder=CLIPTextModel(CLIPTextConfig(**text_config(model, tiny), **ids)),
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def image_entry(model: str, speedups: dict):
    """The models.yaml entry the app would have for this variant."""
    from pipelines.image.config import ImageEntry

    spec = MODELS[model]
    return ImageEntry(
        name=model,
        source=f"benchmark/{model}",
        device="cpu",
        defaults={"steps": spec["steps"], "guidance_scale": spec["guidance_scale"], "width": SIZE, "height": SIZE},
        limits={"min_steps": 1, "max_steps": 50, "min_size": min(SIZE, 256), "max_size": 768},
        cpu_speedups={k: v for k, v in speedups.items() if k not in ("tiny_autoencoder", "torch_compile")},
    )


def build_generator(model: str, speedups: dict, tiny: bool):
    from diffusers import AutoencoderTiny

    from pipelines.image.pipeline import LocalImageGenerator

    entry = image_entry(model, speedups)
    tiny_vae = AutoencoderTiny() if speedups.get("tiny_autoencoder") else None  # taesd's architecture
    generator = LocalImageGenerator.from_pipeline(entry, build_pipeline(model, tiny), tiny_vae=tiny_vae)
    if speedups.get("torch_compile"):  # not offered by the app (measured here: no gain); kept to re-measure
        generator.pipe.unet.compile()
        generator.speedups.append("torch_compile")
    wanted = {k for k, v in speedups.items() if v}
    if set(generator.speedups) != wanted:
        print(
            f"note: {model} {sorted(wanted)}: applied {generator.speedups} (bfloat16 needs AVX512-BF16/AMX)",
            file=sys.stderr,
        )
    return generator


# -- measuring (in a worker process per variant) --------------------------------------------
def pipeline_image(model: str, speedups: dict, tiny: bool):
    """A function that makes one image with the raw pipeline and returns {"seconds": ...}."""
    from pipelines.core.limits import rss_mb

    generator = build_generator(model, speedups, tiny)
    params = generator.default_params(**request_params(model))
    first_image_growth = [None]

    def one_image() -> dict:
        started = time.perf_counter()
        [result] = generator(PROMPT, params)["images"]
        seconds = time.perf_counter() - started
        assert result["image"].size == (SIZE, SIZE)
        return {
            "seconds": seconds,
            "weights_mb": round(generator.memory_mb, 1),
            "first_image_rss_growth_mb": None if first_image_growth[0] is None else round(first_image_growth[0], 1),
        }

    if MODELS[model]["warm_up"]:
        # The first image of a model also builds what it reuses later (for image to image, the
        # img2img pipeline from the loaded components): what it adds to RSS shows there is no
        # second copy of the weights (`first_image_rss_growth_mb`, next to `weights_mb`).
        before = rss_mb()
        one_image()
        first_image_growth[0] = rss_mb() - before
    return one_image, None


def serve_app_with(entry, generator):
    """Launch the app, in this process, with `generator` as its only image model (injected
    through a registry loader instead of saved to disk); returns (demo, url)."""
    from app import build_app, enable_queue, launch_options
    from pipelines.studio import ModelRegistry, default_loaders, parse_config

    config = parse_config(
        {
            "classification": [{"name": "unused classifier", "source": "unused/classifier"}],
            "text": [{"name": "unused text model", "source": "unused/text"}],
            "image": [entry.model_dump(exclude_defaults=True)],
        }
    )
    registry = ModelRegistry(config, loaders=default_loaders() | {"image": lambda entry: generator})
    demo = enable_queue(build_app(config, registry))
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **launch_options(config))
    return demo, url


def app_image(model: str, speedups: dict, tiny: bool):
    """A function that makes one image through /generate_image of the app, launched in this
    process, via gradio_client, and also one with the same pipeline called directly here just
    before it (`raw_same_process_s`: the app's own overhead, with the same machine load)."""
    from benchmarks.app_client import app_client
    from pipelines.core.openmp import release_openmp_pool

    generator = build_generator(model, speedups, tiny)
    demo, url = serve_app_with(image_entry(model, speedups), generator)
    client = app_client(url)
    params = generator.default_params(**request_params(model))
    from gradio_client import handle_file

    request = request_params(model) | {"width": SIZE, "height": SIZE, "num_images": 1, "preview_every": 0}
    if "init_image" in request:
        request["init_image"] = handle_file(request["init_image"])

    def through_app() -> float:
        started = time.perf_counter()
        gallery, info = client.predict(prompt=PROMPT, model_name=model, **request, api_name="/generate_image")
        seconds = time.perf_counter() - started
        assert len(gallery) == 1 and info["seeds"] == [SEED]
        return seconds

    def one_image() -> dict:
        started = time.perf_counter()
        generator(PROMPT, params)
        raw = time.perf_counter() - started
        # The app frees its worker thread's OpenMP pool after each image (pipelines/core/openmp.py);
        # this thread's pool, left alive, would make the app's run on another thread throttled.
        release_openmp_pool()
        return {"seconds": through_app(), "raw_same_process_s": raw}

    through_app()  # warm-up
    return one_image, demo.close


def worker(model: str, variant: str, speedups: dict, tiny: bool) -> None:
    """A variant's process: READY once built and warmed up, then one timed image per line
    on stdin (RUN {"seconds": ...}), and at the end of stdin MEM <peak MB while timed>."""
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # casting random float32 weights to bfloat16 warns; nothing to keep in float32
    measure = app_image if variant == "app" else pipeline_image
    one_image, close = measure(model, speedups, tiny)
    print("READY", flush=True)
    with PeakRss() as memory:
        for _ in sys.stdin:
            print("RUN " + json.dumps(one_image()), flush=True)
    print(f"MEM {memory.mb}", flush=True)
    if close:
        close()


# -- orchestration ---------------------------------------------------------------------------
class Worker:
    """A variant's worker process, asked for one timed image at a time."""

    def __init__(self, model: str, variant: str, speedups: dict, tiny: bool):
        command = [sys.executable, "-m", "benchmarks.image", "--worker", json.dumps([model, variant, speedups])]
        self.process = subprocess.Popen(
            command + (["--tiny"] if tiny else []), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.name = f"{model} {variant}"
        self.runs: list[dict] = []
        self.read("READY")

    def read(self, prefix: str) -> str:
        for line in self.process.stdout:  # libraries may print other lines first
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
        raise RuntimeError(f"benchmark worker {self.name} ended early (its errors are above)")

    def run(self) -> dict:
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        self.runs.append(json.loads(self.read("RUN ")))
        return self.runs[-1]

    def finish(self) -> float:
        """Ends the worker; returns its peak RSS (MB) over the timed images."""
        self.process.stdin.close()
        peak = float(self.read("MEM "))
        self.process.wait(timeout=120)
        return peak


def measure(model: str, variants: dict, tiny: bool, rounds: int, enough_s: float) -> list[dict]:
    """Rows for `variants` (name -> speed-ups), whose workers take turns image by image for
    up to `rounds` rounds (fewer once the first variant's images took `enough_s`): a busy
    moment of this shared machine then slows one image of each rather than all of one."""
    workers = []
    try:
        for variant, speedups in variants.items():  # one at a time: each builds from float32 weights
            workers.append(Worker(model, variant, speedups, tiny))
        for _ in range(rounds):
            for worker in workers:
                worker.run()
            if sum(run["seconds"] for run in workers[0].runs) >= enough_s:
                break
        rows = []
        for variant, worker in zip(variants, workers):
            peak = worker.finish()
            best = min(worker.runs, key=lambda run: run["seconds"])
            row = {
                "model": model,
                "variant": variant,
                "seconds_per_image": round(best["seconds"], 3),
                "peak_mem_mb": round(peak, 1),
            }
            if "raw_same_process_s" in best:  # not a row field: the caller reports it next to the rows
                row["raw_same_process_s"] = round(min(run["raw_same_process_s"] for run in worker.runs), 3)
            if best.get("first_image_rss_growth_mb") is not None:
                row |= {k: best[k] for k in ("weights_mb", "first_image_rss_growth_mb")}
            rows.append(row)
        return rows
    finally:
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.kill()


def variant_groups(model: str, with_compile: bool, only: set[str] | None = None):
    """(variants measured together, rounds, seconds enough) in the order of the rows: the app
    and the fastest variant it runs take turns for APP_ROUNDS rounds, each other variant alone.
    `only`: just these variants (fp32 is always measured: every row is a ratio to it)."""
    spec = MODELS[model]
    variants = spec["variants"] | (OPTIONAL_VARIANTS.get(model, {}) if with_compile else {})
    if only:
        variants = {name: speedups for name, speedups in variants.items() if name in only | {"fp32"}}
    for variant, speedups in variants.items():
        if variant == "app":
            continue
        if variant == FASTEST_NAME and "app" in variants:
            yield {variant: speedups, "app": variants["app"]}, APP_ROUNDS, float("inf")
        else:
            yield {variant: speedups}, spec["repeats"], ENOUGH_TIMED_S


def print_table(rows: list[dict]) -> None:
    print(f"\n{'model':<10} {'variant':<28} {'s/image':>9} {'vs fp32':>8} {'peak MB':>9}")
    for row in rows:
        base = next(r for r in rows if r["model"] == row["model"] and r["variant"] == "fp32")["seconds_per_image"]
        speedup = base / row["seconds_per_image"]
        print(
            f"{row['model']:<10} {row['variant']:<28} {row['seconds_per_image']:>9.2f} {speedup:>7.2f}x {row['peak_mem_mb']:>9.0f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.image", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="image-benchmark.json", help="JSON file to write the rows to")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--with-compile", action="store_true", help="also measure torch.compile (minutes of warm-up)")
    parser.add_argument(
        "--variants", default=None, help="comma-separated variants to measure besides fp32 (default: all)"
    )
    parser.add_argument(
        "--tiny", action="store_true", help="tiny configs: checks the script in seconds, the figures mean nothing"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tiny:
        global SIZE
        SIZE = 64
    if args.worker:
        model, variant, speedups = json.loads(args.worker)
        worker(model, variant, speedups, args.tiny)
        return 0

    import torch

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {'tiny configs' if args.tiny else 'full size'}"
    )
    rows, app_vs_raw, started = [], {}, time.perf_counter()
    for model in args.models:
        only = set(args.variants.split(",")) if args.variants else None
        for group, rounds, enough_s in variant_groups(model, args.with_compile, only):
            for row in measure(model, group, args.tiny, rounds, enough_s):
                print(
                    f"{model} {row['variant']}: {row['seconds_per_image']:.2f} s/image, peak {row['peak_mem_mb']:.0f} MB",
                    flush=True,
                )
                raw = row.pop("raw_same_process_s", None)
                if raw is not None:
                    app_vs_raw[model] = {
                        "app_s": row["seconds_per_image"],
                        "raw_pipeline_same_process_s": raw,
                        "app_over_raw": round(row["seconds_per_image"] / raw, 3),
                    }
                    print(
                        f"  the same pipeline called directly in that process: {raw:.2f} s/image "
                        f"(app / raw = {row['seconds_per_image'] / raw:.2f})",
                        flush=True,
                    )
                rows.append(row)
            # partial results survive a crash
            Path(args.out).write_text(json.dumps({"rows": rows, "app_vs_raw": app_vs_raw}, indent=1))
    print_table(rows)
    print(f"\n{time.perf_counter() - started:.0f} s in all; rows written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
