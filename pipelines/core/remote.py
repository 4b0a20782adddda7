"""What the remote clients of every task share: secrets, seeds, and a client of a remote Gradio
app (another instance of this app, or a Space) serving this app's endpoints.

Each task's `remote.py` builds on `GradioRemote` and implements that task's contract, so the
tabs use a remote model like a local one. Results are read from the structured JSON output that
each endpoint returns (never from its display text). Arguments go by keyword, so parameters the
remote app adds keep their defaults. Inputs are checked here exactly as for local models (the
contract's checks), so a bad value gets the same message and never costs a round trip. A remote
that is down or slow gives an error naming the model and its address: `ModelLoadError` when the
client is created (the registry's first use of the model), `RemoteModelError` during a request.
"""

from __future__ import annotations

import os
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pipelines.core.entry import ModelEntry
from pipelines.core.errors import InputError, ModelLoadError, RemoteModelError

MAX_SEED = 2**32 - 1
# How often a Gradio job is checked for new outputs, progress and Stop.
POLL_INTERVAL_S = 0.05
# Where gradio_client downloads the remote's files (generated PNGs) before they are read.
DOWNLOAD_DIR = Path(tempfile.gettempdir()) / "ml-studio-remote"


# The endpoint of our own app that lists each task's current models (ui/model_list.py).
LIST_MODELS = "/list_models"


def api_key(entry: ModelEntry) -> str | None:
    """The secret named by `api_key_env`, read from the environment (never from models.yaml)."""
    if not entry.api_key_env:
        return None
    value = os.environ.get(entry.api_key_env)
    if not value:
        raise ModelLoadError(
            entry.name,
            f"set the environment variable {entry.api_key_env} (named by `api_key_env`) to the server's API key or token.",
        )
    return value


def pick_seed(seed: int, count: int = 1) -> int:
    """-1 asks for a random seed; it is chosen here so that it can be reported back (and seeds
    seed .. seed + count - 1 stay valid)."""
    return seed if seed >= 0 else random.randint(0, MAX_SEED - (count - 1))


class GradioRemote:
    """A gradio_client.Client of a remote app; its `endpoint` serves this model."""

    endpoint = ""  # e.g. "/classify"
    task = ""  # the endpoint's task, as the remote app's /list_models names it
    memory_mb = 0.0  # the weights live on the remote app

    def __init__(self, entry: ModelEntry, client):
        self.entry = entry
        self.name = entry.name
        self.client = client
        self.parameters: dict[str, set[str]] = {}  # endpoint -> its parameter names, once known
        self.placement = f"remote: {entry.remote_model or 'default model'} on {entry.url} (gradio)"

    @classmethod
    def from_entry(cls, entry: ModelEntry):
        from gradio_client import Client

        client = Client(
            entry.url,
            token=api_key(entry),
            verbose=False,
            analytics_enabled=False,
            httpx_kwargs={"timeout": entry.timeout_s},
            download_files=str(DOWNLOAD_DIR),
        )
        remote = cls(entry, client)
        remote.check_endpoints()
        return remote

    def check_endpoints(self) -> None:
        """Fail at load, clearly, if the remote app lacks the endpoint or the model."""
        endpoints = self.client.view_api(print_info=False, return_format="dict")["named_endpoints"]
        if self.endpoint not in endpoints:
            raise ModelLoadError(
                self.name,
                f"the app at {self.entry.url} has no {self.endpoint} endpoint (it has {', '.join(endpoints) or 'none'}).",
            )
        self.parameters = {
            name: {p.get("parameter_name") for p in info["parameters"]} for name, info in endpoints.items()
        }
        choices = self.offered_models(endpoints)
        if self.entry.remote_model and choices and self.entry.remote_model not in choices:
            raise ModelLoadError(
                self.name,
                f"the app at {self.entry.url} has no model {self.entry.remote_model!r} (`remote_model`); it offers {', '.join(map(repr, choices))}.",
            )

    def offered_models(self, endpoints: dict) -> list[str]:
        """The models the remote app offers for this endpoint's task: its /list_models (trained
        models included) where it has one, else the `model_name` choices of view_api()."""
        if self.task and LIST_MODELS in endpoints:
            return list(self.client.predict(api_name=LIST_MODELS).get(self.task, []))
        parameters = {p.get("parameter_name"): p for p in endpoints[self.endpoint]["parameters"]}
        return list((parameters.get("model_name", {}).get("type") or {}).get("enum") or [])

    def close(self) -> None:
        self.client.close()

    def submit(self, endpoint: str | None = None, defaults: dict | None = None, **arguments):
        """Start a job; arguments the remote endpoint does not take are left out when they
        equal `defaults` (a remote running an older version of this app), refused otherwise."""
        endpoint = endpoint or self.endpoint
        if self.entry.remote_model:  # otherwise the remote app's default model
            arguments["model_name"] = self.entry.remote_model
        known = self.parameters.get(endpoint)
        for name in sorted(set(arguments) - (known if known is not None else set(arguments))):
            default = (defaults or {}).get(name)
            if arguments[name] != default:
                raise InputError(
                    name, f"the app at {self.entry.url} serving '{self.name}' does not take it; leave it at {default!r}"
                )
            del arguments[name]
        try:
            return self.client.submit(api_name=endpoint, **arguments)
        except Exception as err:
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
                raise RemoteModelError(
                    self.entry, f"no update within {self.entry.timeout_s:g} s (timeout_s); the app is busy or stuck"
                )
            time.sleep(POLL_INTERVAL_S)

    def result(self, job):
        """The job's final output; the remote's own error message if it failed."""
        from gradio_client.exceptions import AppError

        try:
            return job.result()
        except AppError as err:
            raise RemoteModelError(self.entry, str(err)) from err
        except Exception as err:
            raise RemoteModelError(self.entry, f"the request failed ({type(err).__name__}: {err})") from err

    def call(self, endpoint: str | None = None, defaults: dict | None = None, **arguments):
        """Submit, wait and return the final output."""
        job = self.submit(endpoint, defaults, **arguments)
        for _ in self.follow(job):
            pass
        return self.result(job)
