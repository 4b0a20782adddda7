"""Errors the pipelines raise for the UI and API to show as they are.

Both carry a message written for the person using the app: the UI turns them into
`gr.Error`, so API clients receive the same text.
"""


class InputError(ValueError):
    """A request parameter is out of its allowed range; the message names the field."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message names the model and says what to do."""

    def __init__(self, model_name: str, message: str):
        self.model_name = model_name
        super().__init__(f"Cannot load model '{model_name}': {message}")


class UnknownModelError(InputError):
    """A request named a model that the config does not list."""

    def __init__(self, task: str, name: str, choices: list[str]):
        listed = ", ".join(repr(c) for c in choices)
        super().__init__("model", f"unknown {task} model {name!r}; choose one of {listed}")
