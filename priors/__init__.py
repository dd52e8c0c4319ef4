"""Samplers of synthetic tasks; each emits `pfnkit.data.Batch`. Look them up in REGISTRY."""

from __future__ import annotations

from typing import Any

from priors.bnn import BNNPrior, BNNPriorConfig
from priors.gmm import GMMPrior, GMMPriorConfig
from priors.gp import GPPrior, GPPriorConfig, Hyperprior
from priors.scm import SCMPrior, SCMPriorConfig
from priors.student_t import StudentTPrior, StudentTPriorConfig

__all__ = [
    "REGISTRY",
    "BNNPrior",
    "BNNPriorConfig",
    "GMMPrior",
    "GMMPriorConfig",
    "GPPrior",
    "GPPriorConfig",
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
}


def make_prior(name: str, config: dict[str, Any] | None = None) -> Any:
    """Build the registered prior `name` from a plain-data config dict."""
    if name not in REGISTRY:
        raise KeyError(f"unknown prior {name!r}; registered priors: {sorted(REGISTRY)}")
    prior_cls, config_cls = REGISTRY[name]
    return prior_cls(config_cls.from_dict(config or {}))
