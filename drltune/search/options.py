"""The names `--sampler` and `--pruner` accept, importable without Optuna: the commands declare
their choices when they are imported, and a command that only refuses its arguments loads no
Optuna."""

SAMPLERS = ("tpe", "random", "gp")  # made in drltune.search.samplers
PRUNERS = ("hyperband", "median", "sha", "none")  # made in drltune.search.pruning
