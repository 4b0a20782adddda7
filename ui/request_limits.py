"""What one client may hold of the server: waiting requests, request bodies, per-session state.

Three bounds that Gradio 6.31 does not give on its own (the numbers are app.py's):

- **Queue backlog per group and per session** (`limit_queue`): Gradio's `queue(max_size)`
  counts waiting requests across every endpoint, so one client filling it with trainings
  turns every other visitor's /classify away. Here each concurrency group (each task's,
  the training's, ...) has its own backlog cap, and a session its own cap on waiting
  requests, checked when a request is pushed to Gradio's queue.
- **Request body size** (`BodySizeLimit`): JSON bodies over a limit are refused with 413
  before they are read whole. Uploads keep Gradio's own `max_file_size`.
- **Per-session state** (`lean_session_state`): Gradio copies every component's config for
  each new session and keeps every input and output value in it (see `LeanSessionState`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import HTTPException
from gradio.state_holder import SessionState, StateHolder
from starlette.datastructures import Headers
from starlette.middleware import Middleware

from ui.request_checks import RequestChecks

# -- the queue ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueLimits:
    """Waiting requests allowed, per concurrency group and per session (`app.py` sets them)."""

    default_backlog: int  # per group, unless `backlog` names the group (never more than this)
    backlog: Mapping[str, int] = field(default_factory=dict)
    per_session: int = 32  # one session's waiting requests, all groups together
    per_session_in_group: Mapping[str, int] = field(default_factory=dict)

    def backlog_of(self, group: str) -> int:
        return min(self.backlog.get(group, self.default_backlog), self.default_backlog)

    def session_cap_of(self, group: str) -> int:
        return min(self.per_session_in_group.get(group, self.per_session), self.per_session)

    def refusal(self, waiting: Mapping[str, list], group: str, session_hash: str | None) -> HTTPException | None:
        """Why a new request of `session_hash` for `group` cannot wait (None: it may).
        `waiting`: group -> the events waiting in it (Gradio's queue, not those running)."""
        in_group = waiting.get(group, [])
        cap = self.backlog_of(group)
        if len(in_group) >= cap:
            # 503, as Gradio's own "queue full": gradio_client raises QueueError, a page says "busy".
            return HTTPException(
                503,
                f"The {group} queue is full: {len(in_group)} requests are waiting, the most it "
                f"holds ({cap}). Try again when some have run; the other queues are not affected.",
            )
        if session_hash is None:  # Gradio gives each such request a session of its own
            return None
        mine_here = sum(event.session_hash == session_hash for event in in_group)
        if mine_here >= self.session_cap_of(group):
            return HTTPException(
                429,
                f"This session already has {mine_here} request(s) waiting in the {group} queue, the "
                f"most one session may queue there ({self.session_cap_of(group)}). Wait for them to run.",
            )
        mine = sum(event.session_hash == session_hash for events in waiting.values() for event in events)
        if mine >= self.per_session:
            return HTTPException(
                429,
                f"This session already has {mine} requests waiting, the most one session may "
                f"queue ({self.per_session}). Wait for some to run.",
            )
        return None


def limit_queue(demo, limits: QueueLimits) -> None:
    """Check `limits` whenever a request is pushed to `demo`'s queue (call after `demo.queue()`):
    a refused request gets the HTTP error of `QueueLimits.refusal` from /queue/join, /call/...

    Gradio has no public hook for this: it wraps `Queue.push` (called by every route that
    queues a request) and reads `Queue.event_queue_per_concurrency_id`; tests/test_queue.py
    fails if an upgrade renames either."""
    queue = demo._queue
    push = queue.push
    one_at_a_time = asyncio.Lock()  # check and append together, so concurrent joins cannot overshoot

    async def limited_push(body, request, username):
        fn = demo.fns.get(body.fn_index) if body.fn_index is not None else None
        if fn is None:  # Gradio answers it (no such event)
            return await push(body, request, username)
        async with one_at_a_time:
            waiting = {group: event_queue.queue for group, event_queue in queue.event_queue_per_concurrency_id.items()}
            refusal = limits.refusal(waiting, fn.concurrency_id, body.session_hash)
            if refusal is not None:
                raise refusal
            return await push(body, request, username)

    queue.push = limited_push
    queue.limits = limits  # for tests and the status of the app


# -- request bodies ----------------------------------------------------------------------------------

# The one route whose body is a file: Gradio counts it against `max_file_size` while receiving it.
UPLOAD_ROUTE = "/gradio_api/upload"
# A character's longest form in a JSON body: an escaped surrogate pair, "\ud83d\ude00" (httpx and
# Python's json escape every non-ASCII character; a browser sends 4 bytes of UTF-8 instead).
JSON_BYTES_PER_CHAR = 12
# The most text fields of one request that may each hold settings.max_text_chars: an image
# request's prompt and negative prompt.
TEXTS_PER_REQUEST = 2
# Room for every other field of a request (numbers, model names, file references) and its framing.
OTHER_FIELDS_BYTES = 64 * 1024


def json_body_limit(max_text_chars: int) -> int:
    """The largest request body that is not an upload: the longest request the app accepts,
    however its client escapes it (2,465,536 bytes for the default 100,000 characters)."""
    return TEXTS_PER_REQUEST * JSON_BYTES_PER_CHAR * max_text_chars + OTHER_FIELDS_BYTES


class BodyTooLarge(HTTPException):
    """Raised while reading a body that grows past the limit (a chunked body names no length)."""

    def __init__(self, limit: int):
        super().__init__(
            413,
            f"The request body is over {limit:,} bytes, the most a request may send (files go "
            f"through {UPLOAD_ROUTE}, up to settings.max_upload_mb).",
        )


class BodySizeLimit:
    """ASGI middleware: a request body over `limit` bytes gets 413 and a JSON message, before it is
    read whole. A declared Content-Length over it is refused without reading any of the body; a
    body without one (chunked) is counted while the app reads it, and reading stops at the limit.
    `/gradio_api/upload` is left to Gradio's own `max_file_size`."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].rstrip("/").endswith(UPLOAD_ROUTE):
            return await self.app(scope, receive, send)
        declared = declared_length(scope)
        if declared is not None and declared > self.limit:
            return await self.refuse(send)
        received, started = 0, False

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)  # FastAPI passes an HTTPException on: it answers 413
            return message

        async def noting_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, noting_send)
        except BodyTooLarge:
            if started:
                raise
            await self.refuse(send)  # a route that let it through (one reading the stream itself)

    async def refuse(self, send) -> None:
        body = json.dumps({"detail": BodyTooLarge(self.limit).detail}).encode()
        # Connection: close, as the rest of the body is never read
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def declared_length(scope) -> int | None:
    try:
        return int(Headers(scope=scope).get("content-length", ""))
    except ValueError:
        return None


# -- per-session state -------------------------------------------------------------------------------


class LeanSessionState(SessionState):
    """Gradio's per-session state without `config_values`: Gradio 6.31 builds, for every new
    session, a copy of every component's config (this app has ~200 components; `python -m
    benchmarks.hostile --only sessions` measures what a session costs) and then keeps each input
    and output value of the session's events in it, until the session is evicted
    (`state_session_capacity`). It reads that copy only to make deep links (gr.DeepLinkButton),
    which this app does not have. What a session changes (gr.State values, components updated by
    its events) is kept as Gradio keeps it."""

    def __init__(self, blocks):
        # Gradio's own __init__, given no blocks to copy the config of: it then builds an empty
        # `config_values` (an upgrade that needs more of `blocks` here fails at the first session).
        super().__init__(_NoConfigCopy(blocks))

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self.config_values.pop(key, None)

    def _update_config(self, key):
        pass

    def _update_value_in_config(self, key, value):
        pass


class _NoConfigCopy:
    def __init__(self, blocks):
        self.default_config = blocks.default_config
        self.blocks = {}


class LeanStateHolder(StateHolder):
    """Gradio's StateHolder (sessions kept up to `state_session_capacity`, least recently used
    evicted first) making `LeanSessionState`s."""

    def __getitem__(self, session_id: str) -> SessionState:
        if session_id not in self.session_data:
            self.session_data[session_id] = LeanSessionState(self.blocks)
        return super().__getitem__(session_id)


@asynccontextmanager
async def lean_session_state(app):
    """A lifespan (`launch(app_kwargs={"lifespan": ...})`): before the server takes requests,
    its sessions are kept in a `LeanStateHolder`. Gradio creates the app, and its StateHolder,
    inside `launch`; this is the first moment the app exists and serves nothing yet."""
    holder = LeanStateHolder()
    holder.set_blocks(app.get_blocks())  # also blocks.state_holder, and the capacity from launch()
    app.state_holder = holder
    yield


def launch_app_kwargs(max_text_chars: int) -> dict:
    """`demo.launch(app_kwargs=...)`: the body limit for requests of up to `max_text_chars`
    characters per text, the request checks (ui/request_checks.py), and lean per-session state."""
    # The size limit first: RequestChecks reads a body only once it is known to fit.
    return {
        "middleware": [Middleware(BodySizeLimit, limit=json_body_limit(max_text_chars)), Middleware(RequestChecks)],
        "lifespan": lean_session_state,
    }
