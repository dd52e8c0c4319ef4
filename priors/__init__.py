"""Samplers of synthetic tasks; each emits `pfnkit.data.Batch`. Look them up in REGISTRY."""

from __future__ import annotations

from typing import Any

from priors.bnn import BNNPrior, BNNPriorConfig
from priors.gmm import GMMPrior, GMMPriorConfig
from priors.gp import GPPrior, GPPriorConfig, Hyperprior
from priors.learning_curves import FreezeThawPrior, FreezeThawPriorConfig
from priors.learning_curves_parametric import ParametricCurvePrior, ParametricCurvePriorConfig
from priors.scm import SCMPrior, SCMPriorConfig
from priors.student_t import StudentTPrior, StudentTPriorConfig

__all__ = [
    "REGISTRY",
    "BNNPrior",
    "BNNPriorConfig",
    "FreezeThawPrior",
    "FreezeThawPriorConfig",
    "GMMPrior",
    "GMMPriorConfig",
    "GPPrior",
    "GPPriorConfig",
    "ParametricCurvePrior",
    "ParametricCurvePriorConfig",
    "Hyperprior",
    "SCMPrior",
    "SCMPriorConfig",
    "StudentTPrior",
    "StudentTPriorConfig",
    "make_prior",
]

# name -> (prior class, config class)
REGISTRY: dict[str, tuple[type, type]] = {
    "gp": (GPPrior, GPPriorConfig),
    "gmm": (GMMPrior, GMMPriorConfig),
    "bnn": (BNNPrior, BNNPriorConfig),
    "scm": (SCMPrior, SCMPriorConfig),
    "tp": (StudentTPrior, StudentTPriorConfig),
    "freeze-thaw": (FreezeThawPrior, FreezeThawPriorConfig),
    "lc-parametric": (ParametricCurvePrior, ParametricCurvePriorConfig),
}


def make_prior(name: str, config: dict[str, Any] | None = None) -> Any:
    """Build the registered prior `name` from a plain-data config dict."""
    if name not in REGISTRY:
        raise KeyError(f"unknown prior {name!r}; registered priors: {sorted(REGISTRY)}")
    prior_cls, config_cls = REGISTRY[name]
    return prior_cls(config_cls.from_dict(config or {}))
