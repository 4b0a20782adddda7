"""Training in the app (pipelines/classification/train_job.py, trained_models.py) on the tiny BERT:
the checks of files and hyper-parameters, Stop keeping the best epoch, failures leaving nothing
listed, models found again at start-up, and the one declaration the CLI, the tab and the API share."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import shutil
import threading
import time
from pathlib import Path

import pytest

from pipelines.classification import trained_models
from pipelines.classification.train_job import TrainingError, TrainingRunner, check_data
from pipelines.classification.training import TrainParams, parse_args
from pipelines.core import background
from pipelines.core.errors import InputError, ModelLoadError
from pipelines.core.params import from_defaults, param_infos
from pipelines.studio import load_config

SPAM = ["WIN a free prize now, call {}", "Free cash reward! Text WIN to {}", "URGENT: claim your bonus {} today"]
HAM = ["see you at lunch {}", "can you pick up some milk {}", "thanks for the lovely dinner {}"]
FAST = dict(transformer_weight=1.0, batch_size=8, learning_rate=5e-3)  # no TF-IDF half: seconds per training


def write_messages(path: Path, spam: int = 40, ham: int = 40, header: str = "label\ttext", seed: int = 0) -> Path:
    rng = random.Random(seed)
    rows = [f"spam\t{rng.choice(SPAM).format(i)}" for i in range(spam)] + [
        f"ham\t{rng.choice(HAM).format(i)}" for i in range(ham)
    ]
    rng.shuffle(rows)
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def fresh_config(tiny_config_path, folder: Path):
    """The tiny config read anew (its own lists of models), saving trained models in `folder`."""
    config = load_config(tiny_config_path)
    return config.model_copy(
        update={"settings": config.settings.model_copy(update={"trained_models_dir": str(folder)})}
    )


def params(config, **overrides) -> TrainParams:
    return from_defaults(TrainParams, config.training.defaults, **overrides)


def run_to_end(runner, file, p, stop=None, save_as=""):
    updates = list(runner.run(str(file), None, save_as, None, None, p, stop))
    return updates[-1], updates


@pytest.fixture
def config(tiny_config_path, tmp_path):
    return fresh_config(tiny_config_path, tmp_path / "trained")


@pytest.fixture
def data(tmp_path):
    return write_messages(tmp_path / "messages.tsv")


# -- files ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content,name,field,message",
    [
        (
            "label\ttext\n" + "".join(f"spam\tWIN now {i}\n" for i in range(20)),
            "one.tsv",
            "file",
            "every message is labelled 'spam'; training needs both ham and spam",
        ),
        (
            "label\ttext\n" + "".join(f"spam\tWIN now {i}\nham\thello {i % 4}\n" for i in range(20)),
            "few.tsv",
            "file",
            "has 4 distinct ham message(s); training needs at least 10 of each class",
        ),
        (
            "text\n" + "".join(f"message {i}\n" for i in range(30)),
            "nolabel.csv",
            "label_column",
            "the file has no label column",
        ),
        (
            "label,text\n" + "".join(f"{'maybe' if i == 3 else 'ham'},message {i}\n" for i in range(30)),
            "bad.csv",
            "label",
            "row 4: 'maybe' is not a label; use ham/spam or 0/1",
        ),
        (
            "label\ttext\n" + "".join(f"spam\tWIN {i}\nham\t{'' if i == 5 else f'hi {i}'}\n" for i in range(20)),
            "empty.tsv",
            "file",
            "row 12 has no text in column 'text'",
        ),
        ("label,text\nham,hi\n", "data.json", "file", "upload a .csv, .tsv, .txt file"),
    ],
)
def test_bad_files_are_refused_naming_what_is_wrong(config, tmp_path, content, name, field, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError) as err:
        check_data(config, str(path))
    assert err.value.field == field and message in str(err.value)


def test_the_row_limit_and_a_too_small_validation_share_are_refused(config, tmp_path, data):
    limited = config.model_copy(
        update={"settings": config.settings.model_copy(update={"classification_max_file_rows": 50})}
    )
    with pytest.raises(InputError, match="has 80 messages; the limit is 50 per file"):
        check_data(limited, str(data))
    with pytest.raises(InputError, match="validation_fraction: 0.01 of 80 distinct messages cannot hold both classes"):
        check_data(config, str(data), validation_fraction=0.01)


def test_the_preview_gives_counts_the_split_and_the_first_rows(config, data):
    checked = check_data(config, str(data), validation_fraction=0.25, seed=3)
    assert (checked["messages"], checked["ham"], checked["spam"]) == (80, 40, 40)
    assert checked["train_messages"] + checked["validation_messages"] == 80 and checked["validation_messages"] == 20
    assert checked["text_column"] == "text" and checked["label_column"] == "label"
    assert len(checked["preview"]) == 10 and checked["preview"][0]["label"] in ("ham", "spam")


# -- hyper-parameters ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(epochs=0), "epochs: must be a number in (0, 100], got 0"),
        (dict(learning_rate=1.0), "learning_rate: must be a number in (0, 0.1], got 1.0"),
        (dict(batch_size=2.5), "batch_size: must be an integer in [1, 512], got 2.5"),
        (dict(validation_fraction=0.9), "validation_fraction: must be a number in [0, 0.5], got 0.9"),
        (
            dict(time_limit_minutes=120),
            "time_limit_minutes: must be a number in (0, 60], got 120",
        ),  # models.yaml max_minutes
    ],
)
def test_hyperparameters_out_of_range_are_refused_before_any_work(config, data, overrides, message):
    with pytest.raises(InputError, match=re.escape(message)):
        next(TrainingRunner(config).run(str(data), None, "", None, None, params(config, **overrides)))
    assert not list(trained_models.folder_of(config).glob("*"))  # nothing written


def test_an_unknown_base_model_or_a_taken_name_is_refused(config, data):
    runner = TrainingRunner(config)
    with pytest.raises(InputError, match="base_model: unknown base model 'nope'; choose one of 'Tiny BERT"):
        next(runner.run(str(data), "nope", "", None, None, params(config)))
    with pytest.raises(InputError, match="save_as: there is already a classification model called 'Tiny BERT spam"):
        next(runner.run(str(data), None, config.default_name("classification"), None, None, params(config)))


def test_every_parameter_is_declared_once_for_the_cli_the_tab_and_the_api(capsys):
    infos = param_infos(TrainParams)
    assert set(infos) == {f.name for f in dataclasses.fields(TrainParams)}
    assert all(info.label and len(info.info) > 30 and info.range for info in infos.values())
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    help_text = capsys.readouterr().out
    for f in dataclasses.fields(TrainParams):
        assert f"--{f.name.replace('_', '-')}" in help_text
    args = parse_args(["--data", "d", "--base-model", "b", "--output", "o"])
    assert {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainParams)} == dataclasses.asdict(TrainParams())
    with pytest.raises(SystemExit):
        parse_args(["--data", "d", "--base-model", "b", "--output", "o", "--epochs", "0"])
    assert "--epochs: must be a number in (0, 100], got 0.0" in capsys.readouterr().err


def test_the_app_defaults_are_the_commands_but_for_models_yaml(tiny_config):
    section = tiny_config.training
    assert section.defaults.validation_fraction == 0.15  # the tab draws validation curves
    assert {k: v for k, v in section.defaults.model_dump().items() if k != "validation_fraction"} == {
        k: v for k, v in dataclasses.asdict(TrainParams()).items() if k != "validation_fraction"
    }


# -- a training -----------------------------------------------------------------------------------------
def test_a_training_streams_progress_then_publishes_a_served_model(config, data, registry):
    last, updates = run_to_end(TrainingRunner(config), data, params(config, epochs=2, **FAST), save_as="Mine")
    steps = [u["step"] for u in updates]
    assert steps == sorted(steps) and last["max_steps"] == steps[-1] == 2 * 9  # 68 messages / 8 per step, 2 epochs
    assert [v["epoch"] for v in last["validation"]] == [1.0, 2.0]
    assert len(last["train_loss"]) >= 10 and any(u["eta_s"] for u in updates if u["state"] == "training")
    assert sum("epoch " in line and "validation loss" in line for line in last["log"]) == 2  # a line per epoch
    assert last["done"] and last["model"] == "Mine" and not last["stopped"]
    assert last["metrics"]["validation_messages"] == 12 and last["metrics"]["best_epoch"] in (1.0, 2.0)
    [model] = trained_models.find(trained_models.folder_of(config))
    assert model.name == "Mine" and model.metrics == last["metrics"] and "Mine" in config.names("classification")
    snippet = trained_models.yaml_snippet(model)
    assert "source: ./Mine\n" in snippet and str(model.folder.parent) not in snippet  # no path of this server
    import zipfile

    with zipfile.ZipFile(trained_models.zip_model(model, model.folder.parent / "mine.zip")) as archive:
        assert f"{model.folder.name}/config.json" in archive.namelist()


def test_stop_ends_training_within_a_step_and_keeps_the_best_epoch_so_far(config, data):
    stop = threading.Event()
    updates = []
    for update in TrainingRunner(config).run(
        str(data), None, "", None, None, params(config, epochs=20, **FAST | {"batch_size": 1}), stop
    ):
        updates.append(update)
        if update["validation"] and not stop.is_set():
            stop.set()  # what the Stop button does, once the first epoch is measured
    last = updates[-1]
    assert last["done"] and last["stopped"] and last["model"]
    metrics = last["metrics"]
    assert (
        metrics["stopped_early"] and metrics["best_epoch"] == 1.0 and metrics["epochs_run"] < 1.5
    )  # soon after the Stop
    assert [v["epoch"] for v in last["validation"]] == [1.0]  # the partial second epoch was not evaluated
    assert any("keeping the best epoch so far" in line for line in last["log"])


def test_a_base_that_cannot_load_says_why_and_leaves_nothing(tiny_config_path, tmp_path, data):
    config = fresh_config(tiny_config_path, tmp_path / "trained")
    broken = tmp_path / "broken-base"
    broken.mkdir()
    section = config.training.model_copy(
        update={
            "base_models": [
                config.training.base_models[0].model_copy(update={"name": "Broken base", "source": str(broken)})
            ]
        }
    )
    config = config.model_copy(update={"training": section})
    with pytest.raises(
        ModelLoadError,
        match="Cannot load base model 'Broken base': the local folder 'broken-base' .* is missing or does not hold a complete model",
    ):
        run_to_end(TrainingRunner(config), data, params(config, **FAST))
    assert not list((tmp_path / "trained").iterdir())  # not even a hidden half-written folder
    assert len(config.names("classification")) == 1


def test_running_out_of_memory_is_explained_and_nothing_is_listed(config, data, monkeypatch):
    from pipelines.classification import train_job

    def train(args, stop=None, on_event=None):
        on_event({"event": "training", "max_steps": 10, "epochs": 1, "device": "cpu"})
        Path(args.output, "config.json").write_text("{}")  # half-written
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 123 bytes")

    monkeypatch.setattr(train_job, "train", train)
    with pytest.raises(TrainingError, match="Training ran out of memory .*try a smaller batch size"):
        run_to_end(TrainingRunner(config), data, params(config))
    assert not list(trained_models.folder_of(config).iterdir()) and len(config.names("classification")) == 1


def test_closing_the_stream_abandons_the_training_and_saves_nothing(config, data):
    updates = TrainingRunner(config).run(
        str(data), None, "gone", None, None, params(config, epochs=50, **FAST | {"batch_size": 1})
    )
    for update in updates:
        if update["step"] >= 5:
            break
    closed = time.monotonic()
    updates.close()  # what Gradio does when the API job is cancelled or the page closed
    assert time.monotonic() - closed < 5
    assert not any(t.name.startswith("train-") for t in threading.enumerate())  # the training thread is free
    assert not list(trained_models.folder_of(config).iterdir()) and "gone" not in config.names("classification")


def test_trained_models_are_found_again_at_start_up_and_leftovers_removed(tiny_config_path, tmp_path, data):
    folder = tmp_path / "trained"
    first = fresh_config(tiny_config_path, folder)
    run_to_end(TrainingRunner(first), data, params(first, epochs=1, **FAST), save_as="Kept")
    (folder / ".partial-crashed").mkdir()  # a training killed with the process
    (folder / "not-a-model").mkdir()

    from app import build_app

    restarted = fresh_config(tiny_config_path, folder)
    assert "Kept" not in restarted.names("classification")
    demo = build_app(restarted)
    assert restarted.names("classification")[-1] == "Kept"
    assert sorted(p.name for p in folder.iterdir()) == ["Kept", "not-a-model"]
    result = demo.registry.get("classification", "Kept")(["WIN a free prize"])[0]
    assert result["label"] in ("ham", "spam")
    assert json.loads((folder / "Kept" / trained_models.INFO_FILE).read_text())["name"] == "Kept"


# -- sharing the machine ----------------------------------------------------------------------------------
def test_a_job_that_steps_aside_waits_while_other_jobs_run():
    release, waited = threading.Event(), []

    def aside():
        for kind, value in background.stream(
            lambda emit: background.step_aside(max_wait_s=10), "aside", steps_aside=True
        ):
            if kind == "result":
                waited.append(value)

    other = threading.Thread(target=background.call, args=(lambda emit: release.wait(10), "other"))
    other.start()
    time.sleep(0.2)
    stepping_aside = threading.Thread(target=aside)
    stepping_aside.start()
    time.sleep(0.5)
    assert stepping_aside.is_alive()  # waiting for the other job to end
    release.set()
    stepping_aside.join(10)
    other.join(10)
    assert 0.4 < waited[0] < 5
    assert background.step_aside() < 0.1  # nothing else runs: no wait


def test_closing_the_stream_of_a_job_that_steps_aside_ends_it_at_its_next_step_aside():
    pieces = []

    def work(emit):
        while True:  # small pieces of work, stepping aside between them, as a training does layer by layer
            background.step_aside()
            pieces.append(1)
            emit(len(pieces))
            time.sleep(0.01)

    events = background.stream(work, "aside", stop=threading.Event(), steps_aside=True)
    next(events)
    closed = time.monotonic()
    events.close()  # sets `stop`, then waits for the job to end
    assert time.monotonic() - closed < 1
    done = len(pieces)
    time.sleep(0.1)
    assert len(pieces) == done  # it ended (background.Abandoned), it did not carry on


# -- models.yaml ----------------------------------------------------------------------------------------
MINIMAL = """
settings: {trained_models_dir: my-models}
classification: [{name: C, source: some/classifier}]
text: [{name: T, source: some/lm}]
image: [{name: I, source: some/diffusion}]
training:
  base_models: [{name: B, source: ./encoder}]
"""


@pytest.mark.parametrize(
    "extra,message",
    [
        ("  defaults: {epochs: 0}\n", "field 'training.defaults.epochs': Input should be greater than 0"),
        ("  base_modles: []\n", "field 'training.base_modles': Extra inputs are not permitted"),
        ("  max_minutes: 10\n", "field 'training.defaults': time_limit_minutes 15 is above max_minutes 10"),
    ],
)
def test_the_training_section_is_checked_at_start_up_naming_the_field(tmp_path, extra, message):
    from pipelines.core.errors import ConfigError

    path = tmp_path / "models.yaml"
    path.write_text(MINIMAL + extra)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path)


def test_relative_paths_of_the_training_section_are_the_config_files(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text(MINIMAL)
    config = load_config(path)
    assert config.training.base_models[0].source == str(tmp_path / "encoder")
    assert config.settings.trained_models_dir == str(tmp_path / "my-models")
    assert config.training.defaults.model_dump() == dataclasses.asdict(TrainParams())  # no defaults: the command's


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="thread priorities are Linux's")
def test_a_job_that_steps_aside_runs_at_the_lowest_priority_in_a_thread_of_its_own():
    def priority(emit):
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id()), threading.current_thread().name

    assert list(background.stream(priority, "train-x", steps_aside=True))[-1] == (
        "result",
        (background.STEP_ASIDE_NICE, "train-x"),
    )
    assert list(background.stream(priority, "other"))[-1][1][0] == 0  # the pool's threads keep their priority


# -- what a visitor may do to the others (issue 28) -------------------------------------------------------
@pytest.mark.parametrize(
    "save_as,message",
    [
        ("a\ud800", r"save_as: contains a lone surrogate \(U\+D800\); send valid Unicode text"),
        ("BERT\u200b spam", r"save_as: contains an invisible or control character \(U\+200B\)"),
        (
            "Tiny BERT spam (r\u0430ndom weights)",
            r"save_as: 'Tiny BERT spam \(r\u0430ndom weights\)' looks the same as the existing "
            r"classification model 'Tiny BERT spam \(random weights\)'",
        ),
        ("tiny  bert SPAM (random weights)", r"looks the same as the existing classification model 'Tiny BERT spam"),
        ("x" * 101, r"save_as: is 101 characters; the limit is 100"),
    ],
)
def test_model_names_are_refused_before_any_work_naming_why(config, data, save_as, message):
    with pytest.raises(InputError, match=message):
        next(TrainingRunner(config).run(str(data), None, save_as, None, None, params(config)))
    assert not trained_models.folder_of(config).exists() or not list(trained_models.folder_of(config).iterdir())


def test_names_are_normalised_and_markup_is_kept_as_text(config, data):
    last, _ = run_to_end(TrainingRunner(config), data, params(config, epochs=1, **FAST), save_as="Ｍｙ   <b>model</b>")
    assert last["model"] == "My <b>model</b>" and "My <b>model</b>" in config.names("classification")


def test_a_model_that_cannot_be_served_is_never_published(config, data, monkeypatch):
    def refuse(task, entry, owner=None):
        raise ValueError("refused")

    monkeypatch.setattr(type(config), "add_entry", lambda self, *a, **k: refuse(*a, **k))
    with pytest.raises(ValueError, match="refused"):
        run_to_end(TrainingRunner(config), data, params(config, epochs=1, **FAST), save_as="Never listed")
    assert not list(trained_models.folder_of(config).iterdir())  # nothing the next start-up would find


def test_start_up_skips_unreadable_trained_models_with_a_log_line(tiny_config_path, tmp_path, data, caplog):
    folder = tmp_path / "trained"
    first = fresh_config(tiny_config_path, folder)
    run_to_end(TrainingRunner(first), data, params(first, epochs=1, **FAST), save_as="Good")
    for broken, info in (
        ("surrogate", '{"name": "a\\ud800"}'),
        ("no-weights", '{"name": "No weights"}'),
        ("not-json", "{"),
    ):
        shutil.copytree(folder / "Good", folder / broken)
        (folder / broken / trained_models.INFO_FILE).write_text(info, encoding="utf-8")
    (folder / "no-weights" / "config.json").unlink()
    shutil.copytree(folder / "Good", folder / "bad-serving")
    (folder / "bad-serving" / trained_models.INFO_FILE).write_text('{"name": "Bad serving"}', encoding="utf-8")
    (folder / "bad-serving" / "ml_studio.json").write_text("{", encoding="utf-8")

    from app import build_app

    restarted = fresh_config(tiny_config_path, folder)
    with caplog.at_level("WARNING"):
        build_app(restarted)
    names = restarted.names("classification")
    assert "Good" in names and not {"Bad serving", "No weights"} & set(names) and not any("\ud800" in n for n in names)
    for skipped in ("surrogate", "not-json", "bad-serving", "no-weights"):
        assert any(
            skipped in record.getMessage() and "skipping trained model folder" in record.getMessage()
            for record in caplog.records
        ), skipped


def per_session_config(tiny_config_path, folder: Path, **settings):
    config = fresh_config(tiny_config_path, folder)
    return config.model_copy(
        update={"settings": config.settings.model_copy(update={"trained_models": "per_session", **settings})}
    )


def test_per_session_models_are_listed_to_their_owner_only_under_an_unguessable_name(tiny_config_path, tmp_path, data):
    config = per_session_config(tiny_config_path, tmp_path / "trained")
    alice, bob = trained_models.owner_of(config, "alice-session"), trained_models.owner_of(config, "bob-session")
    last, _ = run_to_end_as(config, data, alice, "Mine")
    name = last["model"]
    assert re.fullmatch(r"Mine #[a-z2-7]{8}", name)
    assert name in config.names("classification", alice) and name not in config.names("classification", bob)
    assert name not in config.names("classification")  # the listing everyone gets
    assert config.entry("classification", name).name == name  # its exact name reaches it (what /classify batches need)
    with pytest.raises(InputError, match=r"unknown classification model 'Mine'") as refused:
        config.entry("classification", "Mine", bob)
    assert name not in str(refused.value)
    assert [m.name for m in trained_models.visible(config, alice)] == [name] and not trained_models.visible(config, bob)
    info = json.loads((trained_models.visible(config, alice)[0].folder / trained_models.INFO_FILE).read_text())
    assert info["owner"] == alice and "alice-session" not in json.dumps(info)  # the session id itself is never stored
    metrics = trained_models.visible(config, alice)[0].metrics
    assert metrics["data"] == data.name  # no server path in what the owner downloads


def run_to_end_as(config, data, owner, save_as, **overrides):
    updates = list(
        TrainingRunner(config).run(
            str(data), None, save_as, None, None, params(config, epochs=1, **FAST | overrides), owner=owner
        )
    )
    return updates[-1], updates


def test_per_session_caps_remove_the_oldest_models_and_a_restart_removes_them_all(tiny_config_path, tmp_path, data):
    folder = tmp_path / "trained"
    config = per_session_config(tiny_config_path, folder, trained_models_per_session=2, trained_models_max=3)
    alice, bob = (trained_models.owner_of(config, s) for s in ("alice", "bob"))
    first = run_to_end_as(config, data, alice, "one")[0]["model"]
    run_to_end_as(config, data, alice, "two")
    last, _updates = run_to_end_as(config, data, alice, "three")
    assert first not in config.names("classification", alice) and len(trained_models.visible(config, alice)) == 2
    assert any("removed your oldest model" in line for line in last["log"])
    run_to_end_as(config, data, bob, "bob's")
    run_to_end_as(config, data, bob, "bob's second")  # 5 > trained_models_max: the oldest of anyone goes
    assert len(trained_models.find(folder)) == 3 and len(trained_models.visible(config, alice)) == 1

    from app import build_app

    restarted = per_session_config(tiny_config_path, folder)
    build_app(restarted)
    assert not trained_models.find(folder) and restarted.names("classification") == config.names("classification")


def test_shared_models_over_the_total_cap_refuse_a_new_training(tiny_config_path, tmp_path, data):
    config = fresh_config(tiny_config_path, tmp_path / "trained")
    config = config.model_copy(update={"settings": config.settings.model_copy(update={"trained_models_max": 1})})
    run_to_end(TrainingRunner(config), data, params(config, epochs=1, **FAST), save_as="only")
    with pytest.raises(InputError, match=r"save_as: the app already keeps the most trained models it may: 1 models"):
        next(TrainingRunner(config).run(str(data), None, "another", None, None, params(config, epochs=1, **FAST)))


# -- every stage within the time limit, Stop and cancel (issue 28) -------------------------------------
def test_the_tfidf_search_one_fit_at_a_time_chooses_what_grid_search_chooses():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold

    from pipelines.classification import tfidf
    from pipelines.classification.data import normalise

    rng = random.Random(3)
    texts = [rng.choice(SPAM + HAM).format(i) + rng.choice(["", " now", " later", " pls"]) for i in range(120)]
    labels = [int(any(t.startswith(s.split("{")[0]) for s in SPAM)) for t in texts]
    scorer = tfidf.TfidfScorer.fit(texts, labels, seed=5)
    features = tfidf._features().fit(texts)
    search = GridSearchCV(
        LogisticRegression(max_iter=2000),
        {"C": tfidf.C_GRID, "class_weight": tfidf.CLASS_WEIGHTS},
        scoring="f1",
        cv=StratifiedGroupKFold(n_splits=tfidf.CV_FOLDS, shuffle=True, random_state=5),
    )
    search.fit(features.transform(texts), labels, groups=[normalise(t) for t in texts])
    assert (scorer.params["C"], scorer.params["class_weight"]) == (
        search.best_params_["C"],
        search.best_params_["class_weight"],
    )
    assert scorer.params["cv_spam_f1"] == round(search.best_score_, 4) and scorer.params["settings_searched"] == 10


def test_a_search_told_to_stop_keeps_the_best_setting_so_far():
    from pipelines.classification import tfidf

    texts = [t.format(i) for i in range(30) for t in (SPAM[0], HAM[0])]
    labels = [1, 0] * 30
    asked = []
    scorer = tfidf.TfidfScorer.fit(texts, labels, keep_going=lambda: asked.append(1) or len(asked) <= 7)
    assert (
        scorer.params["settings_searched"] == 1 and scorer.params["C"] == tfidf.C_GRID[0]
    )  # 5 fits, then 2 of the next
    stopped_at_once = tfidf.TfidfScorer.fit(texts, labels, keep_going=lambda: False)
    assert stopped_at_once.params["settings_searched"] == 0 and stopped_at_once.params["cv_spam_f1"] is None
    assert (stopped_at_once.params["C"], stopped_at_once.params["class_weight"]) == tuple(tfidf.FALLBACK.values())
    assert stopped_at_once.spam_probabilities(["WIN a free prize now, call 99"]).shape == (1,)


def slow_fits(monkeypatch, seconds: float = 0.2):
    """Every logistic-regression fit of the TF-IDF search takes `seconds` more: a long search."""
    from sklearn.linear_model import LogisticRegression

    fit = LogisticRegression.fit

    def slow_fit(self, *args, **kwargs):
        time.sleep(seconds)
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(LogisticRegression, "fit", slow_fit)


def test_the_time_limit_holds_over_the_tfidf_search(config, data, monkeypatch):
    slow_fits(monkeypatch)  # the whole search: 50 fits, 10 s
    p = params(config, epochs=1, **FAST | {"transformer_weight": 0.5, "time_limit_minutes": 0.05})  # 3 s in all
    started = time.monotonic()
    last, _ = run_to_end(TrainingRunner(config), data, p)
    assert time.monotonic() - started < 3 + 5  # the limit, plus at most a fit, the final fit and saving
    assert (
        last["done"]
        and last["stopped"]
        and any("time limit reached during the TF-IDF search" in line for line in last["log"])
    )
    blend = json.loads(
        (trained_models.find(trained_models.folder_of(config))[0].folder / "ml_studio.json").read_text()
    )["blend"]
    assert blend["tfidf_params"]["settings_searched"] < blend["tfidf_params"]["settings_in_grid"]


def test_cancelling_during_the_tfidf_search_ends_it_at_its_next_fit(config, data, monkeypatch):
    slow_fits(monkeypatch)
    updates = TrainingRunner(config).run(
        str(data), None, "cancelled", None, None, params(config, epochs=1, **FAST | {"transformer_weight": 0.5})
    )
    for update in updates:
        if update["state"] == "tfidf":
            break
    time.sleep(0.5)  # into the search
    closed = time.monotonic()
    updates.close()
    assert time.monotonic() - closed < 3  # one fit, not the 10 s search
    assert not any(t.name.startswith("train-") for t in threading.enumerate())
    assert not list(trained_models.folder_of(config).iterdir()) and "cancelled" not in config.names("classification")
