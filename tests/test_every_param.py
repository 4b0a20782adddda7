"""Every parameter works on every local engine, or is refused by name: the walk of
tests/param_walk.py over every field of TextParams (PyTorch and OpenVINO on the tiny GPT-Neo)
and of ImageParams (text to image with each offered scheduler, image to image, the CPU
speed-ups), and a parameter added the way CONTRIBUTING.md says reaches both text engines."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import asdict, dataclass

import numpy as np
import pytest
from PIL import Image

from pipelines.core.errors import InputError
from pipelines.core.params import Range, param
from pipelines.image.contract import ImageParams, offered_schedulers
from pipelines.image.pipeline import LocalImageGenerator
from pipelines.studio import parse_config
from pipelines.text.contract import TextParams
from pipelines.text.pipeline import LocalTextGenerator, OpenVINOTextGenerator
from pipelines.tiny import build_text_model
from pipelines.tiny import tiny_config as tiny_models_config
from tests.param_walk import SHORT_PROMPT, walk, walk_text

UNUSED = {"source": "not-loaded"}


# -- text ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def text_engines(tmp_path_factory):
    """PyTorch and OpenVINO float32 on one tiny GPT-Neo (larger random weights: peaked distributions,
    so that sampling settings show), with its end-of-text token suppressed: every run makes
    max_new_tokens tokens."""
    folder = tmp_path_factory.mktemp("walk-text")
    source = build_text_model(folder, initializer_range=0.2)
    config = parse_config(
        {
            "classification": [{"name": "unused", **UNUSED}],
            "image": [{"name": "unused", **UNUSED}],
            "text": [
                {"name": "neo torch", "source": str(source)},
                {
                    "name": "neo openvino",
                    "source": str(source),
                    "cpu_speedups": {"engine": "openvino", "weights": "float32", "cache_dir": str(folder / "openvino")},
                },
            ],
        }
    )
    engines = {entry.name: LocalTextGenerator.from_entry(entry) for entry in config.text}
    for generator in engines.values():
        generator.model.generation_config.suppress_tokens = [generator.tokenizer.eos_token_id]
    assert isinstance(engines["neo openvino"], OpenVINOTextGenerator)
    return engines


@pytest.mark.parametrize("engine", ["neo torch", "neo openvino"])
def test_every_text_parameter_changes_the_output_or_is_refused(text_engines, engine):
    verdicts = walk_text(text_engines[engine])
    assert set(verdicts) == {f.name for f in dataclasses.fields(TextParams)}
    assert set(verdicts.values()) == {"used"}  # both engines implement every field today


@dataclass(frozen=True)
class WithNgrams(TextParams):
    """CONTRIBUTING.md's example: a generate option declared with passed_as."""

    no_repeat_ngram_size: int = param(
        0, "No repeat n-gram size", range=Range(0, 10, integer=True), passed_as="no_repeat_ngram_size"
    )


@dataclass(frozen=True)
class WithUnimplemented(TextParams):
    """A parameter that no code reads (no passed_as, not implemented by the engine)."""

    beam_width: int = param(1, "Beam width", range=Range(1, 4, integer=True))


@pytest.mark.parametrize("engine", ["neo torch", "neo openvino"])
def test_a_parameter_added_with_passed_as_works_on_both_engines(text_engines, engine):
    generator = text_engines[engine]
    base = WithNgrams(
        **asdict(
            generator.default_params(
                seed=7, max_new_tokens=60, do_sample=False, repetition_penalty=1.0, token_probabilities=True
            )
        )
    )
    plain = generator.generate(SHORT_PROMPT, base)["text"]
    no_repeats = generator.generate(SHORT_PROMPT, dataclasses.replace(base, no_repeat_ngram_size=1))
    assert no_repeats["text"] != plain and no_repeats["params"]["no_repeat_ngram_size"] == 1
    ids = generator.tokenizer(SHORT_PROMPT)["input_ids"] + [token["id"] for token in no_repeats["tokens"]]
    assert len(ids) == len(set(ids)) == len(generator.tokenizer(SHORT_PROMPT)["input_ids"]) + 60  # no token twice
    assert (
        walk_text(generator, WithNgrams(**asdict(generator.default_params(seed=7))))["no_repeat_ngram_size"] == "used"
    )


@pytest.mark.parametrize("engine", ["neo torch", "neo openvino"])
def test_a_parameter_no_engine_implements_is_refused_naming_it_and_the_engine(text_engines, engine):
    generator = text_engines[engine]
    base = WithUnimplemented(**asdict(generator.default_params(seed=7)))
    assert generator.generate(SHORT_PROMPT, base)["new_tokens"] == base.max_new_tokens  # at its default: fine
    with pytest.raises(InputError, match=rf"^beam_width: '{engine}' \(cpu/.*\) does not take it; leave it at 1$"):
        generator.generate(SHORT_PROMPT, dataclasses.replace(base, beam_width=2))
    assert walk_text(generator, base)["beam_width"] == "refused"


# -- images -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """Two initial images: smooth gradients, 120x80 (another shape than the outputs: crop and pad differ)."""
    folder = tmp_path_factory.mktemp("walk-pictures")
    y, x = np.mgrid[0:80, 0:120]
    paths = []
    for i, colours in enumerate([(x * 2, y * 3, x + y), (255 - x * 2, y * 2, 128 + 0 * x)]):
        path = folder / f"picture{i}.png"
        Image.fromarray(np.stack(colours, axis=-1).clip(0, 255).astype(np.uint8)).save(path)
        paths.append(str(path))
    return paths


def image_outcome(generator):
    """What an image request makes: each image's size and pixels, and the previews sent."""

    def run(params):
        previews = []
        result = generator(
            "a cat", params, on_preview=lambda done, images: previews.append((done, [i.size for i in images]))
        )
        images = [(r["image"].size, hashlib.sha256(r["image"].tobytes()).hexdigest()) for r in result["images"]]
        return images, previews, result["stopped"]

    return run


def walk_image(generator, pictures, **base_fields) -> dict[str, str]:
    base = generator.default_params(seed=7, **base_fields)
    samples = {"init_image": pictures, "negative_prompt": ["blurry, dark, low quality"]}
    return walk(
        base,
        image_outcome(generator),
        generator.entry.ranges(),
        generator.entry.choices(),
        samples,
        engine=f"{generator.name} ({generator.placement}, {base_fields or 'defaults'})",
    )


@pytest.fixture(scope="module")
def image_generator(registry, names):
    return registry.get("image", names["image"])


# the tiny image entry's schedulers (pipelines/tiny.py): each consumes the steps its own way
TINY_SCHEDULERS = tiny_models_config(dict.fromkeys(["classification", "text", "image"], "unused"))["image"][0][
    "schedulers"
]


@pytest.mark.parametrize("variant", [f"text to image, {name}" for name in TINY_SCHEDULERS] + ["image to image"])
def test_every_image_parameter_changes_the_images_or_is_refused(image_generator, pictures, variant):
    assert offered_schedulers(image_generator.entry) == TINY_SCHEDULERS
    if variant == "image to image":
        # 4 steps x strength 0.6: 2 denoising steps, so that a preview can come between them
        verdicts = walk_image(image_generator, pictures, init_image=pictures[0], steps=4)
    else:
        verdicts = walk_image(image_generator, pictures, scheduler=variant.removeprefix("text to image, "))
    assert set(verdicts) == {f.name for f in dataclasses.fields(ImageParams)}
    # a negative prompt needs guidance, which the tiny model's defaults leave off (0): refused, not dropped
    assert verdicts["negative_prompt"] == "refused"
    assert {name for name, verdict in verdicts.items() if verdict != "used"} == {"negative_prompt"}


def test_every_image_parameter_with_the_cpu_speedups(tiny_config, pictures):
    from tests.test_image_generation import tiny_autoencoder, with_speedups

    entry = with_speedups(tiny_config.image[0], bfloat16=True, channels_last=True)
    generator = LocalImageGenerator.from_entry(entry, tiny_vae=tiny_autoencoder())
    assert {"tiny_autoencoder", "channels_last"} <= set(generator.speedups)
    verdicts = walk_image(generator, pictures)
    assert {name for name, verdict in verdicts.items() if verdict != "used"} == {"negative_prompt"}


def test_with_guidance_the_negative_prompt_is_used_and_low_guidance_is_refused(image_generator):
    params = image_generator.default_params(seed=3, guidance_scale=7.5)
    run = image_outcome(image_generator)
    assert run(params) != run(dataclasses.replace(params, negative_prompt="blurry"))
    for scale in (0.5, 1.0):
        with pytest.raises(
            InputError,
            match=rf"^guidance_scale: {scale:g} changes nothing in 'Tiny Stable Diffusion.*guidance "
            r"starts above 1 \(0 to 1 all mean off\); use 0 or a value above 1$",
        ):
            run(dataclasses.replace(params, guidance_scale=scale))
    with pytest.raises(
        InputError,
        match=r"^negative_prompt: 'Tiny Stable Diffusion .*' \(cpu/float32\) reads it only with guidance: "
        r"set guidance_scale above 1 \(it is 0\), or leave it empty$",
    ):
        run(dataclasses.replace(params, guidance_scale=0.0, negative_prompt="blurry"))
