"""Search space files: conditional method parameters, epoch scaling, one-line errors naming the key."""
from __future__ import annotations

import optuna
import pytest
import yaml

from drltune.config import TrialConfig
from drltune.errors import DrltuneError
from drltune.resolve import resolve
from drltune.search.space_file import load_space, parse_space
from drltune.shipped_spaces import DEFAULT_SPACE

optuna.logging.set_verbosity(optuna.logging.WARNING)


def space(text: str, max_epochs: int = 8):
    return parse_space(yaml.safe_load(text), max_epochs)


def test_default_space_samples_valid_configs_with_method_params_only_for_their_method():
    s = load_space(DEFAULT_SPACE, max_epochs=8)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        cfg = s.config_for(trial, TrialConfig(epochs=8, encoder_width=4))
        resolve(cfg)  # every sampled configuration is runnable
        method = trial.params["method"]
        seen.add(method)
        own = {k for k in trial.params if "." in k}
        assert all(k.startswith(f"{method}.") for k in own)
        assert set(cfg.params) == {k.split(".", 1)[1] for k in own}
        study.tell(trial, 0.5)
    assert {"baseline", "dr"} <= seen


def test_epoch_params_are_scaled_to_the_budget_and_the_scaling_is_reported():
    s = space("epochs: 90\nmethods:\n  dr:\n    reinit_epoch: {low: 10, high: 30, step: 5}\n"
              "    reinit_num: 2\n", max_epochs=9)
    (dim,) = [d for d in s.methods["dr"] if d.name == "dr.reinit_epoch"]
    assert (dim.low, dim.high, dim.step) == (1, 3, 1)
    assert any("dr.reinit_epoch" in n and "90 -> 9" in n for n in s.notes)
    fixed = space("epochs: 90\nmethods:\n  dr: {reinit_epoch: 20}\n", max_epochs=6)
    assert fixed.methods["dr"][0].value == 1  # clipped to at least 1 epoch
    big = space("epochs: 10\nmethods:\n  dr: {reinit_epoch: {choices: [5, 50]}}\n", max_epochs=20)
    assert big.methods["dr"][0].choices == (10, 20)  # scaled x2, clipped to the budget
    zero = space("epochs: 90\nfixed: {lr_step: 0}\nmethods: {baseline: {}}\n", max_epochs=6)
    assert zero.fixed["lr_step"] == 0  # 0 ("from the first epoch") keeps its meaning


def test_declared_block_searches_the_methods_declared_numeric_ranges():
    s = space("methods:\n  dr: {reinit_num: declared, diag_split: declared}\n  baseline: defaults\n")
    dims = {d.name: d for d in s.methods["dr"]}
    assert (dims["dr.reinit_num"].low, dims["dr.reinit_num"].high) == (1, 5)  # its search range, not the validation bounds [0, 100]
    assert dims["dr.diag_split"].choices == ("val", "test")
    assert s.methods["baseline"] == []


@pytest.mark.parametrize("text, message", [
    ("methods: {}", "methods: name at least one method"),
    ("methods: {nope: {}}", "methods.nope: unknown method"),
    ("methods: {dr: {alpha_typo: 1.0}}", "methods.dr: unknown parameter(s) alpha_typo"),
    ("methods: {dr: {alpha: {low: 2, high: 1}}}", "methods.dr.alpha: low 2.0 is above high 1.0"),
    ("methods: {dr: {alpha: {low: 0, high: 1, log: true}}}", "methods.dr.alpha: a log range needs low > 0"),
    ("methods: {dr: {reinit_num: {low: 1.5, high: 3}}}", "methods.dr.reinit_num.low: expected an integer"),
    ("methods: {dr: {diag_split: {choices: [val, train]}}}", "methods.dr.diag_split: 'train' is not one of"),
    ("methods: {dr: {alpha: {choices: []}}}", "methods.dr.alpha.choices: expected a non-empty list"),
    ("methods: {baseline: {}}\nspace: {lr: {low: x, high: 1}}", "space.lr.low: expected a number"),
    ("methods: {baseline: {}}\nspace: {seed: 3}", "space.seed: not a searchable TrialConfig key"),
    ("methods: {baseline: {}}\nspace: {fusion: {low: 1, high: 2}}", "space.fusion: a str value cannot take"),
    ("methods: {baseline: {}}\nspace: {lr: {low: 0.1, high: 1, step: 0.1, log: true}}", "space.lr: log and step"),
    ("methods: {baseline: {}}\nfixed: {lr: 0.1}\nspace: {lr: {low: 0.1, high: 1}}", "space.lr: also given under fixed"),
    ("methods: {baseline: {}}\nepochs: -3", "epochs: expected a positive integer"),
    ("methods: {baseline: {}}\nbudget: 3", "unknown key(s) budget"),
    ("- a list", "expected a mapping"),
])
def test_malformed_spaces_get_one_line_errors_naming_the_key(text, message):
    with pytest.raises(DrltuneError) as err:
        space(text)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_yaml_1_1_exponent_strings_are_numbers(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("methods: {baseline: {}}\nspace: {lr: {low: 1e-4, high: 1e-1, log: true}}\n")
    (dim,) = load_space(path, 4).top
    assert (dim.low, dim.high, dim.log) == (1e-4, 0.1, True)


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(DrltuneError, match="search space file not found"):
        load_space(tmp_path / "missing.yaml", 4)
    bad = tmp_path / "bad.yaml"
    bad.write_text("methods: [unclosed\n")
    with pytest.raises(DrltuneError, match=r"bad\.yaml: not valid YAML"):
        load_space(bad, 4)


def test_declared_blocks_search_the_narrow_ranges_every_method_declares():
    """`declared` uses each parameter's search range (docs/methods.md §9), not its validation bounds."""
    from drltune.methods import METHODS

    text = "epochs: 90\nmethods:\n" + "".join(f"  {name}: declared\n" for name in METHODS.names())
    s = space(text, max_epochs=90)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(40):
        trial = study.ask()
        cfg = s.config_for(trial, TrialConfig(epochs=90, encoder_width=4))
        resolve(cfg)  # every sampled config is valid (windows non-empty, logs positive)
        if cfg.method == "dr":
            assert 5 <= trial.params["dr.reinit_epoch"] <= 30 and 0.3 <= trial.params["dr.alpha"] <= 10


def test_default_space_searches_mmpareto_and_mla_over_their_declared_ranges():
    from drltune.methods import METHODS

    s = load_space(DEFAULT_SPACE, max_epochs=8)
    dims = {d.name: d for name in ("mmpareto", "mla") for d in s.methods[name]}
    gamma = {p.name: p for p in METHODS.get("mmpareto").params}["gamma"]
    assert (dims["mmpareto.gamma"].low, dims["mmpareto.gamma"].high) == gamma.search
    assert dims["mmpareto.rescale"].choices == (False, True)
    assert dims["mla.head_projection"].choices == ("add", "replace", "off")
    assert dims["mla.fusion_weights"].choices == ("batch_entropy", "sample_entropy", "fixed")


def test_set_fixes_a_key_the_space_searches_instead_of_being_overwritten_by_the_sample():
    s = load_space(DEFAULT_SPACE, max_epochs=8)
    overrides = ["batch_size=16", "method=dr", "params.alpha=2.5", "encoder_width=4"]
    base = TrialConfig(epochs=8).with_overrides(overrides)
    notes = s.fixed_by(overrides, base)
    assert notes == ["--set method=dr: the only method searched", "--set batch_size=16: fixed, not searched",
                     "--set params.alpha=2.5: fixed for dr"]
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(10):
        trial = study.ask()
        cfg = s.config_for(trial, base)
        assert (cfg.batch_size, cfg.method, cfg.params["alpha"], cfg.encoder_width) == (16, "dr", 2.5, 4)
        assert "batch_size" not in trial.params and "dr.alpha" not in trial.params and "dr.reinit_epoch" in trial.params
        study.tell(trial, 0.5)
    reordered = ["params.alpha=2.5", "method=dr"]  # the note names dr only, whatever the order
    notes = load_space(DEFAULT_SPACE, max_epochs=8).fixed_by(reordered, base)
    assert notes[1] == "--set params.alpha=2.5: fixed for dr"
    with pytest.raises(DrltuneError, match="--set method=toy: not among .*default.yaml's methods"):
        load_space(DEFAULT_SPACE, max_epochs=8).fixed_by(["method=toy"], TrialConfig(method="toy"))
