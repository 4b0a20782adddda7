"""Shared fixtures: tiny models built once per test session, and a launched app."""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from pipelines.studio import ModelRegistry, load_config


@pytest.fixture(scope="session")
def tiny_config_path(tmp_path_factory):
    from pipelines.tiny import build_all

    return build_all(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def tiny_config(tiny_config_path):
    return load_config(tiny_config_path)


@pytest.fixture(scope="session")
def registry(tiny_config):
    return ModelRegistry(tiny_config)


# The app's public API, in one place: view_api() must list exactly these, each with a
# description, and the README's "Python client" section or docs/api.md has an example for each.
PUBLIC_ENDPOINTS = frozenset({
    "/classify", "/explain", "/classify_batch", "/similar", "/embed", "/generate_text", "/next_tokens", "/generate_image",
    "/train_classifier",
})


@pytest.fixture(scope="session")
def public_endpoints():
    return PUBLIC_ENDPOINTS


@pytest.fixture(scope="session")
def names(tiny_config):
    return {task: tiny_config.default_name(task) for task in ("classification", "text", "image")}


@pytest.fixture(scope="session")
def app_registry(tiny_config):
    """The model registry of the launched app (`app_url`), to look at what it has loaded."""
    return ModelRegistry(tiny_config)


@pytest.fixture(scope="session")
def app_url(tiny_config, app_registry):
    """The app, built from the tiny config, launched on a free local port."""
    from tests.helpers import launch_local

    demo, url = launch_local(tiny_config, app_registry)
    yield url
    demo.close()


@pytest.fixture(scope="session")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)
