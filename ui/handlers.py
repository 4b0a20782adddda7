"""The request layer: what stands between Gradio and every tab's handlers, in one place.

A handler is a module-level function (as in Gradio's demos). Its first parameter, `tab`, is what
it works with: a `TabState` (the app's config and model registry, the tab's Stop flags, ...);
the rest are the event's inputs, as Gradio passes them. What its request needs checked before it
runs, it declares with `@handler(...)` instead of checking it itself:

    @handler(gpu=TASK, texts=["message"], uploads={"file": "a .csv, .tsv or .txt file of messages"})
    def classify_batch(tab: TabState, file: str, model_name: str, ...): ...

and the tab's `build()` wires `bind(classify_batch, tab)`: the function Gradio calls. It takes
the event's inputs only (its signature, which Gradio reads for the API's parameter names, order,
defaults and required-ness, is the handler's without `tab` and the values this layer passes), and
for each request:

- checks each declared argument, in the order of the handler's parameters: the task's own checks
  (`checks`: e.g. an empty message), the text limits (`texts`: pipelines.core.limits.check_text,
  settings.max_text_chars unless the declaration gives another limit), the uploads (`uploads`:
  ui.uploads.uploaded_file, within settings.max_upload_mb; a missing file is refused with "no file
  was uploaded; choose ..." unless it may be left out), the path checked replacing the value sent;
- `stoppable`: begins a Stop flag for the request's session (its `request: gr.Request` argument;
  TabState.stops) and passes it as `stop`, ending it however the handler ends (the tab's Stop
  button sets it);
- `batch` (Gradio's dynamic batching, one list item per request): checks each request alone and
  passes the refused ones as `refused` ({index: message}): a bad request never fails the others;
- `private` (an event only the page calls): checks the inputs against the annotations
  (ui.common.check_inputs);
- shows every error as gr.Error (ui.common.show_errors), or, with `errors_as`, answers a
  user-facing error with the outputs that function makes of it;
- `gpu`: runs inside ZeroGPU's `spaces.GPU` (pipelines.studio.on_gpu), as the outermost
  layer, so that only the request's own values cross into the GPU worker, never the registry.
"""

from __future__ import annotations

import functools
import inspect
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import gradio as gr

from pipelines.core import zerogpu
from pipelines.core.errors import InputError, UserFacingError
from pipelines.core.limits import check_text
from pipelines.studio import on_gpu
from ui.common import StopFlags, check_inputs, error_message, markdown_text, show_errors
from ui.uploads import upload_limit, uploaded_file

# Keyword-only parameters of a handler that this layer fills in; never API parameters.
STOP, REFUSED = "stop", "refused"
PASSED_BY_THE_LAYER = (STOP, REFUSED)

TextLimit = Callable[["TabState", dict], "int | None"]


class TabState:
    """What a tab's handlers are bound to: the app's config and model registry, the tab's Stop
    flags (one per browser session) and its task (None: a tab of no one task). A tab with more
    state (a cache, a training runner) subclasses it."""

    def __init__(self, config, registry, task: str | None = None):
        self.config, self.registry, self.task, self.stops = config, registry, task, StopFlags()
        self.errors = LastErrors()

    @property
    def names(self) -> list[str]:
        """The task's models (models.yaml's; trained ones join the classification list later)."""
        return self.config.names(self.task)

    @property
    def default(self):
        """The task's default model's entry (its defaults and limits set the controls' first values)."""
        return self.config.entry(self.task, self.config.default_name(self.task))

    @property
    def settings(self):
        return self.config.settings

    @property
    def upload_limit(self) -> int:
        """settings.max_upload_mb in bytes."""
        return upload_limit(self.config.settings)


class LastErrors:
    """The last error of each browser session in a tab, for the tab's status line: Gradio shows an
    error in a toast that goes after seconds, and marks the outputs with a bare "Error". At most
    MAX_SESSIONS are kept (the oldest forgotten first): strangers cannot grow it without bound."""

    MAX_SESSIONS = 1000

    def __init__(self):
        self._messages: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, session: str | None, message: str) -> None:
        with self._lock:
            self._messages[session or ""] = message
            self._messages.move_to_end(session or "")
            while len(self._messages) > self.MAX_SESSIONS:
                self._messages.popitem(last=False)

    def take(self, session: str | None) -> str | None:
        with self._lock:
            return self._messages.pop(session or "", None)


def max_text_chars(tab: TabState, request: dict) -> int | None:
    """The limit of a text argument unless its declaration gives another: settings.max_text_chars."""
    return tab.settings.max_text_chars


@dataclass(frozen=True)
class Declaration:
    """What `@handler(...)` declares (see the module's docstring)."""

    gpu: str | None = None
    texts: Mapping[str, TextLimit] = field(default_factory=dict)
    checks: Mapping[str, Callable[[object], None]] = field(default_factory=dict)
    uploads: Mapping[str, str | None] = field(default_factory=dict)
    stoppable: bool = False
    batch: bool = False
    private: bool = False
    errors_as: Callable[[UserFacingError], object] | None = None

    def checked(self) -> list[str]:
        return list(dict.fromkeys([*self.checks, *self.texts, *self.uploads]))

    def check(self, tab: TabState | None, request: dict, order: Sequence[str]) -> dict:
        """Check one request's arguments (name -> value); returns the uploads' checked paths by name."""
        paths = {}
        for name in order:
            value = request.get(name)
            if name in self.checks:
                self.checks[name](value)
            if name in self.texts:
                check_text(value, name, self.texts[name](tab, request))
            if name in self.uploads:
                paths[name] = uploaded_file(value, name, tab.upload_limit)  # never a path the client merely names
                if paths[name] is None and self.uploads[name] is not None:
                    raise InputError(name, f"no file was uploaded; choose {self.uploads[name]}")
        return paths

    def refusals(self, tab: TabState | None, batch: dict, order: Sequence[str]) -> dict[int, str]:
        """A batch's refused requests: {index: message}, each request checked alone."""
        refused = {}
        for i in range(len(next(iter(batch.values()), []))):
            try:
                self.check(tab, {name: values[i] for name, values in batch.items()}, order)
            except Exception as err:
                refused[i] = error_message(err, "the request's checks")
        return refused


def handler(
    *,
    gpu: str | None = None,
    texts: Sequence[str] | Mapping[str, TextLimit] = (),
    checks: Mapping[str, Callable[[object], None]] | None = None,
    uploads: Mapping[str, str | None] | None = None,
    stoppable: bool = False,
    batch: bool = False,
    private: bool = False,
    errors_as: Callable[[UserFacingError], object] | None = None,
):
    """Declare what a handler's requests need (see the module's docstring); the function itself is
    returned unchanged (call it directly in tests, with a TabState), `bind` applies the declaration.

    texts: the text arguments, each limited to settings.max_text_chars, or name -> limit(tab,
    request) for another limit (None: no limit, for a text that is cut instead). uploads: the file
    arguments, each with what to choose when none was sent (None: the file may be left out)."""
    limits = dict(texts) if isinstance(texts, Mapping) else dict.fromkeys(texts, max_text_chars)
    declaration = Declaration(
        gpu, limits, dict(checks or {}), dict(uploads or {}), stoppable, batch, private, errors_as
    )

    def declare(fn: Callable) -> Callable:
        fn.request_declaration = declaration
        return fn

    return declare


def bind(fn: Callable, tab: TabState | None = None, *, defaults: Mapping[str, object] | None = None) -> Callable:
    """What Gradio calls for handler `fn` (declared with `@handler`): `fn` bound to `tab` (None: a
    handler that needs no state and has no `tab` parameter), with the declared checks, Stop flag,
    error display and ZeroGPU wrapping. `defaults`: parameter defaults known only once the app is
    configured (e.g. the default model), shown in the API as the parameter's default."""
    declaration = getattr(fn, "request_declaration", None)
    if declaration is None:
        raise TypeError(f"{fn.__name__} is not declared with @handler(...) (ui/handlers.py)")
    call = _bound(fn, tab, declaration, dict(defaults or {}))
    if declaration.private:
        call = check_inputs(call)
    call = show_errors(call)
    call = on_gpu(declaration.gpu)(call) if declaration.gpu else call  # a no-op off ZeroGPU
    if tab is not None and "request" in inspect.signature(fn).parameters:
        call = _remembering_errors(call, tab)  # outside the GPU worker: tab.errors is this process's
    return call


def _remembering_errors(call: Callable, tab: TabState) -> Callable:
    """`call` with each error's message kept as its session's last (TabState.errors), for
    `keep_errors_visible` to show."""
    signature = inspect.signature(call)

    def remember(args, kwargs, err: gr.Error) -> None:
        try:
            request = signature.bind_partial(*args, **kwargs).arguments.get("request")
        except TypeError:
            return
        tab.errors.remember(getattr(request, "session_hash", None), err.message)

    if inspect.isgeneratorfunction(call):

        @functools.wraps(call)
        def generator_wrapper(*args, **kwargs):
            try:
                yield from call(*args, **kwargs)
            except gr.Error as err:
                remember(args, kwargs, err)
                raise

        return generator_wrapper

    @functools.wraps(call)
    def wrapper(*args, **kwargs):
        try:
            return call(*args, **kwargs)
        except gr.Error as err:
            remember(args, kwargs, err)
            raise

    return wrapper


@handler(private=True)
def last_error(tab: TabState, request: gr.Request) -> str:
    """The status line after a failed event: its message, kept on the page (the toast goes)."""
    message = tab.errors.take(getattr(request, "session_hash", None))
    return f"**Error** — {markdown_text(message)}" if message else "**Error** — the request failed."


def wire_stop(button, event, tab: TabState, stop_handler: Callable) -> None:
    """The Stop button of a stoppable `event`: `stop_handler` sets the session's Stop flag, and
    the job ends as a finished one, keeping what it made. On ZeroGPU the job runs in another
    process, which that flag does not reach: there Stop cancels the event too."""
    button.click(
        bind(stop_handler, tab),
        None,
        None,
        cancels=[event] if zerogpu.zero_gpu_active() else None,
        api_visibility="private",
        queue=False,
    )


# What a status line says from the click until the run's first update (Gradio's progress, drawn
# over it, adds the place in the queue and the time waited).
WAITING = "Waiting for the model…"


def show_waiting(button, status) -> None:
    """As `button` is pressed, in the browser: `status` says the run waits, until its first update."""
    button.click(None, None, status, js=f"() => {json.dumps(WAITING)}", api_visibility="private", queue=False)


def keep_errors_visible(event, tab: TabState, status, *others) -> None:
    """When `event` fails, `status` (a gr.Markdown by its outputs) shows the error's message
    until the next run writes it again. Gradio marks each output of a failed event with a bare
    "Error" over its content; this listener's update of `others` (the event's other outputs that
    show its progress), which leaves their values as they are, takes those marks away."""
    remembered = bind(last_error, tab)

    @functools.wraps(remembered)
    def message_and_no_change(*args, **kwargs):
        return remembered(*args, **kwargs), *[gr.skip()] * len(others)

    event.failure(
        message_and_no_change if others else remembered,
        None,
        [status, *others],
        api_visibility="private",
        queue=False,
        show_progress="hidden",
    )


def _bound(fn: Callable, tab: TabState | None, declaration: Declaration, defaults: dict) -> Callable:
    signature = inspect.signature(fn)
    parameters = list(signature.parameters.values())[0 if tab is None else 1 :]
    unknown = set(declaration.checked()) - set(signature.parameters)
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in parameters):
        raise TypeError(f"{fn.__name__} has no parameter {', '.join(sorted(unknown))} to check")
    if declaration.stoppable and "request" not in signature.parameters:
        raise TypeError(f"{fn.__name__} is stoppable: its session's flag needs its `request: gr.Request` parameter")
    exposed = signature.replace(
        parameters=[
            p.replace(default=defaults[p.name]) if p.name in defaults else p
            for p in parameters
            if p.name not in PASSED_BY_THE_LAYER
        ]
    )
    order = [name for name in exposed.parameters if name in declaration.checked()]
    order += [name for name in declaration.checked() if name not in order]  # those passed in **params
    variadic = next((name for name, p in exposed.parameters.items() if p.kind is p.VAR_KEYWORD), None)
    state = () if tab is None else (tab,)

    def prepared(args, kwargs) -> tuple[tuple, dict, inspect.BoundArguments]:
        """The handler's arguments once the request is checked (uploads replaced by their checked path)."""
        bound = exposed.bind(*args, **kwargs)
        for name, value in defaults.items():
            bound.arguments.setdefault(name, value)
        request = {name: value for name, value in bound.arguments.items() if name != variadic}
        request |= bound.arguments.get(variadic, {}) if variadic else {}
        extra = {}
        if declaration.batch:
            per_request = {name: value for name, value in request.items() if isinstance(value, (list, tuple))}
            extra[REFUSED] = declaration.refusals(tab, per_request, order)
        elif declaration.checked():
            bound.arguments.update(declaration.check(tab, request, order))
        return (*state, *bound.args), bound.kwargs | extra, bound

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def call(*args, **kwargs):
            try:
                args, kwargs, bound = prepared(args, kwargs)
                with _stop_flag(tab, declaration, bound) as passed:
                    yield from fn(*args, **kwargs, **passed)
            except UserFacingError as err:
                if declaration.errors_as is None:
                    raise
                yield declaration.errors_as(err)
    else:

        @functools.wraps(fn)
        def call(*args, **kwargs):
            try:
                args, kwargs, bound = prepared(args, kwargs)
                with _stop_flag(tab, declaration, bound) as passed:
                    return fn(*args, **kwargs, **passed)
            except UserFacingError as err:
                if declaration.errors_as is None:
                    raise
                return declaration.errors_as(err)

    call.__signature__ = exposed
    call.__annotations__ = {
        name: hint
        for name, hint in getattr(fn, "__annotations__", {}).items()
        if name in exposed.parameters or name == "return"
    }
    return call


@contextmanager
def _stop_flag(tab: TabState, declaration: Declaration, bound: inspect.BoundArguments):
    """A stoppable handler's Stop flag ({"stop": flag}, else {}), for the request's session (its
    `request` argument), from before the handler starts until it ends, however it ends."""
    if not declaration.stoppable:
        yield {}
        return
    session = bound.arguments.get("request")
    flag = tab.stops.begin(session)
    try:
        yield {STOP: flag}
    finally:
        tab.stops.end(session, flag)
