"""Image to image on the tiny pipeline: reproducible, close to the input at low strength, the
same weights as text to image, every kind of initial image converted, every bad one named."""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import replace

import numpy as np
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from pipelines.core.errors import InputError
from pipelines.image.init_image import load_init_image


@pytest.fixture()
def generator(registry, names):
    return registry.get("image", names["image"])


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A 120x80 picture: smooth colour gradients, like a photo rather than noise."""
    y, x = np.mgrid[0:80, 0:120]
    pixels = np.stack([x * 2, y * 3, (x + y)], axis=-1).clip(0, 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("init") / "photo.png"
    Image.fromarray(pixels).save(path)
    return path


def pixels(result) -> np.ndarray:
    return np.asarray(result["images"][0]["image"]).astype(int)


def test_same_seed_image_and_strength_give_the_same_pixels(generator, photo):
    params = generator.default_params(init_image=str(photo), strength=0.5, steps=4, seed=3)
    first, again = generator("a watercolor", params), generator("a watercolor", params)
    assert np.array_equal(pixels(first), pixels(again))
    other = generator("a watercolor", replace(params, seed=4))
    assert not np.array_equal(pixels(first), pixels(other))
    assert first["parameters"]["init_image"]["original_size"] == [120, 80] and first["parameters"]["strength"] == 0.5


def test_strength_zero_keeps_the_picture_and_low_strength_stays_close(generator, photo):
    converted = np.asarray(load_init_image(photo, 64, 64, "crop", 10**6).image).astype(int)
    kept = generator("anything", generator.default_params(init_image=str(photo), strength=0.0, seed=1))
    assert np.array_equal(pixels(kept), converted)
    low = generator("anything", generator.default_params(init_image=str(photo), strength=0.05, steps=20, seed=1))
    high = generator("anything", generator.default_params(init_image=str(photo), strength=1.0, steps=20, seed=1))
    assert np.abs(pixels(low) - converted).mean() < np.abs(pixels(high) - converted).mean()


def test_the_image_to_image_pipeline_shares_the_loaded_weights(generator, photo):
    memory = generator.memory_mb
    generator("a cat", generator.default_params(init_image=str(photo), strength=0.5, steps=2, seed=1))
    img2img = generator._img2img
    for name in ("unet", "vae", "text_encoder", "tokenizer"):
        assert getattr(img2img, name) is getattr(generator.pipe, name), f"{name} was copied"
    assert generator.memory_mb == memory


def test_steps_times_strength_must_make_a_denoising_step(generator, photo):
    with pytest.raises(
        InputError,
        match=r"^strength: with strength 0.25, 2 step\(s\) run no denoising step: raise steps to 4 or strength to 0.5",
    ):
        generator("a cat", generator.default_params(init_image=str(photo), strength=0.25, steps=2))


@pytest.mark.parametrize("strength", [-0.1, 1.5, float("nan")])
def test_strength_out_of_range_names_the_field(generator, photo, strength):
    with pytest.raises(InputError, match=r"^strength: must be a number in \[0, 1\]"):
        generator("a cat", generator.default_params(init_image=str(photo), strength=strength))


# -- converting the initial image -----------------------------------------------------------------
def make(mode: str, size=(40, 20)) -> Image.Image:
    if mode == "RGBA":
        image = Image.new("RGBA", size, (255, 0, 0, 0))  # fully transparent red
        image.paste((0, 0, 255, 255), (0, 0, size[0] // 2, size[1]))  # opaque blue left half
        return image
    if mode == "I;16":
        return Image.fromarray(np.full(size[::-1], 40000, dtype=np.uint16))
    return Image.new("RGB", size, (200, 100, 50)).convert(mode)


@pytest.mark.parametrize("mode", ["RGBA", "P", "L", "CMYK", "I;16", "LA"])
def test_every_mode_becomes_rgb_of_the_requested_size(tmp_path, mode):
    path = tmp_path / ("image.tif" if mode in ("CMYK", "I;16") else "image.png")
    make(mode).save(path)
    init = load_init_image(path, 64, 48, "pad", 10**6)
    assert init.image.mode == "RGB" and init.image.size == (64, 48)
    if mode == "RGBA":  # transparency over white, the opaque half kept
        assert init.image.getpixel((63, 24)) == (255, 255, 255) and init.image.getpixel((2, 24))[2] > 200


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 20, 20))  # white left half
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif.tobytes(), quality=95)
    init = load_init_image(path, 24, 48, "pad", 10**6)
    assert init.original_size == (40, 20)
    top, bottom = np.asarray(init.image)[4, 12], np.asarray(init.image)[43, 12]
    assert top.mean() > 200 and bottom.mean() < 60  # the white half is on top once upright


def test_crop_fills_and_pad_keeps_everything(photo):
    cropped = np.asarray(load_init_image(photo, 64, 64, "crop", 10**6).image)
    padded = np.asarray(load_init_image(photo, 64, 64, "pad", 10**6).image)
    assert (padded[0] == 255).all() and not (cropped[0] == 255).all()  # white bands above a wide picture


# -- bad initial images ---------------------------------------------------------------------------
def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header says width x height: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("notes.png", b"these are not pixels", r"'notes.png' is not an image file that can be read"),
        ("bomb.png", png_declaring(30_000, 30_000), r"decodes to more pixels than allowed.*the limit is"),
        ("big.png", png_declaring(5_000, 5_000), r"is 5000 x 5000 = 25,000,000 pixels; the limit is 16,777,216"),
    ],
)
def test_bad_initial_images_are_named(generator, tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=rf"^init_image: {message}"):
        generator("a cat", generator.default_params(init_image=str(path), strength=0.5, steps=4))


def test_a_truncated_image_is_named(generator, photo, tmp_path):
    path = tmp_path / "truncated.png"
    path.write_bytes(photo.read_bytes()[: photo.stat().st_size // 2])
    with pytest.raises(InputError, match=r"^init_image: 'truncated.png' is damaged or truncated"):
        generator("a cat", generator.default_params(init_image=str(path), strength=0.5, steps=4))


# -- through the API ---------------------------------------------------------------------------------
def test_image_to_image_through_the_api_records_its_input(client, names, photo):
    gallery, info = client.predict(
        prompt="a watercolor",
        model_name=names["image"],
        steps=4,
        seed=5,
        init_image=handle_file(str(photo)),
        strength=0.5,
        api_name="/generate_image",
    )
    with Image.open(gallery[0]["image"]) as png:
        stored = json.loads(png.info["parameters"])
        assert png.size == (64, 64)
    assert stored["strength"] == 0.5 and stored["init_image"]["original_size"] == [120, 80]
    assert len(stored["init_image"]["sha256"]) == 64 and info["parameters"]["init_image"] == stored["init_image"]
    gallery, info = client.predict(prompt="a watercolor", model_name=names["image"], seed=5, api_name="/generate_image")
    assert "init_image" not in info["parameters"]  # text to image, as before


def test_a_bomb_through_the_api_gets_its_message_and_the_server_serves_on(client, names, tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_declaring(30_000, 30_000))
    with pytest.raises(AppError, match=r"^init_image: decodes to more pixels than allowed"):
        client.predict(
            prompt="a cat",
            model_name=names["image"],
            steps=4,
            init_image=handle_file(str(path)),
            strength=0.5,
            api_name="/generate_image",
        )
    gallery, _ = client.predict(prompt="a cat", model_name=names["image"], seed=1, api_name="/generate_image")
    assert len(gallery) == 1
