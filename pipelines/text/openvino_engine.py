"""GPT-Neo on OpenVINO: exported once from the PyTorch model, weights compressed with NNCF, cached on disk.

Decoding one token reads every weight once, so a CPU's speed follows the bytes of weights.
OpenVINO's CPU kernels run 4-bit weights (NNCF's data-free int4, symmetric, a scale per group of
128 inputs) with float32 activations faster than PyTorch runs int8 (`python -m benchmarks.textgen`
measures both). How a model gets there, once per model, format and OpenVINO version:

1. the PyTorch model (float32) is wrapped in `_Exportable`, which takes the new token ids and the
   key/value cache of every layer and returns the last position's logits and the grown cache,
   with GPT-Neo's attention written as `scaled_dot_product_attention` (unscaled, as GPT-Neo is)
   with its causal mask and, in local layers, its 256-token window computed from positions;
2. `openvino.convert_model` traces it; `apply_make_stateful_transformation` moves the cache
   inside the model (OpenVINO's CPU plugin then grows it in place instead of copying it in and
   out every token);
3. NNCF's `compress_weights` (data-free) stores the linear layers in int8 or int4;
4. the IR is saved into the cache folder, with the model's config, generation config and
   tokenizer, so later starts read only that folder.

The compiled model (`OpenVINOCausalLM`) is a transformers model as far as `generate` is concerned,
so every generation option works on it; the generator the app uses is `OpenVINOTextGenerator` in
`pipelines/text/pipeline.py`, which shares `LocalTextGenerator`'s decoding.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

log = logging.getLogger(__name__)

# Weight formats of the `openvino` engine: float32 (the exported model as it is: the reference),
# int8 (per output channel, symmetric), int4 (symmetric, a scale per group of 128 inputs; the
# embedding and the LM head stay int8, NNCF's default backup).
WEIGHT_FORMATS = ("float32", "int8", "int4")
INT4_GROUP_SIZE = 128  # NNCF's default; smaller groups cost bytes per token for little quality here
# How long exporting GPT-Neo 1.3B takes on 2 vCPUs after loading its float32 weights, for the messages
# (`python -m benchmarks.textgen` with an empty `--openvino-cache` exports it: `prepare_s`).
EXPORT_TIME_HINT = "1 minute for GPT-Neo 1.3B once loaded"
# Bumped when the export changes, so that older cached IRs are not reused.
EXPORT_VERSION = 2


# -- 1. the exportable model -----------------------------------------------------------------------
class _Exportable(torch.nn.Module):
    """GPT-Neo's forward pass with an explicit key/value cache: (new ids, past keys and values of
    every layer) -> (logits of the last position, keys and values including the new ones).
    It calls the model's own modules; only the attention's arithmetic is rewritten (see above)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.window = model.config.window_size
        self.local = [block.attn.attention_type == "local" for block in model.transformer.h]

    def _attention(self, attn, hidden, past_key, past_value, beam_idx, local: bool):
        batch, length, _ = hidden.shape

        def heads(x):
            return x.view(batch, length, attn.num_heads, attn.head_dim).transpose(1, 2)

        # Gather(past, beam_idx) -> Concat -> SDPA, with the Concat also stored: the pattern that
        # OpenVINO's CPU plugin fuses into one attention node that grows the cache in place
        # (StatefulSDPAFusion); without the Gather the whole cache is copied every token.
        query = heads(attn.q_proj(hidden))
        key = torch.cat([past_key.index_select(0, beam_idx), heads(attn.k_proj(hidden))], dim=2)
        value = torch.cat([past_value.index_select(0, beam_idx), heads(attn.v_proj(hidden))], dim=2)
        key_length = key.shape[2]
        query_positions = torch.arange(length).unsqueeze(1) + (key_length - length)
        key_positions = torch.arange(key_length).unsqueeze(0)
        allowed = key_positions <= query_positions
        if local:  # GPT-Neo's local layers see the last `window_size` positions, their own included
            allowed = allowed & (key_positions > query_positions - self.window)
        # GPT-Neo does not scale the scores by 1/sqrt(head_dim)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=allowed, scale=1.0)
        out = out.transpose(1, 2).reshape(batch, length, attn.num_heads * attn.head_dim)
        return attn.out_proj(out), key, value

    def forward(self, input_ids, beam_idx, *past):
        transformer = self.model.transformer
        positions = torch.arange(input_ids.shape[1]).unsqueeze(0) + past[0].shape[2]
        hidden = transformer.wte(input_ids) + transformer.wpe(positions)
        presents = []
        for index, block in enumerate(transformer.h):
            out, key, value = self._attention(
                block.attn.attention,
                block.ln_1(hidden),
                past[2 * index],
                past[2 * index + 1],
                beam_idx,
                self.local[index],
            )
            hidden = hidden + out
            hidden = hidden + block.mlp(block.ln_2(hidden))
            presents += [key, value]
        # only the last position's logits: the LM head over a whole prompt would be wasted work and memory
        logits = self.model.lm_head(transformer.ln_f(hidden[:, -1:, :]))
        return (logits, *presents)


def _cache_names(layers: int) -> tuple[list[str], list[str]]:
    past = [f"past_key_values.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
    return past, [name.replace("past_key_values", "present") for name in past]


def convert(model):
    """The stateful `openvino.Model` of a GPT-Neo PyTorch model (float32 weights, shared with `model`)."""
    import openvino as ov
    from openvino._offline_transformations import apply_make_stateful_transformation

    config = model.config
    if config.model_type != "gpt_neo":
        raise ValueError(f"the openvino engine supports GPT-Neo models only, not {config.model_type!r}")
    layers, heads = config.num_layers, config.num_heads
    head_dim = config.hidden_size // heads
    example = (
        torch.ones(1, 2, dtype=torch.long),
        torch.zeros(1, dtype=torch.int32),
        *[torch.zeros(1, heads, 1, head_dim) for _ in range(2 * layers)],
    )
    shapes = [(ov.PartialShape([1, -1]), ov.Type.i64), (ov.PartialShape([-1]), ov.Type.i32)]
    shapes += [(ov.PartialShape([1, heads, -1, head_dim]), ov.Type.f32)] * (2 * layers)
    with torch.no_grad():
        ov_model = ov.convert_model(_Exportable(model).eval(), example_input=example, input=shapes)
    past, present = _cache_names(layers)
    for port, name in zip(ov_model.inputs, ["input_ids", "beam_idx", *past]):
        port.get_tensor().set_names({name})
    for port, name in zip(ov_model.outputs, ["logits", *present]):
        port.get_tensor().set_names({name})
    apply_make_stateful_transformation(ov_model, dict(zip(past, present)))
    _start_states_empty(ov_model)
    return ov_model


def _start_states_empty(ov_model) -> None:
    """Give every cache state an explicit initial value, an empty [1, heads, 0, head_dim] tensor
    (the CPU plugin's fused attention needs one; without it compiling fails)."""
    import openvino.opset13 as ops

    for node in ov_model.get_ops():
        if node.get_type_name() == "ReadValue":
            dims = [dim.get_min_length() for dim in node.get_output_partial_shape(0)]  # the dynamic length: 0
            shape = ops.constant(np.array(dims, dtype=np.int64))
            node.set_arguments([ops.broadcast(ops.constant(np.float32(0)), shape)])
    ov_model.validate_nodes_and_infer_types()


def compress(ov_model, weights: str):
    """NNCF's data-free weight compression (float32 returns the model as it is)."""
    if weights == "float32":
        return ov_model
    import nncf

    if weights == "int8":
        return nncf.compress_weights(ov_model, mode=nncf.CompressWeightsMode.INT8_SYM)
    if weights == "int4":
        # a layer narrower than a group (the tests' tiny model) gets the largest power-of-two group that fits
        adjust = nncf.AdvancedCompressionParameters(group_size_fallback_mode=nncf.GroupSizeFallbackMode.ADJUST)
        return nncf.compress_weights(
            ov_model,
            mode=nncf.CompressWeightsMode.INT4_SYM,
            group_size=INT4_GROUP_SIZE,
            ratio=1.0,
            advanced_parameters=adjust,
        )
    raise ValueError(f"unknown weight format {weights!r}; use one of {', '.join(WEIGHT_FORMATS)}")


def export(model, folder: Path, weights: str, progress_label: str = "model") -> Path:
    """Convert, compress and save `model` as `folder/model.xml` (+ .bin); returns the xml's path.
    A progress bar (tqdm: the console, and the Text tab's progress while the first request waits)
    names each stage."""
    import openvino as ov
    from tqdm.auto import tqdm

    stages = ["tracing the model", f"compressing the weights to {weights}", "saving"]
    with tqdm(
        total=len(stages), desc=f"{progress_label}: OpenVINO export (once; ~{EXPORT_TIME_HINT})", unit="stage"
    ) as bar:
        bar.set_postfix_str(stages[0])
        ov_model = convert(model)
        bar.update()
        bar.set_postfix_str(stages[1])
        ov_model = compress(ov_model, weights)
        bar.update()
        bar.set_postfix_str(stages[2])
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "model.xml"
        ov.save_model(ov_model, path, compress_to_fp16=False)  # float32 stays float32: it is the reference
        bar.update()
    return path


# -- 2. the cache on disk ---------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """$ML_STUDIO_CACHE, or ~/.cache/ml-studio: exported models survive restarts (a Space's disk too)."""
    root = (
        os.environ.get("ML_STUDIO_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ml-studio"
    )
    return Path(root) / "openvino"


def cache_key(source: str, revision: str | None, weights: str, fingerprint: str = "") -> str:
    """A folder name for one export: readable source and format, and a hash of everything that
    makes it differ (source, revision or commit, the local weights' sizes and times, the format,
    the OpenVINO and NNCF versions, the exporter's version)."""
    from importlib.metadata import version

    parts = [source, revision or "", weights, fingerprint, version("openvino"), version("nncf"), str(EXPORT_VERSION)]
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", source.strip("/"))[-60:]
    return f"{readable}-{weights}-{digest}"


def local_fingerprint(folder: Path) -> str:
    """Sizes and modification times of a local model's weight files: a rebuilt model is a new key."""
    files = sorted(p for p in folder.glob("*") if p.suffix in (".safetensors", ".bin", ".json"))
    return ";".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)


def cached_export(folder: Path, build: Callable[[Path], None]) -> tuple[Path, float | None]:
    """`folder/model.xml`, building it with `build(tmp_folder)` unless it is there; the seconds
    the export took, or None when it was cached. A half-written export is never reused: it is
    written in a temporary folder beside, then renamed; another process exporting the same model
    waits for it (a lock file)."""
    import fcntl

    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (folder / "model.xml").is_file():
            return folder / "model.xml", None
        started = time.perf_counter()
        tmp = folder.parent / f".{folder.name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            build(tmp)
            (tmp / "export.json").write_text(json.dumps({"export_s": round(time.perf_counter() - started, 1)}))
            tmp.rename(folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return folder / "model.xml", time.perf_counter() - started


# -- 3. running it ----------------------------------------------------------------------------------
def cpu_properties(weights: str, threads: int | None = None) -> dict:
    """OpenVINO CPU plugin settings, each measured (`python -m benchmarks.openvino_settings
    --weights int4`): float32 activations: OpenVINO's default on CPUs with native bfloat16 is
    bfloat16 inference, much slower than float32 with compressed weights on an Intel Xeon with AMX
    and no faster on an AMD EPYC with AVX512-BF16; and one stream of latency-bound work on as many
    threads as torch uses (OpenVINO's own default, physical cores only, would leave a
    hyper-threaded 2-vCPU machine one thread, slower than two).
    The float32 format also keeps its key/value cache in float32 (OpenVINO's default on CPUs is
    8-bit), so that it matches PyTorch: it is the reference."""
    properties = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
    if weights == "float32":
        properties["KV_CACHE_PRECISION"] = "f32"
    properties["INFERENCE_NUM_THREADS"] = str(threads or torch.get_num_threads())
    return properties


class OpenVINOCausalLM(PreTrainedModel, GenerationMixin):
    """A compiled stateful GPT-Neo that transformers' `generate` runs like any causal LM, so that
    every generation option (sampling settings, repetition penalty, no-repeat n-grams, suppressed
    tokens, stop strings, streamers, stopping criteria, ...) works on it as on PyTorch.

    The key/value cache lives inside the OpenVINO model (its state): `generate` starts a new
    sequence (`reset`), `forward` feeds the tokens the state lacks and returns the last
    position's logits. Greedy and sampling run `_sample` below, transformers' decoding method
    with the draw of `sampling.next_token` (the same distribution, faster on a CPU); beam search
    and assisted decoding would need the cache reordered or rewound, and are refused. `reset()` and
    `step(ids)` (the next-token logits, float32, shape [vocab]) also serve callers of their own
    (the next-token explorer, the benchmarks)."""

    main_input_name = "input_ids"
    _is_stateful = True  # generate then refuses assisted decoding, which rewinds the cache
    # False: generate's own sampling loop instead of `_sample` below (`python -m benchmarks.textgen
    # --compare-routes` compares them)
    fast_sampling = True

    def __init__(self, xml_path: Path, weights: str, config, properties: dict | None = None, generation_config=None):
        import openvino as ov

        super().__init__(config)  # config: the model's (transformers)
        self.path, self.weights = Path(xml_path), weights
        self.compiled = ov.Core().compile_model(self.path, "CPU", properties or cpu_properties(weights))
        self.request = self.compiled.create_infer_request()
        self._beam = np.zeros(1, dtype=np.int32)  # one sequence: its cache stays where it is
        self._length = 0  # tokens held in the state
        if generation_config is not None:
            self.generation_config = generation_config

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # the cache is the OpenVINO model's state: generate makes none

    def reset(self) -> None:
        self.request.reset_state()
        self._length = 0

    def step(self, token_ids) -> torch.Tensor:
        ids = np.asarray(token_ids, dtype=np.int64).reshape(1, -1)
        logits = self.request.infer({"input_ids": ids, "beam_idx": self._beam})["logits"]
        self._length += ids.shape[1]
        return torch.from_numpy(np.array(logits[0, -1], dtype=np.float32))

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        use_cache: bool | None = True,
        return_dict: bool | None = True,
    ) -> CausalLMOutputWithPast:
        if input_ids.shape[0] != 1:
            raise ValueError(f"the OpenVINO engine runs one sequence at a time, not a batch of {input_ids.shape[0]}")
        if attention_mask is not None and not bool(attention_mask.all()):
            raise ValueError("the OpenVINO engine runs unpadded sequences only (an attention mask of ones)")
        if not use_cache:  # generate passes the whole sequence every step: feed what the state lacks
            input_ids = input_ids[:, self._length :]
        return CausalLMOutputWithPast(logits=self.step(input_ids[0].tolist()).view(1, 1, -1))

    def generate(self, *args, **kwargs):
        self.reset()  # a new sequence
        return super().generate(*args, **kwargs)

    def _sample(
        self,
        input_ids,
        logits_processor,
        stopping_criteria,
        generation_config,
        synced_gpus=False,
        streamer=None,
        **model_kwargs,
    ):
        """GenerationMixin._sample for one sequence on a CPU: the processors and stopping criteria
        `generate` prepared, each step's token from `sampling.next_token`."""
        from pipelines.text.sampling import next_token

        if not self.fast_sampling:
            return super()._sample(
                input_ids, logits_processor, stopping_criteria, generation_config, synced_gpus, streamer, **model_kwargs
            )
        if generation_config.return_dict_in_generate:
            raise ValueError("the OpenVINO engine's generate returns the token ids only, not return_dict_in_generate")
        outputs = self._prefill(input_ids, generation_config, model_kwargs)
        while True:
            model_kwargs = self._update_model_kwargs_for_generation(outputs, model_kwargs)
            logits = outputs.logits[:, -1].to(dtype=torch.float32)
            token = input_ids.new_tensor([next_token(logits_processor, input_ids, logits, generation_config.do_sample)])
            input_ids = torch.cat([input_ids, token[:, None]], dim=-1)
            if streamer is not None:
                streamer.put(token)
            if bool(stopping_criteria(input_ids, None).any()):
                break
            inputs = self.prepare_inputs_for_generation(
                input_ids, next_sequence_length=1 if model_kwargs["use_cache"] else None, **model_kwargs
            )
            outputs = self(**inputs, return_dict=True)
        if streamer is not None:
            streamer.end()
        return input_ids

    def _beam_search(self, *args, **kwargs):
        raise ValueError("the OpenVINO engine does not run beam search (num_beams > 1): its cache holds one sequence")

    @property
    def weights_mb(self) -> float:
        return self.path.with_suffix(".bin").stat().st_size / 2**20
