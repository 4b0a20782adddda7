"""Image generation on the tiny pipeline: schedulers, previews, Stop, seeds, PNG metadata, speed-ups."""

import contextlib
import json
import threading
import typing
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.core.errors import ConfigError, InputError
from pipelines.image.config import SCHEDULERS, ImageEntry, SchedulerName
from pipelines.image.contract import offered_schedulers
from pipelines.image.pipeline import LocalImageGenerator
from pipelines.image.png import save_png
from pipelines.image.previews import latents_to_previews
from pipelines.image.speedups import choose_image_placement, cpu_has_native_bfloat16
from pipelines.studio import parse_config


@pytest.fixture()
def generator(registry, names):
    return registry.get("image", names["image"])


@contextlib.contextmanager
def count_unet_calls(generator):
    """A list that grows by one per UNet forward (one per denoising step without guidance)."""
    calls = []
    handle = generator.pipe.unet.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        yield calls
    finally:
        handle.remove()


def pixels(result: dict) -> np.ndarray:
    return np.asarray(result["image"])


# -- schedulers --------------------------------------------------------------------------------
def test_every_scheduler_name_of_the_config_has_a_diffusers_class():
    assert set(typing.get_args(SchedulerName)) == set(SCHEDULERS)


def test_each_offered_scheduler_is_used_and_recorded(generator):
    unet = generator.pipe.unet
    expected = {name: SCHEDULERS[name][0] for name in offered_schedulers(generator.entry)}
    assert len(expected) >= 3
    for name, class_name in expected.items():
        result = generator("a cat", generator.default_params(scheduler=name, steps=3, seed=1))["images"][0]
        assert type(generator.pipe.scheduler).__name__ == class_name
        assert result["params"]["scheduler"] == name
        assert result["image"].size == (64, 64)
    assert generator.pipe.unet is unet  # switching schedulers never reloads the model


def test_scheduler_objects_are_made_once_and_reused(generator):
    generator("a cat", generator.default_params(scheduler="DDIM", seed=1))
    first = generator.pipe.scheduler
    generator("a cat", generator.default_params(scheduler="Euler a (trailing)", seed=1))
    generator("a cat", generator.default_params(scheduler="DDIM", seed=1))
    assert generator.pipe.scheduler is first


def test_default_scheduler_is_the_entrys_first(generator):
    result = generator("a cat", generator.default_params(scheduler="", seed=1))["images"][0]
    assert result["params"]["scheduler"] == generator.entry.schedulers[0]


def test_unknown_scheduler_names_the_choices(generator):
    with pytest.raises(InputError, match=r"^scheduler: must be one of Euler \(trailing\), .*DDIM.* got 'LMS'"):
        generator("a cat", generator.default_params(scheduler="LMS"))


def test_entry_without_schedulers_offers_the_models_own():
    entry = ImageEntry(name="x", source="y")
    assert offered_schedulers(entry) == ["default"]


def test_config_rejects_unknown_scheduler_names():
    raw = {
        "classification": [{"name": "c", "source": "c"}],
        "text": [{"name": "t", "source": "t"}],
        "image": [{"name": "i", "source": "i", "schedulers": ["Euler", "Heun++"]}],
    }
    with pytest.raises(ConfigError, match=r"image\[0\] \('i'\), field 'schedulers.1'"):
        parse_config(raw)


# -- seeds -------------------------------------------------------------------------------------
def test_each_image_of_a_batch_is_reproduced_by_its_own_seed(generator):
    batch = generator("a red house", generator.default_params(num_images=3, seed=40, scheduler="Euler a (trailing)"))[
        "images"
    ]
    assert [r["seed"] for r in batch] == [40, 41, 42]
    again = generator(
        "a red house",
        generator.default_params(**{k: v for k, v in batch[2]["params"].items() if k not in ("prompt", "model")}),
    )["images"]
    # alone, the image is computed in a batch of 1, whose matmuls round differently: a level or two
    difference = np.abs(pixels(again[0]).astype(int) - pixels(batch[2]).astype(int))
    assert difference.max() <= 3 and difference.mean() < 0.1
    assert np.abs(pixels(batch[0]).astype(int) - pixels(batch[1]).astype(int)).mean() > 10


def test_random_seed_is_reported_and_reproduces_the_image(generator):
    first = generator("a boat", generator.default_params(seed=-1))["images"][0]
    assert 0 <= first["seed"] < 2**32
    replay = generator("a boat", generator.default_params(seed=first["seed"]))["images"][0]
    assert np.array_equal(pixels(first), pixels(replay))


# -- previews ----------------------------------------------------------------------------------
def test_previews_come_every_n_steps_at_the_image_size(generator):
    previews = []
    results = generator(
        "a cat",
        generator.default_params(steps=7, num_images=2, width=64, height=96, seed=2, preview_every=3),
        on_preview=lambda done, images: previews.append((done, [i.size for i in images])),
    )["images"]
    assert previews == [(3, [(64, 96), (64, 96)]), (6, [(64, 96), (64, 96)])]
    assert len(results) == 2


def test_previews_do_not_change_the_images(generator):
    params = generator.default_params(steps=4, seed=9, preview_every=0)
    plain = generator("a cat", params)["images"][0]
    previewed = generator("a cat", replace(params, preview_every=1), on_preview=lambda done, images: None)["images"][0]
    assert np.array_equal(pixels(plain), pixels(previewed))


def test_bad_preview_interval_names_the_field(generator):
    with pytest.raises(InputError, match=r"^preview_every: must be an integer in \[0, 20\]"):
        generator("a cat", generator.default_params(preview_every=-1), on_preview=lambda done, images: None)


@pytest.mark.parametrize("field", ["width", "height"])
# beyond every model's limit (ImageParams: [8, 2048]), beyond this model's only, below this model's, below every model's
@pytest.mark.parametrize("value", [5000, 512, 16, 0])
def test_a_size_out_of_range_is_refused_naming_the_field_and_range(generator, field, value):
    with pytest.raises(
        InputError, match=rf"^{field}: must be an integer in \[32, 256\], a multiple of 8, got {value}$"
    ):
        generator.check_inputs("a cat", generator.default_params(**{field: value}))


def test_latent_preview_is_rgb_and_skips_unknown_latent_layouts():
    latents = torch.zeros(2, 4, 8, 8)
    previews = latents_to_previews(latents, (64, 64))
    assert [p.size for p in previews] == [(64, 64)] * 2 and previews[0].mode == "RGB"
    assert np.asarray(previews[0]).std() == 0  # a flat latent gives a flat preview
    assert latents_to_previews(torch.zeros(1, 16, 8, 8), (64, 64)) is None


# -- Stop --------------------------------------------------------------------------------------
def test_stop_mid_run_ends_the_denoising_loop_and_frees_the_model(generator):
    stop = threading.Event()
    with count_unet_calls(generator) as calls:
        result = generator(
            "a cat",
            generator.default_params(steps=20, seed=1),
            stop=stop,
            on_step=lambda done, total: stop.set() if done == 2 else None,
        )
        assert result["images"] == [] and result["stopped"] and len(calls) == 2  # not 20: the loop itself stopped
        assert not generator._lock.locked()
        calls.clear()
        assert len(generator("a cat", generator.default_params(steps=3, seed=1))["images"]) == 1
        assert len(calls) == 3


def test_stop_before_the_start_runs_no_step(generator):
    stop = threading.Event()
    stop.set()
    with count_unet_calls(generator) as calls:
        assert generator("a cat", generator.default_params(steps=5), stop=stop)["images"] == [] and calls == []


# -- PNG metadata ------------------------------------------------------------------------------
def test_png_remembers_its_parameters(generator, tmp_path):
    result = generator("a lighthouse", generator.default_params(seed=12, scheduler="DDIM"))["images"][0]
    path = save_png(result["image"], tmp_path / "out.png", result["params"])
    with Image.open(path) as png:
        stored = json.loads(png.info["parameters"])
        assert png.format == "PNG" and np.array_equal(np.asarray(png), pixels(result))
    assert stored == result["params"] and stored["seed"] == 12 and stored["scheduler"] == "DDIM"
    assert stored["prompt"] == "a lighthouse"


# -- speed-ups and devices ---------------------------------------------------------------------
def tiny_autoencoder():
    """An AutoencoderTiny with random weights whose 2x upsampling matches the tiny SD VAE."""
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    return AutoencoderTiny(
        encoder_block_out_channels=(4, 4),
        decoder_block_out_channels=(4, 4),
        num_encoder_blocks=(1, 1),
        num_decoder_blocks=(1, 1),
    )


def with_speedups(entry: ImageEntry, **speedups) -> ImageEntry:
    return entry.model_copy(update={"cpu_speedups": entry.cpu_speedups.model_copy(update=speedups)})


@pytest.mark.parametrize(
    "speedups,expected",
    [
        ({"channels_last": True}, ["channels_last"]),
        ({}, ["tiny_autoencoder"]),
        ({"bfloat16": True, "channels_last": True}, ["bfloat16", "tiny_autoencoder", "channels_last"]),
    ],
)
def test_speedups_on_the_tiny_pipeline_still_make_images_of_the_right_size(tiny_config, speedups, expected):
    if speedups.get("bfloat16") and not cpu_has_native_bfloat16():
        expected = [name for name in expected if name != "bfloat16"]  # stays float32 on such CPUs
    entry = with_speedups(tiny_config.image[0], **speedups)
    tiny_vae = tiny_autoencoder() if "tiny_autoencoder" in expected else None
    generator = LocalImageGenerator.from_entry(entry, tiny_vae=tiny_vae)
    assert generator.speedups == expected
    results = generator("a cat", generator.default_params(width=64, height=96, num_images=2, seed=3))["images"]
    assert [r["image"].size for r in results] == [(64, 96), (64, 96)]
    assert not np.array_equal(pixels(results[0]), pixels(results[1]))
    # attention stays on PyTorch's scaled_dot_product_attention
    assert {type(p).__name__ for p in generator.pipe.unet.attn_processors.values()} == {"AttnProcessor2_0"}


def test_tiny_autoencoder_must_match_the_vae_scale(tiny_config):
    from diffusers import AutoencoderTiny

    full_size = AutoencoderTiny(encoder_block_out_channels=(4,) * 4, decoder_block_out_channels=(4,) * 4)
    with pytest.raises(ValueError, match="upsamples 8x but the pipeline's VAE 2x"):
        LocalImageGenerator.from_entry(tiny_config.image[0], tiny_vae=full_size)


def test_cpu_stays_float32_unless_bfloat16_is_asked_and_native(tiny_config):
    entry = tiny_config.image[0].model_copy(update={"device": "cpu"})
    assert choose_image_placement(entry).dtype == torch.float32
    wanted = choose_image_placement(with_speedups(entry, bfloat16=True)).dtype
    assert wanted == (torch.bfloat16 if cpu_has_native_bfloat16() else torch.float32)
    explicit = with_speedups(entry, bfloat16=True).model_copy(update={"dtype": "float32"})
    assert choose_image_placement(explicit).dtype == torch.float32  # an explicit dtype wins
    with pytest.raises(ValueError, match="float16 is not supported on CPU"):
        choose_image_placement(entry.model_copy(update={"dtype": "float16"}))


def test_gpu_memory_savers_are_not_applied_on_cpu(tiny_config):
    entry = tiny_config.image[0].model_copy(update={"device": "cpu"})
    savers = entry.gpu_memory.model_copy(update={"cpu_offload": True, "attention_slicing": True, "vae_slicing": True})
    generator = LocalImageGenerator.from_entry(entry.model_copy(update={"gpu_memory": savers}))
    assert generator.speedups == [] and generator.pipe.device.type == "cpu"
    assert {type(p).__name__ for p in generator.pipe.unet.attn_processors.values()} == {"AttnProcessor2_0"}


def test_bundled_models_offer_suitable_schedulers_and_the_taesd_speedup():
    from pipelines.studio import DEFAULT_CONFIG_PATH, load_config

    turbo, sd15 = load_config(DEFAULT_CONFIG_PATH).image[:2]
    assert turbo.schedulers[0] == "Euler (trailing)" and all("trailing" in s for s in turbo.schedulers)
    assert sd15.schedulers[0] == "DPM++ 2M Karras" and sd15.defaults.steps == 25
    for entry in (turbo, sd15):
        assert entry.cpu_speedups.tiny_autoencoder == "madebyollin/taesd" and entry.cpu_speedups.bfloat16


def test_the_retired_torch_compile_option_is_refused_with_what_to_do(tiny_config):
    raw = tiny_config.model_dump(mode="json")
    raw["image"][0]["cpu_speedups"] = {"torch_compile": False}
    with pytest.raises(ConfigError, match=r"image\[0\].*cpu_speedups.*torch_compile is no longer offered.*remove it"):
        parse_config(raw)
