"""The fields every models.yaml entry has, whatever its task (each task's `config.py` adds its own).

An entry names a model and where it runs: `backend: local` (weights in this process, from a
Hugging Face repo id or a local directory) or a remote backend (`gradio`: another instance of
this app or a Space; `openai`: an OpenAI-compatible completions server, text only). Which remote
backends an entry may name is the task table's (`remote_backends`, from its row's `remote`).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipelines.core.params import Range

Device = Literal["auto", "cuda", "mps", "cpu"]
DType = Literal["auto", "float32", "float16", "bfloat16"]
# Which sampling fields an `openai` server understands beyond max_tokens/temperature/top_p/seed:
# `vllm` takes top_k and repetition_penalty as extra body fields (vLLM, SGLang, llama.cpp),
# `transformers` takes them in a `generation_config` JSON (`transformers serve`), `openai` takes
# neither (OpenAI itself, text-generation-inference): top_k and repetition_penalty must stay off.
OpenAIServer = Literal["vllm", "transformers", "openai"]
# Seconds a remote backend may take to connect, or to send the next update of a request.
DEFAULT_REMOTE_TIMEOUT_S = 120.0


class FieldProblem(ValueError):
    """A check across fields that blames one of them: the config error names that field."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


class Strict(BaseModel):
    # Unknown keys are errors: a misspelt option must not be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelEntry(Strict):
    """Fields shared by every task's entries."""

    name: str = Field(min_length=1, description="Display name shown in the dropdown and used by API clients.")
    # Any name: the validator accepts `local` and the task table's remote backends for the task,
    # so that a backend added to the table needs no change here.
    backend: str = Field(
        "local", description="local weights, or a remote backend of the task (`gradio`, `openai`, ...)."
    )
    source: str = Field("", description="Hugging Face repo id or local directory (local backend).")
    revision: str | None = Field(None, description="Hub branch, tag or commit; ignored for local paths.")
    device: Device = "auto"
    dtype: DType = "auto"
    description: str = ""
    # Remote backends only (backend: openai | gradio).
    url: str | None = Field(None, description="Server root (openai) or app URL / Space id (gradio).")
    remote_model: str | None = Field(
        None, description="Model name on the openai server; display name on the remote app (default: its default)."
    )
    server: OpenAIServer = Field("vllm", description="openai backend: which extra sampling fields the server accepts.")
    api_key_env: str | None = Field(None, description="Environment variable holding the API key / HF token to send.")
    timeout_s: float = Field(
        DEFAULT_REMOTE_TIMEOUT_S, gt=0, description="Seconds to connect, or to wait for the next update."
    )
    # The remote backends that can serve this task: set from the task table (pipelines/tasks.py).
    remote_backends: ClassVar[tuple[str, ...]] = ()
    # The dtype of the task's models on an accelerator for `dtype: auto` (CPUs always get
    # float32): each task's entry schema sets it; its pipeline passes it to devices.choose_placement.
    gpu_dtype: ClassVar[str]

    @model_validator(mode="after")
    def _backend_has_what_it_needs(self):
        if self.backend == "local":
            if not self.source:
                raise FieldProblem("source", "required for local models: a Hugging Face repo id or a local directory")
            return self
        if self.backend not in self.remote_backends:
            raise FieldProblem(
                "backend",
                f"backend '{self.backend}' cannot serve this task; use one of: local, {', '.join(self.remote_backends)}",
            )
        if not self.url:
            raise FieldProblem(
                "url", f"required for backend '{self.backend}': the server's address, e.g. http://127.0.0.1:8000"
            )
        if self.backend == "openai" and not self.url.startswith(("http://", "https://")):
            raise FieldProblem("url", f"must start with http:// or https:// for backend 'openai', got {self.url!r}")
        if self.backend == "openai" and not self.remote_model:
            raise ValueError(
                "backend 'openai' needs `remote_model`: the model name the server knows (e.g. its repo id or path)"
            )
        return self

    def ranges(self) -> dict[str, Range]:
        """The request parameters' ranges for this model: the task's declared ranges narrowed by
        the entry's `limits:` (tasks with limits override this)."""
        return {}

    def choices(self) -> dict[str, list[str]]:
        """Text parameters whose values this model restricts to a list (the first is the default)."""
        return {}
