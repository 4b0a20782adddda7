"""Each pipeline's output on the tiny models: labels and scores, streamed text, image sizes."""

import itertools
import threading

import pytest

from pipelines.classification.pipeline import resolve_class_names
from pipelines.core.errors import InputError, ModelLoadError


# -- classification ------------------------------------------------------------------------
def test_classifier_returns_both_classes_summing_to_one(registry, names):
    classifier = registry.get("classification", names["classification"])
    results = classifier(["WIN a free prize now!!!", "see you at lunch"], threshold=0.5)
    assert len(results) == 2
    for result in results:
        assert set(result["scores"]) == {"ham", "spam"}
        assert sum(result["scores"].values()) == pytest.approx(1.0, abs=1e-5)
        assert result["label"] == ("spam" if result["scores"]["spam"] >= 0.5 else "ham")


def test_threshold_decides_the_verdict(registry, names):
    classifier = registry.get("classification", names["classification"])
    assert classifier(["hello"], threshold=0.0)[0]["label"] == "spam"
    assert (
        classifier(["hello"], threshold=1.0)[0]["label"] == "ham" or classifier(["hello"])[0]["scores"]["spam"] == 1.0
    )


def test_long_message_is_truncated_and_flagged(registry, names):
    classifier = registry.get("classification", names["classification"])
    result = classifier(["free prize " * 500])[0]
    assert result["truncated"] is True
    assert classifier(["short"])[0]["truncated"] is False


@pytest.mark.parametrize("bad", ["", "   \n\t"])
def test_empty_message_rejected(registry, names, bad):
    with pytest.raises(InputError, match="message: is empty"):
        registry.get("classification", names["classification"])([bad])


@pytest.mark.parametrize("threshold", [-0.1, 1.5, float("nan"), "abc"])
def test_bad_threshold_rejected(registry, names, threshold):
    with pytest.raises(InputError, match="threshold"):
        registry.get("classification", names["classification"])(["hi"], threshold=threshold)


def test_hub_label_ids_are_mapped_through_config():
    assert resolve_class_names({0: "LABEL_0", 1: "LABEL_1"}, {"LABEL_0": "ham", "LABEL_1": "spam"}, "m") == [
        "ham",
        "spam",
    ]
    assert resolve_class_names({0: "SPAM", 1: "HAM"}, {}, "m") == ["spam", "ham"]
    with pytest.raises(ModelLoadError, match="add `labels:"):
        resolve_class_names({0: "LABEL_0", 1: "LABEL_1"}, {}, "m")


# -- text ------------------------------------------------------------------------------------
def test_streamed_text_grows_as_prefixes(registry, names):
    generator = registry.get("text", names["text"])
    updates = list(generator.stream("Once upon a time", generator.default_params(max_new_tokens=30, seed=1)))
    texts = [u["text"] for u in updates]
    assert len(texts) >= 3
    assert all(b.startswith(a) and len(b) >= len(a) for a, b in itertools.pairwise(texts))
    assert updates[-1]["done"] and 0 < updates[-1]["new_tokens"] <= 30
    assert updates[-1]["seed"] == 1


def test_same_seed_same_text_and_random_seed_is_reported(registry, names):
    generator = registry.get("text", names["text"])
    params = generator.default_params(max_new_tokens=20, seed=1234)
    assert generator.generate("Hello", params)["text"] == generator.generate("Hello", params)["text"]
    result = generator.generate("Hello", generator.default_params(max_new_tokens=5, seed=-1))
    replay = generator.generate("Hello", generator.default_params(max_new_tokens=5, seed=result["seed"]))
    assert result["seed"] >= 0 and replay["text"] == result["text"]


def test_greedy_is_deterministic(registry, names):
    generator = registry.get("text", names["text"])
    a = generator.generate("The cat", generator.default_params(max_new_tokens=10, do_sample=False, seed=1))
    b = generator.generate("The cat", generator.default_params(max_new_tokens=10, do_sample=False, seed=2))
    assert a["text"] == b["text"]


def test_stop_flag_ends_generation_early(registry, names):
    generator = registry.get("text", names["text"])
    stop = threading.Event()
    stream = generator.stream("Once", generator.default_params(max_new_tokens=200, seed=3), stop=stop)
    next(stream)
    stop.set()
    final = list(stream)[-1]
    assert final["stopped"] and final["new_tokens"] < 200


@pytest.mark.parametrize(
    "field,value",
    [
        ("max_new_tokens", 0),
        ("max_new_tokens", 10_000),
        ("temperature", 0),
        ("temperature", float("nan")),
        ("top_p", 1.5),
        ("top_k", -1),
        ("repetition_penalty", 0.5),
        ("seed", -2),
    ],
)
def test_bad_text_params_name_the_field(registry, names, field, value):
    generator = registry.get("text", names["text"])
    with pytest.raises(InputError, match=f"^{field}: must be"):
        generator.generate("Hi", generator.default_params(**{field: value}))


def test_too_long_prompt_gets_a_clear_message(registry, names):
    generator = registry.get("text", names["text"])
    with pytest.raises(InputError, match=r"prompt: is \d+ tokens; .*context length of 256 tokens"):
        generator.generate("word " * 400)


# -- image -----------------------------------------------------------------------------------
def test_image_has_requested_size_and_seeds(registry, names):
    generator = registry.get("image", names["image"])
    steps = []
    results = generator(
        "a cat",
        generator.default_params(width=64, height=96, num_images=2, seed=10),
        on_step=lambda done, total: steps.append((done, total)),
    )["images"]
    assert [r["image"].size for r in results] == [(64, 96), (64, 96)]
    assert [r["seed"] for r in results] == [10, 11]
    assert steps == [(1, 2), (2, 2)]


def test_same_seed_same_pixels(registry, names):
    generator = registry.get("image", names["image"])
    params = generator.default_params(seed=5)
    a = generator("a dog", params)["images"][0]["image"].tobytes()
    b = generator("a dog", params)["images"][0]["image"].tobytes()
    c = generator("a dog", generator.default_params(seed=6))["images"][0]["image"].tobytes()
    assert a == b and a != c


@pytest.mark.parametrize(
    "field,value,expected",
    [
        ("width", 60, "multiple of 8"),
        ("height", 4096, r"\[32, 256\]"),
        ("steps", 0, r"\[1, 20\]"),
        ("guidance_scale", float("inf"), r"\[0, 20\]"),
        ("num_images", 99, r"\[1, 4\]"),
    ],
)
def test_bad_image_params_name_the_field(registry, names, field, value, expected):
    generator = registry.get("image", names["image"])
    with pytest.raises(InputError, match=f"^{field}: .*{expected}"):
        generator("a cat", generator.default_params(**{field: value}))


def test_empty_image_prompt_rejected(registry, names):
    generator = registry.get("image", names["image"])
    with pytest.raises(InputError, match="prompt: is empty"):
        generator("  ")
