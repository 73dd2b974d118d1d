"""`train --save-model` and `drltune.train.load_model`: export -> train -> save -> load gives the
same predictions and the test accuracy `train` printed; methods that add modules load too."""
from __future__ import annotations

import json
import re

import numpy as np
import optuna
import pytest
from test_explore_study import new_study, record_trial, run_cli

from drltune.data import load_dataset
from drltune.errors import DrltuneError
from drltune.resolve import resolve
from drltune.train import Trainer, load_model, load_saved_config, predict
from drltune.train.saved_model import config_path, save_model


def test_export_train_save_load_reproduces_the_printed_test_accuracy(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    record_trial(new_study(url, "one"), {"method": "dr", "fusion": "sum", "lr": 0.05,
                                          "dr.reinit_epoch": 1, "dr.alpha": 2.0, "dr.reinit_num": 1})
    exported, weights, metrics = tmp_path / "best.yaml", tmp_path / "model.safetensors", tmp_path / "m.json"
    assert run_cli(capsys, "export", "--study", "one", "--storage", url, "-o", str(exported))[0] == 0
    code, out, err = run_cli(capsys, "train", "--config", str(exported), "--quiet", "--save-model", str(weights),
                             "--metrics-out", str(metrics))
    assert code == 0, err
    printed = float(re.search(r"test_acc (\d\.\d{4})", out).group(1))
    assert weights.is_file() and config_path(weights).is_file() and "model saved:" in out

    model = load_model(weights)
    assert not model.training
    cfg = resolve(load_saved_config(weights))
    assert (cfg.method, cfg.fusion, cfg.params["alpha"]) == ("dr", "sum", 2.0)
    data = load_dataset(cfg.dataset, cfg.data_root, cfg.dataset_params)
    accuracy = float((predict(model, data.test) == data.test.labels).mean())
    assert accuracy == json.loads(metrics.read_text())["test_acc"]
    assert f"{accuracy:.4f}" == f"{printed:.4f}"


@pytest.mark.parametrize("method", ["mla", "mmpareto"])  # one replaces the fusion head, one adds heads
def test_a_method_that_extends_the_model_loads_with_the_same_predictions(method, tiny_config, tmp_path):
    trainer = Trainer(tiny_config(method=method, epochs=1, threads=1))
    result = trainer.fit()
    save_model(trainer, result, tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors")
    test = trainer.data.test
    expected = trainer._forward_split(test)[0]["logits"].argmax(1)  # what the trainer's own test pass chose
    assert np.array_equal(predict(loaded, test), expected)
    assert float((expected == test.labels).mean()) == result.test_acc


def test_bad_save_and_load_paths_are_one_line(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--seeds", "2", "--save-model", str(tmp_path / "m.safetensors"))
    assert code != 0 and err.startswith("error: --save-model saves one model") and err.count("\n") == 1
    code, _, err = run_cli(capsys, "train", "--save-model", str(tmp_path / "nowhere" / "m.safetensors"))
    assert code != 0 and "does not exist" in err and err.count("\n") == 1
    with pytest.raises(DrltuneError, match="saved model not found"):
        load_model(tmp_path / "missing.safetensors")
    (tmp_path / "w.safetensors").write_bytes(b"not tensors")
    with pytest.raises(DrltuneError, match="config .* is missing"):
        load_model(tmp_path / "w.safetensors")
    config_path(tmp_path / "w.safetensors").write_text("method: baseline\n")
    with pytest.raises(DrltuneError, match="not a drltune saved-model config"):
        load_model(tmp_path / "w.safetensors")


optuna.logging.set_verbosity(optuna.logging.WARNING)
