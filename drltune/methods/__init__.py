"""Balancing methods behind a registry; importing this package registers them all."""
from drltune.methods import agm, arl, baseline, dr, gblending, inforeg, lfm, mla, mmpareto, ogm_ge, pmr, reconboost  # noqa: F401  (registration)  # noqa: F401  (registration)  # noqa: F401  (registration)  # noqa: F401  (registration)
from drltune.methods.base import METHODS, Method, TrialView

__all__ = ["METHODS", "Method", "TrialView"]
