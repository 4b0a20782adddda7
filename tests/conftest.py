"""Shared fixtures: tiny models built once per test session, a launched app, what its API offers
(read from the app itself), and a real browser (Playwright + Debian's chromium) with a page on it."""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from pipelines.studio import ModelRegistry, load_config
from pipelines.tasks import TASKS
from tests.helpers import CHROMIUM, CHROMIUM_ARGS, RESULT_TIMEOUT_MS


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


@pytest.fixture(scope="session")
def names(tiny_config):
    """Each task's default model (the task table's tasks)."""
    return {task: tiny_config.default_name(task) for task in TASKS}


@pytest.fixture(scope="session")
def app_registry(tiny_config):
    """The model registry of the launched app (`app_url`), to look at what it has loaded."""
    return ModelRegistry(tiny_config)


@pytest.fixture(scope="session")
def app(tiny_config, app_registry):
    """The app, built from the tiny config, launched on a free local port: (demo, url)."""
    from tests.helpers import launch_local

    demo, url = launch_local(tiny_config, app_registry)
    yield demo, url
    demo.close()


@pytest.fixture(scope="session")
def app_url(app):
    return app[1]


@pytest.fixture(scope="session")
def public_endpoints(app):
    """The app's public API as its events declare it (api_visibility "public"): view_api() must list
    exactly these, each with a description, and the README has an example for each."""
    demo, _ = app
    return frozenset(f"/{fn.api_name}" for fn in demo.fns.values() if fn.api_visibility == "public")


@pytest.fixture(scope="session")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


# -- a real browser ----------------------------------------------------------------------------------
def unavailable(reason: str):
    if os.environ.get("CI") == "true":  # CI installs chromium (.ci/run): missing there is a failure
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser():
    """Debian's chromium driven by Playwright (skipped where either is missing, failed on CI)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -r requirements-test.txt)")
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def per_session_app(tiny_config_path, tmp_path_factory):
    """The tiny app as on a Space: trained models stay with the session that trained them."""
    from pipelines.studio import load_config
    from tests.helpers import launch_local

    config = load_config(tiny_config_path)
    settings = config.settings.model_copy(
        update={"trained_models": "per_session", "trained_models_dir": str(tmp_path_factory.mktemp("per-session"))}
    )
    config = config.model_copy(update={"settings": settings})
    demo, url = launch_local(config)
    yield demo, url, config
    demo.close()


@pytest.fixture
def open_page(browser):
    """Opens a page of `url` (the launched app's by default) in a fresh browser context, closed after the test."""
    contexts = []

    def open_(url: str, width: int = 1280, height: int = 1000):
        context = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(RESULT_TIMEOUT_MS)
        page.goto(url)
        return page

    yield open_
    for context in contexts:
        context.close()


@pytest.fixture
def page(open_page, app_url):
    """A page of the launched app (`app_url`)."""
    return open_page(app_url)
