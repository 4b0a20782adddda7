"""Per-entry speed-ups (CPU) and memory savers (small GPUs) for Stable Diffusion pipelines.

Each is switched on per model in models.yaml (`cpu_speedups`, `gpu_memory`); what each one
gains and costs was measured with `python -m benchmarks.image` (figures in benchmarks/README.md).
Attention stays on PyTorch's scaled_dot_product_attention (diffusers' default with torch 2)
unless an entry asks for attention slicing on a GPU.
"""

from __future__ import annotations

import logging

import torch

from pipelines.core.devices import Placement, choose_placement, cpu_has_native_bfloat16
from pipelines.image.config import ImageEntry

log = logging.getLogger(__name__)


def choose_image_placement(entry: ImageEntry) -> Placement:
    """The entry's device and dtype, with float32 on CPU becoming bfloat16 where the entry
    asks for it and the CPU runs it natively."""
    placement = choose_placement(entry.gpu_dtype, entry.device, entry.dtype)
    wants_bf16 = entry.cpu_speedups.bfloat16 and entry.dtype == "auto"
    if placement.device == "cpu" and wants_bf16 and cpu_has_native_bfloat16():
        return Placement("cpu", torch.bfloat16)
    return placement


def load_tiny_autoencoder(source: str, dtype: torch.dtype):
    from diffusers import AutoencoderTiny

    from pipelines.core.hub import hub_is_reachable, is_local_source

    local_only = is_local_source(source) or not hub_is_reachable()
    return AutoencoderTiny.from_pretrained(source, dtype=dtype, local_files_only=local_only)


def use_tiny_autoencoder(pipe, tiny_vae) -> None:
    """Decode with `tiny_vae` instead of the pipeline's VAE (same latent space, 8x upsampling)."""
    config = tiny_vae.config
    factor = config.upsampling_scaling_factor ** (len(config.num_decoder_blocks) - 1)
    if factor != pipe.vae_scale_factor:
        raise ValueError(f"the tiny autoencoder upsamples {factor}x but the pipeline's VAE {pipe.vae_scale_factor}x")
    if tiny_vae.dtype != pipe.unet.dtype:
        tiny_vae.to(dtype=pipe.unet.dtype)
    pipe.vae = tiny_vae.to(pipe.device)


def apply_cpu_speedups(pipe, entry: ImageEntry, tiny_vae=None) -> list[str]:
    """Apply the entry's CPU speed-ups (bfloat16 is applied by choosing the dtype at load);
    returns the names of those applied. `tiny_vae` overrides loading entry's tiny_autoencoder."""
    speedups, applied = entry.cpu_speedups, []
    if pipe.unet.dtype == torch.bfloat16:
        applied.append("bfloat16")
    if tiny_vae is None and speedups.tiny_autoencoder:
        tiny_vae = load_tiny_autoencoder(speedups.tiny_autoencoder, pipe.unet.dtype)
    if tiny_vae is not None:
        use_tiny_autoencoder(pipe, tiny_vae)
        applied.append("tiny_autoencoder")
    if speedups.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
        applied.append("channels_last")
    return applied


def place_pipeline(pipe, entry: ImageEntry, placement: Placement, tiny_vae=None) -> list[str]:
    """Move the pipeline to its device and apply the entry's speed-ups or memory savers for
    that device; returns the names of those applied."""
    if placement.device != "cuda":
        pipe.to(placement.device)
        return apply_cpu_speedups(pipe, entry, tiny_vae) if placement.device == "cpu" else []
    savers, applied = entry.gpu_memory, []
    if savers.cpu_offload:
        pipe.enable_model_cpu_offload()  # moves each component to the GPU only while it runs
        applied.append("cpu_offload")
    else:
        pipe.to("cuda")
    if savers.attention_slicing:
        pipe.enable_attention_slicing()
        applied.append("attention_slicing")
    if savers.vae_slicing:
        pipe.vae.enable_slicing()
        applied.append("vae_slicing")
    return applied
