"""An `image:` entry of models.yaml, and the schedulers an entry may offer."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from pipelines.core.entry import FieldProblem, ModelEntry, Strict
from pipelines.core.errors import InputError
from pipelines.core.params import Range, check_params, default_ranges, defaults_schema
from pipelines.image.contract import MODEL_SCHEDULER, ImageParams

# Scheduler names of models.yaml -> diffusers class and the settings that make it that sampler;
# every other setting (betas, prediction type, ...) comes from the model's own scheduler config.
# "(trailing)" variants start from pure noise at the last timestep, as distilled few-step
# models such as sd-turbo need.
SCHEDULERS: dict[str, tuple[str, dict]] = {
    "Euler (trailing)": ("EulerDiscreteScheduler", {"timestep_spacing": "trailing"}),
    "Euler a (trailing)": ("EulerAncestralDiscreteScheduler", {"timestep_spacing": "trailing"}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "DPM++ 2M Karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "DDIM": ("DDIMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "PNDM": ("PNDMScheduler", {"skip_prk_steps": True}),
}
SchedulerName = Literal[tuple(SCHEDULERS)]

ImageDefaults = defaults_schema(ImageParams, "ImageDefaults")
_BASE = default_ranges(ImageParams)


class ImageLimits(Strict):
    """What this model allows, within ImageParams' declared ranges."""

    min_steps: int = Field(1, ge=1)
    max_steps: int = Field(50, ge=1, le=int(_BASE["steps"].high))
    max_guidance_scale: float = Field(20.0, ge=0.0, le=_BASE["guidance_scale"].high)
    min_size: int = Field(64, ge=8, multiple_of=8)
    max_size: int = Field(768, ge=8, le=int(_BASE["width"].high), multiple_of=8)
    max_images: int = Field(4, ge=1, le=int(_BASE["num_images"].high))
    # An initial image with more pixels is refused before it is decoded (a decompression bomb).
    max_init_image_pixels: int = Field(4096 * 4096, ge=64 * 64)
    # A larger initial image file is refused before it is read (init_image.DEFAULT_MAX_BYTES);
    # the app's uploads are bounded by settings.max_upload_mb first.
    max_init_image_mb: float = Field(64.0, gt=0, le=10_000)


class ImageCpuSpeedups(Strict):
    """CPU-only speed-ups; on a GPU none of them is applied. `python -m benchmarks.image` measures each."""

    # bfloat16 weights and activations when the CPU has native bfloat16 (AVX512-BF16 or AMX)
    # and the entry's dtype is auto; elsewhere it stays float32 (emulated bfloat16 is slower).
    bfloat16: bool = False
    # NHWC memory layout for the UNet and VAE convolutions (oneDNN's preferred layout).
    channels_last: bool = False
    # An AutoencoderTiny (Hub id or local directory, e.g. madebyollin/taesd for SD 1.x/2.x)
    # replacing the VAE's decoder: ~25x cheaper decode, slightly softer fine detail.
    tiny_autoencoder: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_retired_options(cls, values):
        if isinstance(values, dict) and "torch_compile" in values:
            raise ValueError(
                "torch_compile is no longer offered: on top of the other CPU speed-ups it made sd-turbo 4% slower "
                "(12.88 vs 12.33 s per image) after minutes of compiling (benchmarks/README.md); remove it"
            )
        return values


class ImageGpuMemory(Strict):
    """Memory savers for small GPUs, applied only on CUDA; each trades speed for memory."""

    cpu_offload: bool = False  # keep each component on the CPU until it runs (model CPU offload)
    attention_slicing: bool = False  # attention one head-slice at a time
    vae_slicing: bool = False  # decode the batch one image at a time


class ImageEntry(ModelEntry):
    gpu_dtype: ClassVar[str] = "float16"  # the standard for Stable Diffusion on GPUs
    defaults: ImageDefaults = ImageDefaults()
    limits: ImageLimits = ImageLimits()
    safety_checker: bool = Field(False, description="Load the pipeline's NSFW safety checker (costs memory and time).")
    # The samplers offered for this model; the first is the default. Empty: only the
    # scheduler the model ships with, offered as "default".
    schedulers: list[SchedulerName] = Field(default_factory=list)
    cpu_speedups: ImageCpuSpeedups = ImageCpuSpeedups()
    gpu_memory: ImageGpuMemory = ImageGpuMemory()

    def ranges(self) -> dict[str, Range]:
        lim = self.limits
        size = dict(low=lim.min_size, high=lim.max_size)
        return _BASE | {
            "steps": _BASE["steps"].within(lim.min_steps, lim.max_steps),
            "guidance_scale": _BASE["guidance_scale"].within(high=lim.max_guidance_scale),
            "width": _BASE["width"].within(**size),
            "height": _BASE["height"].within(**size),
            "num_images": _BASE["num_images"].within(high=lim.max_images),
            "preview_every": _BASE["preview_every"].within(high=lim.max_steps),
        }

    def choices(self) -> dict[str, list[str]]:
        # Empty `schedulers`: only the scheduler the model ships with, offered as "default".
        return {"scheduler": list(self.schedulers) or [MODEL_SCHEDULER]}

    @model_validator(mode="after")
    def _defaults_within_limits(self):
        try:
            check_params(ImageParams(**self.defaults.model_dump()), self.ranges(), self.choices())
        except InputError as err:
            value = getattr(self.defaults, err.field)
            raise FieldProblem("defaults", f"defaults.{err.field}={value!r} is outside limits ({err})") from None
        if len(set(self.schedulers)) != len(self.schedulers):
            raise FieldProblem("schedulers", "lists a scheduler twice")
        return self
