"""A trial that no node can hold is refused in one line (local Ray) or warned about (a cluster),
instead of Ray Tune waiting for ever."""
from __future__ import annotations

import time

import optuna
import pytest
import torch

from drltune.cli import main
from drltune.errors import DrltuneError
from drltune.search.resources import check_fits, check_local_cpus, machine_cpus, shortfall


def node(cpu: float, gpu: float = 0.0, alive: bool = True) -> dict:
    return {"Alive": alive, "Resources": {"CPU": cpu, **({"GPU": gpu} if gpu else {}), "memory": 1e9}}


def test_a_trial_must_fit_on_one_node_not_in_the_cluster_sum():
    nodes = [node(2, 1)["Resources"], node(2, 1)["Resources"]]
    assert shortfall({"CPU": 2, "GPU": 1}, nodes) is None
    assert shortfall({"CPU": 3, "GPU": 0}, nodes) == (
        "no node of the 2 has it: at most 2 CPUs and 1 GPU on one node (4 CPUs and 2 GPUs in all; "
        "a trial runs on one node)")
    assert shortfall({"CPU": 1, "GPU": 2}, nodes) is not None
    assert shortfall({"CPU": 0.5, "GPU": 0.25}, nodes) is None


def test_dead_nodes_do_not_count():
    with pytest.raises(DrltuneError, match="Ray sees 1 CPU and 0 GPUs"):
        check_fits({"CPU": 1, "GPU": 1}, [node(8, 4, alive=False), node(1)], cluster=False)


def test_local_ray_refuses_and_a_cluster_warns_and_waits():
    with pytest.raises(DrltuneError) as refused:
        check_fits({"CPU": 1, "GPU": 1}, [node(2)], cluster=False)
    assert str(refused.value) == ("each trial asks for 1 CPU and 1 GPU, but Ray sees 2 CPUs and 0 GPUs "
                                  "(pass --gpus-per-trial 0 to train on the CPU)")
    warned: list[str] = []
    check_fits({"CPU": 4, "GPU": 0}, [node(2), node(2)], cluster=True, warn=warned.append)
    assert len(warned) == 1 and warned[0].startswith("warning: each trial asks for 4 CPUs and 0 GPUs, but no node")
    assert "autoscaler" in warned[0]
    check_fits({"CPU": 2, "GPU": 0}, [node(2)], cluster=True, warn=warned.append)
    assert len(warned) == 1  # it fits: nothing said


def test_local_cpus_above_the_machine_are_refused():
    check_local_cpus(2, cpus=2)
    with pytest.raises(DrltuneError, match=r"^--cpus-per-trial 2.5: this machine has 2 CPUs; ask for at most 2$"):
        check_local_cpus(2.5, cpus=2)


def _refused(tmp_path, monkeypatch, capsys, *args: str) -> tuple[str, float]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    start = time.monotonic()
    with pytest.raises(SystemExit) as exit_:
        main(["search", "--trials", "1", "--max-epochs", "1", "--set", "dataset_params.n_train=20", *args])
    err = capsys.readouterr().err
    assert exit_.value.code != 0 and err.count("\n") == 1, err
    return err.strip(), time.monotonic() - start


def test_too_many_cpus_refused_before_ray_and_the_study(tmp_path, monkeypatch, capsys):
    cpus = machine_cpus()
    err, _ = _refused(tmp_path, monkeypatch, capsys, "--cpus-per-trial", str(cpus + 1))
    assert err == f"error: --cpus-per-trial {cpus + 1}: this machine has {cpus} CPU{'s' if cpus > 1 else ''}; " \
                  f"ask for at most {cpus}"
    assert not (tmp_path / "studies").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_a_gpu_trial_without_gpus_is_refused_not_left_waiting(tmp_path, monkeypatch, capsys):
    err, seconds = _refused(tmp_path, monkeypatch, capsys, "--gpus-per-trial", "1")
    assert err.startswith("error: each trial asks for 1 CPU and 1 GPU, but Ray sees ")
    assert err.endswith(" CPUs and 0 GPUs (pass --gpus-per-trial 0 to train on the CPU)")
    assert seconds < 120  # the start of a local Ray, not a wait on a trial that never starts
    study = optuna.load_study(study_name="synthetic-default", storage=f"sqlite:///{tmp_path}/studies/drltune.db")
    assert study.trials == []  # nothing asked, nothing to retry
