"""The Python client examples of the README ("Python client") and of docs/api.md, which continues
it, exactly as written, as one script against the app launched with the tiny models (only the URL
is substituted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
README, API_GUIDE = ROOT / "README.md", ROOT / "docs" / "api.md"
SECTION = "## Python client"
README_URL = "http://127.0.0.1:7860/"  # the URL the examples use
RUN_S = 300  # bound on running all examples; only reached if something hangs


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def readme_examples() -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION + "\n")
    end = text.find("\n## ", start + len(SECTION))
    return python_blocks(text[start : end if end != -1 else len(text)])


def client_examples() -> list[str]:
    """The README's examples, then docs/api.md's: one script."""
    return readme_examples() + python_blocks(API_GUIDE.read_text(encoding="utf-8"))


def test_readme_shows_the_client_reading_json_results():
    code = "\n".join(readme_examples())
    assert 'result["label"]' in code and "for text, stats, update in job" in code and "update['tokens_per_s']" in code


def test_readme_has_an_example_per_endpoint(public_endpoints):
    code = "\n".join(client_examples())
    assert set(re.findall(r'api_name="(/\w+)"', code)) == public_endpoints
    assert "for text, stats, update in job" in code  # streaming, with the JSON update
    assert 'result["label"]' in code and 'explanation["words"]' in code and 'counts["rows"]' in code  # the JSON results
    assert "shutil.copy(" in code and ".cancel()" in code  # saving images, cancelling
    assert code.count(README_URL) == 2  # the client, and a second one for the job it cancels


def test_readme_client_examples_run_against_the_app(app_url, tmp_path):
    script = "\n".join(client_examples()).replace(README_URL, app_url)
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=RUN_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "text models: ['" in out
    assert re.search(r"^(ham|spam) \{'(ham|spam)': ", out, re.M)
    assert re.search(r"\*\*(HAM|SPAM)\*\*", out)
    assert re.search(r"^\[\('[^']+', -?\d", out, re.M)  # /explain: words with their scores
    assert "['label', 'spam_score', 'message'] 2 rows" in out and "have no text" not in out  # the verdict first
    assert (tmp_path / "messages-classified.csv").read_text().startswith("message,label,spam_score")
    assert re.search(r"^\d+ tokens at \d+\.\d tokens/s, seed \d+$", out, re.M)  # the final update's JSON fields
    assert "saved 2 images, seeds [42, 43]" in out
    assert re.search(r"^from [0-9a-f]{12} at strength 0.6$", out, re.M)  # image to image from a saved result
    for index in (0, 1):
        with Image.open(tmp_path / f"lighthouse-{index}.png") as image:
            assert image.format == "PNG"
    assert re.search(r"^trained labelled · .* validation spam F1 \d", out, re.M)  # /train_classifier's final JSON
    assert re.search(r"^(reading|loading) 0 / None$", out, re.M) and re.search(
        r"^done (\d+) / \1$", out, re.M
    )  # streamed progress
    # the cancelled job's status once its request reached the server: its place, or already running
    assert re.search(r"^job: (place \d+ in the queue \(0 = next\)|PROCESSING|ITERATING|PROGRESS|FINISHED)$", out, re.M)
    assert re.search(r"^\{'classification': \d+, 'text': \d+, 'image': \d+\} models; image: \['", out, re.M)
    assert "listed: True" in out  # /list_models: a model trained through the API joins the list
    assert re.search(r"^\d+ dimensions, similarity -?\d\.\d+$", out, re.M)  # /embed
    assert re.search(r"^\[\(\d, '(ham|spam)', -?\d\.\d+\), \(\d, '(ham|spam)', -?\d\.\d+\)\]$", out, re.M)  # /similar
    assert re.search(r"^\[\('.*', \d\.\d+, \['", out, re.M)  # token probabilities
    assert re.search(r"^next: \[\('.*', \d\.\d+\)", out, re.M)  # /next_tokens
