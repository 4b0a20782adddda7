"""What hostile requests cost: each one alone against the launched app, timed, with the server's RSS.

    flock /tmp/ml-heavy.lock python -m benchmarks.hostile --out /tmp/hostile.json

Launches `app.py` on loopback (as `benchmarks.load` does: tiny text and image models, and
all-MiniLM-L6-v2 with a fresh ham/spam head as the classifier, so that an explanation costs what
a real one does) and sends, one at a time through gradio_client, the requests of a visitor trying
to hold the CPU or the memory: a 150 MB upload (15,000 rows of 10,000 characters), a 2 MB prompt
(with and without truncate_prompt), a 5 MB message, and the explanation of a 10,000-word message,
next to the typical requests they are compared with (an SMS; an explanation of a message of the
model's max_length tokens). Each row: seconds, refused or not (and the message), and the server's
RSS after it; the last lines give RSS before the hostile requests and after them all.

Two more parts, each on a fresh server, measure what many clients at once may hold (`--only`
runs one part): `previews`, 30 sessions each uploading a 19.5 MB labelled file and asking the
Train tab's preview of it at once (the server's peak RSS, sampled every 20 ms, and its RSS at
rest after); `sessions`, 1,000 new sessions each doing what a browser opening the page does
(GET the page, then every page-load event with a new session hash), and the RSS after them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.load import Server, model_names, write_configs

SMS = "WINNER!! You have been selected to receive a £900 prize reward! To claim call 09061701461."
WORD = "prize "  # one token of MiniLM's WordPiece each
PARTS = ("requests", "previews", "sessions")
PREVIEWS = 30  # sessions previewing a training file at once
PREVIEW_FILE_MB = 19.5  # just under settings.max_upload_mb (20)
NEW_SESSIONS = 1000
SESSION_THREADS = 8  # sessions opened this many at a time
IDLE_BEFORE_RSS_S = 3.0  # the server at rest (it trims freed memory after 1 s idle) before its RSS is read


def timed(name: str, call) -> dict:
    """Run `call()`; the row says how long it took and whether the app refused it (with its message)."""

    started = time.perf_counter()
    try:
        call()
        refused = None
    except Exception as err:
        refused = str(err).splitlines()[0][:200]
    return {"request": name, "seconds": round(time.perf_counter() - started, 3), "refused": refused}


def upload(url: str, path: Path) -> None:
    """POST a file to Gradio's upload route; raises with the server's answer when it refuses it."""
    import httpx

    with open(path, "rb") as f:
        response = httpx.post(f"{url}gradio_api/upload", files={"files": f}, timeout=300)
    if response.status_code >= 400:
        raise ValueError(f"HTTP {response.status_code}: {response.text[:200]}")


def write_big_csv(path: Path, rows: int = 15_000, chars: int = 10_000) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        f.write("message\n")
        for i in range(rows):
            f.write(("spam " * (chars // 5))[: chars - 6] + f"{i:05d}\n")
    return path


def measure_requests(server: Server, names: dict, workdir: Path) -> dict:
    """The hostile requests one at a time, each timed, with the server's RSS after it."""
    from benchmarks.app_client import app_client

    classifier, text_model = names["classification"], names["text"]
    big_csv = write_big_csv(workdir / "big.csv")
    client = app_client(server.url)
    max_length_message = WORD * 510  # fills MiniLM's 512 tokens with [CLS] and [SEP]
    requests = [
        (
            "typical: /classify one SMS",
            lambda: client.predict(message=SMS, model_name=classifier, api_name="/classify"),
        ),
        ("typical: /explain one SMS", lambda: client.predict(message=SMS, model_name=classifier, api_name="/explain")),
        (
            "typical: /explain a message of max_length tokens",
            lambda: client.predict(message=max_length_message, model_name=classifier, api_name="/explain"),
        ),
        (
            "hostile: /explain a 10,000-word message",
            lambda: client.predict(message=WORD * 10_000, model_name=classifier, api_name="/explain"),
        ),
        (
            "hostile: /classify a 5 MB message",
            lambda: client.predict(message="x" * 5 * 2**20, model_name=classifier, api_name="/classify"),
        ),
        (
            "hostile: /generate_text a 2 MB prompt",
            lambda: client.predict(
                prompt="Once upon a time " * (2 * 2**20 // 17),
                model_name=text_model,
                max_new_tokens=4,
                api_name="/generate_text",
            ),
        ),
        (
            "hostile: /generate_text a 2 MB prompt, truncate_prompt",
            lambda: client.predict(
                prompt="Once upon a time " * (2 * 2**20 // 17),
                model_name=text_model,
                max_new_tokens=4,
                truncate_prompt=True,
                api_name="/generate_text",
            ),
        ),
        (
            "hostile: a 150 MB upload (as a script sends it, without gradio_client's own size check)",
            lambda: upload(server.url, big_csv),
        ),
    ]
    for _, call in requests[:3]:  # warm-up: first-call costs are not what is measured
        call()
    rss_before = server.rss_mb()
    rows = []
    for name, call in requests:
        row = timed(name, call)
        row["server_rss_mb"] = round(server.rss_mb(), 1)
        rows.append(row)
        print(
            f"{row['seconds']:>8.3f} s  {'refused' if row['refused'] else 'served ':8} {row['server_rss_mb']:>8.1f} MB  {name}"
            + (f"\n           {row['refused']}" if row["refused"] else ""),
            flush=True,
        )
    time.sleep(2)  # let the last request's buffers go
    rss_after = server.rss_mb()
    by_name = {row["request"]: row for row in rows}
    explain_ratio = (
        by_name["hostile: /explain a 10,000-word message"]["seconds"]
        / by_name["typical: /explain a message of max_length tokens"]["seconds"]
    )
    print(
        f"server RSS {rss_before:.0f} MB before, {rss_after:.0f} MB after (+{rss_after - rss_before:.0f} MB); "
        f"explaining 10,000 words took {explain_ratio:.2f}x a max_length explanation"
    )
    return {
        "rows": rows,
        "rss_mb_before": round(rss_before, 1),
        "rss_mb_after": round(rss_after, 1),
        "rss_growth_mb": round(rss_after - rss_before, 1),
        "explain_10000_words_over_max_length": round(explain_ratio, 2),
    }


# -- many clients at once -----------------------------------------------------------------------
class PeakSampler:
    """The server's highest RSS (MB) while the block runs, read every 20 ms from this process."""

    def __init__(self, server: Server):
        self.server, self.mb, self._stop = server, 0.0, threading.Event()

    def __enter__(self):
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.mb = max(self.mb, self.server.rss_mb())
            self._stop.wait(0.02)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def page_events(url: str) -> tuple[dict[str, int], list[tuple[int, int]]]:
    """fn_index of each event by its api_name (private ones too); (fn_index, inputs) of the page-load events."""
    import httpx

    config = httpx.get(f"{url}config", timeout=30).json()
    by_name = {dependency.get("api_name"): dependency["id"] for dependency in reversed(config["dependencies"])}
    page_load = [
        (dependency["id"], len(dependency["inputs"]))
        for dependency in config["dependencies"]
        if any(event == "load" for _, event in dependency["targets"])
    ]
    return by_name, page_load


def run_event(http, url: str, fn_index: int, data: list, session_hash: str) -> str:
    """One event as the page sends it: unqueued ones by /run/predict, queued ones by /queue/join
    and their message stream. Returns "complete", or the error or refusal."""
    body = {"data": data, "fn_index": fn_index, "session_hash": session_hash, "event_data": None, "trigger_id": None}
    response = http.post(f"{url}gradio_api/run/predict", json=body)
    if response.status_code == 200:
        return "complete"
    if "join the queue" not in response.text:
        return response.text[:200]
    response = http.post(f"{url}gradio_api/queue/join", json=body)
    if response.status_code != 200:
        return response.text[:200]
    with http.stream("GET", f"{url}gradio_api/queue/data", params={"session_hash": session_hash}) as stream:
        for line in stream.iter_lines():
            message = json.loads(line[5:]) if line.startswith("data:") else {}
            if message.get("msg") == "process_completed":
                return "complete" if message.get("success") else str((message.get("output") or {}).get("error"))[:200]
    return "the stream ended without a result"


def write_training_file(path: Path, megabytes: float = PREVIEW_FILE_MB, rows: int = 20_000) -> Path:
    """A labelled file of `rows` messages (the row limit), each long enough to make it `megabytes`."""
    chars = int(megabytes * 2**20 / rows) - 6
    with open(path, "w", encoding="utf-8") as f:
        f.write("label,text\n")
        for i in range(rows):
            f.write(f"{('ham', 'spam')[i % 2]},{('free prize ' * (chars // 11 + 1))[: chars - 6]}{i:06d}\n")
    return path


def rss_at_rest(server: Server) -> float:
    """The server's RSS once it has trimmed its heap: it collects and trims 1 s after a model job
    (pipelines/core/limits.py), so one /classify, then idle."""
    from benchmarks.app_client import app_client

    app_client(server.url).predict(SMS, api_name="/classify")
    time.sleep(IDLE_BEFORE_RSS_S)
    return server.rss_mb()


def measure_previews(server: Server, workdir: Path) -> dict:
    """PREVIEWS sessions at once, each uploading the training file and asking for its preview."""
    import httpx

    data = write_training_file(workdir / "train.csv")
    preview = page_events(server.url)[0]["preview"]

    def one(index: int) -> str:
        with httpx.Client(timeout=600) as http, open(data, "rb") as f:
            path = http.post(f"{server.url}gradio_api/upload", files={"files": f}).json()[0]
            file = {"path": path, "orig_name": data.name, "meta": {"_type": "gradio.FileData"}}
            return run_event(http, server.url, preview, [file, "", "", 0.2, 42], f"preview-{index}-{uuid.uuid4().hex}")

    assert one(-1) == "complete"  # warm-up: the first preview's imports are not what is measured
    rss_before = rss_at_rest(server)
    started = time.perf_counter()
    with PeakSampler(server) as peak, ThreadPoolExecutor(PREVIEWS) as pool:
        outcomes = list(pool.map(one, range(PREVIEWS)))
    seconds = time.perf_counter() - started
    time.sleep(IDLE_BEFORE_RSS_S)
    rss_after = server.rss_mb()
    rss_after_trim = rss_at_rest(server)
    row = {
        "previews": PREVIEWS,
        "file_mb": round(data.stat().st_size / 2**20, 1),
        "seconds": round(seconds, 1),
        "completed": outcomes.count("complete"),
        "errors": sorted({o for o in outcomes if o != "complete"})[:3],
        "rss_mb_before": round(rss_before, 1),
        "peak_rss_mb": round(peak.mb, 1),
        "rss_mb_after": round(rss_after, 1),
        "peak_growth_mb": round(peak.mb - rss_before, 1),
        "growth_after_mb": round(rss_after - rss_before, 1),
        "rss_mb_after_trim": round(rss_after_trim, 1),
    }
    print(
        f"{PREVIEWS} previews of a {row['file_mb']} MB file at once: {row['completed']} completed in {seconds:.1f} s; "
        f"server RSS {rss_before:.0f} MB before, peak {peak.mb:.0f} MB (+{row['peak_growth_mb']:.0f}), "
        f"{rss_after:.0f} MB after (+{row['growth_after_mb']:.0f}), {rss_after_trim:.0f} MB after a trim",
        flush=True,
    )
    return row


def measure_sessions(server: Server) -> dict:
    """NEW_SESSIONS browsers opening the page: GET it, then run its page-load events, each with a new session."""
    import httpx

    _, page_load = page_events(server.url)

    def one(_) -> list[str]:
        session = uuid.uuid4().hex
        with httpx.Client(timeout=120) as http:
            http.get(server.url).raise_for_status()
            return [run_event(http, server.url, fn_index, [None] * inputs, session) for fn_index, inputs in page_load]

    for _ in range(20):  # warm-up: first-call costs
        one(None)
    rss_before = rss_at_rest(server)
    started = time.perf_counter()
    with ThreadPoolExecutor(SESSION_THREADS) as pool:
        outcomes = [o for session in pool.map(one, range(NEW_SESSIONS)) for o in session]
    seconds = time.perf_counter() - started
    time.sleep(IDLE_BEFORE_RSS_S)
    rss_after = server.rss_mb()  # page-load events are no model job: no trim (what the sessions hold, and garbage)
    rss_after_trim = rss_at_rest(server)
    row = {
        "sessions": NEW_SESSIONS,
        "page_load_events": len(page_load),
        "seconds": round(seconds, 1),
        "errors": len(outcomes) - outcomes.count("complete"),
        "error_samples": sorted({o for o in outcomes if o != "complete"})[:3],
        "rss_mb_before": round(rss_before, 1),
        "rss_mb_after": round(rss_after, 1),
        "growth_mb": round(rss_after - rss_before, 1),
        "kb_per_session": round((rss_after - rss_before) * 1024 / NEW_SESSIONS, 1),
        "rss_mb_after_trim": round(rss_after_trim, 1),
    }
    print(
        f"{NEW_SESSIONS} new sessions ({len(page_load)} page-load events each) in {seconds:.1f} s, {row['errors']} errors: "
        f"server RSS {rss_before:.0f} MB before, {rss_after:.0f} MB after (+{row['growth_mb']:.0f} MB, "
        f"{row['kb_per_session']:.0f} KB per session), {rss_after_trim:.0f} MB after a trim",
        flush=True,
    )
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hostile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="JSON file to write the rows to")
    parser.add_argument("--only", choices=PARTS, action="append", help="run only this part (repeatable; default: all)")
    args = parser.parse_args(argv)
    parts = args.only or list(PARTS)

    report: dict = {
        "command": "python -m benchmarks.hostile --out " + args.out + "".join(f" --only {p}" for p in args.only or [])
    }
    with tempfile.TemporaryDirectory(prefix="hostile-bench-") as tmp:
        workdir = Path(tmp)
        config = write_configs(workdir)[True]
        names = model_names(config)
        for part in parts:
            server = Server(config, workdir)  # each part on a fresh server: its RSS is that part's alone
            try:
                server.wait_ready()
                if part == "requests":
                    report |= measure_requests(server, names, workdir)
                elif part == "previews":
                    report["previews"] = measure_previews(server, workdir)
                else:
                    report["sessions"] = measure_sessions(server)
            finally:
                server.stop()
    Path(args.out).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
