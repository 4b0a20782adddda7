"""notebooks/quickstart.ipynb: it runs top to bottom offline (tiny models), and is committed clean."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"
CELL_TIMEOUT_S = 300  # bound on one cell; the whole notebook takes about a minute here


def test_notebook_is_committed_without_outputs():
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    code = [cell for cell in cells if cell["cell_type"] == "code"]
    assert code and all(cell["outputs"] == [] and cell["execution_count"] is None for cell in code)


def test_notebook_uses_the_projects_own_functions():
    source = "\n".join("".join(cell["source"]) for cell in json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"])
    for call in ("load_config(", "ModelRegistry(", "training.train(", "app.build_app(", "Client("):
        assert call in source
    assert "AutoModel" not in source and "from_pretrained" not in source  # no copies of pipeline code


def test_quickstart_notebook_runs_offline_top_to_bottom(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    notebook.cells[1].source = notebook.cells[1].source.replace("USE_TINY_MODELS = None", "USE_TINY_MODELS = True")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT / "notebooks")}},
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails
    outputs = "\n".join(
        output.get("text", "") + json.dumps(output.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert "tokens/s, seed 42" in outputs and "the app runs at http://" in outputs
    assert any(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert (ROOT / "notebook-outputs" / "my-spam-model" / "metrics.json").is_file()  # the model it trained
    # its plot of the validation spam F1 per epoch shows the score its metrics report, at the best epoch
    plotted, reported = re.search(r"plotted spam F1 (\d\.\d{4}), metrics (\d\.\d{4})", outputs).groups()
    assert plotted == reported
    shutil.rmtree(ROOT / "notebook-outputs")  # what it wrote (git-ignored)


def test_outside_a_copy_of_the_project_it_asks_for_repo_url(tmp_path):
    """Opened where there is no copy of the project (Colab from a link, Kaggle), its install cell
    says to set REPO_URL rather than cloning a placeholder."""
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    settings, install = ("".join(cells[i]["source"]) for i in (1, 3))
    assert "REPO_URL" in settings and "git" in install
    run = subprocess.run(
        [sys.executable, "-c", settings + "\n" + install], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert run.returncode != 0 and "set REPO_URL in the first cell" in run.stderr, run.stderr
    assert not list(tmp_path.iterdir())  # nothing cloned, nothing installed
