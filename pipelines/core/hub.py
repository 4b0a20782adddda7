"""Where model files come from: a local directory, the local Hub cache, or the Hub.

Without a network the Hub client retries for most of a minute before it gives up. We ask
the Hub once (a few seconds at most) whether it answers, and when it does not, load from
the local cache only, so that a missing model fails in seconds with a clear message.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from pipelines.core.entry import ModelEntry

REACHABILITY_TIMEOUT_S = 3.0  # how long to wait for the Hub to answer the probe
REACHABILITY_TTL_S = 60.0  # how long a probe's answer is trusted

_probe_lock = threading.Lock()
_last_probe: tuple[float, bool] | None = None


def is_local_source(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or Path(source).expanduser().is_dir()


def public_source(source: str) -> str:
    """A source as a client may see it: a Hub id as it is, a local folder by its name only (a
    path of this server is nobody else's business)."""
    return Path(source).expanduser().name if is_local_source(source) else source


def hub_is_reachable() -> bool:
    global _last_probe
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    with _probe_lock:
        if _last_probe and time.monotonic() - _last_probe[0] < REACHABILITY_TTL_S:
            return _last_probe[1]
        import httpx
        from huggingface_hub import constants

        try:
            httpx.head(constants.ENDPOINT, timeout=REACHABILITY_TIMEOUT_S, follow_redirects=True)
            reachable = True
        except httpx.HTTPError:
            reachable = False
        _last_probe = (time.monotonic(), reachable)
        return reachable


def from_pretrained_kwargs(entry: ModelEntry) -> dict:
    """revision and local_files_only for `from_pretrained`, given the entry and the network."""
    if is_local_source(entry.source):
        return {"local_files_only": True}
    return {"revision": entry.revision, "local_files_only": not hub_is_reachable()}
