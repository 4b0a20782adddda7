"""Text-to-image and image-to-image with a Stable Diffusion pipeline (sd-turbo, SD 1.5, ...).

1. check the inputs against the entry's limits (the contract's checks), 2. seed one generator
per image so each image can be reproduced alone, 3. denoise with the requested scheduler, from
noise or from the initial image (its latents with `strength` of the noise), reporting every
step, sending cheap previews and honouring Stop after every step, 4. return the images (the
contract adds their seeds and parameters). The image-to-image pipeline is made from the loaded
components (`from_pipe`): the same weights, no second copy.
"""

from __future__ import annotations

import threading

import torch

from pipelines.core.devices import Placement, module_size_mb
from pipelines.core.errors import InputError
from pipelines.core.hub import from_pretrained_kwargs
from pipelines.core.limits import chars_for_tokens
from pipelines.core.params import call_kwargs, passed_fields, refuse_unsupported
from pipelines.image.config import SCHEDULERS, ImageEntry
from pipelines.image.contract import (
    MODEL_SCHEDULER,
    ImageGenerator,
    ImageParams,
    PreviewCallback,
    StepCallback,
    denoising_steps,
)
from pipelines.image.previews import latents_to_previews, noise_scale
from pipelines.image.speedups import choose_image_placement, place_pipeline


class _Stopped(Exception):
    """Raised from the step callback to leave the pipeline at once when Stop is pressed.

    The pipeline's own interrupt flag only skips the remaining steps and still runs the VAE
    decode, which on a CPU costs more than a denoising step."""


class LocalImageGenerator(ImageGenerator):
    # The ImageParams fields this class implements itself; the others are `passed_as` fields, which
    # the diffusers pipeline receives. A field added with neither is refused with its name
    # (`check_inputs`) until it is implemented here.
    IMPLEMENTED = frozenset({"seed", "scheduler", "preview_every", "init_image", "strength", "init_fit"})

    def __init__(self, entry: ImageEntry, pipe, placement: Placement, speedups: list[str] | None = None):
        self.entry, self.name = entry, entry.name
        self.pipe = pipe
        self.device = placement.device
        self.dtype = placement.dtype
        self.speedups = speedups or []  # names of the speed-ups / memory savers in effect
        self.placement = str(placement) + "".join(f" +{name}" for name in self.speedups)
        self._lock = threading.Lock()  # one denoising loop at a time per pipeline
        # One scheduler object per name, made on first use from the model's own config.
        self._schedulers = {MODEL_SCHEDULER: pipe.scheduler}
        self._model_scheduler = pipe.scheduler
        self._img2img = None  # made from `pipe`'s components on the first image-to-image request
        pipe.set_progress_bar_config(disable=True)  # progress is reported through on_step instead

    @classmethod
    def from_entry(cls, entry: ImageEntry, tiny_vae=None) -> LocalImageGenerator:
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
    def from_pipeline(
        cls, entry: ImageEntry, pipe, placement: Placement | None = None, tiny_vae=None
    ) -> LocalImageGenerator:
        """Wrap an already built pipeline, placing it and applying the entry's speed-ups."""
        placement = placement or choose_image_placement(entry)
        if pipe.unet.dtype != placement.dtype:  # e.g. a pipeline built in float32 for bfloat16
            pipe.to(dtype=placement.dtype)
        speedups = place_pipeline(pipe, entry, placement, tiny_vae)
        return cls(entry, pipe, placement, speedups)

    @property
    def memory_mb(self) -> float:
        return module_size_mb(*(c for c in self.pipe.components.values() if isinstance(c, torch.nn.Module)))

    def check_inputs(self, prompt: object, params: ImageParams) -> ImageParams:
        """The contract's checks, then what this pipeline would silently ignore: fields it does not
        implement, a guidance scale in (0, 1] (diffusers guides only above 1: it acts as 0) and a
        negative prompt without guidance (only guidance reads it)."""
        params = super().check_inputs(prompt, params)
        who = f"'{self.name}' ({self.placement})"
        refuse_unsupported(params, self.IMPLEMENTED | passed_fields(type(params)), who)
        # a UNet with a guidance embedding (LCM) takes any scale as an input instead, and never a negative prompt
        embedded = getattr(self.pipe.unet.config, "time_cond_proj_dim", None) is not None
        if not embedded and 0 < params.guidance_scale <= 1:
            raise InputError(
                "guidance_scale",
                f"{params.guidance_scale:g} changes nothing in {who}: guidance starts above 1 "
                "(0 to 1 all mean off); use 0 or a value above 1",
            )
        if params.negative_prompt.strip() and embedded:
            raise InputError(
                "negative_prompt",
                f"{who} takes guidance as an input (a guidance embedding) and reads no negative prompt; leave it empty",
            )
        if params.negative_prompt.strip() and params.guidance_scale <= 1:
            raise InputError(
                "negative_prompt",
                f"{who} reads it only with guidance: set guidance_scale above 1 "
                f"(it is {params.guidance_scale:g}), or leave it empty",
            )
        return params

    def _use_scheduler(self, name: str) -> None:
        """Switch the pipeline to the scheduler `name` (caller holds the lock); the model is untouched."""
        if name not in self._schedulers:
            import diffusers

            class_name, settings = SCHEDULERS[name]
            scheduler_class = getattr(diffusers, class_name)
            self._schedulers[name] = scheduler_class.from_config(self._model_scheduler.config, **settings)
        self.pipe.scheduler = self._schedulers[name]

    def image_to_image(self):
        """The image-to-image pipeline sharing this pipeline's components (caller holds the lock)."""
        if self._img2img is None:
            from diffusers import AutoPipelineForImage2Image

            self._img2img = AutoPipelineForImage2Image.from_pipe(self.pipe)
            self._img2img.set_progress_bar_config(disable=True)
        self._img2img.scheduler = self.pipe.scheduler
        return self._img2img

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
        if init is not None and params.strength == 0:  # 0 keeps the picture: nothing to denoise
            return [init.image.copy() for _ in seeds]
        # 2. one generator per image, seeded seed, seed+1, ...: image i is reproducible alone
        generator_device = "cpu" if self.device == "mps" else self.device
        generators = [torch.Generator(generator_device).manual_seed(s) for s in seeds]
        preview_every = params.preview_every if on_preview is not None else 0

        total = denoising_steps(params)

        # 3. denoise with the requested scheduler, with a per-step report, previews and a Stop check after every step
        def preview(pipe, done: int, latents) -> None:
            previews = latents_to_previews(latents, (params.width, params.height), noise_scale(pipe.scheduler))
            if previews:
                on_preview(done, previews)

        def step_end(pipe, step, timestep, callback_kwargs):
            done = step + 1
            on_step(done, total)
            if stop.is_set():
                if on_preview is not None and done < total:  # a stopped run shows how far it got
                    preview(pipe, done, callback_kwargs["latents"])
                raise _Stopped
            if preview_every and done % preview_every == 0 and done < total:
                preview(pipe, done, callback_kwargs["latents"])
            return callback_kwargs

        # The text encoder reads at most model_max_length tokens (77 for CLIP): tokenize no more text than holds them.
        readable = chars_for_tokens(getattr(self.pipe.tokenizer, "model_max_length", 77) + 1)
        kwargs = call_kwargs(params)
        kwargs["negative_prompt"] = kwargs["negative_prompt"][:readable] or None  # "" would still be encoded
        prompt = prompt[:readable]
        if init is not None:  # the initial image's size is the output's: width/height are not passed
            kwargs = {k: v for k, v in kwargs.items() if k not in ("width", "height")}
            kwargs |= {"image": init.image, "strength": params.strength}
        with self._lock, torch.inference_mode():
            if stop.is_set():  # stopped while waiting for the previous request
                return []
            self._use_scheduler(params.scheduler)
            pipe = self.pipe if init is None else self.image_to_image()
            try:
                output = pipe(prompt=prompt, generator=generators, callback_on_step_end=step_end, **kwargs)
            except _Stopped:
                pipe.maybe_free_model_hooks()  # what the pipeline does on a normal finish
                return []
        # 4. the images; the contract pairs them with their seeds and parameters
        return list(output.images)
