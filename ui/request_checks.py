"""What a request may send to an event, checked at the door, before Gradio queues or runs it.

Gradio 6.31 takes some requests that it then handles badly (issue 28):
- values beyond an event's inputs are dropped without a word, so an unknown argument goes
  unnoticed; `/gradio_api/call/v2/<name>` answers an unknown keyword with a bare HTTP 500;
- too few values fail only once the queue has batched the request with others: one short
  /classify request failed the ten other visitors' requests batched with it;
- a direct call (`/gradio_api/run/...`) to an event that does not exist or runs in the browser
  only, or with event data that its handler cannot read (a select without an index), fails
  with HTTP 500 and a Python message;
- a direct call's every error gets HTTP 500, a handler's clear gr.Error about the values sent
  included.

`RequestChecks`, an ASGI middleware (app.py's launch options install it), refuses the first
three with HTTP 422 naming the argument and listing those the event takes, in the shape of
Gradio's own validation errors (gradio_client raises a ValidationError with the message; the
page shows `error`), and gives a direct call's gr.Error HTTP 422: a 500 is left to bugs, whose
message starts with "Unexpected error" (`ui.common.error_message`).
"""

from __future__ import annotations

import inspect
import json
import re

import gradio as gr
from gradio.utils import get_type_hints
from starlette.responses import JSONResponse

from ui.common import UNEXPECTED

# The POST routes that run an event, after Gradio's prefix.
_ROUTE = re.compile(
    r"/gradio_api/(?:(?P<join>queue/join)|(?:run|api)/(?P<direct>[^/]+)"
    r"|call/v2/(?P<keywords>[^/]+)|call/(?P<call>[^/]+))/?$"
)
_SHOWN_CHARS = 60  # of a value quoted in a message


class RequestChecks:
    """The checks of this module's docstring, for the routes that run events; others pass as they are."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        route = _ROUTE.search(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        blocks = getattr(scope.get("app"), "get_blocks", lambda: None)() if route else None
        if blocks is None:
            return await self.app(scope, receive, send)
        body = await _read_body(receive)
        if body is None:  # the client went away
            return
        problem = refusal(blocks, route, body)
        if problem is not None:
            return await _refuse(*problem)(scope, receive, send)
        if route["direct"]:
            send = _client_errors_as_422(send)
        await self.app(scope, _replay(body, receive), send)


def refusal(blocks, route: re.Match, body: bytes) -> tuple[str, str] | None:
    """(argument, message) when the event cannot take the request as sent; None: Gradio's to run
    (or to refuse itself, e.g. a body that is not JSON)."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    name = route["direct"] or route["keywords"] or route["call"]
    if route["join"] or (route["direct"] and payload.get("fn_index") is not None):
        fn, problem = _event_by_index(blocks, payload.get("fn_index"))
    else:
        fn, problem = _event_by_name(blocks, name)
    if problem or fn is None:
        return problem
    if fn.fn is None:
        return "fn_index", f"{_event(fn)} runs in the browser only: there is nothing to call on the server"
    if route["keywords"]:
        return _unknown_keyword(fn, payload)
    return (
        _wrong_count(fn, payload.get("data"), simple=bool(route["call"]))
        or _unknown_example(fn, payload.get("data"))
        or _unreadable_event_data(fn, payload)
    )


def _event_by_index(blocks, index) -> tuple[object, tuple[str, str] | None]:
    try:
        index = int(index)
    except (TypeError, ValueError):
        return None, None  # Gradio refuses it itself
    if index not in blocks.fns:  # (no gr.render here: every event is one of blocks.fns)
        return None, ("fn_index", f"there is no event {index}")
    return blocks.fns[index], None


def _event_by_name(blocks, name: str) -> tuple[object, tuple[str, str] | None]:
    for fn in blocks.fns.values():
        if fn.api_name == name:
            return fn, None
    return None, ("api_name", f"there is no endpoint /{name}")


def _event(fn) -> str:
    return f"/{fn.api_name}" if fn.api_name else f"event {fn._id}"


def argument_names(fn) -> list[str]:
    """The names of an event's values, in order (its handler's parameters; "argument N" where it has none)."""
    names = list(fn.input_parameter_names or [])
    return [names[i] if i < len(names) and names[i] else f"argument {i + 1}" for i in range(len(fn.inputs))]


def _unknown_keyword(fn, payload: dict) -> tuple[str, str] | None:
    accepted = [name for name, block in zip(argument_names(fn), fn.inputs) if not block.skip_api]
    unknown = [key for key in payload if key not in accepted and key != "oauth_token"]  # Gradio takes oauth_token apart
    if not unknown:
        return None
    return unknown[0], f"is not an argument of {_event(fn)}; its arguments are {', '.join(accepted) or 'none'}"


def _wrong_count(fn, data, simple: bool) -> tuple[str, str] | None:
    if not isinstance(data, list) or fn.cancels:  # Gradio refuses a non-list; a Stop's values are replaced
        return None
    names = argument_names(fn)
    # /call/<name> may leave out the values of inputs hidden from the API (Gradio fills them in)
    shown = [name for name, block in zip(names, fn.inputs) if not block.skip_api]
    if len(data) == len(names) or (simple and len(data) == len(shown)):
        return None
    takes = f"{_event(fn)} takes {len(names)} value{'s' * (len(names) != 1)} ({', '.join(names) or 'none'}), {len(data)} were sent"
    if len(data) > len(names):
        extra = len(names)
        return f"argument {extra + 1}", f"{_shown(data[extra])} is not one of its arguments: {takes}"
    return names[len(data)], f"is missing: {takes}"


def _unknown_example(fn, data) -> tuple[str, str] | None:
    """gr.Examples' own handler takes its gr.Dataset's value (an index) unchecked: anything but
    one of its examples' indices failed with HTTP 500. (Our examples are fixed: the Dataset's
    samples are those it was built with.)"""
    if not isinstance(data, list) or getattr(fn, "batch", False):
        return None
    for name, block, value in zip(argument_names(fn), fn.inputs, data):
        count = len(block.raw_samples) if isinstance(block, gr.Dataset) else None
        if count is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < count):
            return name, f"must be the index of one of its {count} examples (0 to {count - 1}), got {_shown(value)}"
    return None


def _unreadable_event_data(fn, payload: dict) -> tuple[str, str] | None:
    """The event data (gr.SelectData, ...) that the handler asks for must be readable: Gradio
    builds it before the handler runs, where a KeyError is an HTTP 500."""
    for hint in get_type_hints(fn.fn).values():
        if inspect.isclass(hint) and issubclass(hint, gr.EventData):
            try:
                hint(None, payload.get("event_data"))
            except Exception as err:
                return "event_data", (
                    f"must be this event's {hint.__name__} (a JSON object; reading it failed with "
                    f"{type(err).__name__}: {err}), got {_shown(payload.get('event_data'))}"
                )
    return None


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


def _refuse(argument: str, message: str) -> JSONResponse:
    text = f"{argument}: {message}"
    detail = [{"__type__": "validate", "is_valid": False, "parameter_name": argument, "message": message}]
    return JSONResponse({"detail": detail, "error": text}, status_code=422)


async def _read_body(receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive):
    """`receive` for the app: the body already read, then the client's own messages (a disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay():
        return pending.pop() if pending else await receive()

    return replay


def _client_errors_as_422(send):
    """`send` for a direct call: Gradio's HTTP 500 becomes 422 when its body is a gr.Error's (it
    carries a `title`) that is not a bug's; the start of the answer waits for its body to tell."""
    held = []

    async def send_with_status(message):
        if message["type"] == "http.response.start" and message["status"] == 500:
            held.append(message)
            return
        if held and message["type"] == "http.response.body":
            start = held.pop()
            if _is_a_refusal(message.get("body", b"")):
                start = {**start, "status": 422}
            await send(start)
        await send(message)

    return send_with_status


def _is_a_refusal(body: bytes) -> bool:
    try:
        payload = json.loads(body)
    except ValueError:
        return False
    error = payload.get("error") if isinstance(payload, dict) else None
    return isinstance(error, str) and "title" in payload and not error.startswith(UNEXPECTED)
