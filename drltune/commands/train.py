"""`drltune train`: run one TrialConfig (or each document of an exported file), then test once."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from drltune.config import KNOBS, TrialConfig
from drltune.errors import DrltuneError
from drltune.tracking import (
    DEFAULT_MLFLOW_URI,
    TAG_DATASET,
    TAG_METHOD,
    TRACKERS,
    TRAIN_EXPERIMENT,
    check_tracker,
)

if TYPE_CHECKING:
    from drltune.methods import Method
    from drltune.tracking import MlflowTracker


def epoch_line(record: dict[str, Any], method: type[Method]) -> str:
    """One epoch as `drltune train` prints it; the method adds its own metrics
    (Method.epoch_text)."""
    line = (
        f"epoch {record['epoch']:>3}  loss {record['train_loss']:.4f}  val_acc "
        f"{record['val_acc']:.4f}  val_f1 {record['val_f1']:.4f}  audio "
        f"{record['val_acc_audio']:.3f}  visual {record['val_acc_visual']:.3f}"
    )
    extra = method.epoch_text(record)
    return line + (f"  {extra}" if extra else "") + f"  {record['seconds']:.1f}s"


def run_one(
    cfg: TrialConfig,
    quiet: bool = False,
    save_model: str | None = None,
    tracker: MlflowTracker | None = None,
) -> dict[str, Any]:
    """Train and test one config; `save_model`: write the selected weights there; `tracker`: one
    run."""
    from drltune.methods import METHODS
    from drltune.train import Trainer

    trainer = Trainer(cfg)
    method = METHODS.get(cfg.method)
    key = object()  # this run's key in the tracker
    if tracker is not None:
        tracker.open_run(
            key,
            trainer.cfg.config.to_dict(),
            {TAG_METHOD: cfg.method, TAG_DATASET: cfg.dataset},
            name=f"{cfg.method}-{cfg.fusion}-seed{cfg.seed}",
        )

    def report(epoch: int, rec: dict[str, Any]) -> None:
        if not quiet:
            click.echo(epoch_line(rec, method))
        if tracker is not None:
            tracker.log_epochs(key, [rec])

    try:
        result = trainer.fit(report=report)
    except BaseException as exc:
        if tracker is not None:
            tracker.finish(
                key,
                "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                error=f"{type(exc).__name__}: {exc}",
            )
        raise
    if tracker is not None:
        tracker.finish(key, "complete", result.to_dict())
    click.echo(
        f"{cfg.method}/{cfg.fusion} seed {cfg.seed}: best_val_acc {result.best_val_acc:.4f} (epoch "
        f"{result.best_epoch})  test_acc {result.test_acc:.4f}  test_f1 {result.test_f1:.4f}  "
        f"audio {result.test_acc_audio:.3f}  visual {result.test_acc_visual:.3f}  "
        f"{result.seconds:.1f}s"
    )
    if save_model:
        from drltune.train.saved_model import save_model as write_model

        weights, config_file = write_model(trainer, result, save_model)
        click.echo(
            f"model saved: {weights} (config: {config_file}); load it with drltune.train.load_model"
        )
    return result.to_dict()


def warn_inert(cfg: TrialConfig) -> None:
    """Say so when an epoch-valued setting cannot act within the run (e.g. DR's re-init
    interval)."""
    from drltune.epoch_budget import config_warnings
    from drltune.resolve import resolve

    resolved = resolve(cfg)
    for line in config_warnings(resolved.method, resolved.params, resolved.epochs):
        click.echo(f"warning: {line}", err=True)


KNOBS_HELP = (
    "\b\nTraining knobs (--set KEY=VALUE; unset: the dataset's default, then this one; "
    "`drltune config` lists every key):\n" + "\n".join(f"  {p.describe()}" for p in KNOBS)
)


@click.command("train", epilog=KNOBS_HELP)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="TrialConfig YAML (one or more documents).",
)
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a key, e.g. params.alpha=2.",
)
@click.option("--epochs", type=click.IntRange(1, 100_000), help="Train this many epochs instead.")
@click.option(
    "--seeds",
    type=click.IntRange(1, 1000),
    default=1,
    show_default=True,
    help="Repeat over this many seeds (seed, seed+1, ...) and report mean ± std on test.",
)
@click.option(
    "--metrics-out", type=click.Path(dir_okay=False), help="Write the metrics as JSON here."
)
@click.option(
    "--save-model",
    metavar="PATH",
    type=click.Path(),
    help="Write the selected epoch's weights here (safetensors) and the config beside it as "
    "PATH.yaml; drltune.train.load_model(PATH) loads them. One config and --seeds 1 only.",
)
@click.option(
    "--tracker",
    type=click.Choice(TRACKERS),
    default="none",
    show_default=True,
    help="Experiment tracker: mlflow logs one run per trained seed to experiment "
    f"{TRAIN_EXPERIMENT!r} (needs pip install 'drltune[mlflow]').",
)
@click.option(
    "--tracker-uri",
    metavar="URI",
    help=f"MLflow tracking URI [default: $MLFLOW_TRACKING_URI, else {DEFAULT_MLFLOW_URI}].",
)
@click.option("--quiet", is_flag=True, help="Only print the summary lines.")
def train_cmd(
    config_path, assignments, epochs, seeds, metrics_out, save_model, tracker, tracker_uri, quiet
) -> None:
    """Train one configuration, select on validation, evaluate on test once."""
    check_tracker(tracker)
    configs = TrialConfig.load_yaml(config_path) if config_path else [TrialConfig()]
    if (
        metrics_out and not Path(metrics_out).resolve().parent.is_dir()
    ):  # say so before training, not after
        raise DrltuneError(
            f"--metrics-out {metrics_out}: directory {Path(metrics_out).parent} does not exist"
        )
    if save_model:
        if len(configs) * seeds > 1:
            raise DrltuneError(
                f"--save-model saves one model: {len(configs)} config(s) x --seeds {seeds} would "
                "train several; give one config and --seeds 1"
            )
        from drltune.train.saved_model import check_writable

        check_writable(save_model)
    run_tracker = None
    if tracker == "mlflow":
        from drltune.tracking import MlflowTracker

        run_tracker = MlflowTracker(
            tracker_uri, TRAIN_EXPERIMENT, warn=lambda line: click.echo(line, err=True)
        )
    runs = []
    for cfg in configs:
        cfg = cfg.with_overrides(list(assignments))
        if epochs:
            cfg = cfg.replace(epochs=epochs)
        warn_inert(cfg)
        seed_runs = [
            run_one(cfg.replace(seed=cfg.seed + i), quiet, save_model, run_tracker)
            for i in range(seeds)
        ]
        if seeds > 1:
            accs = [r["test_acc"] for r in seed_runs]
            click.echo(
                f"test_acc over {seeds} seeds: {statistics.mean(accs):.4f} ± "
                f"{statistics.stdev(accs):.4f}"
            )
        runs.extend(seed_runs)
    if metrics_out:
        payload: dict[str, Any] = runs[0] if len(runs) == 1 else {"runs": runs}
        if len(runs) > 1:
            accs = [r["test_acc"] for r in runs]
            payload.update(test_acc_mean=statistics.mean(accs), test_acc_std=statistics.stdev(accs))
        try:
            Path(metrics_out).write_text(json.dumps(payload, indent=1))
        except OSError as exc:
            raise DrltuneError(f"cannot write {metrics_out}: {exc.strerror}") from None


COMMANDS = [train_cmd]
