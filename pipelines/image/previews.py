"""Cheap previews of Stable Diffusion latents while they are being denoised.

A full VAE decode costs more than a denoising step on a CPU, so previews use the well-known
linear approximation instead: each of the 4 latent channels contributes a fixed amount of
red, green and blue (least-squares fit of VAE decodes; the factors AUTOMATIC1111 and ComfyUI
use for SD 1.x/2.x latents). One small matrix product per step; the preview has the latents'
resolution (1/8 of the image), blurry but true to the composition and colours.
"""

from __future__ import annotations

import torch
from PIL import Image

# Rows: latent channels; columns: R, G, B. Valid for the SD 1.x / 2.x VAE (4 latent channels).
SD_LATENT_RGB_FACTORS = (
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)


def noise_scale(scheduler) -> float:
    """How much larger than unit variance the latents are at the scheduler's current step.

    Sigma-based schedulers (Euler, DPM++) keep latents at std sqrt(1 + sigma^2); dividing by it
    makes early previews grey-ish noise instead of saturated colour noise. Others (DDIM, PNDM)
    already keep unit variance.
    """
    sigmas = getattr(scheduler, "sigmas", None)
    index = getattr(scheduler, "step_index", None)
    if sigmas is None or index is None or index >= len(sigmas):
        return 1.0
    return float((sigmas[index] ** 2 + 1) ** 0.5)


def latents_to_previews(latents: torch.Tensor, size: tuple[int, int], scale: float = 1.0) -> list[Image.Image] | None:
    """RGB previews of (batch, 4, h, w) latents, resized to `size` (width, height); None when
    the latents are not SD-style 4-channel latents (no factors known for them)."""
    if latents.ndim != 4 or latents.shape[1] != len(SD_LATENT_RGB_FACTORS):
        return None
    factors = torch.tensor(SD_LATENT_RGB_FACTORS, dtype=torch.float32)
    rgb = torch.einsum("bchw,cr->bhwr", latents.detach().float().cpu() / scale, factors)
    pixels = ((rgb + 1) * 127.5).clamp(0, 255).to(torch.uint8).numpy()
    return [Image.fromarray(p).resize(size, Image.Resampling.BILINEAR) for p in pixels]
