"""Device and dtype, decided once per model when it is loaded.

Kept free of CUDA initialisation at import time: on ZeroGPU Spaces the main process must
never touch CUDA, so nothing here runs until a model is actually loaded. The dtype on an
accelerator is the task's own (`gpu_dtype` of its entry schema, passed in by the task's
pipeline); CPUs always get float32 for "auto": float16 kernels are missing or slow there, and
bfloat16 is offered as an explicit per-entry speed-up instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class Placement:
    device: str
    dtype: torch.dtype

    def __str__(self) -> str:
        return f"{self.device}/{str(self.dtype).removeprefix('torch.')}"


def best_available_device() -> str:
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def cpu_has_native_bfloat16() -> bool:
    """AVX512-BF16 or AMX: bfloat16 matmuls/convolutions run natively, about twice float32's
    speed. Without them oneDNN emulates bfloat16, slower than float32."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, check, lambda: False)() for check in checks)


def choose_placement(gpu_dtype: str, device: str = "auto", dtype: str = "auto") -> Placement:
    """CUDA, then Apple MPS, then CPU; with `dtype` auto, float32 on a CPU and the task's
    `gpu_dtype` on an accelerator."""
    chosen_device = best_available_device() if device == "auto" else device
    if chosen_device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA GPU is available; use device: auto")
    if dtype == "auto":
        chosen_dtype = torch.float32 if chosen_device == "cpu" else DTYPES[gpu_dtype]
    else:
        chosen_dtype = DTYPES[dtype]
    if chosen_device == "cpu" and chosen_dtype == torch.float16:
        raise ValueError("dtype float16 is not supported on CPU; use float32 or bfloat16")
    return Placement(chosen_device, chosen_dtype)


def module_size_mb(*modules: torch.nn.Module) -> float:
    """Memory held by parameters and buffers, used for the memory budget and status panel."""
    total = 0
    for module in modules:
        if module is None:
            continue
        for tensor in list(module.parameters()) + list(module.buffers()):
            total += tensor.numel() * tensor.element_size()
    return total / 2**20


def empty_accelerator_caches() -> None:
    """Give the blocks a GPU's caching allocator keeps back to the driver (after a model is dropped)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    if mps is not None and hasattr(mps, "empty_cache") and torch.backends.mps.is_available():
        mps.empty_cache()
