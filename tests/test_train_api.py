"""/train_classifier through gradio_client against the launched app (tiny BERT): streamed progress,
a second training cancelled midway (it stops within seconds and nothing half-written is listed),
two users queued rather than mixed, and /classify with the model the first training made."""

from __future__ import annotations

import threading
import time

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from gradio_client.utils import Status

from pipelines.classification import trained_models
from pipelines.classification.training import TrainParams
from pipelines.core.params import param_infos
from tests.helpers import wait_for
from tests.test_train_job import write_messages

WAIT_S = 120  # bound on things that take seconds; only reached if something is broken
FAST = dict(transformer_weight=1.0, batch_size=8, learning_rate=5e-3)  # no TF-IDF half: seconds per training
SLOW = dict(transformer_weight=1.0, batch_size=1, epochs=50)  # thousands of steps: long enough to cancel midway


def training_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("train-")]


def outputs_so_far(job) -> list[dict]:
    return [out[-1] for out in job.outputs()]


def test_api_parameters_are_the_declaration_with_the_training_sections_defaults(client, tiny_config):
    parameters = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/train_classifier"][
        "parameters"
    ]
    names = [p["parameter_name"] for p in parameters]
    assert names == ["file", "base_model", "save_as", "text_column", "label_column", *param_infos(TrainParams)]
    for p in parameters[5:]:
        assert p["parameter_default"] == getattr(tiny_config.training.defaults, p["parameter_name"]), p[
            "parameter_name"
        ]
        assert p["label"] == param_infos(TrainParams)[p["parameter_name"]].label
    assert parameters[1]["parameter_default"] == tiny_config.training.base_models[0].name


def test_train_stream_cancel_queue_and_classify(app_url, client, tiny_config, tmp_path):
    data = write_messages(tmp_path / "messages.tsv")
    folder = trained_models.folder_of(tiny_config)

    # 1. A training, its progress streamed as JSON.
    job = client.submit(
        file=handle_file(str(data)), save_as="API model", epochs=2, api_name="/train_classifier", **FAST
    )
    *_, final = job.result(timeout=WAIT_S)
    updates = outputs_so_far(job)
    assert [u["state"] for u in updates][-1] == "done" and "training" in [u["state"] for u in updates]
    steps = [u["step"] for u in updates]
    assert steps == sorted(steps) and final["step"] == final["max_steps"] == 18
    assert len(final["train_loss"]) >= 10 and [v["epoch"] for v in final["validation"]] == [1.0, 2.0]
    assert final["model"] == "API model" and {"accuracy", "spam_f1", "confusion_matrix", "best_epoch"} <= set(
        final["metrics"]
    )
    assert "API model" in [m.name for m in trained_models.find(folder)]

    # 2. A second user's long training, and a third user waiting behind it (one training at a time).
    second, third = Client(app_url, verbose=False), Client(app_url, verbose=False)
    long_job = second.submit(
        file=handle_file(str(data)), save_as="Cancelled model", api_name="/train_classifier", **SLOW
    )
    wait_for(lambda: any(u["step"] >= 5 for u in outputs_so_far(long_job)), "the long training's first steps")
    other_data = write_messages(tmp_path / "other.tsv", spam=30, ham=30, seed=1)
    queued = third.submit(
        file=handle_file(str(other_data)), save_as="Queued model", epochs=1, api_name="/train_classifier", **FAST
    )
    wait_for(lambda: queued.status().code == Status.IN_QUEUE, "the third training to wait in the queue")
    assert queued.status().rank == 0

    # 3. Cancel the long one midway: it stops within seconds, nothing half-written is listed.
    assert "train-Cancelled model" in training_threads()
    long_job.cancel()
    cancelled_at = time.monotonic()
    wait_for(lambda: "train-Cancelled model" not in training_threads(), "the cancelled training to stop", timeout_s=30)
    assert time.monotonic() - cancelled_at < 10
    assert max(u["step"] for u in outputs_so_far(long_job)) < 50 * 68  # far from its end
    assert "Cancelled model" not in [m.name for m in trained_models.find(folder)]
    assert "Cancelled model" not in tiny_config.names("classification")

    # 4. The queued training then runs, on its own file only (queued, not mixed).
    *_, queued_final = queued.result(timeout=WAIT_S)
    assert queued_final["model"] == "Queued model" and queued_final["data"]["messages"] == 60
    assert not list(folder.glob(trained_models.PARTIAL_PREFIX + "*"))

    # 5. The first training's model classifies, through /classify, by its name.
    label, _, result = client.predict(
        message="WIN a free prize now, call 0800", model_name="API model", api_name="/classify"
    )
    assert result["model"] == "API model" and result["label"] == label["label"] in ("ham", "spam")


def test_bad_input_reaches_the_client_naming_the_field(client, tmp_path):
    data = write_messages(tmp_path / "messages.tsv")
    with pytest.raises(AppError, match=r"epochs: must be a number in \(0, 100\], got 0"):
        client.predict(file=handle_file(str(data)), epochs=0, api_name="/train_classifier")
    one_class = tmp_path / "spam-only.csv"
    one_class.write_text("label,text\n" + "".join(f"spam,WIN {i}\n" for i in range(20)))
    with pytest.raises(AppError, match="file: every message is labelled 'spam'; training needs both ham and spam"):
        client.predict(file=handle_file(str(one_class)), api_name="/train_classifier")
