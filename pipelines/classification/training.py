"""Fine-tune a Hugging Face encoder for ham/spam classification.

    python -m pipelines.train_classifier --data train.tsv --base-model BASE --output DIR

BASE is a Hub id or a local model directory (BERT, DistilBERT, MiniLM, RoBERTa, ...). DIR gets
a model that `AutoModelForSequenceClassification.from_pretrained(DIR)` loads, with id2label
{0: "ham", 1: "spam"}, its tokenizer, and metrics.json (accuracy, spam precision/recall/F1 and
the confusion matrix on the validation split). Add DIR to models.yaml as a `source` to serve it.

The validation split is made by unique message text (`data.split_by_unique_text`), so
duplicates never straddle train and validation; training stops early when the validation
spam F1 stops improving and keeps the best epoch. Everything is seeded.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

# Defaults, chosen for SMS-length text on a 2-core CPU (the full SMS split trains in minutes):
MAX_LENGTH = 128  # tokens per message; 99.8% of the SMS collection is shorter (MiniLM tokenizer)
EPOCHS = 4  # upper bound; early stopping usually ends sooner (the SMS split peaks at 2-3 epochs)
PATIENCE = 2  # epochs without a better validation spam F1 before stopping
BATCH_SIZE = 32  # messages per optimisation step
LEARNING_RATE = 1e-4  # small encoders (MiniLM, 6 layers x 384) fine-tune best around 1e-4
WARMUP_RATIO = 0.1  # share of the steps spent ramping the learning rate up from 0
WEIGHT_DECAY = 0.01  # AdamW decoupled weight decay: mild regularisation
VALIDATION_FRACTION = 0.15  # share of the unique texts held out for early stopping and metrics
SEED = 42  # one seed for the split, the head initialisation and the batch order
# Stop training past this wall time, keeping the best epoch so far: leaves room under a
# 20-minute budget for loading, the final evaluation and saving on a busy shared CPU.
TIME_LIMIT_MINUTES = 15.0

ID2LABEL = {0: "ham", 1: "spam"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m pipelines.train_classifier", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="CSV, TSV or TXT file with a label and a text column")
    p.add_argument("--base-model", required=True, help="Hub id or local directory of the encoder to fine-tune")
    p.add_argument("--output", required=True, help="directory to write the model, tokenizer and metrics.json")
    p.add_argument("--text-column", default=None, help="column with the message text (default: text/message/sms...)")
    p.add_argument("--label-column", default=None, help="column with ham/spam or 0/1 (default: label/class/...)")
    p.add_argument("--max-length", type=int, default=MAX_LENGTH, help=f"tokens kept per message (default {MAX_LENGTH})")
    p.add_argument("--epochs", type=float, default=EPOCHS, help=f"maximum epochs (default {EPOCHS})")
    p.add_argument("--patience", type=int, default=PATIENCE, help=f"early-stopping patience in epochs (default {PATIENCE})")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE, help=f"(default {BATCH_SIZE})")
    p.add_argument("--learning-rate", type=float, default=LEARNING_RATE, help=f"(default {LEARNING_RATE})")
    p.add_argument("--weight-decay", type=float, default=WEIGHT_DECAY, help=f"(default {WEIGHT_DECAY})")
    p.add_argument("--validation-fraction", type=float, default=VALIDATION_FRACTION,
                   help=f"share of unique texts held out (default {VALIDATION_FRACTION})")
    p.add_argument("--seed", type=int, default=SEED, help=f"(default {SEED})")
    p.add_argument("--time-limit-minutes", type=float, default=TIME_LIMIT_MINUTES,
                   help=f"stop training past this wall time, keeping the best epoch (default {TIME_LIMIT_MINUTES})")
    args = p.parse_args(argv)
    if not 0.0 < args.validation_fraction < 1.0:
        p.error("--validation-fraction must be between 0 and 1")
    return args


def tokenize(tokenizer, texts: list[str], labels: list[int], max_length: int) -> list[dict]:
    """One dict per message, unpadded: the collator pads each batch to its own longest message."""
    encoded = tokenizer(texts, truncation=True, max_length=max_length)
    return [
        {"input_ids": ids, "attention_mask": mask, "labels": label}
        for ids, mask, label in zip(encoded["input_ids"], encoded["attention_mask"], labels)
    ]


def compute_metrics(eval_prediction) -> dict:
    from pipelines.classification.data import classification_metrics

    predictions = eval_prediction.predictions.argmax(axis=-1).tolist()
    metrics = classification_metrics(eval_prediction.label_ids.tolist(), predictions)
    return {k: metrics[k] for k in ("accuracy", "spam_precision", "spam_recall", "spam_f1")}


def time_limit_callback(limit_s: float, started: float):
    from transformers import TrainerCallback

    class StopAfter(TrainerCallback):
        """Ends training once the wall-time budget is spent; the best checkpoint is still loaded."""

        def on_step_end(self, args, state, control, **kwargs):
            if time.perf_counter() - started > limit_s:
                print(f"time limit of {limit_s / 60:.1f} min reached: stopping", file=sys.stderr)
                control.should_training_stop = True
                control.should_evaluate = True
                control.should_save = True

    return StopAfter()


def train(args: argparse.Namespace) -> dict:
    import torch
    from transformers import (
        AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, EarlyStoppingCallback,
        Trainer, TrainingArguments, set_seed,
    )

    from pipelines.classification.data import classification_metrics, read_messages, split_by_unique_text

    started = time.perf_counter()
    set_seed(args.seed)

    # 1. Read the data and split it by unique text (copies of a message never straddle the split).
    table = read_messages(args.data, text_column=args.text_column, label_column=args.label_column)
    labels = table.labels
    if labels is None:
        raise SystemExit(f"error: {args.data} has no label column; name it with --label-column")
    texts = table.texts
    train_ids, val_ids = split_by_unique_text(texts, labels, args.validation_fraction, args.seed)
    print(f"{len(texts)} messages: {len(train_ids)} train, {len(val_ids)} validation "
          f"(spam {sum(labels[i] for i in train_ids)} / {sum(labels[i] for i in val_ids)})")

    # 2. Base model with a fresh 2-class head, and its tokenizer.
    tokenizer = AutoTokenizer.from_pretrained(args.base_model)
    model = AutoModelForSequenceClassification.from_pretrained(
        args.base_model, num_labels=2, id2label=ID2LABEL, label2id={v: k for k, v in ID2LABEL.items()},
        ignore_mismatched_sizes=True,  # a base that already has a classification head gets a new one
    )
    train_set = tokenize(tokenizer, [texts[i] for i in train_ids], [labels[i] for i in train_ids], args.max_length)
    val_set = tokenize(tokenizer, [texts[i] for i in val_ids], [labels[i] for i in val_ids], args.max_length)

    # 3. Train with early stopping on the validation spam F1, keeping the best epoch.
    checkpoints = Path(tempfile.mkdtemp(prefix="spam-train-"))
    training_args = TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        warmup_steps=WARMUP_RATIO,
        lr_scheduler_type="linear",
        eval_strategy="epoch",
        save_strategy="epoch",
        save_only_model=True,
        save_total_limit=1,
        load_best_model_at_end=True,
        metric_for_best_model="spam_f1",
        greater_is_better=True,
        train_sampling_strategy="group_by_length",  # batches of similar length: little padding, less compute
        logging_strategy="epoch",
        report_to="none",
        seed=args.seed,
        data_seed=args.seed,
        use_cpu=not torch.cuda.is_available(),
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_set,
        eval_dataset=val_set,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics,
        callbacks=[
            EarlyStoppingCallback(early_stopping_patience=args.patience),
            time_limit_callback(args.time_limit_minutes * 60, started),
        ],
    )
    try:
        trainer.train()
        # 4. Score the kept (best) model on the validation split and write everything. The
        # Trainer visits the split grouped by length, not in order: take its labels with its predictions.
        scored = trainer.predict(val_set)
    finally:
        shutil.rmtree(checkpoints, ignore_errors=True)
    metrics = classification_metrics(scored.label_ids.tolist(), scored.predictions.argmax(axis=-1).tolist())
    history = [
        {"epoch": round(h["epoch"], 2), "spam_f1": round(h["eval_spam_f1"], 4), "loss": round(h["eval_loss"], 4)}
        for h in trainer.state.log_history if "eval_spam_f1" in h
    ]
    metrics.update(
        split="validation",
        data=str(args.data),
        base_model=str(args.base_model),
        train_messages=len(train_ids),
        validation_messages=len(val_ids),
        validation_fraction=args.validation_fraction,
        seed=args.seed,
        epochs_run=round(trainer.state.epoch or 0, 2),
        best_checkpoint_metric=trainer.state.best_metric,
        eval_history=history,
        hyperparameters={k: getattr(args, k) for k in
                         ("max_length", "epochs", "patience", "batch_size", "learning_rate", "weight_decay")},
        train_seconds=round(time.perf_counter() - started, 1),
    )
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    trainer.model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    return metrics


def main(argv: list[str] | None = None) -> int:
    from pipelines.core.errors import InputError

    args = parse_args(argv)
    try:
        metrics = train(args)
    except InputError as err:
        print(f"error: {args.data}: {err}", file=sys.stderr)
        return 2
    print(json.dumps({k: metrics[k] for k in ("accuracy", "spam_precision", "spam_recall", "spam_f1",
                                              "confusion_matrix", "epochs_run", "train_seconds")}))
    print(f"wrote {args.output}; serve it by adding to models.yaml under classification:\n"
          f"  - name: My spam model\n    source: {Path(args.output).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
