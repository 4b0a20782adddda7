"""Text-to-image with a Stable Diffusion pipeline (sd-turbo, SD 1.5, ...).

1. check the inputs against the entry's limits, 2. seed one generator per image so each
image can be reproduced alone, 3. denoise, reporting every step and honouring Stop
through the pipeline's interrupt flag, 4. return images with their seeds and parameters.
"""

from __future__ import annotations

import json
import math
import random
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from pipelines.config import ImageEntry
from pipelines.hub import from_pretrained_kwargs
from pipelines.devices import Placement, choose_placement, module_size_mb
from pipelines.errors import InputError

MAX_SEED = 2**32 - 1

StepCallback = Callable[[int, int], None]  # (steps done, total steps)


@dataclass(frozen=True)
class ImageParams:
    negative_prompt: str = ""
    steps: int = 1
    guidance_scale: float = 0.0
    width: int = 512
    height: int = 512
    num_images: int = 1
    seed: int = -1  # -1 picks a random seed; image i uses seed + i

    @classmethod
    def from_defaults(cls, entry: ImageEntry, **overrides) -> "ImageParams":
        values = entry.defaults.model_dump()
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _check_int(field: str, value: object, low: int, high: int, extra: str = "") -> int:
    allowed = f"an integer in [{low}, {high}]{extra}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value != int(value):
        raise InputError(field, f"must be {allowed}, got {value!r}")
    if not low <= value <= high:
        raise InputError(field, f"must be {allowed}, got {value!r}")
    return int(value)


def check_params(params: ImageParams, entry: ImageEntry) -> ImageParams:
    lim = entry.limits
    steps = _check_int("steps", params.steps, lim.min_steps, lim.max_steps)
    g = params.guidance_scale
    if isinstance(g, bool) or not isinstance(g, (int, float)) or not math.isfinite(g) or not 0 <= g <= lim.max_guidance_scale:
        raise InputError("guidance_scale", f"must be a number in [0, {lim.max_guidance_scale:g}], got {g!r}")
    sizes = {}
    for side in ("width", "height"):
        value = _check_int(side, getattr(params, side), lim.min_size, lim.max_size, ", a multiple of 8")
        if value % 8:
            raise InputError(side, f"must be a multiple of 8 in [{lim.min_size}, {lim.max_size}], got {value}")
        sizes[side] = value
    num_images = _check_int("num_images", params.num_images, 1, lim.max_images)
    seed = _check_int("seed", params.seed, -1, MAX_SEED)
    if not isinstance(params.negative_prompt, str):
        raise InputError("negative_prompt", "must be text")
    return ImageParams(params.negative_prompt, steps, float(g), sizes["width"], sizes["height"], num_images, seed)


def save_png(image: Image.Image, path: str | Path, metadata: dict) -> Path:
    """Save with the generation parameters as PNG text, so a saved image remembers how it was made."""
    info = PngInfo()
    info.add_text("parameters", json.dumps(metadata, sort_keys=True))
    path = Path(path)
    image.save(path, format="PNG", pnginfo=info)
    return path


class ImageGenerator:
    def __init__(self, name: str, pipe, placement: Placement, entry: ImageEntry):
        self.name = name
        self.pipe = pipe
        self.placement = placement
        self.entry = entry
        self._lock = threading.Lock()  # one denoising loop at a time per pipeline

    @classmethod
    def from_entry(cls, entry: ImageEntry) -> "ImageGenerator":
        from diffusers import AutoPipelineForText2Image

        placement = choose_placement("image", entry.device, entry.dtype)
        extra = {} if entry.safety_checker else {"safety_checker": None, "requires_safety_checker": False}
        pipe = AutoPipelineForText2Image.from_pretrained(
            entry.source, **from_pretrained_kwargs(entry), dtype=placement.dtype, **extra
        )
        pipe.to(placement.device)
        pipe.set_progress_bar_config(disable=True)  # progress is reported through on_step instead
        return cls(entry.name, pipe, placement, entry)

    @property
    def memory_mb(self) -> float:
        return module_size_mb(*(c for c in self.pipe.components.values() if isinstance(c, torch.nn.Module)))

    def default_params(self, **overrides) -> ImageParams:
        return ImageParams.from_defaults(self.entry, **overrides)

    def check_inputs(self, prompt: object, params: ImageParams) -> ImageParams:
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError("prompt", "is empty; describe the image you want")
        return check_params(params, self.entry)

    def __call__(
        self,
        prompt: str,
        params: ImageParams | None = None,
        on_step: StepCallback | None = None,
        stop: threading.Event | None = None,
    ) -> list[dict]:
        """Generate `params.num_images` images; returns [{"image", "seed", "params"}, ...].

        Setting `stop` interrupts the denoising loop; images of a stopped run are not returned.
        """
        # 1. check inputs
        params = self.check_inputs(prompt, params or self.default_params())
        stop = stop or threading.Event()

        # 2. one generator per image, seeded seed, seed+1, ...: image i is reproducible alone
        base_seed = params.seed if params.seed >= 0 else random.randint(0, MAX_SEED - params.num_images)
        seeds = [(base_seed + i) % (MAX_SEED + 1) for i in range(params.num_images)]
        generator_device = "cpu" if self.placement.device == "mps" else self.placement.device
        generators = [torch.Generator(generator_device).manual_seed(s) for s in seeds]

        # 3. denoise, with a per-step report and an interrupt check after every step
        def step_end(pipe, step, timestep, callback_kwargs):
            if on_step is not None:
                on_step(step + 1, params.steps)
            if stop.is_set():
                pipe._interrupt = True
            return callback_kwargs

        with self._lock, torch.inference_mode():
            output = self.pipe(
                prompt=prompt,
                negative_prompt=params.negative_prompt or None,
                num_inference_steps=params.steps,
                guidance_scale=params.guidance_scale,
                width=params.width,
                height=params.height,
                num_images_per_prompt=params.num_images,
                generator=generators,
                callback_on_step_end=step_end,
            )
        if stop.is_set():
            return []

        # 4. images with the seed and parameters that reproduce each one
        shared = asdict(params) | {"prompt": prompt, "model": self.name}
        return [
            {"image": image, "seed": seed, "params": shared | {"seed": seed, "num_images": 1}}
            for image, seed in zip(output.images, seeds)
        ]
