"""CPU speed-ups for causal LMs, chosen per model in models.yaml (`cpu_speedups:`), applied once at load.

Decoding one token reads every weight once, so on a CPU the speed is set by how many bytes
of weights there are, not by arithmetic. int8 weights are a quarter of float32's bytes:

- `quantize: int8_dynamic` — PyTorch's dynamic quantization of every `nn.Linear`
  (`torch.ao.quantization.quantize_dynamic`, fbgemm int8 kernels: weights int8 per tensor,
  activations quantized per call). The fastest here (see README, "Text generation").
  Deprecated in favour of torchao but still maintained in torch 2.13; its deprecation
  warnings are silenced here because we chose it knowingly, on measurements.
- `quantize: int8_torchao` — torchao's `Int8DynamicActivationInt8WeightConfig` (per-channel
  int8 weights, per-token int8 activations): closer to float32, slower than `int8_dynamic`
  on this CPU. torchao's int8 *weight-only* config was far slower than `int8_dynamic` here
  (4 vs 63 tokens/s on a 4-layer GPT-Neo of the 1.3B's width), so it is not offered.
- `dtype: bfloat16` (the entry's ordinary dtype field) halves the bytes without quantizing.
- `compile: true` wraps the forward pass in `torch.compile` (dynamic shapes). GPT-Neo has no
  static KV cache in transformers, so the shapes change every token, and the first request pays
  minutes of compiling on 2 cores. Off by default: with int8_dynamic it was 11% slower on a
  4-layer model (`python -m benchmarks.textgen --layers 4 --variants int8_dynamic,int8_dynamic+compile`).

Always, whatever the options: GPT-Neo's `gelu_new` activation (eight elementwise ops in
Python) is swapped for PyTorch's fused tanh-approximated GELU, the same formula (outputs
differ by ~1e-7): one kernel instead of eight; +3% tokens/s for GPT-Neo 1.3B int8 in one run,
within noise in another (`python -m benchmarks.cpu_bounds --parts gelu`).

Nothing here runs on a GPU: the speed-ups are CPU remedies (`TextGenerator` skips them elsewhere).
"""

from __future__ import annotations

import logging
import warnings

import torch

log = logging.getLogger(__name__)

# Messages of the deprecation warnings that torch.ao's dynamic quantization emits on every use.
_AO_DEPRECATION = r"(torch\.ao\.quantization is deprecated|torch\.quantize_per_tensor.* deprecated)"


def apply_cpu_speedups(model: torch.nn.Module, quantize: str = "none", compile: bool = False) -> torch.nn.Module:
    """Return `model` with the requested speed-ups (in place where the library allows)."""
    fuse_gelu(model)
    # 1. quantize the linear layers' weights to int8
    if quantize == "int8_dynamic":
        if next(model.parameters()).dtype != torch.float32:
            raise ValueError("quantize: int8_dynamic needs a float32 model (dtype: float32 or auto on CPU)")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_AO_DEPRECATION)
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    elif quantize == "int8_torchao":
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

        quantize_(model, Int8DynamicActivationInt8WeightConfig())
    elif quantize != "none":
        raise ValueError(f"unknown quantize option {quantize!r}; use none, int8_dynamic or int8_torchao")
    # 2. compile last, so that it sees the quantized modules
    if compile:
        # dynamic=True: the sequence grows by one token per step; without it every length recompiles
        model.forward = torch.compile(model.forward, dynamic=True)
    return model


def fuse_gelu(model: torch.nn.Module) -> int:
    """Replace transformers' NewGELUActivation modules by the fused GELUTanh (same function); returns how many."""
    from transformers.activations import GELUTanh, NewGELUActivation

    swaps = [(parent, name) for parent in model.modules() for name, child in parent.named_children()
             if type(child) is NewGELUActivation]
    for parent, name in swaps:
        setattr(parent, name, GELUTanh())
    return len(swaps)


def describe_speedups(quantize: str = "none", compile: bool = False) -> str:
    """A short label for the status panel, e.g. '+int8 dynamic'; empty when nothing is applied."""
    labels = {"int8_dynamic": "int8 dynamic", "int8_torchao": "int8 torchao"}
    parts = [labels[quantize]] if quantize in labels else []
    if compile:
        parts.append("compiled")
    return "".join(f" +{part}" for part in parts)


def _tensor_bytes(tensor: torch.Tensor) -> int:
    # torchao's quantized weights are tensor subclasses that report the original float dtype;
    # their real storage is the inner tensors (int8 data, scales)
    if type(tensor) not in (torch.Tensor, torch.nn.Parameter) and hasattr(tensor, "__tensor_flatten__"):
        inner_names, _ = tensor.__tensor_flatten__()
        return sum(_tensor_bytes(getattr(tensor, name)) for name in inner_names)
    return tensor.numel() * tensor.element_size()


def model_memory_mb(model: torch.nn.Module) -> float:
    """Bytes held by the weights, counting int8 packed weights that are not parameters."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    seen: set[int] = set()  # tied weights (GPT-Neo's embedding and LM head) count once
    total = 0
    for tensor in list(model.parameters()) + list(model.buffers()):
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += _tensor_bytes(tensor)
    for module in model.modules():
        if isinstance(module, DynamicQuantizedLinear):  # packed int8 weight, outside parameters()
            weight, bias = module._weight_bias()
            total += weight.numel() * weight.element_size() + (bias.numel() * bias.element_size() if bias is not None else 0)
    return total / 2**20
