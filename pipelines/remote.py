"""Remote models: a models.yaml entry whose weights live on another machine.

Two backends, each a client with the same interface as the local pipeline of its task, so
the tabs use them unchanged (streaming, Stop and errors included):

- `backend: openai` (text): any OpenAI-compatible completions server - vLLM or
  text-generation-inference in production, `transformers serve` for a quick local one.
  Tokens are streamed over SSE (`POST {url}/v1/completions`, `stream: true`) with the
  `openai` package; Stop closes the HTTP stream, and the server stops generating.
- `backend: gradio` (any task): another instance of this app, or a Space serving the same
  endpoints (`/classify`, `/generate_text`, `/generate_image`), through `gradio_client`.
  Arguments go by keyword so that parameters the remote app adds keep their defaults.
  Stop cancels the remote job.

Inputs are checked here exactly as for local models (the same check functions), so a bad
value gets the same message and never costs a round trip. A remote that is down or slow
gives an error naming the model and its address: `ModelLoadError` when the client is
created (the registry's first use of the model), `RemoteModelError` during a request.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterator

from pipelines.classification import check_message, check_threshold
from pipelines.config import ClassificationEntry, ModelEntry, TextEntry
from pipelines.errors import InputError, ModelLoadError

log = logging.getLogger(__name__)

MAX_SEED = 2**32 - 1
# How often a Gradio job is checked for new outputs, progress and Stop.
POLL_INTERVAL_S = 0.05
# Where gradio_client downloads the remote's files (generated PNGs) before they are read.
DOWNLOAD_DIR = Path(tempfile.gettempdir()) / "ml-studio-remote"
# The endpoint each task calls on a remote Gradio app (this app's API names).
GRADIO_ENDPOINTS = {"classification": "/classify", "text": "/generate_text", "image": "/generate_image"}
# Classification requests sent to a remote app at once (its queue is bounded; it batches them).
IN_FLIGHT = 16


class RemoteModelError(ModelLoadError):
    """A request to a remote model failed (down, slow, or it refused); names the model and where it is.

    A ModelLoadError, so the UI shows its message as it is: the model is not available."""

    def __init__(self, entry: ModelEntry, message: str):
        self.model_name = entry.name
        RuntimeError.__init__(self, f"Remote model '{entry.name}' ({entry.backend} server at {entry.url}): {message}")


def remote_loader(task: str) -> Callable[[ModelEntry], Any]:
    """The registry's loader for a remote entry of `task` (backend openai or gradio)."""
    kinds = {
        ("text", "openai"): OpenAICompletionsGenerator,
        ("classification", "gradio"): GradioClassifier,
        ("text", "gradio"): GradioTextGenerator,
        ("image", "gradio"): GradioImageGenerator,
    }

    def load(entry: ModelEntry):
        return kinds[(task, entry.backend)].from_entry(entry)

    return load


def api_key(entry: ModelEntry) -> str | None:
    """The secret named by `api_key_env`, read from the environment (never from models.yaml)."""
    if not entry.api_key_env:
        return None
    value = os.environ.get(entry.api_key_env)
    if not value:
        raise ModelLoadError(entry.name, f"set the environment variable {entry.api_key_env} (named by `api_key_env`) to the server's API key or token.")
    return value


def pick_seed(seed: int) -> int:
    """-1 asks for a random seed; it is chosen here so that it can be reported back."""
    return seed if seed >= 0 else random.randint(0, MAX_SEED)


def check_text_inputs(entry: TextEntry, prompt: object, params):
    """The local text checks: the same fields, ranges and messages."""
    from pipelines.text_generation import check_params

    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("prompt", "is empty; type the beginning of a text for the model to continue")
    return check_params(params, entry.limits.max_new_tokens)


class StreamStats:
    """Tokens and timings of a streamed generation, measured here as the updates arrive."""

    def __init__(self):
        self.started = time.perf_counter()
        self.first_token_at: float | None = None
        self.new_tokens = 0

    def arrived(self, tokens: int) -> None:
        if tokens > 0 and self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        self.new_tokens = max(self.new_tokens, tokens)

    def update(self, text: str, seed: int, params, done: bool, stopped: bool = False) -> dict:
        """The same dict as the local TextGenerator.stream yields."""
        now = time.perf_counter()
        first = self.first_token_at
        decode_time = now - first if first else 0.0
        rate = (self.new_tokens - 1) / decode_time if first and self.new_tokens > 1 and decode_time > 0 else None
        return {
            "text": text,
            "new_tokens": self.new_tokens,
            "seed": seed,
            "ttft_s": first - self.started if first else None,
            "tokens_per_s": rate,
            "elapsed_s": now - self.started,
            "done": done,
            "stopped": stopped,
            "params": asdict(params) | {"seed": seed},
        }


class TextMethods:
    """What both remote text backends share with TextGenerator besides `stream`."""

    entry: TextEntry

    def default_params(self, **overrides):
        from pipelines.text_generation import TextParams

        return TextParams.from_defaults(self.entry, **overrides)

    def generate(self, prompt: str, params=None) -> dict:
        """The whole continuation at once (the last update of `stream`)."""
        final = None
        for final in self.stream(prompt, params):
            pass
        return final


# -- OpenAI-compatible completions server (text) ------------------------------------------------
class OpenAICompletionsGenerator(TextMethods):
    """Text from `POST {url}/v1/completions` with `stream: true` (vLLM, TGI, `transformers serve`)."""

    memory_mb = 0.0  # the weights live on the server

    def __init__(self, entry: TextEntry, client):
        self.entry = entry
        self.name = entry.name
        self.client = client
        self.placement = f"remote: {entry.remote_model} on {entry.url} (openai)"

    @classmethod
    def from_entry(cls, entry: TextEntry) -> "OpenAICompletionsGenerator":
        import openai

        d = entry.defaults
        if entry.server == "openai" and (d.top_k != 0 or d.repetition_penalty != 1.0):
            raise ModelLoadError(entry.name, "its server (server: openai) has no top_k or repetition_penalty; set "
                                 "`defaults: {top_k: 0, repetition_penalty: 1.0}` for it in models.yaml.")
        base_url = entry.url.rstrip("/")
        base_url = base_url if base_url.endswith("/v1") else base_url + "/v1"
        # No retries: a server that is down should say so now, not after three attempts.
        client = openai.OpenAI(base_url=base_url, api_key=api_key(entry) or "none", timeout=entry.timeout_s, max_retries=0)
        client.models.list()  # reachable? (fails here, at load, with the server's address)
        return cls(entry, client)

    def close(self) -> None:
        self.client.close()

    def check_inputs(self, prompt: object, params):
        params = check_text_inputs(self.entry, prompt, params)
        if getattr(params, "truncate_prompt", False):  # the server's context length is not known here
            raise InputError("truncate_prompt", f"'{self.name}' runs on a server that cannot drop the start of a prompt; shorten the prompt instead")
        if self.entry.server == "openai":  # the standard API has no top_k or repetition_penalty
            if params.top_k != 0:
                raise InputError("top_k", f"'{self.name}' runs on a server without top_k; set it to 0 (off), got {params.top_k}")
            if params.repetition_penalty != 1.0:
                raise InputError("repetition_penalty", f"'{self.name}' runs on a server without it; set it to 1.0 (off), got {params.repetition_penalty}")
        return params

    def request(self, prompt: str, params, seed: int) -> dict:
        """The completions request body, in the dialect of `server`."""
        body = dict(model=self.entry.remote_model, prompt=prompt, max_tokens=params.max_new_tokens, seed=seed, stream=True)
        if self.entry.server == "transformers":
            # `transformers serve` rejects unknown fields; it takes any generate() option here.
            sampling = dict(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k,
                            repetition_penalty=params.repetition_penalty) if params.do_sample else {"repetition_penalty": params.repetition_penalty}
            config = dict(max_new_tokens=params.max_new_tokens, do_sample=params.do_sample, **sampling)
            return body | {"extra_body": {"generation_config": json.dumps(config)}}
        # OpenAI convention: temperature 0 is greedy decoding.
        body |= dict(temperature=params.temperature if params.do_sample else 0.0, top_p=params.top_p)
        if self.entry.server == "vllm":
            # vLLM's extensions of the completions API; its top_k -1 means off.
            body["extra_body"] = {"top_k": params.top_k or -1, "repetition_penalty": params.repetition_penalty}
        return body

    def stream(self, prompt: str, params=None, stop: threading.Event | None = None) -> Iterator[dict]:
        """Yield the continuation as it grows, like TextGenerator.stream. Setting `stop` or
        closing this generator closes the HTTP stream; the server then stops generating."""
        params = self.check_inputs(prompt, params or self.default_params())
        seed = pick_seed(params.seed)
        stats, text, completion_tokens = StreamStats(), "", None
        with openai_errors_named(self.entry):
            response = self.client.completions.create(**self.request(prompt, params, seed))
        try:
            with openai_errors_named(self.entry):
                for chunk in response:
                    piece = chunk.choices[0].text if chunk.choices else ""
                    if chunk.usage is not None:
                        completion_tokens = chunk.usage.completion_tokens
                    if piece:
                        text += piece
                        stats.arrived(stats.new_tokens + 1)  # a chunk carries at least one token
                        yield stats.update(text, seed, params, done=False)
                    if stop is not None and stop.is_set():
                        break
        finally:
            response.close()  # Stop, or the consumer went away: the server stops generating
        stopped = stop is not None and stop.is_set()
        if completion_tokens is not None and not stopped:
            stats.new_tokens = completion_tokens  # the server's count (chunks may hold several tokens)
        yield stats.update(text, seed, params, done=True, stopped=stopped)


@contextmanager
def openai_errors_named(entry: ModelEntry):
    """Turn the openai package's errors into a RemoteModelError that names the model and server."""
    import openai

    try:
        yield
    except openai.APITimeoutError as err:
        raise RemoteModelError(entry, f"no answer within {entry.timeout_s:g} s (timeout_s); the server is busy or stuck") from err
    except openai.APIConnectionError as err:
        raise RemoteModelError(entry, f"cannot connect ({err.__cause__ or err}); check that the server is running") from err
    except openai.APIStatusError as err:
        raise RemoteModelError(entry, f"the server refused the request (HTTP {err.status_code}): {_error_detail(err)}") from err
    except openai.OpenAIError as err:
        raise RemoteModelError(entry, _error_detail(err)) from err


def _error_detail(err) -> str:
    """The server's own explanation from an error response (OpenAI, vLLM and FastAPI shapes)."""
    body = getattr(err, "body", None)
    if isinstance(body, str) and body:
        return body
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("message") or body.get("error") or body
        return detail.get("message", str(detail)) if isinstance(detail, dict) else str(detail)
    return str(err)


# -- A remote Gradio app serving this app's endpoints (any task) ----------------------------
class GradioRemote:
    """A gradio_client.Client of a remote app; one endpoint of it serves this model."""

    task = ""
    memory_mb = 0.0  # the weights live on the remote app

    def __init__(self, entry: ModelEntry, client):
        self.entry = entry
        self.name = entry.name
        self.client = client
        self.api_name = GRADIO_ENDPOINTS[self.task]
        self.parameters: set[str] | None = None  # the endpoint's parameter names, once known
        self.placement = f"remote: {entry.remote_model or 'default model'} on {entry.url} (gradio)"

    @classmethod
    def from_entry(cls, entry: ModelEntry):
        from gradio_client import Client

        client = Client(
            entry.url, token=api_key(entry), verbose=False, analytics_enabled=False,
            httpx_kwargs={"timeout": entry.timeout_s}, download_files=str(DOWNLOAD_DIR),
        )
        remote = cls(entry, client)
        remote.check_endpoint()
        return remote

    def check_endpoint(self) -> None:
        """Fail at load, clearly, if the remote app lacks the endpoint or the model."""
        endpoints = self.client.view_api(print_info=False, return_format="dict")["named_endpoints"]
        if self.api_name not in endpoints:
            raise ModelLoadError(self.name, f"the app at {self.entry.url} has no {self.api_name} endpoint (it has {', '.join(endpoints) or 'none'}).")
        self.parameters = {p.get("parameter_name") for p in endpoints[self.api_name]["parameters"]}
        for parameter in endpoints[self.api_name]["parameters"]:
            choices = (parameter.get("type") or {}).get("enum")
            if parameter.get("parameter_name") == "model_name" and self.entry.remote_model and choices:
                if self.entry.remote_model not in choices:
                    raise ModelLoadError(self.name, f"the app at {self.entry.url} has no model {self.entry.remote_model!r} (`remote_model`); it offers {', '.join(map(repr, choices))}.")

    def close(self) -> None:
        self.client.close()

    def submit(self, defaults: dict | None = None, **arguments):
        """Start a job; arguments the remote endpoint does not take are left out when they
        equal `defaults` (a remote running an older version of this app), refused otherwise."""
        if self.entry.remote_model:  # otherwise the remote app's default model
            arguments["model_name"] = self.entry.remote_model
        for name in sorted(set(arguments) - (self.parameters or set(arguments))):
            default = (defaults or {}).get(name)
            if arguments[name] != default:
                raise InputError(name, f"the app at {self.entry.url} serving '{self.name}' does not take it; leave it at {default!r}")
            del arguments[name]
        try:
            return self.client.submit(api_name=self.api_name, **arguments)
        except Exception as err:  # noqa: BLE001 - connection problems, named below
            raise RemoteModelError(self.entry, f"cannot submit the request ({type(err).__name__}: {err})") from err

    def follow(self, job, stop: threading.Event | None = None, on_status: Callable | None = None) -> Iterator[Any]:
        """Yield the job's outputs as they arrive until it ends; cancel it when `stop` is set.

        A job that shows no sign of life (output, progress, queue position) for `timeout_s`
        is cancelled with an error naming the remote."""
        seen, last_status, last_activity = 0, None, time.monotonic()
        while True:
            done = job.done()  # read before the outputs, so none that arrive with the end are missed
            for output in job.outputs()[seen:]:
                if stop is not None and stop.is_set():
                    break
                seen, last_activity = seen + 1, time.monotonic()
                yield output
            if stop is not None and stop.is_set():
                job.cancel()
                return
            if done:
                return
            status = job.status()
            signature = (status.code, status.rank, repr(status.progress_data))
            if signature != last_status:
                last_status, last_activity = signature, time.monotonic()
                if on_status is not None:
                    on_status(status)
            if time.monotonic() - last_activity > self.entry.timeout_s:
                job.cancel()
                raise RemoteModelError(self.entry, f"no update within {self.entry.timeout_s:g} s (timeout_s); the app is busy or stuck")
            time.sleep(POLL_INTERVAL_S)

    def result(self, job):
        """The job's final output; the remote's own error message if it failed."""
        from gradio_client.exceptions import AppError

        try:
            return job.result()
        except AppError as err:
            raise RemoteModelError(self.entry, str(err)) from err
        except Exception as err:  # noqa: BLE001 - connection lost and the like
            raise RemoteModelError(self.entry, f"the request failed ({type(err).__name__}: {err})") from err


class GradioClassifier(GradioRemote):
    """`/classify` of a remote app, one request per message; several are in flight at once so
    that the remote can batch them (its /classify batches concurrent requests)."""

    task = "classification"
    # The remote's verdict mentions truncation: "... longer than 512 tokens and was truncated."
    TRUNCATED = re.compile(r"longer than (\d+) tokens and was truncated")

    def __init__(self, entry: ClassificationEntry, client):
        super().__init__(entry, client)
        self.max_length = entry.defaults.max_length  # until the remote reports its own

    @property
    def tokenizer(self):
        """Word explanations (pipelines/explain.py) tokenize here; the tokenizer stays on the remote."""
        raise InputError("model", f"word explanations are not available for the remote model '{self.name}'; its verdict is above")

    def __call__(self, texts: list[str], threshold: float | list[float] = 0.5) -> list[dict]:
        """Like SpamClassifier.__call__: one threshold for all messages, or one per message."""
        texts = [check_message(t) for t in texts]
        thresholds = threshold if isinstance(threshold, (list, tuple)) else [threshold] * len(texts)
        if len(thresholds) != len(texts):
            raise InputError("threshold", f"got {len(thresholds)} thresholds for {len(texts)} messages")
        return self.classify_all(texts, [check_threshold(t) for t in thresholds])

    def classify_many(self, texts: list[str], threshold: float = 0.5, batch_size: int = 0,
                      on_progress: Callable[[int, int], None] | None = None) -> list[dict]:
        """Like SpamClassifier.classify_many (files): any number of messages, with progress."""
        threshold = check_threshold(threshold)
        texts = [check_message(t, field=f"message {i + 1}") for i, t in enumerate(texts)]
        return self.classify_all(texts, [threshold] * len(texts), on_progress)

    def spam_scores(self, texts: list[str], batch_size: int = 0) -> list[float]:
        return [r["scores"]["spam"] for r in self.classify_all(texts, [0.5] * len(texts))]

    def classify_all(self, texts: list[str], thresholds: list[float],
                     on_progress: Callable[[int, int], None] | None = None) -> list[dict]:
        """Up to IN_FLIGHT requests at a time (a remote's queue is bounded), results in order."""
        results: list[dict] = []
        for start in range(0, len(texts), IN_FLIGHT):
            chunk = list(zip(texts[start : start + IN_FLIGHT], thresholds[start : start + IN_FLIGHT]))
            jobs = [self.submit(message=text, threshold=threshold) for text, threshold in chunk]
            for job, (_, threshold) in zip(jobs, chunk):
                for _ in self.follow(job):
                    pass
                results.append(self.to_result(*self.result(job), threshold))
            if on_progress is not None:
                on_progress(len(results), len(texts))
        return results

    def to_result(self, label: dict, verdict: str, threshold: float) -> dict:
        scores = {c["label"]: float(c["confidence"]) for c in label["confidences"]}
        if set(scores) != {"ham", "spam"}:
            raise RemoteModelError(self.entry, f"expected ham/spam confidences, got {sorted(scores)}")
        truncated = self.TRUNCATED.search(verdict or "")
        if truncated:
            self.max_length = int(truncated.group(1))
        return {"label": "spam" if scores["spam"] >= threshold else "ham", "scores": scores, "truncated": bool(truncated)}


class GradioTextGenerator(TextMethods, GradioRemote):
    """`/generate_text` of a remote app, streamed."""

    task = "text"
    TOKENS = re.compile(r"(\d+) tokens")  # in the remote's stats line
    DROPPED = re.compile(r"its first (\d+) tokens were dropped")  # ... with truncate_prompt

    def stream(self, prompt: str, params=None, stop: threading.Event | None = None) -> Iterator[dict]:
        params = check_text_inputs(self.entry, prompt, params or self.default_params())
        seed = pick_seed(params.seed)
        stats, text, remote_stats = StreamStats(), "", ""
        arguments = asdict(params) | {"prompt": prompt, "seed": seed}
        job = self.submit(asdict(self.default_params()), **arguments)
        try:
            for text, remote_stats in self.follow(job, stop):
                tokens = self.TOKENS.search(remote_stats or "")
                stats.arrived(int(tokens.group(1)) if tokens else stats.new_tokens + 1)
                if text:
                    yield stats.update(text, seed, params, done=False)
            stopped = stop is not None and stop.is_set()
            if not stopped:
                text, remote_stats = self.result(job)
        finally:
            if not job.done():
                job.cancel()  # the consumer went away: end the remote generator too
        final = stats.update(text, seed, params, done=True, stopped=stopped)
        dropped = self.DROPPED.search(remote_stats or "") if not stopped else None
        yield final | ({"truncated_tokens": int(dropped.group(1))} if dropped else {})


class GradioImageGenerator(GradioRemote):
    """`/generate_image` of a remote app: its PNGs read back as PIL images."""

    task = "image"

    def default_params(self, **overrides):
        from pipelines.image_generation import ImageParams

        return ImageParams.from_defaults(self.entry, **overrides)

    def check_inputs(self, prompt: object, params):
        from pipelines.image_generation import check_params

        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError("prompt", "is empty; describe the image you want")
        return check_params(params, self.entry)

    def __call__(self, prompt: str, params=None, on_step: Callable[[int, int], None] | None = None,
                 stop: threading.Event | None = None, **_ignored) -> list[dict]:
        """Like ImageGenerator.__call__; a stopped run returns no images."""
        from PIL import Image

        # 1. check inputs; choose the seed here so that it can be reported
        params = self.check_inputs(prompt, params or self.default_params())
        base_seed = params.seed if params.seed >= 0 else random.randint(0, MAX_SEED - params.num_images)

        # 2. run remotely, relaying the step progress seen while polling
        reported = []

        def relay_progress(status):
            for unit in status.progress_data or []:
                if on_step is not None and unit.index is not None and unit.length:
                    reported.append((int(unit.index), int(unit.length)))
                    on_step(*reported[-1])

        job = self.submit(asdict(self.default_params()), **(asdict(params) | {"prompt": prompt, "seed": base_seed}))
        for _ in self.follow(job, stop, relay_progress):
            pass
        if stop is not None and stop.is_set():
            return []
        gallery, info = self.result(job)
        if on_step is not None and reported[-1:] != [(params.steps, params.steps)]:
            on_step(params.steps, params.steps)  # a fast remote may finish between two polls

        # 3. the PNGs as images, with the seeds and parameters that reproduce each one
        shared = asdict(params) | {"prompt": prompt, "model": self.name}
        results = []
        for item, seed in zip(gallery, info["seeds"]):
            path = item["image"] if isinstance(item, dict) else item
            with Image.open(path) as png:
                image = png.copy()
            Path(path).unlink(missing_ok=True)
            results.append({"image": image, "seed": seed, "params": shared | {"seed": seed, "num_images": 1}})
        return results
