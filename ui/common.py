"""Pieces every tab uses: errors shown as gr.Error, inputs checked against annotations, per-session Stop flags, the files returned,
and controls made from a task's parameter declarations (pipelines/core/params.py).

Gradio only: nothing here (or in any tab) imports torch, transformers or diffusers; a tab
reaches its models through the registry, which loads them on first use.
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
import shutil
import tempfile
import threading
import time
import typing
from pathlib import Path

import gradio as gr
from pydantic import TypeAdapter, ValidationError

from pipelines.core.errors import InputError, UserFacingError
from pipelines.core.hub import is_local_source, public_source
from pipelines.core.params import (
    declared_choices,
    default_ranges,
    field_types,
    param_infos,
)
from ui.uploads import uploaded_file

log = logging.getLogger(__name__)


# -- errors -------------------------------------------------------------------------------------
UNEXPECTED = "Unexpected error"  # how a bug's message starts (ui.request_checks keeps HTTP 500 for these)


def error_message(err: Exception, where: str) -> str:
    """What the user sees for an error: a user-facing error's own message; for anything else
    (a bug) a short line naming it, never a traceback (which goes to the server log)."""
    if isinstance(err, gr.Error):
        return err.message
    if isinstance(err, UserFacingError):
        return str(err)
    log.exception("unexpected error in %s", where)
    return f"{UNEXPECTED} in {where}: {type(err).__name__}: {err}"


def show_errors(fn):
    """Re-raise every error of a handler as gr.Error with `error_message`, so the UI shows it
    and API clients receive it as an AppError with the same text."""

    def translate(err: Exception) -> gr.Error:
        return err if isinstance(err, gr.Error) else gr.Error(error_message(err, fn.__name__), print_exception=False)

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as err:
                raise translate(err) from None

        return generator_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            raise translate(err) from None

    return wrapper


def check_inputs(fn):
    """`fn` with its arguments checked against its annotations before it runs (pydantic, lax: the
    JSON a page sends, 1 for 1.0): a value of another shape (text where a generation's JSON is
    expected, a dict where a list is) gets an InputError naming the parameter instead of a
    TypeError somewhere inside. Arguments Gradio fills in (gr.Request, event data) are not checked."""
    signature = inspect.signature(fn)
    adapters = {
        name: TypeAdapter(hint)
        for name, hint in typing.get_type_hints(fn).items()
        if name in signature.parameters and not _filled_in_by_gradio(hint)
    }

    def checked(args, kwargs) -> inspect.BoundArguments:
        bound = signature.bind(*args, **kwargs)
        for name, value in bound.arguments.items():
            if name in adapters:
                try:
                    bound.arguments[name] = adapters[name].validate_python(value)
                except ValidationError as err:
                    raise InputError(name, _first_problem(err)) from None
        return bound

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator_wrapper(*args, **kwargs):
            bound = checked(args, kwargs)
            yield from fn(*bound.args, **bound.kwargs)

        return generator_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        bound = checked(args, kwargs)
        return fn(*bound.args, **bound.kwargs)

    return wrapper


def _filled_in_by_gradio(hint) -> bool:
    classes = typing.get_args(hint) or (hint,)
    return any(inspect.isclass(c) and issubclass(c, (gr.Request, gr.EventData)) for c in classes)


def _first_problem(err: ValidationError) -> str:
    problem = err.errors(include_url=False)[0]
    where = ".".join(str(part) for part in problem["loc"])
    return f"{problem['msg'][0].lower()}{problem['msg'][1:]}" + (f" (at {where})" if where else "")


# -- Stop ---------------------------------------------------------------------------------------
class StopFlags:
    """One Stop flag per browser session and task: Stop sets it, the running job checks it and
    ends as a finished job does, with what it made so far (Gradio's `cancels=` would end the
    event as an error on the page, hiding that). A Stop while the session's job still waits in
    the queue is kept, and ends that job as it begins."""

    def __init__(self):
        self._flags: dict[str, threading.Event] = {}
        self._pending: set[str] = set()
        self._lock = threading.Lock()

    @staticmethod
    def _key(request: gr.Request | None) -> str:
        return getattr(request, "session_hash", None) or "anonymous"

    def begin(self, request: gr.Request | None) -> threading.Event:
        flag = threading.Event()
        key = self._key(request)
        with self._lock:
            self._flags[key] = flag
            if key in self._pending:
                self._pending.discard(key)
                flag.set()
        return flag

    def stop(self, request: gr.Request | None, api_name: str | None = None) -> None:
        """Stop the session's running job, or its job of event `api_name` waiting in the queue."""
        key = self._key(request)
        waiting = api_name is not None and waiting_in_queue(request, api_name)
        with self._lock:
            flag = self._flags.get(key)
            if flag is None and waiting:
                self._pending.add(key)
        if flag is not None:
            flag.set()

    def end(self, request: gr.Request | None, flag: threading.Event) -> None:
        with self._lock:
            if self._flags.get(self._key(request)) is flag:
                del self._flags[self._key(request)]


def waiting_in_queue(request: gr.Request | None, api_name: str) -> bool:
    """Whether the request's session has a job of event `api_name` waiting in Gradio's queue (not
    started yet). Reads Gradio's queue, which has no public API for it: False if that changes."""
    session = getattr(request, "session_hash", None)
    try:
        queues = request.request.app.get_blocks()._queue.event_queue_per_concurrency_id.values()
        waiting = [event for queue in queues for event in list(queue.queue)]
    except AttributeError:
        return False
    return any(event.session_hash == session and event.fn.api_name == api_name for event in waiting)


# -- files returned -----------------------------------------------------------------------------
# Files the tabs return (generated images, classified CSVs). Gradio copies each into its own
# cache as the request returns (that copy is what users see and download; app.py has Gradio
# delete it later), so ours are only kept this long, then deleted as newer ones are made:
# without this every request would leave a file behind for good.
OUTPUT_ROOT = Path(tempfile.gettempdir()) / "ml-studio-outputs"
OUTPUT_MAX_AGE_S = 600
_outputs_lock = threading.Lock()
_outputs_pruned_at = 0.0


def output_path(filename: str) -> Path:
    """A fresh path (in its own folder) for a file to return to Gradio."""
    _prune_outputs()
    OUTPUT_ROOT.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=OUTPUT_ROOT)) / filename


def _prune_outputs() -> None:
    global _outputs_pruned_at
    now = time.time()
    with _outputs_lock:
        if now - _outputs_pruned_at < OUTPUT_MAX_AGE_S / 10:
            return
        _outputs_pruned_at = now
    for folder in OUTPUT_ROOT.glob("*"):
        try:
            if now - folder.stat().st_mtime > OUTPUT_MAX_AGE_S:
                shutil.rmtree(folder, ignore_errors=True)
        except FileNotFoundError:  # another request pruned it first
            pass


# -- models -------------------------------------------------------------------------------------
def model_dropdown(names: list[str], label: str = "Model", **kwargs) -> gr.Dropdown:
    dropdown = gr.Dropdown(choices=names, value=names[0], label=label, interactive=True, **kwargs)
    if kwargs.get("allow_custom_value"):
        # The API's type would list `names` only, yet models trained in the app are taken too.
        dropdown.api_info = lambda: {
            "type": "string",
            "additional_description": "a model's name: /list_models lists the current ones, trained models included",
        }
    return dropdown


def start_and_stop(label: str) -> tuple[gr.Button, gr.Button]:
    """A long job's button and its Stop button, side by side."""
    with gr.Row():
        return gr.Button(label, variant="primary"), gr.Button("Stop", variant="stop")


def describe_model(entry) -> str:
    """Markdown: the model's name, where its weights come from (a Hub id, a server; a local folder
    without its path, which is the server's business) and its description, all as text."""
    if entry.backend != "local":  # the weights are elsewhere: say where
        source = markdown_code(f"{entry.remote_model or 'default model'} on {entry.url} ({entry.backend})")
    elif is_local_source(entry.source):
        source = f"the local folder {markdown_code(public_source(entry.source))}"
    else:
        source = markdown_code(entry.source + (f" @ {entry.revision}" if entry.revision else ""))
    text = f"**{markdown_text(entry.name)}** — {source}"
    return text + (f"<br>{markdown_text(entry.description)}" if entry.description else "")


# -- text in Markdown -----------------------------------------------------------------------------
# Every ASCII punctuation mark can start Markdown (or Gradio's $$ LaTeX) somewhere; a backslash
# makes each one literal. HTML's three are written as entities instead.
_MARKDOWN_ESCAPES = {c: "\\" + c for c in "\\`*_{}[]()#+-.!|~$:^=\"'/?%,;@"} | {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_LINE_BREAKS = str.maketrans({"\r": " ", "\n": " ", "\u2028": " ", "\u2029": " "})


def markdown_text(text: str) -> str:
    """`text` (a model's name, a file's name: anything a user gave) for a gr.Markdown, shown as it
    is, on one line: never markup, a link, an image or HTML, and safe inside a table cell."""
    return "".join(_MARKDOWN_ESCAPES.get(c, c) for c in str(text).translate(_LINE_BREAKS))


def markdown_code(text: str) -> str:
    """`text` as inline code: a code span fenced by more backticks than any run of them inside it
    (Markdown shows a code span's content as it is, HTML included)."""
    text = str(text).translate(_LINE_BREAKS)
    fence = "`" * (max(map(len, re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""  # one space each side is not shown
    return f"{fence}{pad}{text}{pad}{fence}"


def confusion_markdown(matrix: list[list[int]]) -> str:
    """A confusion matrix (rows: true ham, true spam) as a Markdown table."""
    (tn, fp), (fn, tp) = matrix
    return (
        "| | predicted ham | predicted spam |\n|---|---|---|\n"
        f"| **true ham** | {tn:,} | {fp:,} |\n| **true spam** | {fn:,} | {tp:,} |"
    )


def details_json(label: str = "Details (the JSON result API clients receive)") -> gr.JSON:
    with gr.Accordion("Details", open=False):
        return gr.JSON(label=label)


# -- controls from a task's parameters ------------------------------------------------------------
def _slider(**kwargs) -> gr.Slider:
    """A gr.Slider that leaves range checks to the model's own checks: Gradio's would reject an
    API value with "Value 21 is greater than maximum value 20." (no field name), and against the
    bounds of the model shown first rather than the model the request names. (Replacing
    `preprocess` on the instance, not in a subclass: Gradio writes a .pyi file next to every
    module that subclasses a component.) `precision=0` types it "integer" in the API (the page's
    slider ignores it)."""
    slider = gr.Slider(**kwargs)
    slider.preprocess = lambda payload: payload
    # The page's slider moves a number typed beyond its bounds to the nearest bound when its box
    # loses focus, without a word (a width of 5000 became 256); its release event, sent just
    # before, carries the number typed: putting it back lets the model's check refuse it, naming
    # the field and its range.
    slider.release(None, slider, slider, js="(typed) => typed", api_visibility="private", queue=False)
    return slider


def _number(**kwargs) -> gr.Number:
    """A gr.Number that, like `_slider`, hands the value to the model's checks as sent: with
    precision 0 Gradio's own would turn True into 1 and 1.5 into 2 (a seed the client did not ask
    for) and refuse text without naming the field."""
    number = gr.Number(**kwargs)
    number.preprocess = lambda payload: payload
    return number


def _image_input(field: str, max_bytes: int, **kwargs) -> gr.Image:
    """An image upload (file, clipboard, webcam) that hands the handler the uploaded file's path
    unopened: the model's own loader checks its size before decoding it (a decompression bomb),
    and names the field in its messages; Gradio's preprocessing would open it first. Only a
    regular file of the upload folder, of at most `max_bytes`, gets through (`ui.uploads`):
    Gradio does not check an image's path itself when a client leaves out its FileData `meta`."""

    def checked_path(payload) -> str | None:
        try:
            return uploaded_file(payload, field, max_bytes)
        except UserFacingError as err:
            raise gr.Error(str(err), print_exception=False) from None

    info = kwargs.pop("info", None)
    image = gr.Image(type="filepath", sources=["upload", "clipboard", "webcam"], **kwargs)
    image.preprocess = checked_path
    if info:  # gr.Image has no help line of its own
        gr.Markdown(f"<small>{info}</small>")
    return image


def control_settings(params_cls, name: str, entry, defaults) -> dict:
    """The value and bounds of parameter `name`'s control for `entry` (its defaults and limits)."""
    ranges = default_ranges(params_cls) | entry.ranges()
    settings = {"value": getattr(defaults, name)}
    if name in ranges:
        r = ranges[name]
        settings |= {"minimum": r.low + r.ui_step if r.low_open else r.low, "maximum": r.high}
    choices = declared_choices(params_cls) | entry.choices()
    if name in choices:
        settings["choices"] = choices[name]
    return settings


def controls(
    params_cls, names: list[str], entry, defaults=None, max_upload_bytes: int | None = None
) -> dict[str, gr.components.Component]:
    """One control per parameter in `names`, made from its declaration (label, help, range,
    widget) with `entry`'s limits and defaults (`defaults`, if given, instead); use them as an
    event's `inputs_kwargs`, so that the API's parameter names and defaults are the
    declaration's too. A file parameter needs `max_upload_bytes` (settings.max_upload_mb)."""
    defaults = entry.defaults if defaults is None else defaults
    made = {}
    types, infos = field_types(params_cls), param_infos(params_cls)
    for name in names:
        info, settings = infos[name], control_settings(params_cls, name, entry, defaults)
        common = dict(label=info.label, info=info.info or None)
        if info.widget == "number":  # whole numbers for integers (a seed), any for floats (a learning rate)
            made[name] = _number(value=settings["value"], precision=0 if types[name] is int else None, **common)
        elif info.widget == "image":
            if max_upload_bytes is None:
                raise TypeError(f"controls(): the file parameter {name!r} needs max_upload_bytes")
            made[name] = _image_input(name, max_upload_bytes, **common)
        elif info.widget == "dropdown":
            # allow_custom_value: the model's own check names the allowed choices, also for API
            # clients asking for another model than the one shown
            made[name] = gr.Dropdown(
                settings["choices"],
                value=settings["value"] or settings["choices"][0],
                allow_custom_value=True,
                **common,
            )
        elif types[name] is bool:
            made[name] = gr.Checkbox(value=settings["value"], **common)
        elif info.range is not None:
            step = info.range.ui_step
            made[name] = _slider(
                minimum=settings["minimum"],
                maximum=settings["maximum"],
                value=settings["value"],
                step=step,
                precision=0 if types[name] is int else None,
                **common,
            )
        else:
            made[name] = gr.Textbox(value=settings["value"], lines=1, **common)
    return made


def control_updates(params_cls, names: list[str], entry, defaults) -> list:
    """gr.update()s that set the controls of `names` to another model's defaults and limits."""
    updates = []
    for name in names:
        settings = control_settings(params_cls, name, entry, defaults)
        if "choices" in settings:
            settings["value"] = settings["value"] or settings["choices"][0]
        updates.append(gr.update(**settings))
    return updates


def in_declaration_order(params_cls, made: dict) -> dict:
    """`made` (name -> control) in the order the parameters are declared: the order of the API's
    parameters, whatever the order of the controls on the page."""
    return {name: made[name] for name in param_infos(params_cls) if name in made}
