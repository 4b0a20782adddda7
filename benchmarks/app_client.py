"""The gradio_client the benchmarks talk to the app with.

gradio_client makes a fresh httpx connection for each HTTP request of a call (the POST that
queues it, the message stream, one GET per returned file), and each fresh connection loads
the system's certificate store: about 25 ms of CPU every time, four times for an image
request, even for a plain-http URL (measured with `httpx.Client()` here). That is the client
library's cost, not the app's, so the benchmarks hand it one `ssl.SSLContext` to reuse:
certificates are still verified on https URLs, and the figures measure the app. The README's
Python-client section gives users the same tip.
"""

from __future__ import annotations

import ssl


def app_client(url: str, **kwargs):
    from gradio_client import Client

    return Client(url, verbose=False, ssl_verify=ssl.create_default_context(), **kwargs)
