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
from ui.train_tab import SAVED_MODEL_F1

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

VALIDATION_POINTS = "#train-metrics-plot g.mark-symbol.role-mark path"  # a marker per series and epoch
# Records the points each plot draws, every time the page changes: vega draws the loss line as
# one SVG path ("M x,y L x,y ..."), and each validation point as a symbol. They must grow.
WATCH_PLOTS_JS = f"""() => {{
    window.plotPoints = {{loss: [], validation: []}};
    const linePoints = () => Array.from(document.querySelectorAll('#train-loss-plot .plot_marks path'))
        .map(p => ((p.getAttribute('d') || '').match(/L/g) || []).length + 1).reduce((a, b) => a + b, 0);
    const symbols = () => document.querySelectorAll('{VALIDATION_POINTS}').length;
    new MutationObserver(() => {{
        for (const [key, count] of [['loss', linePoints], ['validation', symbols]]) {{
            const n = count(), seen = window.plotPoints[key];
            if (n && n !== seen[seen.length - 1]) seen.push(n);
        }}
    }}).observe(document.body, {{subtree: true, childList: true, attributes: true}});
}}"""


def plotted_validation(page) -> dict[str, dict[float, float]]:
    """{series: {epoch: value}} as the validation chart draws them (each marker's aria-label reads
    "epoch: 1; value: 0.9090909090909091; measure: spam F1 (saved model); ...")."""
    series: dict[str, dict[float, float]] = {}
    for label in page.locator(VALIDATION_POINTS).evaluate_all(
        "points => points.map(p => p.getAttribute('aria-label'))"
    ):
        fields = dict(part.split(": ", 1) for part in label.split("; "))
        series.setdefault(fields["measure"], {})[float(fields["epoch"])] = float(fields["value"])
    return series


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


def set_up_training(page, csv, name: str, settings: tuple[tuple[str, str], ...]) -> None:
    """Upload `csv` in the Train tab, name the model and fill the (label, value) settings."""
    open_tab(page, "Train")
    page.locator("#train-file input[type=file]").set_input_files(str(csv))
    visible(page.get_by_text(re.compile(r"240 messages"))).first.wait_for()  # the preview: counts and split
    assert visible(page.get_by_text(re.compile(r"120 ham.*120 spam"))).count() > 0
    visible(page.get_by_text(re.compile(r"\d+ to train on"))).first.wait_for()
    visible(page.get_by_label("Save as", exact=True)).fill(name)
    for label, value in settings:
        field = (
            visible(page.get_by_label(f"number input for {label}")).first
            if label != "Learning rate"
            else visible(page.get_by_label(label, exact=True)).first
        )
        field.fill(value)
        field.press("Tab")


def saved_model(config, name: str) -> trained_models.TrainedModel:
    (model,) = [m for m in trained_models.find(trained_models.folder_of(config)) if m.name.startswith(name)]
    return model


def test_train_a_model_watch_it_learn_and_classify_with_it(page, labelled_csv, tiny_config):
    name = "My browser model"
    set_up_training(page, labelled_csv, name, (("Epochs", "2"), ("Batch size", "2"), ("Learning rate", "0.005")))
    screenshot(page, "train-before")

    page.evaluate(WATCH_PLOTS_JS)
    button(page, "Train").click()
    visible(page.get_by_text(re.compile(r"step \d+ / \d+ · epoch"))).first.wait_for()  # steps, epoch, time left
    screenshot(page, "train-during")
    visible(page.get_by_text(re.compile(r"Saved as"))).first.wait_for()
    result = page.locator("#train-results").inner_text()
    # the result shown is the saved model's: its validation F1 and best epoch, and its confusion matrix
    model = saved_model(tiny_config, name)
    assert f"spam F1 {model.metrics['spam_f1']:.4f}" in result, (result, model.metrics)
    assert f"best epoch {model.metrics['best_epoch']:g}" in result
    _, (false_ham, true_spam) = model.metrics["confusion_matrix"]
    assert re.search(rf"true spam\s+{false_ham:,}\s+{true_spam:,}", result)
    log = visible(page.get_by_label("Log", exact=True)).input_value()
    assert re.search(r"epoch 1: training loss \d\.\d+ · validation loss", log), log
    points = page.evaluate("window.plotPoints")
    assert len(points["loss"]) >= 2 and points["loss"][-1] > points["loss"][0], (
        points
    )  # the curve grew while it trained
    # per epoch: the saved model's spam F1 and accuracy, the transformer alone's spam F1, the validation loss
    assert points["validation"] and points["validation"][-2:] == [4, 8], points  # the markers of epoch 1, then 2
    assert page.locator("#train-metrics-plot g.mark-line.role-mark path").count() == 4  # each series joined
    # the chart plots the score the Result reports (and says so): the saved model's spam F1 at its best epoch
    plotted = plotted_validation(page)
    assert set(plotted) == {SAVED_MODEL_F1, "accuracy (saved model)", "spam F1 (transformer alone)"} | {
        "validation loss (transformer)"
    }, plotted
    assert f"{plotted[SAVED_MODEL_F1][model.metrics['best_epoch']]:.4f}" == f"{model.metrics['spam_f1']:.4f}"
    assert f"the chart's {SAVED_MODEL_F1} at epoch {model.metrics['best_epoch']:g}" in result
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


def test_the_chart_plots_the_score_the_result_reports_where_the_transformer_alone_scores_apart(
    page, labelled_csv, tiny_config
):
    """A transformer that barely learns (a tiny learning rate) beside a TF-IDF half that carries
    this easy set: the chart's saved-model series, not the transformer's, gives the Result's F1."""
    name = "Barely trained"
    set_up_training(page, labelled_csv, name, (("Epochs", "2"), ("Batch size", "8"), ("Learning rate", "0.000001")))
    button(page, "Train").click()
    visible(page.get_by_text(re.compile(r"Saved as"))).first.wait_for()
    metrics = saved_model(tiny_config, name).metrics
    plotted = plotted_validation(page)
    best = metrics["best_epoch"]
    assert f"{plotted[SAVED_MODEL_F1][best]:.4f}" == f"{metrics['spam_f1']:.4f}", (plotted, metrics)
    assert abs(plotted["spam F1 (transformer alone)"][best] - metrics["spam_f1"]) > 0.1, (plotted, metrics)
    assert f"spam F1 {metrics['spam_f1']:.4f}" in page.locator("#train-results").inner_text()
