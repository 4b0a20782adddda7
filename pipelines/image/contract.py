"""Image generation's contract: its request parameters (declared once, here), its results and
progress events, and the interface that the local pipeline (`pipeline.LocalImageGenerator`)
and the remote client (`remote.GradioImageGenerator`) implement. No torch here.
"""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any, TypedDict

from pipelines.core import background
from pipelines.core.errors import InputError
from pipelines.core.params import Range, check_params, from_defaults, param
from pipelines.core.remote import MAX_SEED, pick_seed

StepCallback = Callable[[int, int], None]  # (steps done, total steps)
PreviewCallback = Callable[[int, list], None]  # (steps done, one PIL preview per image)

# The name under which an entry without a `schedulers` list offers the scheduler its model ships with.
MODEL_SCHEDULER = "default"


@dataclass(frozen=True)
class ImageParams:
    negative_prompt: str = param(
        "", "Negative prompt", "What the image should not show (needs guidance above 1).", passed_as="negative_prompt"
    )
    steps: int = param(
        1,
        "Steps",
        "Denoising steps: each removes some noise; more are slower and usually finer.",
        range=Range(1, 150, integer=True),
        passed_as="num_inference_steps",
    )
    guidance_scale: float = param(
        0.0,
        "Guidance scale",
        "How strongly the image follows the prompt: 0 = off, as sd-turbo wants (guidance starts above 1); high values look harsh.",
        range=Range(0.0, 30.0, step=0.5),
        passed_as="guidance_scale",
    )
    width: int = param(512, "Width", range=Range(8, 2048, multiple_of=8), passed_as="width")
    height: int = param(512, "Height", range=Range(8, 2048, multiple_of=8), passed_as="height")
    num_images: int = param(1, "Number of images", range=Range(1, 16, integer=True), passed_as="num_images_per_prompt")
    seed: int = param(
        -1,
        "Seed (-1 = random; image i uses seed + i; click an image to reuse its seed)",
        range=Range(-1, MAX_SEED, integer=True),
        widget="number",
    )
    scheduler: str = param(
        "",
        "Scheduler",
        "The sampler that removes the noise step by step; the first is the model's default.",
        widget="dropdown",
    )
    preview_every: int = param(
        0,
        "Preview every N steps (0 = off)",
        "A cheap, blurry preview of the image while it is denoised.",
        range=Range(0, 150, integer=True),
    )
    # Image to image: start from a picture instead of pure noise.
    init_image: str = param(
        "",
        "Initial image (optional: image to image)",
        "Start from this picture instead of noise; empty: text to image.",
        widget="image",
    )
    strength: float = param(
        0.6,
        "Strength",
        "How much of the initial image is redrawn: 0 keeps it, 1 ignores it. Steps x strength denoising steps run.",
        range=Range(0.0, 1.0, step=0.05),
        only_if="init_image",
    )
    init_fit: str = param(
        "crop",
        "Fit the initial image",
        "crop (default): fill the size, cutting the edges; pad: keep all of it, with white bands.",
        widget="dropdown",
        choices=("crop", "pad"),
        only_if="init_image",
    )


class GeneratedImage(TypedDict):
    image: Any  # PIL.Image.Image
    seed: int
    params: dict  # everything that reproduces this one image (its PNG metadata)


class ImageResult(TypedDict):
    images: list[GeneratedImage]  # empty when stopped
    seeds: list[int]
    parameters: dict  # the request's parameters (prompt, model, seed of the first image, ...)
    stopped: bool


def offered_schedulers(entry) -> list[str]:
    """The scheduler names a request may ask for; the first is the default."""
    return entry.choices()["scheduler"]


def check_prompt(prompt: object) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("prompt", "is empty; describe the image you want")
    return prompt


def denoising_steps(params: ImageParams) -> int:
    """Steps the pipeline runs: all of them from noise, steps x strength from an initial image."""
    return int(params.steps * params.strength) if params.init_image else params.steps


def image_result(
    prompt: str, model: str, params: ImageParams, seeds: list[int], images: list, stopped: bool = False, init=None
) -> ImageResult:
    """The images with everything that reproduces each one (an initial image by its hash and size)."""
    parameters = asdict(params) | {"prompt": prompt, "model": model, "seed": seeds[0] if seeds else params.seed}
    for name in ("init_image", "strength", "init_fit"):
        parameters.pop(name)
    if init is not None:
        parameters |= {"init_image": init.metadata(), "strength": params.strength}
    return ImageResult(
        images=[
            GeneratedImage(image=image, seed=seed, params=parameters | {"seed": seed, "num_images": 1})
            for image, seed in zip(images, seeds)
        ],
        seeds=list(seeds) if images else [],
        parameters=parameters,
        stopped=stopped,
    )


def gpu_seconds(steps: float = 25, num_images: float = 1, width: float = 512, height: float = 512, **_request) -> float:
    """ZeroGPU: seconds of GPU a request needs: one UNet step of one 512x512 image ~0.25 s on the
    GPUs ZeroGPU lends (SD 1.5 fp16 ~0.1 s on an A10G), plus ~1 s to decode and encode each image."""
    images = max(1.0, float(num_images or 1))
    size_factor = max(1.0, float(width or 0) * float(height or 0) / (512 * 512))
    return images * (float(steps or 1) * 0.25 * size_factor + 1.0)


class ImageGenerator(ABC):
    """A text-to-image model, local or remote. Subclasses implement `generate` (blocking, with
    per-step callbacks); the checks, the seeds and running on a worker are here."""

    name: str
    entry: object  # its models.yaml entry (ImageEntry)
    placement: str
    memory_mb: float = 0.0
    speedups: tuple[str, ...] | list[str] = ()  # names of the speed-ups / memory savers in effect

    def default_params(self, **overrides) -> ImageParams:
        params = from_defaults(ImageParams, self.entry.defaults, **overrides)
        return params if params.scheduler else replace(params, scheduler=self.entry.choices()["scheduler"][0])

    def check_inputs(self, prompt: object, params: ImageParams) -> ImageParams:
        check_prompt(prompt)
        params = check_params(params, self.entry.ranges(), self.entry.choices())
        if params.init_image and params.strength > 0 and denoising_steps(params) < 1:
            raise InputError(
                "strength",
                f"with strength {params.strength:g}, {params.steps} step(s) run no denoising step: "
                f"raise steps to {math.ceil(1 / params.strength)} or strength to {min(1.0, 1 / params.steps):g}",
            )
        return params

    def init_image(self, params: ImageParams):
        """The request's initial image, read and converted (None for text to image)."""
        if not params.init_image:
            return None
        from pipelines.image.init_image import load_init_image

        limits = self.entry.limits
        return load_init_image(
            params.init_image,
            params.width,
            params.height,
            params.init_fit,
            limits.max_init_image_pixels,
            int(limits.max_init_image_mb * 2**20),
        )

    @abstractmethod
    def generate(
        self,
        prompt: str,
        params: ImageParams,
        seeds: list[int],
        on_step: StepCallback,
        on_preview: PreviewCallback | None,
        stop: threading.Event,
        init=None,
    ) -> list:
        """The images (PIL, one per seed) for checked parameters, on a worker thread; reports
        every step, previews every `params.preview_every` steps when `on_preview` is given, and
        ends after the current step once `stop` is set (returning no images; with `on_preview`, a
        last preview of where it stopped). `init` (an init_image.InitImage) starts the images from a
        picture, `params.strength` of it redrawn."""

    def seeds(self, params: ImageParams) -> list[int]:
        """Image i uses seed + i, so that each image can be reproduced alone."""
        base = pick_seed(params.seed, params.num_images)
        return [(base + i) % (MAX_SEED + 1) for i in range(params.num_images)]

    def _run(
        self,
        prompt: str,
        params: ImageParams,
        stop: threading.Event,
        on_step: StepCallback,
        on_preview: PreviewCallback | None,
    ) -> ImageResult:
        seeds = self.seeds(params)
        init = self.init_image(params)
        images = self.generate(prompt, params, seeds, on_step, on_preview, stop, init)
        return image_result(prompt, self.name, params, seeds, images, stopped=stop.is_set() or not images, init=init)

    def stream(
        self,
        prompt: str,
        params: ImageParams | None = None,
        stop: threading.Event | None = None,
        idle_every_s: float | None = None,
    ) -> Iterator[dict]:
        """Yield {"kind": "step", "done", "total"}, {"kind": "preview", "done", "images"} and
        {"kind": "idle"} (nothing new for idle_every_s) as the images are made, and finally
        {"kind": "result", "result": ImageResult}. Closing it, or setting `stop`, ends the run."""
        params = self.check_inputs(prompt, params or self.default_params())
        stop = stop or threading.Event()

        def work(emit):
            return self._run(
                prompt,
                params,
                stop,
                on_step=lambda done, total: emit({"kind": "step", "done": done, "total": total}),
                on_preview=lambda done, images: emit({"kind": "preview", "done": done, "images": images}),
            )

        for kind, payload in background.stream(work, f"generate-{self.name}", stop, idle_every_s):
            yield (
                payload
                if kind == "item"
                else {"kind": kind}
                if kind == "idle"
                else {"kind": "result", "result": payload}
            )

    def __call__(
        self,
        prompt: str,
        params: ImageParams | None = None,
        on_step: StepCallback | None = None,
        stop: threading.Event | None = None,
        on_preview: PreviewCallback | None = None,
    ) -> ImageResult:
        """Generate and wait. `on_step` and `on_preview` are called between steps, on the worker
        thread (as diffusers calls its callbacks), so a callback that sets `stop` stops the next step."""
        params = self.check_inputs(prompt, params or self.default_params())
        stop = stop or threading.Event()
        return background.call(
            lambda emit: self._run(prompt, params, stop, on_step or (lambda done, total: None), on_preview),
            f"generate-{self.name}",
            stop=stop,
        )

    def close(self) -> None:  # noqa: B027 - a default that does nothing, not an abstract method
        """Release what the generator holds (the registry calls this when it unloads it)."""
