"""Fine-tune a Hugging Face encoder for ham/spam classification, blended with TF-IDF.

    python -m pipelines.train_classifier --data train.tsv --base-model BASE --output DIR

BASE is a Hub id or a local model directory (BERT, DistilBERT, MiniLM, RoBERTa, ...). The recipe,
chosen by cross-validation (`python -m benchmarks.spam --cv`, figures in benchmarks/README.md):

1. fit a TF-IDF (word and character n-grams) + logistic-regression scorer on every message of the file;
2. fine-tune BASE with a fresh 2-class head on the same messages for EPOCHS epochs;
3. score a message by TRANSFORMER_WEIGHT x the transformer's P(spam) + the rest x TF-IDF's, and
   call it spam at THRESHOLD.

DIR gets what the app serves as a local `source`: the transformer (`from_pretrained(DIR)` loads
it, id2label {0: "ham", 1: "spam"}), its tokenizer, `tfidf.json`, `ml_studio.json` (the blend
weight and the threshold, which the app applies by default) and `metrics.json` (the recipe's
cross-validated estimate, clearly labelled as such; with --validation-fraction, also the scores
on a held-out split, by unique text, which then also stops training early). The TF-IDF half is
fitted first so that every epoch is scored as the blend it would be saved as: the per-epoch
validation metrics, the best epoch and the final metrics all measure the same model. Everything
is seeded.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from pipelines.classification.data import MIN_MESSAGES_PER_CLASS
from pipelines.core.errors import InputError
from pipelines.core.params import Range, check_params, field_types, param, param_infos

# Written next to a model trained here: its decision threshold and, for a blended model, the
# TF-IDF half and its weight (read back by config.serving_info and pipeline.py).
SERVING_FILE = "ml_studio.json"

# Defaults, chosen for SMS-length text on a 2-core CPU by `python -m benchmarks.spam --cv`:
MAX_LENGTH = 128  # tokens per message; 99.8% of the SMS collection is shorter (MiniLM tokenizer)
EPOCHS = 3  # passes over the data
BATCH_SIZE = 32  # messages per optimisation step
LEARNING_RATE = 1e-4  # small encoders (MiniLM, 6 layers x 384) fine-tune best around 1e-4
WARMUP_RATIO = 0.1  # share of the steps spent ramping the learning rate up from 0
WEIGHT_DECAY = 0.01  # AdamW decoupled weight decay: mild regularisation
TRANSFORMER_WEIGHT = 0.3  # share of the transformer in the blended P(spam); 1 = no TF-IDF
THRESHOLD = 0.5  # blended P(spam) at or above which a message is spam
VALIDATION_FRACTION = 0.0  # share of the unique texts held out for metrics and early stopping (0: train on all)
PATIENCE = 2  # with a validation split: epochs without a better validation spam F1 before stopping
SEED = 42  # one seed for the split, the head initialisation and the batch order
# Stop training past this wall time, keeping the model so far: leaves room under a 20-minute
# budget for loading, the TF-IDF half and saving on a busy shared CPU.
TIME_LIMIT_MINUTES = 15.0
# What `python -m benchmarks.spam --estimate` wrote of this recipe's cross-validated spam F1 (its
# saved `--cv 5 --fold-seed 7` and `11` runs; benchmarks/README.md has every row): metrics.json
# quotes it, labelled, as `cross_validated_estimate`.
RECIPE_ESTIMATE_FILE = Path(__file__).with_name("recipe_estimate.json")

ID2LABEL = {0: "ham", 1: "spam"}
LOG_POINTS_PER_EPOCH = 20  # training-loss points logged per epoch (the Train tab's curve)
# Measured on the validation split after each epoch: the saved model's scores (the blend at the
# threshold; spam_f1 picks the best epoch) and, for a blend, the transformer half's alone.
EPOCH_METRICS = ("accuracy", "spam_precision", "spam_recall", "spam_f1", "transformer_accuracy", "transformer_spam_f1")


@dataclass(frozen=True)
class Recipe:
    """The hyper-parameters of one training run (the notebook's and the benchmark's), each declared
    once with its range and a plain-words explanation: the CLI's flags, the Train tab's controls,
    the /train_classifier API's parameters and the `training: defaults:` schema of models.yaml
    are all made from these declarations (and TrainParams' below), with the constants above as
    defaults."""

    epochs: float = param(
        EPOCHS,
        "Epochs",
        "One epoch = one pass over every training message. More epochs learn more, but too many memorise "
        "the training messages: validation loss then rises while training loss keeps falling.",
        range=Range(0.0, 100.0, low_open=True, step=0.5),
    )
    learning_rate: float = param(
        LEARNING_RATE,
        "Learning rate",
        "How big each weight update is. Too high and the loss jumps around or the model forgets what it "
        "knew; too low and it barely learns. Small encoders fine-tune well around 1e-4 to 5e-5.",
        range=Range(0.0, 0.1, low_open=True),
        widget="number",
    )
    batch_size: int = param(
        BATCH_SIZE,
        "Batch size",
        "Messages looked at together for one weight update (one step). Larger batches: smoother, fewer "
        "updates per epoch, more memory.",
        range=Range(1, 512, integer=True),
    )
    max_length: int = param(
        MAX_LENGTH,
        "Max length (tokens)",
        "Messages are cut to this many tokens (word pieces). Longer reads more of long messages but trains "
        "slower; almost every SMS fits in 128.",
        range=Range(8, 512, integer=True, step=8),
    )
    weight_decay: float = param(
        WEIGHT_DECAY,
        "Weight decay",
        "Pulls every weight slightly towards zero at each step: a mild brake against memorising the training messages.",
        range=Range(0.0, 1.0, step=0.01),
    )
    transformer_weight: float = param(
        TRANSFORMER_WEIGHT,
        "Transformer share",
        "How much the fine-tuned transformer counts in the final spam score; the rest comes from a fast "
        "word-and-letter-count model (TF-IDF) trained on the same messages. 1 = the transformer alone.",
        range=Range(0.0, 1.0, step=0.05),
    )
    threshold: float = param(
        THRESHOLD,
        "Spam threshold",
        "A message is spam when its final spam score is at least this; saved with the model as its default.",
        range=Range(0.0, 1.0, step=0.01),
    )
    seed: int = param(
        SEED,
        "Seed",
        "Fixes every random choice (the split, the new head, the batch order): the same seed, data and "
        "settings train the same model again.",
        range=Range(0, 2**32 - 1, integer=True),
        widget="number",
    )


@dataclass(frozen=True)
class TrainParams(Recipe):
    """A whole training run's parameters: the recipe, and how it is validated and bounded."""

    validation_fraction: float = param(
        VALIDATION_FRACTION,
        "Validation share",
        "Share of the distinct messages kept aside, never trained on, to measure how the model does on "
        "messages it has not seen (the validation curves and metrics). 0 trains on everything.",
        range=Range(0.0, 0.5, step=0.05),
    )
    patience: int = param(
        PATIENCE,
        "Early-stopping patience",
        "With a validation share: stop after this many epochs without a better validation spam F1, and "
        "keep the best epoch.",
        range=Range(1, 20, integer=True),
    )
    time_limit_minutes: float = param(
        TIME_LIMIT_MINUTES,
        "Time limit (minutes)",
        "Training stops after this long and keeps the best epoch so far.",
        range=Range(0.0, 24 * 60.0, low_open=True, step=0.5),
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: the files, and one flag per TrainParams field (its default, its help, its checks)."""
    p = argparse.ArgumentParser(prog="python -m pipelines.train_classifier", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="CSV, TSV or TXT file with a label and a text column")
    p.add_argument("--base-model", required=True, help="Hub id or local directory of the encoder to fine-tune")
    p.add_argument("--output", required=True, help="directory to write the model, tokenizer and metrics.json")
    p.add_argument("--text-column", default=None, help="column with the message text (default: text/message/sms...)")
    p.add_argument("--label-column", default=None, help="column with ham/spam or 0/1 (default: label/class/...)")
    types = field_types(TrainParams)
    for f in fields(TrainParams):
        info = param_infos(TrainParams)[f.name]
        p.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=types[f.name],
            default=f.default,
            help=f"{info.info} In {info.range.describe()} (default {f.default:g})",
        )
    p.add_argument(
        "--min-messages-per-class",
        type=int,
        default=MIN_MESSAGES_PER_CLASS,
        help=f"refuse a file with fewer distinct ham or spam messages than this (default {MIN_MESSAGES_PER_CLASS})",
    )
    p.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is available")
    args = p.parse_args(argv)
    try:
        vars(args).update(asdict(check_params(params_of(args))))
    except InputError as err:
        p.error(f"--{err.field.replace('_', '-')}{str(err).removeprefix(err.field)}")
    return args


def params_of(args: argparse.Namespace) -> TrainParams:
    return TrainParams(**{f.name: getattr(args, f.name) for f in fields(TrainParams)})


def recipe_of(args: argparse.Namespace) -> Recipe:
    return Recipe(**{field: getattr(args, field) for field in Recipe.__dataclass_fields__})


def tokenize(tokenizer, texts: list[str], labels: list[int], max_length: int) -> list[dict]:
    """One dict per message, unpadded: the collator pads each batch to its own longest message."""
    encoded = tokenizer(texts, truncation=True, max_length=max_length)
    return [
        {"input_ids": ids, "attention_mask": mask, "labels": label}
        for ids, mask, label in zip(encoded["input_ids"], encoded["attention_mask"], labels)
    ]


def verdicts(transformer: list[float], tfidf: list[float] | None, recipe: Recipe) -> list[int]:
    """1 (spam) or 0 per message, as the saved model decides: the blend at the threshold."""
    return [int(p >= recipe.threshold) for p in blend(transformer, tfidf, recipe.transformer_weight)]


def epoch_metrics(labels: list[int], transformer: list[float], tfidf: list[float] | None, recipe: Recipe) -> dict:
    """EPOCH_METRICS of the model as it would be saved now, from its halves' P(spam) per message."""
    from pipelines.classification.data import classification_metrics

    saved = classification_metrics(labels, verdicts(transformer, tfidf, recipe))
    metrics = {k: saved[k] for k in ("accuracy", "spam_precision", "spam_recall", "spam_f1")}
    if tfidf is not None and recipe.transformer_weight < 1.0:
        alone = classification_metrics(labels, verdicts(transformer, None, recipe))
        metrics |= {"transformer_accuracy": alone["accuracy"], "transformer_spam_f1": alone["spam_f1"]}
    return metrics


def _metrics_in_order(labels: list[int], tfidf: list[float] | None, recipe: Recipe) -> Callable:
    """Trainer's compute_metrics for a validation split evaluated in its given order (`_trainer_class`):
    the transformer's logits of message i are blended with `tfidf[i]`."""
    import numpy as np

    def compute_metrics(eval_prediction) -> dict:
        if eval_prediction.label_ids.tolist() != labels:  # Trainer changed its evaluation order: refuse to pair wrongly
            raise RuntimeError("the validation messages were evaluated out of order: cannot blend their scores")
        logits = np.asarray(eval_prediction.predictions, dtype=np.float64)
        transformer = (1.0 / (1.0 + np.exp(logits[:, 0] - logits[:, 1]))).tolist()  # softmax's P(spam)
        return epoch_metrics(labels, transformer, tfidf, recipe)

    return compute_metrics


def _trainer_class():
    """Trainer, evaluating in the validation set's own order: with group_by_length it would shuffle
    it (in length groups), and the per-epoch metrics pair each message's scores by position."""
    from torch.utils.data import SequentialSampler
    from transformers import Trainer

    class InOrderEvaluation(Trainer):
        def _get_eval_sampler(self, eval_dataset):
            return SequentialSampler(eval_dataset)

    return InOrderEvaluation


def _emitter(on_event: Callable[[dict], None] | None) -> Callable[..., None]:
    """emit(**event): hands the event to `on_event` as a dict; does nothing without a listener."""
    return (lambda **event: on_event(event)) if on_event is not None else (lambda **event: None)


def _callbacks(
    limit_s: float,
    started: float,
    on_epoch: Callable | None,
    stop: threading.Event | None,
    on_event: Callable[[dict], None] | None,
):
    from transformers import TrainerCallback

    from pipelines.core import background

    emit = _emitter(on_event)

    class Control(TrainerCallback):
        """Ends training once the wall-time budget is spent or `stop` is set, keeping the best epoch
        so far; steps aside between steps while the app answers other requests; reports progress."""

        halted = False

        def on_train_begin(self, args, state, control, **kwargs):
            emit(event="training", max_steps=state.max_steps, epochs=args.num_train_epochs, device=str(args.device))

        def on_step_begin(self, args, state, control, **kwargs):
            background.step_aside()  # in the app: /classify and the other tabs go first (no-op elsewhere)

        def on_step_end(self, args, state, control, **kwargs):
            emit(event="step", step=state.global_step, max_steps=state.max_steps, epoch=round(state.epoch or 0, 4))
            timed_out = time.perf_counter() - started > limit_s
            if timed_out or (stop is not None and stop.is_set()):
                print(f"stopping after {time.perf_counter() - started:.0f} s", file=sys.stderr)
                control.should_training_stop = self.halted = True
                emit(
                    event="halted",
                    reason="time limit" if timed_out else "stop",
                    step=state.global_step,
                    epoch=round(state.epoch or 0, 4),
                )

        def on_epoch_end(self, args, state, control, model=None, **kwargs):
            if self.halted and abs((state.epoch or 0) - round(state.epoch or 0)) > 1e-9:
                # Stopped mid-epoch: no evaluation or checkpoint of the partial epoch, so that the best
                # complete epoch is what training ends with (and stopping takes seconds, not an evaluation).
                control.should_evaluate = control.should_save = False
            if on_epoch is not None:
                on_epoch(round(state.epoch or 0, 2), model)

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            where = dict(step=state.global_step, epoch=round(logs.get("epoch", state.epoch or 0), 4))
            if "loss" in logs:
                emit(event="train_loss", loss=logs["loss"], learning_rate=logs.get("learning_rate"), **where)
            if "eval_loss" in logs:
                emit(
                    event="validation",
                    loss=logs["eval_loss"],
                    **where,
                    **{k: logs[f"eval_{k}"] for k in EPOCH_METRICS if f"eval_{k}" in logs},
                )

    return [Control()]


def _step_aside_within_steps(model) -> list:
    """Hooks that step aside (see on_step_begin) before each linear layer of the forward pass and
    of the backward pass too: a request arriving mid-step then shares the CPU with one matrix
    product of the training, not with the rest of its step (a MiniLM step takes over half a second
    on 2 cores: `python -m benchmarks.train_sharing` reports steps per second). Without other
    requests it costs a lock check per layer. Returns the hooks' handles."""
    import torch

    from pipelines.core import background

    def before_backward(grad):
        background.step_aside()

    def before(module, args):
        background.step_aside()

    def after(module, args, output):
        if isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(before_backward)

    handles = []
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
    return handles


def fine_tune(
    base_model: str,
    texts: list[str],
    labels: list[int],
    recipe: Recipe,
    *,
    eval_texts: list[str] | None = None,
    eval_labels: list[int] | None = None,
    eval_tfidf: list[float] | None = None,
    patience: int = PATIENCE,
    on_epoch: Callable | None = None,
    stop: threading.Event | None = None,
    time_limit_s: float = TIME_LIMIT_MINUTES * 60,
    on_event: Callable[[dict], None] | None = None,
    cpu: bool = False,
):
    """The transformer half: `base_model` with a fresh 2-class head, trained on `texts` (on a GPU
    when there is one, unless `cpu`). With an evaluation split, each epoch is scored as the model
    would be saved (blended with `eval_tfidf`, the TF-IDF half's P(spam) of `eval_texts`, if given;
    EPOCH_METRICS); training stops early when its spam F1 stops improving and keeps the best epoch.
    `on_epoch(epoch, model)` is called after each epoch; `on_event(dict)` with progress (steps,
    training loss, validation metrics). Returns (model, tokenizer, trainer)."""
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        EarlyStoppingCallback,
        TrainingArguments,
        set_seed,
    )

    started = time.perf_counter()
    set_seed(recipe.seed)
    if on_event is not None:
        on_event({"event": "loading", "base_model": str(base_model)})
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    model = AutoModelForSequenceClassification.from_pretrained(
        base_model,
        num_labels=2,
        id2label=ID2LABEL,
        label2id={v: k for k, v in ID2LABEL.items()},
        ignore_mismatched_sizes=True,  # a base that already has a classification head gets a new one
    )
    evaluating = eval_texts is not None
    if evaluating:  # shortest first: evaluated in this order (see _trainer_class), batches hold little padding
        eval_set = tokenize(tokenizer, eval_texts, eval_labels, recipe.max_length)
        order = sorted(range(len(eval_set)), key=lambda i: len(eval_set[i]["input_ids"]))
        eval_set = [eval_set[i] for i in order]
        compute_metrics = _metrics_in_order(
            [eval_labels[i] for i in order], [eval_tfidf[i] for i in order] if eval_tfidf else None, recipe
        )
    checkpoints = Path(tempfile.mkdtemp(prefix="spam-train-"))
    training_args = TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=recipe.epochs,
        per_device_train_batch_size=recipe.batch_size,
        per_device_eval_batch_size=64,
        learning_rate=recipe.learning_rate,
        weight_decay=recipe.weight_decay,
        warmup_steps=WARMUP_RATIO,
        lr_scheduler_type="linear",
        eval_strategy="epoch" if evaluating else "no",
        save_strategy="epoch" if evaluating else "no",
        save_only_model=True,
        save_total_limit=1,
        load_best_model_at_end=evaluating,
        metric_for_best_model="spam_f1" if evaluating else None,
        greater_is_better=True,
        train_sampling_strategy="group_by_length",  # batches of similar length: little padding, less compute
        # the training loss LOG_POINTS_PER_EPOCH times an epoch (a ratio of all steps): curves, not dots
        logging_strategy="steps",
        logging_steps=min(0.5, 1 / (LOG_POINTS_PER_EPOCH * recipe.epochs)),
        report_to="none",
        seed=recipe.seed,
        data_seed=recipe.seed,
        use_cpu=cpu or not torch.cuda.is_available(),
    )
    callbacks = _callbacks(time_limit_s, started, on_epoch, stop, on_event)
    if evaluating:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=patience))
    trainer = _trainer_class()(
        model=model,
        args=training_args,
        train_dataset=tokenize(tokenizer, texts, labels, recipe.max_length),
        eval_dataset=eval_set if evaluating else None,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics if evaluating else None,
        callbacks=callbacks,
    )
    hooks = _step_aside_within_steps(trainer.model)
    try:
        trainer.train()
    finally:
        for hook in hooks:
            hook.remove()
        shutil.rmtree(checkpoints, ignore_errors=True)
    return trainer.model.eval(), tokenizer, trainer


def transformer_spam_probabilities(
    model, tokenizer, texts: list[str], max_length: int, batch_size: int = 64
) -> list[float]:
    """P(spam) of each text by the transformer alone (in input order)."""
    import torch

    device = next(model.parameters()).device
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths per batch: little padding
    probabilities = [0.0] * len(texts)
    from pipelines.core import background

    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            background.step_aside()  # in the app: other requests first, and an abandoned training ends here
            chunk = order[start : start + batch_size]
            inputs = tokenizer(
                [texts[i] for i in chunk], truncation=True, max_length=max_length, padding=True, return_tensors="pt"
            )
            spam = model(**{k: v.to(device) for k, v in inputs.items()}).logits.float().softmax(dim=-1)[:, 1].tolist()
            for i, p in zip(chunk, spam):
                probabilities[i] = p
    return probabilities


def blend(transformer: list[float], tfidf: list[float] | None, transformer_weight: float) -> list[float]:
    if tfidf is None or transformer_weight >= 1.0:
        return list(transformer)
    return [transformer_weight * t + (1 - transformer_weight) * f for t, f in zip(transformer, tfidf)]


def _keep_going(started: float, limit_s: float, stop: threading.Event | None, emit) -> Callable[[], bool]:
    """Asked between the small pieces of work after the transformer (the TF-IDF search's fits, the
    validation batches): steps aside for other requests (raising background.Abandoned once the
    app's stream is closed) and says False once `stop` is set or the time limit has passed."""
    from pipelines.core import background

    said = []

    def keep_going() -> bool:
        background.step_aside()
        timed_out = time.perf_counter() - started > limit_s
        if (timed_out or (stop is not None and stop.is_set())) and not said:
            said.append(True)
            emit(event="halted", reason="time limit" if timed_out else "stop", step=None, epoch=None, stage="tfidf")
        return not said

    return keep_going


def train(
    args: argparse.Namespace,
    on_epoch: Callable | None = None,
    stop: threading.Event | None = None,
    on_event: Callable[[dict], None] | None = None,
) -> dict:
    """The whole recipe, as the CLI, the Train tab and /train_classifier run it; returns what
    metrics.json holds. `stop` ends training early, keeping the best epoch so far; `on_event`
    receives progress as dicts (`event`: data, tfidf, loading, training, step, train_loss,
    validation, halted, saving). The time limit counts from the start and holds for every stage:
    past it the TF-IDF search stops at its next fit and the transformer at its next step."""
    from pipelines.classification.data import (
        check_training_data,
        classification_metrics,
        read_messages,
        validation_split,
    )
    from pipelines.classification.tfidf import TfidfScorer
    from pipelines.core import background
    from pipelines.core.hub import public_source

    emit = _emitter(on_event)

    started = time.perf_counter()
    limit_s = args.time_limit_minutes * 60
    recipe = recipe_of(args)

    # 1. Read and check the data; hold out a validation split only when asked (by unique text:
    # copies of a message never straddle it).
    table = read_messages(args.data, text_column=args.text_column, label_column=args.label_column)
    check_training_data(table, getattr(args, "min_messages_per_class", MIN_MESSAGES_PER_CLASS))
    texts, labels = table.texts, table.labels
    train_ids, val_ids = validation_split(texts, labels, args.validation_fraction, args.seed)
    train_texts, train_labels = [texts[i] for i in train_ids], [labels[i] for i in train_ids]
    val_texts, val_labels = [texts[i] for i in val_ids], [labels[i] for i in val_ids]
    print(f"{len(texts)} messages: {len(train_ids)} to train on ({sum(train_labels)} spam), {len(val_ids)} held out")
    emit(
        event="data",
        messages=len(texts),
        train_messages=len(train_ids),
        train_spam=sum(train_labels),
        validation_messages=len(val_ids),
        validation_spam=sum(val_labels),
    )

    # 2. The TF-IDF half, then 3. the transformer half, on the same messages: each epoch is then
    # measured (and the best one picked) as the blend it would be saved as.
    tfidf = None
    if recipe.transformer_weight < 1.0:
        emit(event="tfidf")
        tfidf = TfidfScorer.fit(
            train_texts, train_labels, args.seed, keep_going=_keep_going(started, limit_s, stop, emit)
        )
    val_tfidf = tfidf.spam_probabilities(val_texts).tolist() if tfidf is not None and val_texts else None
    model, tokenizer, trainer = fine_tune(
        args.base_model,
        train_texts,
        train_labels,
        recipe,
        eval_texts=val_texts or None,
        eval_labels=val_labels or None,
        eval_tfidf=val_tfidf,
        patience=args.patience,
        on_epoch=on_epoch,
        stop=stop,
        time_limit_s=max(0.0, limit_s - (time.perf_counter() - started)),
        on_event=on_event,
        cpu=getattr(args, "cpu", False),
    )

    # 4. Save what the app serves, and the metrics.
    background.step_aside()  # a training nobody waits for any more ends here, before writing anything
    emit(event="saving")
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    tokenizer.model_max_length = recipe.max_length  # the app then reads as many tokens as training did
    tokenizer.save_pretrained(output)
    serving = {"threshold": recipe.threshold, "recipe": asdict(recipe)}
    if tfidf is not None:
        tfidf.save(output)
        serving["blend"] = {
            "transformer_weight": recipe.transformer_weight,
            "tfidf": "tfidf.json",
            "tfidf_params": tfidf.params,
        }
    (output / SERVING_FILE).write_text(json.dumps(serving, indent=2), encoding="utf-8")

    history = trainer.state.log_history
    metrics: dict = {
        "cross_validated_estimate": json.loads(RECIPE_ESTIMATE_FILE.read_text(encoding="utf-8")),
        "data": Path(args.data).name,
        "base_model": public_source(str(args.base_model)),
        "train_messages": len(train_ids),
        "recipe": asdict(recipe),
        "epochs_run": round(trainer.state.epoch or 0, 2),
        "best_epoch": round(trainer.state.epoch or 0, 2),  # without a validation split: the last
        "stopped_early": bool(stop is not None and stop.is_set()),
        "train_loss_history": [
            {"step": h["step"], "epoch": round(h["epoch"], 2), "loss": round(h["loss"], 4)}
            for h in history
            if "loss" in h
        ],
    }
    if val_ids:
        transformer = transformer_spam_probabilities(model, tokenizer, val_texts, recipe.max_length)
        metrics |= classification_metrics(val_labels, verdicts(transformer, val_tfidf, recipe))
        evaluated = [h for h in history if "eval_spam_f1" in h]
        kept = [h for h in evaluated if h["step"] == trainer.state.best_global_step]
        metrics |= {
            "split": "validation",
            "validation_messages": len(val_ids),
            "validation_fraction": args.validation_fraction,
            "seed": args.seed,
            # per epoch, the saved model's scores (and the transformer half's alone, for a blend)
            "eval_history": [
                {"epoch": round(h["epoch"], 2), "loss": round(h["eval_loss"], 4)}
                | {k: round(h[f"eval_{k}"], 4) for k in EPOCH_METRICS if f"eval_{k}" in h}
                for h in evaluated
            ],
        }
        if kept:  # the epoch whose weights load_best_model_at_end restored
            metrics["best_epoch"] = round(kept[0]["epoch"], 2)
    metrics["train_seconds"] = round(time.perf_counter() - started, 1)
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    return metrics


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        metrics = train(args)
    except InputError as err:
        print(f"error: {args.data}: {err}", file=sys.stderr)
        return 2
    shown = (
        "accuracy",
        "spam_precision",
        "spam_recall",
        "spam_f1",
        "confusion_matrix",
        "epochs_run",
        "best_epoch",
        "train_seconds",
    )
    print(json.dumps({k: metrics[k] for k in shown if k in metrics}))
    print(
        f"wrote {args.output}; serve it by adding to models.yaml under classification:\n"
        f"  - name: My spam model\n    source: {Path(args.output).resolve()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
