"""Balancing methods behind a registry; importing this package registers them all."""

from drltune.methods import (  # noqa: F401  (importing a method's module registers it)
    agm,
    arl,
    baseline,
    dr,
    gblending,
    inforeg,
    lfm,
    mla,
    mmpareto,
    ogm_ge,
    pmr,
    reconboost,
)
from drltune.methods.base import METHODS, Method, TrialView

__all__ = ["METHODS", "Method", "TrialView"]
