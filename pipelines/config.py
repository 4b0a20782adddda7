"""`models.yaml`: which models each task offers, their sources and default parameters.

The file is validated once, at start-up, with pydantic. Any problem (an unknown key, a
missing field, a bad value) raises `ConfigError` whose message names the file, the entry
and the field, so that a typo never surfaces later as a confusing runtime error.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

# The config used when MODELS_CONFIG is not set: the one next to app.py.
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "models.yaml"

TASKS = ("classification", "text", "image")

Device = Literal["auto", "cuda", "mps", "cpu"]
DType = Literal["auto", "float32", "float16", "bfloat16"]
# Where a model runs: `local` weights in this process, an OpenAI-compatible completions server
# (vLLM, text-generation-inference, `transformers serve`; text only), or a remote Gradio app or
# Space serving this app's endpoints (any task). See pipelines/remote.py.
Backend = Literal["local", "openai", "gradio"]
# Which sampling fields an `openai` server understands beyond max_tokens/temperature/top_p/seed:
# `vllm` takes top_k and repetition_penalty as extra body fields (vLLM, SGLang, llama.cpp),
# `transformers` takes them in a `generation_config` JSON (`transformers serve`), `openai` takes
# neither (OpenAI itself, text-generation-inference): top_k and repetition_penalty must stay off.
OpenAIServer = Literal["vllm", "transformers", "openai"]
# Seconds a remote backend may take to connect, or to send the next update of a request.
DEFAULT_REMOTE_TIMEOUT_S = 120.0


class ConfigError(ValueError):
    """models.yaml is missing or invalid; the message says where and why."""


class Strict(BaseModel):
    # Unknown keys are errors: a misspelt option must not be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelEntry(Strict):
    """Fields shared by every task's entries."""

    name: str = Field(min_length=1, description="Display name shown in the dropdown and used by API clients.")
    # Declared before `source` and `url` so that their checks can see it.
    backend: Backend = Field("local", description="local weights, an `openai`-compatible server, or a remote `gradio` app.")
    source: str = Field("", validate_default=True, description="Hugging Face repo id or local directory (local backend).")
    revision: str | None = Field(None, description="Hub branch, tag or commit; ignored for local paths.")
    device: Device = "auto"
    dtype: DType = "auto"
    description: str = ""
    # Remote backends only (backend: openai | gradio).
    url: str | None = Field(None, validate_default=True, description="Server root (openai) or app URL / Space id (gradio).")
    remote_model: str | None = Field(None, description="Model name on the openai server; display name on the remote app (default: its default).")
    server: OpenAIServer = Field("vllm", description="openai backend: which extra sampling fields the server accepts.")
    api_key_env: str | None = Field(None, description="Environment variable holding the API key / HF token to send.")
    timeout_s: float = Field(DEFAULT_REMOTE_TIMEOUT_S, gt=0, description="Seconds to connect, or to wait for the next update.")
    # The remote backends that can serve this task (text entries add `openai`).
    remote_backends: ClassVar[tuple[str, ...]] = ("gradio",)

    @field_validator("source")
    @classmethod
    def _local_models_need_a_source(cls, source: str, info: ValidationInfo) -> str:
        if info.data.get("backend", "local") == "local" and not source:
            raise ValueError("required for local models: a Hugging Face repo id or a local directory")
        return source

    @field_validator("url")
    @classmethod
    def _remote_models_need_a_url(cls, url: str | None, info: ValidationInfo) -> str | None:
        backend = info.data.get("backend", "local")
        if backend != "local" and not url:
            raise ValueError(f"required for backend '{backend}': the server's address, e.g. http://127.0.0.1:8000")
        if backend == "openai" and not url.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https:// for backend 'openai', got {url!r}")
        return url

    @model_validator(mode="after")
    def _remote_backend_fits_task(self):
        if self.backend != "local" and self.backend not in self.remote_backends:
            raise ValueError(f"backend '{self.backend}' cannot serve this task; use one of: local, {', '.join(self.remote_backends)}")
        if self.backend == "openai" and not self.remote_model:
            raise ValueError("backend 'openai' needs `remote_model`: the model name the server knows (e.g. its repo id or path)")
        return self


class ClassificationDefaults(Strict):
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="Spam score at or above which a message is spam.")
    max_length: int = Field(512, ge=8, le=8192, description="Tokens kept per message; longer text is truncated.")


class ClassificationCpuSpeedups(Strict):
    # bfloat16 weights and activations when the CPU has native bfloat16 (AVX512-BF16 or AMX)
    # and the entry's dtype is auto; float32 elsewhere (emulated bfloat16 is slower). Measured
    # by benchmarks/spam.py: same validation F1, batches 2.5x faster.
    bfloat16: bool = False


class ClassificationEntry(ModelEntry):
    # Maps the model's own class names (often LABEL_0/LABEL_1) to ham/spam.
    labels: dict[str, Literal["ham", "spam"]] = Field(default_factory=dict)
    defaults: ClassificationDefaults = ClassificationDefaults()
    cpu_speedups: ClassificationCpuSpeedups = ClassificationCpuSpeedups()

    @model_validator(mode="after")
    def _labels_cover_both_classes(self):
        if self.labels and set(self.labels.values()) != {"ham", "spam"}:
            raise ValueError("labels must map the model's classes onto both 'ham' and 'spam'")
        return self


class TextDefaults(Strict):
    max_new_tokens: int = Field(64, ge=1, le=2048)
    temperature: float = Field(0.8, gt=0.0, le=5.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    top_k: int = Field(50, ge=0, le=1000)
    repetition_penalty: float = Field(1.1, ge=1.0, le=3.0)
    do_sample: bool = True


class TextLimits(Strict):
    max_new_tokens: int = Field(1024, ge=1, le=8192)


class TextCpuSpeedups(Strict):
    """Applied once when the model loads on a CPU (ignored on GPUs); see pipelines/cpu_speedups.py.
    bfloat16 is the entry's ordinary `dtype: bfloat16`."""

    # int8 weights for the linear layers with PyTorch's dynamic quantization (the fastest here);
    # none keeps them float.
    quantize: Literal["none", "int8_dynamic"] = "none"

    # Options that earlier versions offered and measurements retired: the message says what to use.
    RETIRED: ClassVar[dict[tuple[str, object], str]] = {
        ("quantize", "int8_torchao"): "quantize 'int8_torchao' is no longer offered: it ran at half the speed of "
        "int8_dynamic (README, \"Text generation\"); use quantize: int8_dynamic",
        ("compile", True): "compile is no longer offered: torch.compile made int8_dynamic decoding 11% slower after "
        "minutes of compiling (README, \"Text generation\"); remove it",
    }

    @model_validator(mode="before")
    @classmethod
    def _refuse_retired_options(cls, values):
        if isinstance(values, dict):
            for (key, value), message in cls.RETIRED.items():
                if key in values and (values[key] == value or key == "compile"):
                    raise ValueError(message)
        return values


class TextEntry(ModelEntry):
    remote_backends: ClassVar[tuple[str, ...]] = ("openai", "gradio")
    defaults: TextDefaults = TextDefaults()
    limits: TextLimits = TextLimits()
    cpu_speedups: TextCpuSpeedups = TextCpuSpeedups()

    @model_validator(mode="after")
    def _defaults_within_limits(self):
        if self.defaults.max_new_tokens > self.limits.max_new_tokens:
            raise ValueError("defaults.max_new_tokens exceeds limits.max_new_tokens")
        if self.cpu_speedups.quantize == "int8_dynamic" and self.dtype not in ("auto", "float32"):
            raise ValueError("cpu_speedups.quantize int8_dynamic needs dtype float32 (or auto)")
        return self


class ImageDefaults(Strict):
    steps: int = Field(1, ge=1, le=150)
    guidance_scale: float = Field(0.0, ge=0.0, le=30.0)
    width: int = Field(512, ge=8, le=2048, multiple_of=8)
    height: int = Field(512, ge=8, le=2048, multiple_of=8)
    negative_prompt: str = ""


class ImageLimits(Strict):
    min_steps: int = Field(1, ge=1)
    max_steps: int = Field(50, ge=1, le=150)
    max_guidance_scale: float = Field(20.0, ge=0.0, le=30.0)
    min_size: int = Field(64, ge=8, multiple_of=8)
    max_size: int = Field(768, ge=8, le=2048, multiple_of=8)
    max_images: int = Field(4, ge=1, le=16)


# Samplers an image entry may offer (pipelines/image_generation.SCHEDULERS maps each to its
# diffusers class and settings). "(trailing)" variants start from pure noise at the last
# timestep, as distilled few-step models such as sd-turbo need.
SchedulerName = Literal[
    "Euler (trailing)", "Euler a (trailing)", "Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DDIM", "UniPC", "PNDM",
]


class ImageCpuSpeedups(Strict):
    """CPU-only speed-ups; on a GPU none of them is applied. Measured in benchmarks/image.py."""

    # bfloat16 weights and activations when the CPU has native bfloat16 (AVX512-BF16 or AMX)
    # and the entry's dtype is auto; elsewhere it stays float32 (emulated bfloat16 is slower).
    bfloat16: bool = False
    # NHWC memory layout for the UNet and VAE convolutions (oneDNN's preferred layout).
    channels_last: bool = False
    # torch.compile the UNet: minutes of warm-up on the first request of each image size.
    torch_compile: bool = False
    # An AutoencoderTiny (Hub id or local directory, e.g. madebyollin/taesd for SD 1.x/2.x)
    # replacing the VAE's decoder: ~25x cheaper decode, slightly softer fine detail.
    tiny_autoencoder: str | None = None


class ImageGpuMemory(Strict):
    """Memory savers for small GPUs, applied only on CUDA; each trades speed for memory."""

    cpu_offload: bool = False  # keep each component on the CPU until it runs (model CPU offload)
    attention_slicing: bool = False  # attention one head-slice at a time
    vae_slicing: bool = False  # decode the batch one image at a time


class ImageEntry(ModelEntry):
    defaults: ImageDefaults = ImageDefaults()
    limits: ImageLimits = ImageLimits()
    safety_checker: bool = Field(False, description="Load the pipeline's NSFW safety checker (costs memory and time).")
    # The samplers offered for this model; the first is the default. Empty: only the
    # scheduler the model ships with, offered as "default".
    schedulers: list[SchedulerName] = Field(default_factory=list)
    # Show a cheap preview every this many denoising steps by default (0 = no previews).
    preview_every: int = Field(0, ge=0, le=150)
    cpu_speedups: ImageCpuSpeedups = ImageCpuSpeedups()
    gpu_memory: ImageGpuMemory = ImageGpuMemory()

    @model_validator(mode="after")
    def _defaults_within_limits(self):
        d, lim = self.defaults, self.limits
        if not lim.min_steps <= d.steps <= lim.max_steps:
            raise ValueError(f"defaults.steps={d.steps} is outside limits {lim.min_steps}..{lim.max_steps}")
        if d.guidance_scale > lim.max_guidance_scale:
            raise ValueError("defaults.guidance_scale exceeds limits.max_guidance_scale")
        for side in ("width", "height"):
            if not lim.min_size <= getattr(d, side) <= lim.max_size:
                raise ValueError(f"defaults.{side} is outside limits {lim.min_size}..{lim.max_size}")
        if len(set(self.schedulers)) != len(self.schedulers):
            raise ValueError("schedulers lists a scheduler twice")
        return self


class Settings(Strict):
    memory_budget_mb: int = Field(16000, ge=100, description="Loaded models beyond this are evicted, least recently used first.")
    idle_unload_minutes: float = Field(30.0, ge=0, description="Unload a model nobody used for this long; 0 keeps models forever.")
    # Each task's events share one queue group; these size it (others wait, seeing their place in the queue).
    # One at a time on a GPU keeps its memory bounded and gives each request the whole GPU.
    gpu_concurrency: int = Field(1, ge=1, description="Requests a task runs at once when its models are on a GPU (or ZeroGPU).")
    # torch already spreads one request over every CPU core: running two only makes both slower.
    cpu_concurrency: int = Field(1, ge=1, description="Requests a task runs at once when its models run on the CPU.")
    # Gradio's dynamic batching for /classify: requests waiting together share one forward pass.
    classification_max_batch_size: int = Field(32, ge=1, le=1024, description="Most /classify requests batched into one forward pass; 1 turns batching off.")
    # Uploaded message files (Batch, /classify_batch): more rows than this are refused with a message.
    classification_max_file_rows: int = Field(20000, ge=1, description="Most messages one uploaded batch file may hold.")


class AppConfig(Strict):
    settings: Settings = Settings()
    classification: list[ClassificationEntry] = Field(min_length=1)
    text: list[TextEntry] = Field(min_length=1)
    image: list[ImageEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _names_unique_per_task(self):
        for task in TASKS:
            names = [e.name for e in getattr(self, task)]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"{task}: duplicate model name(s) {duplicates}")
        return self

    def entries(self, task: str) -> list[ModelEntry]:
        return list(getattr(self, task))

    def names(self, task: str) -> list[str]:
        return [e.name for e in self.entries(task)]

    def entry(self, task: str, name: str) -> ModelEntry:
        from pipelines.errors import UnknownModelError

        for e in self.entries(task):
            if e.name == name:
                return e
        raise UnknownModelError(task, name, self.names(task))

    def default_name(self, task: str) -> str:
        """The first entry of each task is its default."""
        return self.entries(task)[0].name


def _describe_location(raw: dict, loc: tuple) -> str:
    """Turn pydantic's error location into 'text[0] (GPT-Neo 1.3B), field defaults.temperature'."""
    if len(loc) >= 2 and loc[0] in TASKS and isinstance(loc[1], int):
        task, index = loc[0], loc[1]
        try:
            name = raw[task][index].get("name", "?")
        except (KeyError, IndexError, TypeError, AttributeError):
            name = "?"
        field = ".".join(str(part) for part in loc[2:]) or "(entry)"
        return f"entry {task}[{index}] ({name!r}), field '{field}'"
    return f"field '{'.'.join(str(part) for part in loc) or '(top level)'}'"


def parse_config(raw: object, path: str | Path = "<memory>") -> AppConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with keys {', '.join(TASKS)}")
    try:
        return AppConfig.model_validate(raw)
    except ValidationError as err:
        problems = [f"  - {_describe_location(raw, e['loc'])}: {e['msg']}" for e in err.errors()]
        raise ConfigError(f"{path}: invalid model config:\n" + "\n".join(problems)) from None


def resolve_local_sources(config_dict: dict, base_dir: Path) -> dict:
    """Make relative local paths (`./x`, `../x`) relative to the config file, not the cwd."""
    for task in TASKS:
        for entry in config_dict.get(task) or []:
            if isinstance(entry, dict) and isinstance(entry.get("source"), str):
                src = entry["source"]
                if src.startswith(("./", "../")):
                    entry["source"] = str((base_dir / src).resolve())
    return config_dict


def load_config(path: str | Path | None = None) -> AppConfig:
    """Read and validate the config at `path`, $MODELS_CONFIG, or the bundled models.yaml."""
    path = Path(path or os.environ.get("MODELS_CONFIG") or DEFAULT_CONFIG_PATH)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: model config file not found (set MODELS_CONFIG or --config)") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if isinstance(raw, dict):
        raw = resolve_local_sources(raw, path.resolve().parent)
    return parse_config(raw, path)
