"""Balancing methods behind a registry; importing this package registers them all."""
from drltune.methods.base import METHODS, Method, TrialView
from drltune.methods import baseline, dr  # noqa: F401  (registration)
from drltune.methods import agm, arl, mla, mmpareto, ogm_ge, pmr  # noqa: F401  (registration)
from drltune.methods import gblending, inforeg  # noqa: F401  (registration)
from drltune.methods import lfm, reconboost  # noqa: F401  (registration)

__all__ = ["METHODS", "Method", "TrialView"]
