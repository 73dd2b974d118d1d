"""End to end on the built-in dataset with tiny budgets: real Ray Tune, real Optuna storage.

Ray processes these tests start are cleaned up by PID: the test process becomes a child
subreaper, so even the Ray daemons a SIGKILLed driver leaves behind stay its descendants.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from drltune.cli import cli
from drltune.config import TrialConfig
from drltune.errors import DrltuneError
from drltune.search.storage import open_storage
from drltune.train import Trainer

pytestmark = pytest.mark.slow
optuna.logging.set_verbosity(optuna.logging.WARNING)

BIN = Path(sys.executable).parent
SPACE = """
epochs: 30
fixed:
  encoder_width: 4
  batch_size: 16
  dataset_params: {n_train: 60, n_val: 60, n_test: 24, audio_freq: 16, audio_time: 16, image_size: 16}
space:
  lr: {low: 1.0e-4, high: 0.3, log: true}
  fusion: {choices: [concat, sum]}
methods:
  baseline: {}
  dr:
    reinit_epoch: {low: 10, high: 20, step: 10}
    alpha: {low: 0.5, high: 5.0, log: true}
"""
STUDY_ATTRS = ("dataset", "space", "space_file", "drltune_version", "command", "max_epochs", "pruner", "sampler")
TRIAL_ATTRS = ("config", "best_epoch", "epochs_run", "val_acc_audio", "val_acc_visual", "history", "ray_trial_id")
TEST_ATTRS = ("test_acc", "test_f1", "test_acc_audio", "test_acc_visual")


# ---- process hygiene -------------------------------------------------------------------------
def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = set(), [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            out.add(pid)
            todo.append(pid)
    return out


@pytest.fixture(scope="module")
def reaper():
    """Adopt orphans (PR_SET_CHILD_SUBREAPER); afterwards kill and reap what the tests started."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)
    before = _descendants(os.getpid())
    yield
    _kill_descendants_except(before)
    libc.prctl(36, 0, 0, 0, 0)


def _kill_descendants_except(keep: set[int]) -> None:
    """SIGKILL (by PID) and reap every descendant of this process that is not in `keep`."""
    deadline = time.time() + 20
    while (left := _descendants(os.getpid()) - keep) and time.time() < deadline:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, os.WNOHANG)
            except (ProcessLookupError, ChildProcessError):
                pass
        time.sleep(0.2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster(reaper):
    """Two Ray nodes on loopback, one CPU each (so two concurrent trials run one per node): `ray start
    --head` with its own temp dir (no other ray.init() joins it) and a job server, then a worker node.
    Token authentication, as a real cluster should have. Yields (GCS address, job server URL, env)."""
    before = _descendants(os.getpid())
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    port, dashboard = _free_port(), _free_port()
    token = Path(temp) / "token"
    token.write_text(uuid.uuid4().hex)
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    # No drain on SIGTERM: `ray start --block` would otherwise wait up to 30 s per node at teardown
    # for Serve-style draining (Ray's RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S), which nothing here uses.
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0", **auth}
    log = open(Path(temp) / "nodes.log", "w")
    common = ["--block", "--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats",
              f"--dashboard-agent-listen-port={_free_port()}"]
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", f"--port={port}", "--include-dashboard=true",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", f"--temp-dir={temp}", *common],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    nodes = [head]
    try:
        deadline = time.time() + 120
        while not (Path(temp) / "ray_current_cluster").exists():
            assert head.poll() is None and time.time() < deadline, (Path(temp) / "nodes.log").read_text()[-3000:]
            time.sleep(0.5)
        nodes.append(subprocess.Popen(
            [str(BIN / "ray"), "start", f"--address=127.0.0.1:{port}", f"--temp-dir={temp}", *common,
             f"--metrics-export-port={_free_port()}"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True))
        # One process joins once and watches the node table (Ray has no event for a node joining);
        # a process per look would import Ray and connect again each time.
        both = ("import ray, sys, time; ray.init(address=sys.argv[1], logging_level='ERROR')\n"
                "while sum(n['Alive'] for n in ray.nodes()) < 2 and time.time() < float(sys.argv[2]):\n"
                "    time.sleep(0.2)\n"
                "print(sum(n['Alive'] for n in ray.nodes()))")
        joined = subprocess.run([sys.executable, "-c", both, f"127.0.0.1:{port}", str(deadline)], env=env,
                                capture_output=True, text=True, timeout=180).stdout.strip()
        assert joined == "2" and all(n.poll() is None for n in nodes), (Path(temp) / "nodes.log").read_text()[-3000:]
        yield f"127.0.0.1:{port}", f"http://127.0.0.1:{dashboard}", auth
    finally:  # stopped by their own process groups (the reaper kills what is left), never `ray stop`
        for node in reversed(nodes):
            try:
                os.killpg(node.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for node in nodes:
            try:
                node.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, signal.SIGKILL)
        _kill_descendants_except(before)  # what the nodes and a killed driver left behind
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


# ---- helpers ---------------------------------------------------------------------------------
def search_cmd(tmp_path: Path, *extra: str) -> list[str]:
    space = tmp_path / "tiny.yaml"
    space.write_text(SPACE)
    return [str(BIN / "drltune"), "search", "--space", str(space), "--max-epochs", "3", "--concurrent", "2",
            "--seed", "0", "--race", "0", *extra]


def load(tmp_path: Path) -> optuna.Study:
    # drltune's storage: it takes the same creation lock as a driver that may be creating the tables now
    return optuna.load_study(study_name="synthetic-tiny", storage=open_storage(f"sqlite:///{tmp_path}/studies/drltune.db"))


def finished(study: optuna.Study) -> dict[int, tuple]:
    return {t.number: (t.state, t.value, dict(t.intermediate_values)) for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED)}


# ---- tests -----------------------------------------------------------------------------------
def test_local_search_stores_complete_pruned_and_failed_trials(tmp_path, reaper, monkeypatch):
    fired = tmp_path / "fault-fired"  # exactly one trial crashes, after reporting epochs 0 and 1
    env = {**os.environ, "DRLTUNE_FAULTS": f"epoch_end:1:raise:{fired}"}
    run = subprocess.run(search_cmd(tmp_path, "--trials", "7", "--pruner", "sha"), cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    assert "epoch budget: methods.dr.reinit_epoch: [10, 20] -> [1, 2]" in out
    assert "[7/7] complete " in out and "drltune dashboard" in out
    assert "Trial status" not in out and "+----" not in out  # no Ray tables

    study = load(tmp_path)  # the default storage, under the directory the search ran in
    assert all(key in study.user_attrs for key in STUDY_ATTRS)
    assert study.user_attrs["max_epochs"] == 3 and study.user_attrs["space"] == SPACE
    assert study.user_attrs["command"].startswith("drltune search --space")
    trials = study.get_trials()
    states = [t.state for t in trials]
    assert len(trials) == 8 and TrialState.RUNNING not in states  # the failed trial did not use up --trials 7
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert complete and pruned and len(failed) == 1
    assert "injected fault at epoch_end, epoch 1" in failed[0].user_attrs["error"]
    assert failed[0].user_attrs["epochs_run"] == 2

    for t in complete:
        assert sorted(t.intermediate_values) == [0, 1, 2]  # step = 0-based epoch, raw val_acc
        assert t.value == max(t.intermediate_values.values()) == max(r["val_acc"] for r in t.user_attrs["history"])
        assert all(key in t.user_attrs for key in TRIAL_ATTRS + TEST_ATTRS)
    for t in pruned:
        assert len(t.intermediate_values) < 3 and t.user_attrs["epochs_run"] == len(t.intermediate_values)
        assert all(key in t.user_attrs for key in TRIAL_ATTRS)
    for t in trials:  # conditional parameters exist only for their method
        method = t.params["method"]
        assert {k.split(".")[0] for k in t.params if "." in k} <= {method}
        if method == "dr":
            assert {"dr.reinit_epoch", "dr.alpha"} <= set(t.params) and t.params["dr.reinit_epoch"] in (1, 2)
        assert t.user_attrs["config"]["method"] == method and t.user_attrs["config"]["epochs"] == 3

    best = max(complete, key=lambda t: t.value)  # listed first; its stored config reproduces it exactly
    assert out.split("configurations of study 'synthetic-tiny'")[1].splitlines()[1].startswith(f" 1. #{best.number} ")
    result = Trainer(TrialConfig.from_dict(best.user_attrs["config"])).fit()
    assert result.best_val_acc == best.value and result.test_acc == best.user_attrs["test_acc"]

    # the same command again (in this process: no Ray is started when nothing is left to run)
    monkeypatch.chdir(tmp_path)
    again = CliRunner().invoke(cli, search_cmd(tmp_path, "--trials", "7", "--pruner", "sha")[1:])
    assert again.exit_code == 0 and "nothing to run" in again.output, again.output
    with pytest.raises(DrltuneError, match="study 'synthetic-tiny' cannot be resumed: max_epochs was 3, now 5"):
        cli.main(search_cmd(tmp_path, "--trials", "7", "--max-epochs", "5")[1:], standalone_mode=False)
    assert len(load(tmp_path).trials) == 8  # nothing lost, nothing added


def test_sigkilled_search_on_a_ray_cluster_resumes_without_losing_trials(tmp_path, ray_cluster):
    """A driver joins the two-node cluster by --address; it is SIGKILLed and the same command resumes.
    Trials run on both nodes; checkpoints live in --storage-path, which both nodes reach."""
    address, _, auth = ray_cluster
    shared = tmp_path / "shared"
    cmd = search_cmd(tmp_path, "--trials", "6", "--address", address, "--storage-path", str(shared))
    env = {**os.environ, **auth}
    driver = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    db = tmp_path / "studies" / "drltune.db"
    deadline = time.time() + 300
    try:
        while True:  # wait until some trials are finished and another one is running
            assert driver.poll() is None, driver.stdout.read()[-3000:]
            assert time.time() < deadline
            if db.exists():
                try:
                    states = [t.state for t in load(tmp_path).get_trials(deepcopy=False)]
                except KeyError:  # the study is not created yet
                    states = []
                if TrialState.RUNNING in states and sum(s in (TrialState.COMPLETE, TrialState.PRUNED)
                                                        for s in states) >= 2:
                    break
            time.sleep(0.3)
    finally:
        driver.kill()  # SIGKILL: no cleanup, no chance to close its trials
        driver.wait()
    before = load(tmp_path)
    kept = finished(before)
    cut = [t for t in before.get_trials() if t.state == TrialState.RUNNING]
    assert cut

    rerun = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resuming: {len(kept)} finished trials kept, {len(cut)} interrupted trials closed" in rerun.stdout
    after = load(tmp_path)
    assert {n: v for n, v in finished(after).items() if n in kept} == kept  # no finished trial lost
    counted = [t for t in after.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(counted) == 6 and not [t for t in after.trials if t.state == TrialState.RUNNING]
    assert len({t.user_attrs.get("ray_node") for t in counted}) == 2, "trials ran on both nodes"
    assert not [p for p in shared.rglob("*") if p.is_file() and "checkpoints" in p.parts]
    for t in cut:  # closed as FAIL and run again with the same parameters
        closed = after.trials[t.number]
        assert closed.state == TrialState.FAIL and closed.user_attrs["interrupted"]
        (retry,) = [r for r in after.trials if r.user_attrs.get("retry_of") == t.number]
        assert retry.state in (TrialState.COMPLETE, TrialState.PRUNED)
        assert retry.params == t.params or not t.params  # a trial cut before its sampling is sampled anew


def test_search_submitted_as_a_ray_job_runs_on_both_nodes(tmp_path, ray_cluster):
    """`ray job submit -- drltune search ...`: the driver runs on the head node and joins its cluster
    (RAY_ADDRESS); trials run on both nodes and the study ends complete."""
    address, jobs, auth = ray_cluster
    env = {**os.environ, **auth}
    db = tmp_path / "job.db"
    search = search_cmd(tmp_path, "--trials", "3", "--storage", f"sqlite:///{db}", "--study", "job",
                        "--storage-path", str(tmp_path / "shared"), "--pruner", "none")
    run = subprocess.run([str(BIN / "ray"), "job", "submit", "--address", jobs, "--", *search],
                         env=env, capture_output=True, text=True, timeout=500)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    study = optuna.load_study(study_name="job", storage=f"sqlite:///{db}")
    trials = study.get_trials(deepcopy=False)
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 3 and len(trials) == 3
    assert len({t.user_attrs["ray_node"] for t in trials}) == 2


def test_a_multi_node_cluster_without_shared_storage_is_refused(tmp_path, ray_cluster):
    address, _, auth = ray_cluster
    run = subprocess.run(search_cmd(tmp_path, "--trials", "2", "--address", address), cwd=tmp_path,
                         env={**os.environ, **auth}, capture_output=True, text=True, timeout=300)
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert run.returncode == 2 and len(errors) == 1 and "--storage-path" in errors[0], run.stderr[-2000:]
