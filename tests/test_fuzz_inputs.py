"""Bad input never produces a traceback: every malformed config file, search space or CLI value gets
exactly one line on stderr starting with "error:" and a non-zero exit, and a study already in the
storage is left byte-for-byte unchanged. Most cases run the CLI in-process; two run the real
`drltune` executable."""
from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from drltune.cli import main

TINY = {"epochs": 1, "batch_size": 16, "encoder_width": 2,
        "dataset_params": {"n_train": 20, "n_val": 8, "n_test": 8, "audio_freq": 16, "audio_time": 16,
                           "image_size": 16}}

BAD_FILES = {
    "empty": b"",
    "only_comment": b"# nothing here\n",
    "binary_junk": bytes(random.Random(7).randrange(256) for _ in range(512)),
    "nul_bytes": b"\x00\x01\x02",
    "latin1": "lr: 0.1 # \xe9\n".encode("latin-1"),
    "not_a_mapping_list": b"- 1\n- 2\n",
    "not_a_mapping_scalar": b"hello\n",
    "broken_syntax": b"a: [\n",
    "python_tag": b"!!python/object/apply:os.system ['echo pwned']\n",
    "python_name": b"lr: !!python/name:os.system\n",
    "alias_cycle": b"params: &p {x: *p}\n",
    "alias_bomb": b"a: &a [1, 1]\nb: &b [*a, *a]\nc: [*b, *b]\n",
    "deep_nesting": b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "unknown_key": b"epochs: 1\nlearning_rate: 0.1\n",
    "integer_key": b"{1: 2}\n",
    "second_document_bad": b"epochs: 1\n---\nfoo: 2\n",
    "epochs_negative": b"epochs: -3\n",
    "epochs_huge": b"epochs: 1e30\n",
    "epochs_float": b"epochs: 2.5\n",
    "epochs_bool": b"epochs: true\n",
    "epochs_inf": b"epochs: .inf\n",
    "lr_nan": b"lr: .nan\n",
    "lr_zero": b"lr: 0\n",
    "lr_string": b"lr: fast\n",
    "lr_list": b"lr: [0.1]\n",
    "seed_huge": b"seed: 99999999999999999999999\n",
    "seed_negative": b"seed: -1\n",
    "batch_size_zero": b"batch_size: 0\n",
    "width_huge": b"encoder_width: 100000\n",
    "params_not_mapping": b"params: 5\n",
    "dataset_params_list": b"dataset_params: [1]\n",
    "unknown_dataset": b"dataset: imagenet\n",
    "unknown_method": b"method: magic\n",
    "unknown_fusion": b"fusion: attention\n",
    "unknown_optimizer": b"optimizer: lbfgs\n",
    "unknown_device": b"device: tpu\n",
    "unknown_method_param": b"method: dr\nparams: {speed: 1}\n",
    "dr_param_wrong_type": b"method: dr\nparams: {alpha: [1]}\n",
    "dr_param_out_of_range": b"method: dr\nparams: {reinit_epoch: 0}\n",
    "dr_single_modality": b"method: dr\nmodality: audio\n",
    "dataset_param_negative": b"dataset_params: {n_train: -5}\n",
    "dataset_param_huge": b"dataset_params: {n_train: 1e12}\n",
}

BAD_SETS = ["noequals", "epochs=-1", "epochs=abc", "epochs=[1,2]", "epochs=1.5", "lr=0", "lr=1e400",
            "lr=.nan", "lr=!!python/name:os.system", "lr=&a [*a]", "seed=1e30", "a.b.c=1", "=5",
            "params=5", "params.x.y=1", "params.alpha=2", "dataset_params=[1]", "dataset_params.n_train=-1",
            "dataset_params.n_train=1e12", "device=cuda:x", "method=magic", "fusion=attention", "{a}=1",
            "batch_size=1e9"]

BAD_FLAGS = [["--epochs", "-1"], ["--epochs", "abc"], ["--epochs", "99999999999"], ["--seeds", "0"],
             ["--config", "/nonexistent/config.yaml"], ["--config", "x" * 5000], ["--bogus"],
             ["--metrics-out", "/nonexistent/dir/metrics.json"], ["--set"]]


def run_cli(argv: list[str], capsys) -> tuple[int, list[str]]:
    """The CLI in-process; anything but SystemExit (a traceback) fails the test."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code, capsys.readouterr().err.strip().splitlines()


def assert_one_line_error(code, lines, what) -> None:
    assert code not in (0, None), f"{what}: exit {code}"
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{what}: stderr {lines!r}"


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_config_file(name, tmp_path, capsys):
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(BAD_FILES[name])
    assert_one_line_error(*run_cli(["train", "--config", str(path)], capsys), name)
    assert path.read_bytes() == BAD_FILES[name]


@pytest.mark.parametrize("assignment", BAD_SETS)
def test_bad_set_value(assignment, capsys):
    assert_one_line_error(*run_cli(["train", "--set", assignment], capsys), assignment)


@pytest.mark.parametrize("flags", BAD_FLAGS, ids=lambda f: " ".join(f)[:30])
def test_bad_flag(flags, capsys):
    assert_one_line_error(*run_cli(["train", *flags], capsys), flags)


POOL = [-1, 0, 10**12, float("inf"), float("nan"), "junk", "", [1], {"a": 1}, True, "1e-3x"]


def test_random_mutations_never_trace_back(tmp_path, capsys):
    """Seeded fuzzing: one key of a valid tiny config replaced by a random odd value. Whatever the
    outcome, it is either a normal run (exit 0) or exactly one error line."""
    rng = random.Random(1234)
    keys = [k for k in TINY if k != "dataset_params"] + [
        "lr", "momentum", "weight_decay", "optimizer", "lr_schedule", "lr_step", "lr_gamma", "augment",
        "grad_clip", "selection", "modality", "seed", "method", "fusion", "params", "dataset_params.n_train",
        "dataset_params.n_val", "dataset_params.audio_snr"]
    errors = 0
    for i in range(40):
        cfg = yaml.safe_load(yaml.safe_dump(TINY))
        key, value = rng.choice(keys), rng.choice(POOL)
        if key.startswith("dataset_params."):
            cfg["dataset_params"][key.split(".", 1)[1]] = value
        else:
            cfg[key] = value
        path = tmp_path / f"m{i}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        try:
            main(["train", "--quiet", "--config", str(path)])
            code = 0
        except SystemExit as exc:
            code = exc.code
        lines = capsys.readouterr().err.strip().splitlines()
        if code != 0:
            errors += 1
            assert_one_line_error(code, lines, f"{key}={value!r}")
    assert errors >= 30, "the pool is meant to be mostly invalid"


@pytest.mark.parametrize("argv, content", [
    (["train", "--config", "{path}"], bytes(range(256)) * 4),
    (["train", "--set", "epochs=-7"], None),
])
def test_real_executable_prints_one_line(argv, content, tmp_path):
    path = tmp_path / "junk.yaml"
    if content is not None:
        path.write_bytes(content)
    exe = Path(sys.executable).with_name("drltune")
    proc = subprocess.run([str(exe), *(a.format(path=path) for a in argv)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


# ---- drltune search: malformed space files and CLI values; the study storage stays byte-identical ----
GOOD_SPACE = b"methods: {baseline: {}}\n"
BAD_SPACES = {
    "empty": b"",
    "binary_junk": bytes(random.Random(3).randrange(256) for _ in range(400)),
    "not_a_mapping": b"- dr\n",
    "unknown_top_key": b"methods: {baseline: {}}\nsearch: 1\n",
    "no_methods": b"space: {lr: 0.1}\n",
    "methods_list": b"methods: [dr]\n",
    "unknown_method": b"methods: {magic: {}}\n",
    "unknown_method_param": b"methods: {dr: {speed: 1}}\n",
    "method_param_out_of_range": b"methods: {dr: {alpha: {low: -5, high: 1}}}\n",
    "low_above_high": b"space: {lr: {low: 0.1, high: 0.01}}\nmethods: {baseline: {}}\n",
    "log_from_zero": b"space: {lr: {low: 0, high: 0.1, log: true}}\nmethods: {baseline: {}}\n",
    "negative_step": b"methods: {dr: {reinit_epoch: {low: 1, high: 9, step: -2}}}\n",
    "empty_choices": b"space: {batch_size: {choices: []}}\nmethods: {baseline: {}}\n",
    "unknown_space_key": b"space: {learning_rate: {low: 0.1, high: 1}}\nmethods: {baseline: {}}\n",
    "range_of_strings": b"space: {lr: {low: a, high: b}}\nmethods: {baseline: {}}\n",
    "nan_bound": b"space: {lr: {low: .nan, high: 1}}\nmethods: {baseline: {}}\n",
    "huge_bound": b"space: {batch_size: {low: 1, high: 1e300}}\nmethods: {baseline: {}}\n",
    "impossible_choice": b"space: {optimizer: {choices: [sgd, lbfgs]}}\nmethods: {baseline: {}}\n",
    "unknown_fusion": b"space: {fusion: {choices: [concat, attention]}}\nmethods: {baseline: {}}\n",
    "zero_batch_choice": b"space: {batch_size: {choices: [0, 16]}}\nmethods: {baseline: {}}\n",
    "negative_budget": b"epochs: -3\nmethods: {baseline: {}}\n",
    "fixed_method": b"fixed: {method: dr}\nmethods: {baseline: {}}\n",
    "fixed_bad_value": b"fixed: {lr: -1}\nmethods: {baseline: {}}\n",
    "alias_cycle": b"methods: &m {dr: *m}\n",
    "deep_nesting": b"methods: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "python_tag": b"methods: !!python/object/apply:os.system [echo]\n",
}
BAD_SEARCH_FLAGS = [
    ["--trials", "0"], ["--trials", "abc"], ["--trials", "99999999999"], ["--max-epochs", "0"], ["--max-epochs", "1e9"],
    ["--concurrent", "0"], ["--cpus-per-trial", "0"], ["--cpus-per-trial", "nan"], ["--gpus-per-trial", "-1"],
    ["--gpus-per-trial", "inf"], ["--timeout", "-5"], ["--timeout", "nan"], ["--seed", "-1"], ["--sampler", "cmaes"],
    ["--pruner", "asha"], ["--max-failures", "-1"], ["--dataset", "imagenet"], ["--set", "lr=-1"], ["--set", "noeq"],
    ["--set", "params.x=1"], ["--set", "lr=&a [*a]"], ["--space", "/nonexistent/space.yaml"],
    ["--storage", "not a url"], ["--storage", "sqlite://"], ["--storage", "postgresql://nobody@127.0.0.1:1/x"],
    ["--storage", "foo://bar"],
]


@pytest.fixture(scope="module")
def kept_db(tmp_path_factory) -> Path:
    """A SQLite storage holding a finished study that a previous search left (built once)."""
    import optuna

    db = tmp_path_factory.mktemp("kept") / "keep.db"
    study = optuna.create_study(storage=f"sqlite:///{db}", study_name="kept", direction="maximize")
    for key, value in {"dataset": "synthetic", "max_epochs": 4, "space": "methods: {dr: {}}\n"}.items():
        study.set_user_attr(key, value)
    for i in range(3):
        trial = study.ask()
        trial.report(0.1 * i, 0)
        study.tell(trial, 0.2 * i)
    return db


@pytest.fixture
def stored_study(kept_db, tmp_path, monkeypatch):
    """A copy of the kept study, and a snapshot function (SQL dump + the files under tmp_path) to
    prove that nothing was written. Ray is never reached: a bad input stops before."""
    import contextlib
    import shutil
    import sqlite3

    import drltune.search.tune_run as tune_run

    def no_ray(*args, **kwargs):
        raise AssertionError("bad input reached Ray")

    monkeypatch.setattr(tune_run, "run_tune", no_ray)
    monkeypatch.chdir(tmp_path)  # the default storage (./studies/drltune.db) must not appear either
    db = tmp_path / "keep.db"
    shutil.copy(kept_db, db)
    (tmp_path / "good.yaml").write_bytes(GOOD_SPACE)

    def snapshot():
        with contextlib.closing(sqlite3.connect(db)) as conn:
            dump = "\n".join(conn.iterdump())
        return dump, sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))

    return f"sqlite:///{db}", snapshot


def _search(storage, *extra):
    return ["search", "--study", "kept", "--storage", storage, "--space", "good.yaml", *extra]


@pytest.mark.parametrize("name", sorted(BAD_SPACES))
def test_bad_search_space(name, stored_study, tmp_path, capsys):
    storage, snapshot = stored_study
    (tmp_path / f"{name}.yaml").write_bytes(BAD_SPACES[name])
    before = snapshot()
    assert_one_line_error(*run_cli(_search(storage, "--space", f"{name}.yaml"), capsys), name)
    assert snapshot() == before, "the storage or the folder changed"


@pytest.mark.parametrize("flags", BAD_SEARCH_FLAGS, ids=lambda f: " ".join(f)[:30])
def test_bad_search_flag(flags, stored_study, capsys):
    storage, snapshot = stored_study
    before = snapshot()
    assert_one_line_error(*run_cli(_search(storage, *flags), capsys), flags)
    assert snapshot() == before, "the storage or the folder changed"


@pytest.mark.parametrize("command", [["search"], ["verify", "--study", "v"], ["compare"]], ids=lambda c: c[0])
@pytest.mark.parametrize("flag", ["--cpus-per-trial", "--gpus-per-trial"])
def test_every_command_refuses_a_non_finite_share_alike(command, flag, tmp_path, capsys):
    """click's FloatRange lets inf through: search's check, which verify and compare reuse, refuses it
    with one line, before anything is stored."""
    db = tmp_path / "s.db"
    code, lines = run_cli([*command, flag, "inf", "--storage", f"sqlite:///{db}"], capsys)
    assert (code, lines) == (2, [f"error: Invalid value for '{flag}': inf is not a finite number"])
    assert not db.exists()


def test_resuming_with_another_space_is_refused_without_writing(stored_study, capsys):
    """`kept` was searched with another space and budget: a resume attempt must not touch it."""
    storage, snapshot = stored_study
    before = snapshot()
    code, lines = run_cli(_search(storage, "--max-epochs", "4"), capsys)
    assert_one_line_error(code, lines, "changed space")
    assert "cannot be resumed" in lines[0]
    assert snapshot() == before
