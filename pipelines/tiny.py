"""Build tiny, randomly initialised models with the real classes, for offline tests and demos.

    python -m pipelines.tiny OUT_DIR

writes a BERT-style ham/spam classifier, a GPT-Neo causal LM with a GPT-2-style byte-level
BPE tokenizer, and a Stable Diffusion pipeline (tiny UNet, VAE, CLIP text encoder and
tokenizer), each with `save_pretrained`, plus OUT_DIR/models.yaml pointing at them:

    MODELS_CONFIG=OUT_DIR/models.yaml python app.py

No network is needed; tokenizers are trained here on a small built-in corpus. The outputs
are random (the weights are), but every code path of the app runs for real on them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import yaml

SEED = 0  # fixed so that two builds give the same models

# A small corpus to train the tokenizers on: enough words that prompts tokenize into words,
# not single bytes, and that a spam/ham message looks like text to the classifier.
CORPUS = [
    "Congratulations! You have won a free prize. Call now to claim your cash reward.",
    "URGENT: your account has been selected for a bonus. Text WIN to 80086 today.",
    "Free entry in a weekly competition to win tickets. Reply STOP to opt out.",
    "Hey, are we still meeting for lunch tomorrow at the cafe near the station?",
    "I'll be home late tonight, can you pick up some milk and bread on the way?",
    "Thanks for the lovely dinner yesterday, see you at the weekend.",
    "Once upon a time there was a little robot who wanted to paint the sky.",
    "The quick brown fox jumps over the lazy dog while the cat sleeps in the sun.",
    "A photo of an astronaut riding a horse on the moon, digital art, highly detailed.",
    "A watercolor painting of a lighthouse at sunset with waves and seagulls.",
    "Machine learning models learn patterns from data to classify and generate.",
    "In a distant future, cities float above the clouds and people travel by light.",
]


def _training_text() -> list[str]:
    return CORPUS * 4


def build_wordpiece_tokenizer(max_length: int):
    """A BERT-style uncased WordPiece tokenizer, with [CLS] text [SEP] templates."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(_training_text(), trainers.WordPieceTrainer(vocab_size=400, special_tokens=specials))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_length,
    )


def build_byte_level_bpe_tokenizer(max_length: int):
    """A GPT-2-style byte-level BPE tokenizer with <|endoftext|> as BOS/EOS."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_training_text(), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        model_max_length=max_length,
    )


def build_clip_tokenizer():
    """A CLIP tokenizer (lower-cased BPE with </w> word ends), from vocab and merges trained here."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    specials = ["<|startoftext|>", "<|endoftext|>"]
    tok = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(
        _training_text(), trainers.BpeTrainer(vocab_size=500, special_tokens=specials, end_of_word_suffix="</w>")
    )
    vocab = tok.get_vocab()
    import json

    merges = [
        tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in json.loads(tok.to_str())["model"]["merges"]
    ]
    return CLIPTokenizer(vocab=vocab, merges=merges, pad_token="<|endoftext|>", model_max_length=77)


def build_classifier(out: Path) -> Path:
    from transformers import BertConfig, BertForSequenceClassification

    path = out / "tiny-bert-spam"
    tokenizer = build_wordpiece_tokenizer(max_length=128)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=128,
        num_labels=2,
        id2label={0: "ham", 1: "spam"},
        label2id={"ham": 0, "spam": 1},
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(SEED)
    BertForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_text_model(
    out: Path, context: int = 256, window_size: int = 64, name: str = "tiny-gpt-neo", initializer_range: float = 0.02
) -> Path:
    """A 2-layer GPT-Neo (one global, one local attention layer). The OpenVINO engine's tests use
    GPT-Neo 1.3B's real window of 256 with a longer context, to generate past the window, and
    larger random weights (initializer_range 0.2), whose greedy text does not settle into a loop
    of a few tokens as the default's does."""
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    path = out / name
    tokenizer = build_byte_level_bpe_tokenizer(max_length=context)
    config = GPTNeoConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=context,
        hidden_size=32,
        num_layers=2,
        num_heads=2,
        intermediate_size=64,
        attention_types=[[["global", "local"], 1]],
        window_size=window_size,
        initializer_range=initializer_range,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(SEED)
    GPTNeoForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_image_pipeline(out: Path) -> Path:
    """The same tiny components diffusers' own Stable Diffusion tests use."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    path = out / "tiny-sd"
    torch.manual_seed(SEED)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=2,
    )
    vae = AutoencoderKL(
        block_out_channels=[4, 8],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        norm_num_groups=2,
    )
    tokenizer = build_clip_tokenizer()
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            hidden_size=32,
            intermediate_size=37,
            layer_norm_eps=1e-05,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=len(tokenizer),
            max_position_embeddings=tokenizer.model_max_length,
        )
    )
    # sd-turbo's scheduler: Euler with trailing timesteps, so 1-4 steps give an image
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="trailing"
    )
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(path)
    return path


def tiny_config(paths: dict[str, Path]) -> dict:
    """models.yaml for the tiny models, with small sizes so every request takes well under a second."""
    return {
        "settings": {"memory_budget_mb": 2000, "idle_unload_minutes": 30, "trained_models_dir": "trained-models"},
        "classification": [
            {
                "name": "Tiny BERT spam (random weights)",
                "source": str(paths["classification"]),
                "description": "Random weights: verdicts are meaningless, the plumbing is real.",
            },
        ],
        "text": [
            {
                "name": "Tiny GPT-Neo (random weights)",
                "source": str(paths["text"]),
                "description": "Random weights: the text is gibberish, streaming and controls are real.",
                "defaults": {"max_new_tokens": 24},
                "limits": {"max_new_tokens": 200},
            },
        ],
        "image": [
            {
                "name": "Tiny Stable Diffusion (random weights)",
                "source": str(paths["image"]),
                "description": "Random weights: images are noise, steps, seeds and sizes are real.",
                "defaults": {"steps": 2, "guidance_scale": 0.0, "width": 64, "height": 64, "preview_every": 1},
                "limits": {"min_steps": 1, "max_steps": 20, "min_size": 32, "max_size": 256, "max_images": 4},
                "schedulers": ["Euler (trailing)", "Euler a (trailing)", "DPM++ 2M Karras", "DDIM"],
            },
        ],
        # the Train tab fine-tunes the tiny BERT (its head is replaced), with validation curves
        "training": {
            "base_models": [
                {
                    "name": "Tiny BERT (random weights)",
                    "source": str(paths["classification"]),
                    "description": "Random weights: trains in seconds; what it learns is real.",
                }
            ],
            "defaults": {"validation_fraction": 0.15},
        },
    }


def build_all(out: str | Path) -> Path:
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "classification": build_classifier(out),
        "text": build_text_model(out),
        "image": build_image_pipeline(out),
    }
    config_path = out / "models.yaml"
    config_path.write_text(yaml.safe_dump(tiny_config(paths), sort_keys=False), encoding="utf-8")
    return config_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.tiny", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="directory to write the tiny models and models.yaml into")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    config_path = build_all(args.out_dir)
    print(f"wrote tiny models in {time.perf_counter() - started:.1f} s; try them with:")
    print(f"  MODELS_CONFIG={config_path} python app.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
