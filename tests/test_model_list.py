"""/list_models through gradio_client: each task's models by name, a model trained in the app
joining the list of the session that trained it (and of no other, where models are per session)."""

from __future__ import annotations

import re

import httpx
from gradio_client import Client, handle_file

from pipelines.tasks import TASKS
from tests.test_faults import TRAIN_FAST
from tests.test_train_job import write_messages


def test_each_tasks_models_in_the_configs_order(client, tiny_config):
    models = client.predict(api_name="/list_models")
    assert models == {task: tiny_config.names(task) for task in TASKS}
    assert [names[0] for names in models.values()] == [tiny_config.default_name(task) for task in TASKS]


def test_the_classification_model_is_any_name_in_the_api_not_a_fixed_list(client):
    """view_api() cannot list models trained later: it points at /list_models instead."""
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    model_name = {p["parameter_name"]: p for p in endpoints["/classify"]["parameters"]}["model_name"]
    assert "enum" not in model_name["type"] and "/list_models" in model_name["python_type"]["description"]


def test_a_trained_model_is_listed_to_the_session_that_trained_it(per_session_app, tmp_path):
    _, url, config = per_session_app
    alice, bob = Client(url, verbose=False), Client(url, verbose=False)
    before = alice.predict(api_name="/list_models")
    assert before == bob.predict(api_name="/list_models") == {task: config.names(task) for task in TASKS}

    data = write_messages(tmp_path / "messages.tsv")
    *_, final = alice.predict(file=handle_file(str(data)), save_as="Listed", api_name="/train_classifier", **TRAIN_FAST)
    assert re.fullmatch(r"Listed #[a-z2-7]{8}", final["model"])

    after = alice.predict(api_name="/list_models")
    assert after == before | {"classification": [*before["classification"], final["model"]]}
    assert bob.predict(api_name="/list_models") == before  # another session's model is not listed
    # the name listed is the name a request gives
    label, _, _ = alice.predict(message="WIN a prize", model_name=final["model"], api_name="/classify")
    assert label["label"] in ("ham", "spam")


def test_an_argument_is_refused_at_the_door_it_takes_none(app_url):
    """The request layer's checks (ui/request_checks.py) hold for it as for every endpoint."""
    keywords = httpx.post(f"{app_url}gradio_api/call/v2/list_models", json={"task": "text"}, timeout=30)
    assert keywords.status_code == 422
    assert keywords.json()["error"] == "task: is not an argument of /list_models; its arguments are none"
    values = httpx.post(f"{app_url}gradio_api/call/list_models", json={"data": ["text"]}, timeout=30)
    assert values.status_code == 422
    assert values.json()["error"] == (
        "argument 1: 'text' is not one of its arguments: /list_models takes 0 values (none), 1 were sent"
    )
    direct = httpx.post(f"{app_url}gradio_api/run/list_models", json={"data": []}, timeout=30)
    assert direct.status_code == 200 and "classification" in direct.json()["data"][0]
