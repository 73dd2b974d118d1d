"""Fault injection for the fault-tolerance tests: the real code paths, made to fail on cue.

`DRLTUNE_FAULTS` holds `POINT:EPOCH:ACTION[:FILE]` items separated by `;`. POINT is where the
code calls `inject` (`epoch_start`, `epoch_end` in the trainer, `dr_reinit` inside DR's
re-initialisation), EPOCH an epoch number or `*`. ACTION:
  raise  a RuntimeError, like a data error       nan   every model weight becomes NaN
  kill   SIGKILL of this process (a dying worker) hang  sleep until killed
With FILE, the fault fires once over all processes (whoever creates FILE first) and FILE marks
that it fired, so a test can wait for it. Unset (the normal case) this costs one dict lookup.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

ENV = "DRLTUNE_FAULTS"
ACTIONS = ("raise", "nan", "kill", "hang")


def _claim(path: str) -> bool:
    """True for the first process that creates `path`."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def inject(point: str, epoch: int, model: Any = None) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    for item in filter(None, spec.split(";")):
        where, when, action, *rest = item.split(":", 3)
        if where != point or when not in ("*", str(epoch)):
            continue
        if action not in ACTIONS:
            raise ValueError(f"{ENV}: unknown action {action!r} in {item!r}")
        if rest and not _claim(rest[0]):
            continue
        if action == "raise":
            raise RuntimeError(f"injected fault at {point}, epoch {epoch}")
        if action == "nan":
            import torch

            with torch.no_grad():
                for p in model.parameters():
                    p.fill_(float("nan"))
        elif action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif action == "hang":
            time.sleep(3600)
