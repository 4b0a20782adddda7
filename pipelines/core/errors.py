"""The errors users see. Each carries a message written for the person using the app, naming
the field or the model and saying what to do; the UI shows it as it is (`ui.common.show_errors`
turns every `UserFacingError` into a `gr.Error`, in one place), so API clients receive the same
text. Anything else that escapes a pipeline is a bug, reported as "Unexpected error".
"""

from __future__ import annotations


class UserFacingError(Exception):
    """Base of every error whose message is meant for the user."""


class ConfigError(UserFacingError, ValueError):
    """models.yaml is missing or invalid; the message names the file, the entry and the field."""


class InputError(UserFacingError, ValueError):
    """A request parameter is out of its allowed range; the message names the field."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


class UnknownModelError(InputError):
    """A request named a model that the config does not list."""

    def __init__(self, task: str, name: str, choices: list[str]):
        listed = ", ".join(repr(c) for c in choices)
        super().__init__("model", f"unknown {task} model {name!r}; choose one of {listed}")


class ModelLoadError(UserFacingError, RuntimeError):
    """A model could not be loaded; the message names the model and says what to do."""

    def __init__(self, model_name: str, message: str, prefix: str | None = None):
        self.model_name = model_name
        prefix = prefix or f"Cannot load model '{model_name}'"
        super().__init__(f"{prefix}: {message}")


class RemoteModelError(ModelLoadError):
    """A request to a remote model failed (down, slow, or it refused); names the model and where it is."""

    def __init__(self, entry, message: str):
        super().__init__(
            entry.name, message, prefix=f"Remote model '{entry.name}' ({entry.backend} server at {entry.url})"
        )
