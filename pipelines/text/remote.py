"""Text models on another machine, with the same contract as the local one (`TextGenerator`):

- `backend: openai`: any OpenAI-compatible completions server (vLLM or text-generation-inference
  in production, `transformers serve` for a quick local one). Tokens are streamed over SSE
  (`POST {url}/v1/completions`, `stream: true`) with the `openai` package; Stop closes the HTTP
  stream, and the server stops generating. Token probabilities come from the completions API's
  `logprobs` where the server returns them (vLLM, OpenAI; not `transformers serve`).
- `backend: gradio`: another instance of this app, or a Space, through its /generate_text; its
  structured JSON output gives the token counts (and token probabilities). Stop cancels the
  remote job. Its /next_tokens serves the next-token explorer.
"""

from __future__ import annotations

import json
import math
import threading
from contextlib import contextmanager
from dataclasses import asdict

from pipelines.core.entry import ModelEntry
from pipelines.core.errors import InputError, ModelLoadError, RemoteModelError
from pipelines.core.params import refuse_unsupported
from pipelines.core.remote import GradioRemote, api_key
from pipelines.text.config import TextEntry
from pipelines.text.contract import (
    TOP_ALTERNATIVES,
    NextTokenParams,
    NextTokens,
    StreamStats,
    TextGenerator,
    TextParams,
    TokenChoice,
    TokenProbability,
)

# The parameters an OpenAI-compatible request carries (in the dialect of `server`); any other
# parameter must keep its default, since the server would ignore it.
OPENAI_SENDS = {
    "max_new_tokens",
    "temperature",
    "top_p",
    "top_k",
    "repetition_penalty",
    "do_sample",
    "seed",
    "token_probabilities",
}


class OpenAITextGenerator(TextGenerator):
    """Text from `POST {url}/v1/completions` with `stream: true` (vLLM, TGI, `transformers serve`)."""

    def __init__(self, entry: TextEntry, client):
        self.entry, self.name = entry, entry.name
        self.client = client
        self.placement = f"remote: {entry.remote_model} on {entry.url} (openai)"

    @classmethod
    def from_entry(cls, entry: TextEntry) -> OpenAITextGenerator:
        import openai

        d = entry.defaults
        if entry.server == "openai" and (d.top_k != 0 or d.repetition_penalty != 1.0):
            raise ModelLoadError(
                entry.name,
                "its server (server: openai) has no top_k or repetition_penalty; set "
                "`defaults: {top_k: 0, repetition_penalty: 1.0}` for it in models.yaml.",
            )
        base_url = entry.url.rstrip("/")
        base_url = base_url if base_url.endswith("/v1") else base_url + "/v1"
        # No retries: a server that is down should say so now, not after three attempts.
        client = openai.OpenAI(
            base_url=base_url, api_key=api_key(entry) or "none", timeout=entry.timeout_s, max_retries=0
        )
        client.models.list()  # reachable? (fails here, at load, with the server's address)
        return cls(entry, client)

    def close(self) -> None:
        self.client.close()

    def why_no_token_probabilities(self) -> str | None:
        return None  # asked for as `logprobs`; a server that sends none is reported after the stream

    def next_token_distribution(self, prompt: str, params: NextTokenParams) -> NextTokens:
        raise InputError(
            "model",
            f"'{self.name}' runs on an OpenAI-compatible server, which returns a few log-probabilities of "
            "the tokens it samples, not the whole next-token distribution; choose a model that runs in this app",
        )

    def check_inputs(self, prompt: object, params: TextParams) -> TextParams:
        params = super().check_inputs(prompt, params)
        if params.truncate_prompt:  # the server's context length is not known here
            raise InputError(
                "truncate_prompt",
                f"'{self.name}' runs on a server that cannot drop the start of a prompt; shorten the prompt instead",
            )
        if self.entry.server == "openai":  # the standard API has no top_k or repetition_penalty
            if params.top_k != 0:
                raise InputError(
                    "top_k", f"'{self.name}' runs on a server without top_k; set it to 0 (off), got {params.top_k}"
                )
            if params.repetition_penalty != 1.0:
                raise InputError(
                    "repetition_penalty",
                    f"'{self.name}' runs on a server without it; set it to 1.0 (off), got {params.repetition_penalty}",
                )
        return refuse_unsupported(
            params, OPENAI_SENDS | {"truncate_prompt"}, f"'{self.name}' runs on an OpenAI-compatible server that"
        )

    def request(self, prompt: str, params: TextParams, seed: int) -> dict:
        """The completions request body, in the dialect of `server`."""
        body = dict(
            model=self.entry.remote_model, prompt=prompt, max_tokens=params.max_new_tokens, seed=seed, stream=True
        )
        if params.token_probabilities:
            body["logprobs"] = TOP_ALTERNATIVES
        if self.entry.server == "transformers":
            # `transformers serve` rejects unknown fields; it takes any generate() option here.
            sampling = (
                dict(
                    temperature=params.temperature,
                    top_p=params.top_p,
                    top_k=params.top_k,
                    repetition_penalty=params.repetition_penalty,
                )
                if params.do_sample
                else {"repetition_penalty": params.repetition_penalty}
            )
            config = dict(max_new_tokens=params.max_new_tokens, do_sample=params.do_sample, **sampling)
            return body | {"extra_body": {"generation_config": json.dumps(config)}}
        # OpenAI convention: temperature 0 is greedy decoding.
        body |= dict(temperature=params.temperature if params.do_sample else 0.0, top_p=params.top_p)
        if self.entry.server == "vllm":
            # vLLM's extensions of the completions API; its top_k -1 means off.
            body["extra_body"] = {"top_k": params.top_k or -1, "repetition_penalty": params.repetition_penalty}
        return body

    def decode(self, prompt: str, params: TextParams, seed: int, stats: StreamStats, stop: threading.Event) -> dict:
        """Read the HTTP stream as it arrives; Stop closes it, and the server then stops generating."""
        text, completion_tokens, logprobs_seen = "", None, False
        with openai_errors_named(self.entry):
            response = self.client.completions.create(**self.request(prompt, params, seed))
        try:
            with openai_errors_named(self.entry):
                for chunk in response:
                    piece = chunk.choices[0].text if chunk.choices else ""
                    if chunk.usage is not None:
                        completion_tokens = chunk.usage.completion_tokens
                    logprobs = chunk.choices[0].logprobs if chunk.choices and params.token_probabilities else None
                    if logprobs is not None and logprobs.tokens:
                        logprobs_seen = True
                        for token in tokens_from_logprobs(logprobs):
                            stats.token_recorded(token)
                    if piece:
                        text += piece
                        stats.tokens_arrived(stats.new_tokens + 1)  # a chunk carries at least one token
                        stats.text_arrived(text)
                    if stop.is_set():
                        break
        finally:
            response.close()
        # the server's count when it gives one (a chunk may hold several tokens)
        ending = {} if completion_tokens is None else {"new_tokens": completion_tokens}
        if params.token_probabilities and not logprobs_seen and text:
            ending["tokens_unavailable"] = (
                f"the server of '{self.name}' at {self.entry.url} returned no log-probabilities (`logprobs`)"
            )
        return ending


def tokens_from_logprobs(logprobs) -> list[TokenProbability]:
    """Tokens from a completions chunk's `logprobs` (tokens, token_logprobs, top_logprobs): the
    probabilities the server reports (vLLM: the model's own, before the sampling settings,
    unless it runs with --logprobs-mode processed_logprobs)."""
    tokens = []
    tops = logprobs.top_logprobs or [None] * len(logprobs.tokens)
    for token, logprob, top in zip(logprobs.tokens, logprobs.token_logprobs or [], tops):
        probability = math.exp(logprob) if logprob is not None else 0.0
        ranked = sorted((top or {}).items(), key=lambda item: -item[1])[:TOP_ALTERNATIVES]
        alternatives = [
            TokenChoice(token=t, id=None, probability=math.exp(lp), rank=r) for r, (t, lp) in enumerate(ranked, start=1)
        ]
        rank = next((a["rank"] for a in alternatives if a["token"] == token), None)
        if rank is None:  # not among the likeliest: its rank is unknown, past theirs
            rank = len(alternatives) + 1
            alternatives.append(TokenChoice(token=token, id=None, probability=probability, rank=rank))
        tokens.append(
            TokenProbability(
                token=token,
                id=None,
                probability=probability,
                rank=rank,
                text=token,
                most_likely=rank == 1,
                alternatives=alternatives,
            )
        )
    return tokens


@contextmanager
def openai_errors_named(entry: ModelEntry):
    """Turn the openai package's errors into a RemoteModelError that names the model and server."""
    import openai

    try:
        yield
    except openai.APITimeoutError as err:
        raise RemoteModelError(
            entry, f"no answer within {entry.timeout_s:g} s (timeout_s); the server is busy or stuck"
        ) from err
    except openai.APIConnectionError as err:
        raise RemoteModelError(
            entry, f"cannot connect ({err.__cause__ or err}); check that the server is running"
        ) from err
    except openai.APIStatusError as err:
        raise RemoteModelError(
            entry, f"the server refused the request (HTTP {err.status_code}): {_error_detail(err)}"
        ) from err
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


class GradioTextGenerator(GradioRemote, TextGenerator):
    """`/generate_text` of a remote app, streamed; token counts come from its JSON output."""

    endpoint = "/generate_text"
    task = "text"

    def why_no_token_probabilities(self) -> str | None:
        if "token_probabilities" in self.parameters.get(self.endpoint, set()):
            return None
        return f"the app at {self.entry.url} serving '{self.name}' is a version without token probabilities"

    def next_token_distribution(self, prompt: str, params: NextTokenParams) -> NextTokens:
        if "/next_tokens" not in self.parameters:
            raise RemoteModelError(
                self.entry,
                "the remote app has no /next_tokens endpoint: the next-token explorer is not available for it",
            )
        *_shown, result = self.call("/next_tokens", prompt=prompt, **asdict(params))
        return result

    def decode(self, prompt: str, params: TextParams, seed: int, stats: StreamStats, stop: threading.Event) -> dict:
        arguments = asdict(params) | {"prompt": prompt, "seed": seed}
        job = self.submit(defaults=asdict(TextParams()), **arguments)
        details: dict = {}
        try:
            for text, _stats_line, details in self.follow(job, stop):
                stats.tokens_arrived((details or {}).get("new_tokens", stats.new_tokens + 1))
                if params.token_probabilities and (details or {}).get("tokens") is not None:
                    stats.tokens = list(details["tokens"])
                if text:
                    stats.text_arrived(text)
            if stop.is_set():
                return {}
            text, _stats_line, details = self.result(job)
        finally:
            if not job.done():
                job.cancel()  # the consumer went away: end the remote generator too
        if params.token_probabilities and details.get("tokens") is not None:
            stats.tokens = list(details["tokens"])
        stats.text_arrived(text)
        ending = {key: details.get(key, 0) for key in ("new_tokens", "truncated_tokens", "truncated_chars")}
        return ending | (
            {"tokens_unavailable": details["tokens_unavailable"]} if details.get("tokens_unavailable") else {}
        )
