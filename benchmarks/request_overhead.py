"""What one /generate_image request costs besides the pipeline: the app's fixed overhead.

    python -m benchmarks.request_overhead --out /tmp/request-overhead.json

serves the app with a stand-in image generator that sleeps for a fixed time (so the model's
own speed and the machine's noise drop out) and returns a noisy 512x512 image, and times
requests through gradio_client against that fixed time: the difference is the HTTP call, the
queue, the PNG, Gradio's copy and messages, the client noticing the result and downloading
the file. Writes {"work_s", "requests", "overhead_ms": {"min", "median", "max"}}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

WORK_S = 0.5  # how long the stand-in generator takes per image
SIZE = 512  # image side in pixels
REQUESTS = 15  # timed requests, after one warm-up


def stand_in_generator(entry, work_s: float):
    """An ImageGenerator (the app's image contract) that sleeps instead of denoising."""
    import numpy as np
    from PIL import Image

    from pipelines.image.contract import ImageGenerator

    pixels = np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)

    class StandInGenerator(ImageGenerator):
        name, placement, memory_mb = entry.name, "stand-in", 1.0

        def __init__(self):
            self.entry = entry

        def generate(self, prompt, params, seeds, on_step, on_preview, stop, init=None):
            on_step(1, 1)  # as a real pipeline reports its step before decoding
            time.sleep(work_s)
            return [image] * len(seeds)

    return StandInGenerator()


def measure(work_s: float, requests: int) -> list[float]:
    from benchmarks.app_client import app_client
    from benchmarks.image import image_entry, serve_app_with

    entry = image_entry("sd-turbo", {})
    demo, url = serve_app_with(entry, stand_in_generator(entry, work_s))
    try:
        client = app_client(url)

        def one_request() -> float:
            started = time.perf_counter()
            gallery, info = client.predict(
                "a test", entry.name, "", 1, 0.0, SIZE, SIZE, 1, 0, "", 0, api_name="/generate_image"
            )
            assert len(gallery) == 1 and info["seeds"] == [0]
            return time.perf_counter() - started - work_s

        one_request()  # warm-up
        return [one_request() for _ in range(requests)]
    finally:
        demo.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.request_overhead", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="write the JSON result here")
    parser.add_argument("--requests", type=int, default=REQUESTS)
    parser.add_argument("--work-s", type=float, default=WORK_S)
    args = parser.parse_args(argv)
    overheads = measure(args.work_s, args.requests)
    result = {
        "work_s": args.work_s,
        "requests": args.requests,
        "overhead_ms": {
            name: round(f(overheads) * 1000, 1)
            for name, f in (("min", min), ("median", statistics.median), ("max", max))
        },
    }
    print(
        f"/generate_image overhead over a {args.work_s} s stand-in pipeline, {args.requests} requests: "
        + ", ".join(f"{k} {v} ms" for k, v in result["overhead_ms"].items())
    )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
