"""Reading a file a request names, bounded before the read starts.

A path may name something that never ends (`/dev/zero`), blocks forever (a FIFO, or
`/proc/self/fd/1` when stdout is a pipe), or is larger than memory. So: stat it first (opening a
device or a FIFO already waits or has effects), open it without blocking, check again on the
open file (it may have been replaced in between), and read at most the limit plus one byte.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pipelines.core.errors import InputError

READ_CHUNK = 1 << 20


def _check(info: os.stat_result, field: str, name: str, max_bytes: int | None, limit_name: str) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise InputError(field, f"{name!r} is not a regular file")
    if max_bytes is not None and info.st_size > max_bytes:
        raise InputError(
            field,
            f"{name!r} is {info.st_size / 2**20:,.1f} MB; the limit is {max_bytes / 2**20:,.1f} MB ({limit_name})",
        )


def read_regular_file(path: str | Path, field: str, max_bytes: int | None, limit_name: str) -> bytes:
    """The bytes of the regular file at `path`; InputError(field, ...) for one that cannot be
    read, is not a regular file (a directory, device, FIFO, socket) or is over `max_bytes`
    (None: no limit), naming the setting `limit_name`."""
    name = Path(path).name
    try:
        _check(os.stat(path), field, name, max_bytes, limit_name)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except InputError:
        raise
    except (OSError, ValueError) as err:
        raise InputError(field, f"{name!r} cannot be read ({getattr(err, 'strerror', None) or err})") from None
    with os.fdopen(fd, "rb", buffering=0) as file:
        _check(os.fstat(fd), field, name, max_bytes, limit_name)
        chunks, size = [], 0
        while chunk := file.read(READ_CHUNK if max_bytes is None else min(READ_CHUNK, max_bytes + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if max_bytes is not None and size > max_bytes:  # it grew after the check
                _check(os.fstat(fd), field, name, max_bytes, limit_name)
                raise InputError(field, f"{name!r} is over the limit of {max_bytes / 2**20:,.1f} MB ({limit_name})")
    return b"".join(chunks)
