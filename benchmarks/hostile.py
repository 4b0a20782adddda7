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
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.load import Server, model_names, write_configs

SMS = "WINNER!! You have been selected to receive a £900 prize reward! To claim call 09061701461."
WORD = "prize "  # one token of MiniLM's WordPiece each


def timed(name: str, call) -> dict:
    """Run `call()`; the row says how long it took and whether the app refused it (with its message)."""

    started = time.perf_counter()
    try:
        call()
        refused = None
    except Exception as err:  # noqa: BLE001 - AppError, or an HTTP error for an upload refused by size
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hostile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="JSON file to write the rows to")
    args = parser.parse_args(argv)

    from benchmarks.app_client import app_client

    with tempfile.TemporaryDirectory(prefix="hostile-bench-") as tmp:
        workdir = Path(tmp)
        config = write_configs(workdir)[True]
        names = model_names(config)
        classifier, text_model = names["classification"], names["text"]
        big_csv = write_big_csv(workdir / "big.csv")
        server = Server(config, workdir)
        try:
            server.wait_ready()
            client = app_client(server.url)
            max_length_message = WORD * 510  # fills MiniLM's 512 tokens with [CLS] and [SEP]
            requests = [
                ("typical: /classify one SMS", lambda: client.predict(message=SMS, model_name=classifier, api_name="/classify")),
                ("typical: /explain one SMS", lambda: client.predict(message=SMS, model_name=classifier, api_name="/explain")),
                ("typical: /explain a message of max_length tokens",
                 lambda: client.predict(message=max_length_message, model_name=classifier, api_name="/explain")),
                ("hostile: /explain a 10,000-word message",
                 lambda: client.predict(message=WORD * 10_000, model_name=classifier, api_name="/explain")),
                ("hostile: /classify a 5 MB message",
                 lambda: client.predict(message="x" * 5 * 2**20, model_name=classifier, api_name="/classify")),
                ("hostile: /generate_text a 2 MB prompt",
                 lambda: client.predict(prompt="Once upon a time " * (2 * 2**20 // 17), model_name=text_model,
                                        max_new_tokens=4, api_name="/generate_text")),
                ("hostile: /generate_text a 2 MB prompt, truncate_prompt",
                 lambda: client.predict(prompt="Once upon a time " * (2 * 2**20 // 17), model_name=text_model,
                                        max_new_tokens=4, truncate_prompt=True, api_name="/generate_text")),
                ("hostile: a 150 MB upload (as a script sends it, without gradio_client's own size check)",
                 lambda: upload(server.url, big_csv)),
            ]
            for _, call in requests[:3]:  # warm-up: first-call costs are not what is measured
                call()
            rss_before = server.rss_mb()
            rows = []
            for name, call in requests:
                row = timed(name, call)
                row["server_rss_mb"] = round(server.rss_mb(), 1)
                rows.append(row)
                print(f"{row['seconds']:>8.3f} s  {'refused' if row['refused'] else 'served ':8} {row['server_rss_mb']:>8.1f} MB  {name}"
                      + (f"\n           {row['refused']}" if row["refused"] else ""), flush=True)
            time.sleep(2)  # let the last request's buffers go
            rss_after = server.rss_mb()
        finally:
            server.stop()

    by_name = {row["request"]: row for row in rows}
    explain_ratio = by_name["hostile: /explain a 10,000-word message"]["seconds"] / by_name["typical: /explain a message of max_length tokens"]["seconds"]
    report = {
        "rows": rows, "rss_mb_before": round(rss_before, 1), "rss_mb_after": round(rss_after, 1),
        "rss_growth_mb": round(rss_after - rss_before, 1), "explain_10000_words_over_max_length": round(explain_ratio, 2),
        "command": "python -m benchmarks.hostile --out " + args.out,
    }
    print(f"server RSS {rss_before:.0f} MB before, {rss_after:.0f} MB after (+{rss_after - rss_before:.0f} MB); "
          f"explaining 10,000 words took {explain_ratio:.2f}x a max_length explanation")
    Path(args.out).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
