"""TrialConfig YAML round trip, overrides, and the `drltune train` command."""
from __future__ import annotations

import json

import pytest

from drltune.cli import main
from drltune.config import TrialConfig
from drltune.errors import DrltuneError
from drltune.resolve import resolve
from tests.conftest import TINY_DATA


def test_yaml_round_trip_and_defaults(tmp_path):
    cfg = TrialConfig(method="dr", fusion="gated", params={"alpha": 2.5}, dataset_params={"n_train": 30})
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml(meta={"study": "s", "trial": 3}))
    [loaded] = TrialConfig.load_yaml(path)
    assert loaded == cfg
    resolved = resolve(loaded)
    assert resolved.params["reinit_num"] == 2 and resolved.params["alpha"] == 2.5 and resolved.params["reinit_epoch"] == 10  # synthetic's DR default
    assert resolved.encoder_width == 8 and resolved.optimizer == "sgd"  # synthetic's defaults


def test_overrides_parse_yaml_values():
    cfg = TrialConfig().with_overrides(["method=dr", "params.alpha=0.5", "lr=1e-2", "augment=true"])
    assert cfg.method == "dr" and cfg.params == {"alpha": 0.5} and cfg.lr == 0.01 and cfg.augment is True
    with pytest.raises(DrltuneError, match="key=value"):
        cfg.with_overrides(["oops"])
    with pytest.raises(DrltuneError, match="unknown key"):
        cfg.with_overrides(["nope=1"])


def _train_args(tmp_path, *extra):
    cfg = TrialConfig(method="dr", epochs=3, batch_size=16, encoder_width=4, dataset_params=dict(TINY_DATA),
                      params={"reinit_epoch": 1, "reinit_num": 1})
    path = tmp_path / "cfg.yaml"
    path.write_text(cfg.to_yaml())
    return ["train", "--config", str(path), "--metrics-out", str(tmp_path / "m.json"), *extra]


def test_train_writes_the_metrics_file(tmp_path, capsys):
    main(_train_args(tmp_path))
    out = capsys.readouterr().out
    assert out.count("epoch ") >= 3 and "re-init" in out and "test_acc" in out
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert {"history", "best_val_acc", "best_epoch", "test_acc"} <= set(metrics)
    assert len(metrics["history"]) == 3
    reinit = metrics["history"][1]
    for key in ("epoch", "val_acc", "val_f1", "val_acc_audio", "val_acc_visual", "purity_train_audio",
                "purity_val_visual", "reinit_weight_audio", "reinit_weight_visual"):
        assert reinit[key] is not None, key
    assert metrics["best_val_acc"] == metrics["history"][metrics["best_epoch"]]["val_acc"]


def test_train_over_seeds_reports_mean_and_std(tmp_path, capsys):
    main(_train_args(tmp_path, "--seeds", "2", "--epochs", "1", "--quiet"))
    assert "test_acc over 2 seeds" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert len(metrics["runs"]) == 2 and {r["config"]["seed"] for r in metrics["runs"]} == {0, 1}
    assert all(len(r["history"]) == 1 for r in metrics["runs"]) and "test_acc_std" in metrics


@pytest.mark.parametrize("args,message", [
    (["train", "--set", "dataset=imagenet"], "error: unknown dataset 'imagenet'; valid: "),
    (["train", "--set", "method=magic"], "error: unknown method 'magic'; valid: "),
    (["train", "--set", "fusion=late"], "error: unknown fusion 'late'; valid: "),
    (["train", "--set", "epochs=-3"], "error: epochs: -3 is outside"),
    (["train", "--config", "/no/such/file.yaml"], "error: config file not found"),
])
def test_bad_input_is_one_line(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code != 0
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_methods_and_datasets_are_listed(capsys):
    main(["methods"])
    main(["datasets"])
    main(["fusions"])
    out = capsys.readouterr().out
    assert "gated: Audio gates visual" in out and "concat: fc_out([a; v])" in out
    assert "dr:" in out and "reinit_epoch=20" in out and "synthetic:" in out and "visual_snr" in out
