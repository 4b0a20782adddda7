"""The Train tab in a real browser (Playwright + Debian's chromium): upload a small labelled file,
train the tiny BERT for an epoch while the curves grow, then pick the new model in the
Classification tab and get a verdict from it. Screenshots before, during and after training;
with UPDATE_DOCS_SCREENSHOTS=1 the README's small docs/train.png (the training and result part) too."""

from __future__ import annotations

import os
import random
import re

import pytest

from pipelines.classification import trained_models
from tests.helpers import DOCS, DOCS_WIDTH, SCREENSHOT_DIR, button, open_tab, screenshot, visible

SPAM = [
    "WIN a free prize now, call {}",
    "Free cash reward! Text WIN to {}",
    "URGENT: claim your bonus {} today",
    "You have been selected for a holiday, reply {}",
]
HAM = [
    "see you at lunch on day {}",
    "can you pick up some milk, it is {}",
    "thanks for the lovely dinner {}",
    "running late, be there at {}",
]

# Records the points each plot draws, every time the page changes: vega draws the loss line as
# one SVG path ("M x,y L x,y ..."), and each validation point as a symbol. They must grow.
WATCH_PLOTS_JS = """() => {
    window.plotPoints = {loss: [], validation: []};
    const linePoints = () => Array.from(document.querySelectorAll('#train-loss-plot .plot_marks path'))
        .map(p => ((p.getAttribute('d') || '').match(/L/g) || []).length + 1).reduce((a, b) => a + b, 0);
    const symbols = () => document.querySelectorAll('#train-metrics-plot .plot_marks path').length;
    new MutationObserver(() => {
        for (const [key, count] of [['loss', linePoints], ['validation', symbols]]) {
            const n = count(), seen = window.plotPoints[key];
            if (n && n !== seen[seen.length - 1]) seen.push(n);
        }
    }).observe(document.body, {subtree: true, childList: true, attributes: true});
}"""


def docs_screenshot(page) -> None:
    """The training and result part of the tab, small, for the README (docs/train.png)."""
    from PIL import Image

    path = SCREENSHOT_DIR / "train-results.png"
    page.locator("#train-results").screenshot(path=str(path))
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        with Image.open(path) as full:
            small = full.resize((DOCS_WIDTH, round(full.height * DOCS_WIDTH / full.width)), Image.Resampling.LANCZOS)
        small.convert("RGB").quantize(colors=128).save(DOCS / "train.png", optimize=True)


def test_the_readme_shows_a_small_screenshot_of_the_train_tab():
    assert "](docs/train.png)" in (DOCS.parent / "README.md").read_text(encoding="utf-8")
    assert 0 < (DOCS / "train.png").stat().st_size < 200_000, "docs/train.png is missing or large"


@pytest.fixture
def labelled_csv(tmp_path):
    rng = random.Random(1)
    rows = [("spam", rng.choice(SPAM).format(i)) for i in range(120)] + [
        ("ham", rng.choice(HAM).format(i)) for i in range(120)
    ]
    rng.shuffle(rows)
    path = tmp_path / "my-messages.csv"
    path.write_text("label,text\n" + "".join(f'{label},"{text}"\n' for label, text in rows), encoding="utf-8")
    return path


def test_train_a_model_watch_it_learn_and_classify_with_it(page, labelled_csv, tiny_config):
    open_tab(page, "Train")
    page.locator("#train-file input[type=file]").set_input_files(str(labelled_csv))
    visible(page.get_by_text(re.compile(r"240 messages"))).first.wait_for()  # the preview: counts and split
    assert visible(page.get_by_text(re.compile(r"120 ham.*120 spam"))).count() > 0
    visible(page.get_by_text(re.compile(r"\d+ to train on"))).first.wait_for()
    name = "My browser model"
    visible(page.get_by_label("Save as", exact=True)).fill(name)
    for label, value in (("Epochs", "1"), ("Batch size", "2"), ("Learning rate", "0.005")):
        field = (
            visible(page.get_by_label(f"number input for {label}")).first
            if label != "Learning rate"
            else visible(page.get_by_label(label, exact=True)).first
        )
        field.fill(value)
        field.press("Tab")
    screenshot(page, "train-before")

    page.evaluate(WATCH_PLOTS_JS)
    button(page, "Train").click()
    visible(page.get_by_text(re.compile(r"step \d+ / \d+ · epoch"))).first.wait_for()  # steps, epoch, time left
    screenshot(page, "train-during")
    visible(page.get_by_text(re.compile(r"Saved as"))).first.wait_for()
    result = visible(page.get_by_text(re.compile(r"spam F1 \d\.\d{4}"))).first.inner_text()
    # the result shown is the saved model's: its validation F1 and best epoch, and its confusion matrix
    (model,) = [m for m in trained_models.find(trained_models.folder_of(tiny_config)) if m.name.startswith(name)]
    assert f"spam F1 {model.metrics['spam_f1']:.4f}" in result, (result, model.metrics)
    assert f"best epoch {model.metrics['best_epoch']:g}" in page.locator("#train-results").inner_text()
    _, (false_ham, true_spam) = model.metrics["confusion_matrix"]
    assert re.search(rf"true spam\s+{false_ham:,}\s+{true_spam:,}", page.locator("#train-results").inner_text())
    log = visible(page.get_by_label("Log", exact=True)).input_value()
    assert re.search(r"epoch 1: training loss \d\.\d+ · validation loss", log), log
    points = page.evaluate("window.plotPoints")
    assert len(points["loss"]) >= 2 and points["loss"][-1] > points["loss"][0], (
        points
    )  # the curve grew while it trained
    assert points["validation"] and points["validation"][-1] == 3, (
        points
    )  # validation loss, accuracy, spam F1 of the epoch
    screenshot(page, "train")
    docs_screenshot(page)

    open_tab(page, "Classification")
    model = visible(page.get_by_label("Model", exact=True)).first
    model.click()
    page.get_by_role("option", name=name).click()
    visible(page.get_by_label("Message", exact=True)).fill("WIN a free prize now, call 0800")
    button(page, "Classify").click()
    page.get_by_text(re.compile(r"(HAM|SPAM) — spam score \d\.\d{3}")).wait_for()
    visible(page.get_by_text("Details", exact=True)).first.click()
    details = visible(page.get_by_test_id("json")).first
    page.wait_for_function("el => el.innerText.includes('threshold')", arg=details.element_handle())
    assert name in details.inner_text()  # the verdict came from the new model
