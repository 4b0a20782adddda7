"""Text-to-image with a Stable Diffusion pipeline (sd-turbo, SD 1.5, ...).

1. check the inputs against the entry's limits, 2. seed one generator per image so each image
can be reproduced alone, 3. denoise with the requested scheduler, reporting every step,
sending cheap previews and honouring Stop after every step, 4. return images with their
seeds and parameters.
"""

from __future__ import annotations

import json
import math
import random
import threading
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from pipelines.config import ImageEntry
from pipelines.hub import from_pretrained_kwargs
from pipelines.devices import Placement, module_size_mb
from pipelines.errors import InputError
from pipelines.image_speedups import choose_image_placement, place_pipeline
from pipelines.latent_preview import latents_to_previews, noise_scale

MAX_SEED = 2**32 - 1

StepCallback = Callable[[int, int], None]  # (steps done, total steps)
PreviewCallback = Callable[[int, list[Image.Image]], None]  # (steps done, one preview per image)

# The name under which an entry without a `schedulers` list offers the scheduler its model ships with.
MODEL_SCHEDULER = "default"

# Scheduler names of models.yaml -> diffusers class and the settings that make it that sampler;
# every other setting (betas, prediction type, ...) comes from the model's own scheduler config.
SCHEDULERS = {
    "Euler (trailing)": ("EulerDiscreteScheduler", {"timestep_spacing": "trailing"}),
    "Euler a (trailing)": ("EulerAncestralDiscreteScheduler", {"timestep_spacing": "trailing"}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "DPM++ 2M Karras": (
        "DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}
    ),
    "DDIM": ("DDIMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "PNDM": ("PNDMScheduler", {"skip_prk_steps": True}),
}


class _Stopped(Exception):
    """Raised from the step callback to leave the pipeline at once when Stop is pressed.

    The pipeline's own interrupt flag only skips the remaining steps and still runs the VAE
    decode, which on a CPU costs more than a denoising step."""


def offered_schedulers(entry: ImageEntry) -> list[str]:
    """The scheduler names a request may ask for; the first is the default."""
    return list(entry.schedulers) or [MODEL_SCHEDULER]


@dataclass(frozen=True)
class ImageParams:
    negative_prompt: str = ""
    steps: int = 1
    guidance_scale: float = 0.0
    width: int = 512
    height: int = 512
    num_images: int = 1
    seed: int = -1  # -1 picks a random seed; image i uses seed + i
    scheduler: str = ""  # one of the entry's schedulers; "" = its first (the model's default)

    @classmethod
    def from_defaults(cls, entry: ImageEntry, **overrides) -> "ImageParams":
        values = entry.defaults.model_dump() | {"scheduler": offered_schedulers(entry)[0]}
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
    offered = offered_schedulers(entry)
    scheduler = params.scheduler or offered[0]
    if scheduler not in offered:
        raise InputError("scheduler", f"must be one of {', '.join(offered)} for this model, got {scheduler!r}")
    return ImageParams(params.negative_prompt, steps, float(g), sizes["width"], sizes["height"], num_images, seed, scheduler)


def check_preview_every(value: object, max_steps: int) -> int:
    return _check_int("preview_every", value, 0, max_steps, " (0 = no previews)")


# zlib settings for the PNGs the app returns (lossless whatever they are). For the benchmark's
# 512x512 sd-turbo image (`python -m benchmarks.cpu_bounds --parts png`): Pillow's default,
# level 6, took 52 ms and 162 KB; level 1 12.7 ms and 206 KB; level 1 with zlib's run-length
# strategy 11.9 ms and 178 KB. The default would add ~4% to an sd-turbo image's 1.4 s on a
# CPU. Z_RLE is the strategy zlib's docs suggest for PNG data: near level 6's size at level 1's
# speed.
PNG_COMPRESS_LEVEL = 1
PNG_ZLIB_STRATEGY = zlib.Z_RLE


def save_png(image: Image.Image, path: str | Path, metadata: dict) -> Path:
    """Save with the generation parameters as PNG text, so a saved image remembers how it was made."""
    info = PngInfo()
    info.add_text("parameters", json.dumps(metadata, sort_keys=True))
    path = Path(path)
    image.save(path, format="PNG", pnginfo=info, compress_level=PNG_COMPRESS_LEVEL, compress_type=PNG_ZLIB_STRATEGY)
    return path


class ImageGenerator:
    def __init__(self, name: str, pipe, placement: Placement, entry: ImageEntry, speedups: list[str] | None = None):
        self.name = name
        self.pipe = pipe
        self.placement = placement
        self.entry = entry
        self.speedups = speedups or []  # names of the speed-ups / memory savers in effect
        self._lock = threading.Lock()  # one denoising loop at a time per pipeline
        # One scheduler object per name, made on first use from the model's own config.
        self._schedulers = {MODEL_SCHEDULER: pipe.scheduler}
        self._model_scheduler = pipe.scheduler
        pipe.set_progress_bar_config(disable=True)  # progress is reported through on_step instead

    @classmethod
    def from_entry(cls, entry: ImageEntry, tiny_vae=None) -> "ImageGenerator":
        """Load the entry's pipeline; `tiny_vae` (an AutoencoderTiny) overrides the entry's
        cpu_speedups.tiny_autoencoder source (tests and benchmarks build one in memory)."""
        from diffusers import AutoPipelineForText2Image

        placement = choose_image_placement(entry)
        extra = {} if entry.safety_checker else {"safety_checker": None, "requires_safety_checker": False}
        pipe = AutoPipelineForText2Image.from_pretrained(
            entry.source, **from_pretrained_kwargs(entry), dtype=placement.dtype, **extra
        )
        return cls.from_pipeline(entry, pipe, placement, tiny_vae)

    @classmethod
    def from_pipeline(cls, entry: ImageEntry, pipe, placement: Placement | None = None, tiny_vae=None) -> "ImageGenerator":
        """Wrap an already built pipeline, placing it and applying the entry's speed-ups."""
        placement = placement or choose_image_placement(entry)
        if pipe.unet.dtype != placement.dtype:  # e.g. a pipeline built in float32 for bfloat16
            pipe.to(dtype=placement.dtype)
        speedups = place_pipeline(pipe, entry, placement, tiny_vae)
        return cls(entry.name, pipe, placement, entry, speedups)

    def _use_scheduler(self, name: str) -> None:
        """Switch the pipeline to the scheduler `name` (caller holds the lock); the model is untouched."""
        if name not in self._schedulers:
            import diffusers

            class_name, settings = SCHEDULERS[name]
            scheduler_class = getattr(diffusers, class_name)
            self._schedulers[name] = scheduler_class.from_config(self._model_scheduler.config, **settings)
        self.pipe.scheduler = self._schedulers[name]

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
        on_preview: PreviewCallback | None = None,
        preview_every: int = 1,
    ) -> list[dict]:
        """Generate `params.num_images` images; returns [{"image", "seed", "params"}, ...].

        `on_preview(steps_done, previews)` receives cheap previews every `preview_every` steps
        (not after the last one: the images follow). Setting `stop` ends the run after the
        current step; a stopped run returns no images.
        """
        # 1. check inputs
        params = self.check_inputs(prompt, params or self.default_params())
        preview_every = check_preview_every(preview_every, self.entry.limits.max_steps) if on_preview else 0
        stop = stop or threading.Event()

        # 2. one generator per image, seeded seed, seed+1, ...: image i is reproducible alone
        base_seed = params.seed if params.seed >= 0 else random.randint(0, MAX_SEED - params.num_images)
        seeds = [(base_seed + i) % (MAX_SEED + 1) for i in range(params.num_images)]
        generator_device = "cpu" if self.placement.device == "mps" else self.placement.device
        generators = [torch.Generator(generator_device).manual_seed(s) for s in seeds]

        # 3. denoise with the requested scheduler, with a per-step report, previews and a Stop check after every step
        def step_end(pipe, step, timestep, callback_kwargs):
            done = step + 1
            if on_step is not None:
                on_step(done, params.steps)
            if stop.is_set():
                raise _Stopped
            if preview_every and done % preview_every == 0 and done < params.steps:
                scale = noise_scale(pipe.scheduler)
                previews = latents_to_previews(callback_kwargs["latents"], (params.width, params.height), scale)
                if previews:
                    on_preview(done, previews)
            return callback_kwargs

        with self._lock, torch.inference_mode():
            if stop.is_set():  # stopped while waiting for the previous request
                return []
            self._use_scheduler(params.scheduler)
            try:
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
            except _Stopped:
                self.pipe.maybe_free_model_hooks()  # what the pipeline does on a normal finish
                return []

        # 4. images with the seed and parameters that reproduce each one
        shared = asdict(params) | {"prompt": prompt, "model": self.name}
        return [
            {"image": image, "seed": seed, "params": shared | {"seed": seed, "num_images": 1}}
            for image, seed in zip(output.images, seeds)
        ]
