"""How view_api() shows the values of an endpoint made with gr.api (one with no control on the
page): Gradio labels them "1st", "2nd", ... and types a return annotation it cannot read (every
module here postpones annotations, so it finds a string) as Any."""

from __future__ import annotations

from collections.abc import Sequence

from gradio.context import get_blocks_context
from gradio_client.utils import python_type_to_json_schema


def describe_api_values(endpoint, inputs: Sequence[str] = (), outputs: Sequence[tuple[str, object]] = ()) -> None:
    """Label the inputs of `endpoint` (what gr.api returned), in order, and label and type its
    outputs: (label, Python type) each. Call it inside the Blocks that gr.api added it to."""
    event = get_blocks_context().fns[endpoint["id"]]
    for component, label in zip(event.inputs, inputs, strict=True):
        component.label = label
    for component, (label, hint) in zip(event.outputs, outputs, strict=True):
        component.label = label
        component._api_info = python_type_to_json_schema(hint)  # what Api.api_info() answers
