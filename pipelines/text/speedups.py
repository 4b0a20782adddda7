"""CPU speed-ups for causal LMs, chosen per model in models.yaml (`cpu_speedups:`), applied once at load.

Decoding one token reads every weight once, so on a CPU the speed is set by how many bytes
of weights there are, not by arithmetic. int8 weights are a quarter of float32's bytes:

- `quantize: int8_dynamic` — PyTorch's dynamic quantization of every `nn.Linear`
  (`torch.ao.quantization.quantize_dynamic`, fbgemm int8 kernels: weights int8 per tensor,
  activations quantized per call). The fastest here (`python -m benchmarks.textgen`).
  Deprecated in favour of torchao but still maintained in torch 2.13; its deprecation
  warnings are silenced here because we chose it knowingly, on measurements.
- `dtype: bfloat16` (the entry's ordinary dtype field) halves the bytes without quantizing.
- torchao's int8 configs and `torch.compile` are not offered: each was slower than int8_dynamic
  (`python -m benchmarks.textgen --layers 4 --variants int8_dynamic,int8_dynamic+compile`
  measures compile; every measurement: benchmarks/README.md, "Options measured and retired").
  An entry naming one is refused (`TextCpuSpeedups.RETIRED` in config.py).

Always, whatever the options: GPT-Neo's `gelu_new` activation (eight elementwise ops in
Python) is swapped for PyTorch's fused tanh-approximated GELU, the same formula (outputs
differ by ~1e-7): one kernel instead of eight (`python -m benchmarks.cpu_bounds --parts gelu`
measures it).

Nothing here runs on a GPU: the speed-ups are CPU remedies (`LocalTextGenerator` skips them elsewhere).
"""

from __future__ import annotations

import logging
import warnings

import torch

log = logging.getLogger(__name__)

# Messages of the deprecation warnings that torch.ao's dynamic quantization emits on every use.
_AO_DEPRECATION = r"(torch\.ao\.quantization is deprecated|torch\.quantize_per_tensor.* deprecated)"


def apply_cpu_speedups(model: torch.nn.Module, quantize: str = "none") -> torch.nn.Module:
    """Return `model` with the requested speed-ups (in place where the library allows)."""
    fuse_gelu(model)
    # quantize the linear layers' weights to int8
    if quantize == "int8_dynamic":
        if next(model.parameters()).dtype != torch.float32:
            raise ValueError("quantize: int8_dynamic needs a float32 model (dtype: float32 or auto on CPU)")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_AO_DEPRECATION)
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    elif quantize != "none":
        raise ValueError(f"unknown quantize option {quantize!r}; use none or int8_dynamic")
    return model


def fuse_gelu(model: torch.nn.Module) -> int:
    """Replace transformers' NewGELUActivation modules by the fused GELUTanh (same function); returns how many."""
    from transformers.activations import GELUTanh, NewGELUActivation

    swaps = [
        (parent, name)
        for parent in model.modules()
        for name, child in parent.named_children()
        if type(child) is NewGELUActivation
    ]
    for parent, name in swaps:
        setattr(parent, name, GELUTanh())
    return len(swaps)


def describe_speedups(quantize: str = "none") -> str:
    """A short label for the status panel, e.g. ' +int8 dynamic'; empty when nothing is applied."""
    return " +int8 dynamic" if quantize == "int8_dynamic" else ""


def model_memory_mb(model: torch.nn.Module) -> float:
    """Bytes held by the weights, counting int8 packed weights that are not parameters."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    seen: set[int] = set()  # tied weights (GPT-Neo's embedding and LM head) count once
    total = 0
    for tensor in list(model.parameters()) + list(model.buffers()):
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    for module in model.modules():
        if isinstance(module, DynamicQuantizedLinear):  # packed int8 weight, outside parameters()
            weight, bias = module._weight_bias()
            total += weight.numel() * weight.element_size() + (
                bias.numel() * bias.element_size() if bias is not None else 0
            )
    return total / 2**20
