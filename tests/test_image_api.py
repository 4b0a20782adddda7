"""/generate_image through gradio_client: seeds, schedulers, streamed previews, Stop, bad input."""

import json
import time

import numpy as np
import pytest
from gradio_client.exceptions import AppError
from PIL import Image

from tests.helpers import wait_for

# prompt, model, negative prompt, steps, guidance, width, height, number of images, seed
BASE = ("a cat", None, "", 2, 0.0, 64, 64, 1, 5)
WAIT_S = 60  # generous upper bound for waits on a busy machine; no test measures time


def arguments(model, **changes):
    names = [
        "prompt",
        "model_name",
        "negative_prompt",
        "steps",
        "guidance_scale",
        "width",
        "height",
        "num_images",
        "seed",
    ]
    values = dict(zip(names, BASE)) | {"model_name": model}
    return values | changes


def png_pixels(item) -> tuple[np.ndarray, dict]:
    with Image.open(item["image"]) as png:
        assert png.format == "PNG"
        return np.asarray(png), json.loads(png.info["parameters"])


def test_same_seed_same_pixels_and_the_reported_seed_reproduces(client, names):
    first, info = client.predict(**arguments(names["image"], seed=-1), api_name="/generate_image")
    seed = info["seeds"][0]
    again, _ = client.predict(**arguments(names["image"], seed=seed), api_name="/generate_image")
    (a, stored), (b, _) = png_pixels(first[0]), png_pixels(again[0])
    assert np.array_equal(a, b) and stored["seed"] == seed and first[0]["caption"] == f"seed {seed}"
    other, _ = client.predict(**arguments(names["image"], seed=seed + 1), api_name="/generate_image")
    assert not np.array_equal(a, png_pixels(other[0])[0])


def test_scheduler_choice_is_applied_and_embedded(client, names):
    gallery, info = client.predict(**arguments(names["image"], scheduler="DDIM", seed=3), api_name="/generate_image")
    assert info["parameters"]["scheduler"] == "DDIM"
    assert png_pixels(gallery[0])[1]["scheduler"] == "DDIM"
    default, _ = client.predict(**arguments(names["image"], seed=3), api_name="/generate_image")
    assert not np.array_equal(png_pixels(default[0])[0], png_pixels(gallery[0])[0])


def test_previews_stream_before_the_final_pngs(client, names):
    job = client.submit(**arguments(names["image"], steps=4, num_images=2, preview_every=1), api_name="/generate_image")
    gallery, info = job.result()
    previews = [out[0] for out in job.outputs() if isinstance(out[0], list) and out[0] is not gallery]
    previews = [g for g in previews if g and "preview" in (g[0].get("caption") or "")]
    assert [g[0]["caption"] for g in previews] == [f"preview after step {i}/4" for i in (1, 2, 3)]
    assert all(len(g) == 2 for g in previews)
    assert [item["caption"] for item in gallery] == [f"seed {s}" for s in info["seeds"]]
    assert all(png_pixels(item)[0].shape == (64, 64, 3) for item in gallery)


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"prompt": "  "}, "prompt: is empty"),
        ({"width": 60}, r"width: must be a multiple of 8 in \[32, 256\], got 60"),
        ({"height": 1024}, r"height: must be an integer in \[32, 256\]"),
        ({"width": 5000}, r"^width: must be an integer in \[32, 256\], a multiple of 8, got 5000$"),
        ({"height": 5000}, r"^height: must be an integer in \[32, 256\], a multiple of 8, got 5000$"),
        ({"width": 16}, r"^width: must be an integer in \[32, 256\], a multiple of 8, got 16$"),
        ({"steps": 0}, r"steps: must be an integer in \[1, 20\]"),
        ({"steps": 21}, r"steps: must be an integer in \[1, 20\]"),
        ({"guidance_scale": 25.0}, r"guidance_scale: must be a number in \[0, 20\]"),
        ({"num_images": 9}, r"num_images: must be an integer in \[1, 4\]"),
        ({"seed": -5}, r"seed: must be an integer in \[-1, 4294967295\]"),
        ({"scheduler": "LMS"}, r"scheduler: must be one of Euler \(trailing\), .*got 'LMS'"),
        ({"preview_every": 99}, r"preview_every: must be an integer in \[0, 20\]"),
    ],
)
def test_bad_input_reaches_the_client_as_a_message_naming_the_field(client, names, changes, message):
    with pytest.raises(AppError, match=message):
        client.predict(**arguments(names["image"], **changes), api_name="/generate_image")


# -- Stop ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slow_app(tiny_config):
    """The app with a tiny pipeline whose every UNet call takes 0.2 s, and a log of those calls."""
    from gradio_client import Client

    from pipelines.image.pipeline import LocalImageGenerator
    from pipelines.studio import ModelRegistry, default_loaders
    from tests.helpers import launch_local

    unet_calls = []

    def slow_step(module, args):
        unet_calls.append(1)
        time.sleep(0.2)

    def slow_image_loader(entry):
        generator = LocalImageGenerator.from_entry(entry)
        generator.pipe.unet.register_forward_pre_hook(slow_step)
        return generator

    registry = ModelRegistry(tiny_config, loaders=default_loaders() | {"image": slow_image_loader})
    demo, url = launch_local(tiny_config, registry, max_queue=8)
    yield Client(url, verbose=False), unet_calls
    demo.close()


def test_cancel_mid_run_stops_the_denoising_loop_and_the_next_request_runs(slow_app, names):
    client, unet_calls = slow_app
    unet_calls.clear()
    job = client.submit(**arguments(names["image"], steps=20), api_name="/generate_image")
    wait_for(lambda: len(unet_calls) >= 2 or job.done(), "the first denoising steps", WAIT_S)
    assert not job.done(), job.result()
    job.cancel()
    calls_at_cancel = len(unet_calls)
    # the next request is served, by the same (freed) model
    gallery, info = client.predict(**arguments(names["image"], steps=1, seed=8), api_name="/generate_image")
    assert len(gallery) == 1 and info["seeds"] == [8]
    # the cancelled run stopped within a step or two of the cancel, far from its 20 steps
    cancelled_run_calls = len(unet_calls) - 1
    assert calls_at_cancel <= cancelled_run_calls <= calls_at_cancel + 2 < 20


def test_a_run_clears_the_previous_images_until_its_own_arrive(client, names):
    """The no-op updates a run streams between steps clear the gallery and seeds (no stale
    result next to a new progress bar); the final output holds only this run's PNGs."""
    job = client.submit(**arguments(names["image"], steps=3, seed=11, preview_every=0), api_name="/generate_image")
    gallery, info = job.result()
    *between, final = job.outputs()
    assert between, "no update streamed before the images"
    assert all(not shown and seeds is None for shown, seeds in between)
    assert final == (gallery, info) and info["seeds"] == [11]
