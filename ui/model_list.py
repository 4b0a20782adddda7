"""/list_models: the names a client may pass as `model_name`, per task, trained models included.

The model_name parameters of view_api() offer models.yaml's models; a model trained in the Train
tab joins while the app runs: for everyone, or (settings.trained_models: per_session) for the
session that trained it only. This endpoint answers with each task's list as it is now, for the
asking session (a gradio_client Client is one session), as the page's dropdowns list them.
"""

from __future__ import annotations

import gradio as gr

from pipelines.classification import trained_models
from pipelines.tasks import TASKS
from ui.api_values import describe_api_values
from ui.handlers import TabState, bind, handler


@handler()
def current_models(tab: TabState, request: gr.Request) -> dict[str, list[str]]:
    """Each task's models, by the name a request gives: models.yaml's first (the first of each
    is its default), then those trained in the app that this session may use."""
    owner = trained_models.owner_of(tab.config, getattr(request, "session_hash", None))
    return {task: tab.config.names(task, owner) for task in TASKS}


def build(config, registry) -> None:
    # Unqueued: it reads two lists, and must answer at once while the tasks' queues are busy.
    endpoint = gr.api(
        bind(current_models, TabState(config, registry)),
        api_name="list_models",
        queue=False,
        api_description="The models of each task, by name (pass one as model_name=...): JSON {task: [names]}, "
        "models.yaml's first (the first is the default), then the models trained in the app that this session may use.",
    )
    describe_api_values(endpoint, outputs=[("Models per task (JSON)", dict[str, list[str]])])
