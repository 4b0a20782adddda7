"""Which files a request may make the app read: only uploads (and Gradio's cached copies of what
the app returned), never a path a client merely names.

Gradio checks that an input file lies in its upload folder only when the client marks it as
FileData (`meta: {"_type": "gradio.FileData"}`); a raw client that leaves `meta` out (or an
image or gallery item, whose data model does not insist on it) hands the handler any path it
likes: `app.py`, `/etc/hostname`, `/dev/zero`, a FIFO. Every handler that takes a file passes it
through `uploaded_file` first.

Gradio names an upload's folder after a hash of the server's secret seed and the file's bytes,
so a path in the upload folder is only known to whoever uploaded the file (or was sent its
path): accepting any file there is Gradio's own rule for `/gradio_api/file=`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from gradio.utils import get_upload_folder

from pipelines.core.errors import InputError

# One text for a path that does not exist, lies outside the upload folder or is not a regular
# file: the answer must not tell a client which files exist on the server.
NOT_AN_UPLOAD = (
    "is not a file uploaded to this app: upload the file (in the page, or with gradio_client's "
    "handle_file(path)) and pass the path the upload returns"
)


def upload_folder() -> Path:
    """Gradio's upload folder, which is also the cache its returned files are copied to
    (GRADIO_TEMP_DIR, else <temp dir>/gradio), with symlinks resolved."""
    return Path(os.path.realpath(get_upload_folder()))


def path_of(value: object) -> str | None:
    """The path in what Gradio hands a handler: a path string, a FileData / ImageData (their
    `.path`), or the dict a raw client sent; None for no file at all. What holds no path (a URL
    only, a number) gives "", which no check accepts."""
    if value is None or value == "":
        return None
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    get = value.get if isinstance(value, dict) else lambda key: getattr(value, key, None)
    path, url = get("path"), get("url")
    if path is None and url is None:  # an empty file value
        return None
    return os.fspath(path) if isinstance(path, (str, os.PathLike)) else ""


def uploaded_file(value: object, field: str, max_bytes: int) -> str | None:
    """The real path of the uploaded file in `value` (None when there is none), once it is known
    to be a regular file inside the upload folder and at most `max_bytes` long
    (settings.max_upload_mb); InputError(field, ...) otherwise, the same text whether the path
    exists or not. Symlinks are followed before the check, so none leads out of the folder."""
    path = path_of(value)
    if path is None:
        return None
    folder = upload_folder()
    try:
        real = Path(os.path.realpath(path)) if path else None  # relative: against the cwd, the app's own files
        inside = real is not None and real != folder and real.is_relative_to(folder)
        info = os.stat(real) if inside else None  # stat, not open: a FIFO or a device is never opened
    except (OSError, ValueError):  # gone, a NUL byte, a name too long, a loop of links
        info = None
    if info is None or not stat.S_ISREG(info.st_mode):
        raise InputError(field, NOT_AN_UPLOAD)
    if info.st_size > max_bytes:
        raise InputError(
            field,
            f"is {info.st_size / 2**20:,.1f} MB; the limit is {max_bytes / 2**20:,.1f} MB (settings.max_upload_mb)",
        )
    return str(real)


def upload_limit(settings) -> int:
    """settings.max_upload_mb in bytes."""
    return int(settings.max_upload_mb * 2**20)


def refuse_non_files(demo) -> None:
    """Make every component of `demo` refuse, before Gradio records it, an input path in its
    upload folder that is not a regular file. Gradio moves each FileData a request carries (in
    any input, a JSON value's too) to its cache, and one already inside (the upload folder itself:
    `{"path": "/tmp/gradio", "meta": {"_type": "gradio.FileData"}}`) is only noted for deletion;
    deleting a directory raises, which ends Gradio's scheduled cache clean-up for good (the disk
    then fills) and fails the app's shutdown."""
    from gradio.blocks import Block
    from gradio_client.utils import is_http_url_like

    def refuse(path) -> None:
        text = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
        if text and not is_http_url_like(text) and os.path.lexists(text) and not os.path.isfile(text):
            from gradio.exceptions import Error

            raise Error(f"That {NOT_AN_UPLOAD}", print_exception=False)

    def guarded(block: Block) -> None:
        move, async_move = block.move_resource_to_block_cache, block.async_move_resource_to_block_cache

        def checked_move(path):
            refuse(path)
            return move(path)

        async def checked_async_move(path):
            refuse(path)
            return await async_move(path)

        # on the instance, not in a subclass: Gradio writes a .pyi file next to every module that
        # subclasses a component
        block.move_resource_to_block_cache, block.async_move_resource_to_block_cache = checked_move, checked_async_move

    for block in demo.blocks.values():
        guarded(block)
