"""Test helpers shared across test modules."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Categorical

from pfnkit.models import PFN, DistributionTransformer, DTConfig, PFNConfig

__all__ = [
    "TINY_CLF_CONFIG",
    "TINY_CONFIG",
    "TINY_DT_CONFIG",
    "ImportanceSamplingPredictive",
    "make_tiny_dt",
    "make_tiny_pfn",
]

TINY_CONFIG = PFNConfig(num_features=2, d_model=32, n_heads=4, n_layers=2, d_ff=64, n_bars=20)
TINY_CLF_CONFIG = PFNConfig(num_features=2, d_model=32, n_heads=4, n_layers=2, d_ff=64, n_classes=3)
TINY_DT_CONFIG = DTConfig(dim=2, obs_dim=2, k_max=4, d_model=32, n_heads=4, n_layers=2, d_ff=64)


def load_script(path: Path, name: str | None = None) -> ModuleType:
    """Import a script of examples/ or benchmarks/ (not packages) as module `name`.

    The script's folder is on `sys.path` while it is imported, as when Python runs it, so
    its imports of sibling modules (benchmarks/tabular.py's `tabular_data`, ...) resolve;
    the siblings stay in `sys.modules` afterwards, and `sys.path` is restored.
    """
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    folder = str(Path(path).resolve().parent)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(folder)  # the first occurrence: the one inserted above
    return module


def make_tiny_pfn(config: PFNConfig = TINY_CONFIG, seed: int = 0) -> PFN:
    """A randomly initialised PFN (regression or classification), perturbed so no parameter
    sits at its (zero) init."""
    torch.manual_seed(seed)
    borders = None if config.n_classes else torch.linspace(-3, 3, config.n_bars + 1)
    model = PFN(config, borders)
    with torch.no_grad():
        model.query_marker.normal_()
    return model.eval()


def make_tiny_dt(config: DTConfig = TINY_DT_CONFIG, seed: int = 0) -> DistributionTransformer:
    """A randomly initialised float64 Distribution Transformer in eval mode."""
    torch.manual_seed(seed)
    return DistributionTransformer(config).double().eval()


class ImportanceSamplingPredictive(nn.Module):
    """The exact posterior predictive by self-normalised importance sampling from the prior.

    With a Bernoulli likelihood every weight is at most 1, so for a few context points the
    prior is an adequate proposal: an oracle independent of NUTS. ``prior`` is a
    fixed-architecture binary BNN prior with one logit (`priors.bnn.BNNPrior`).
    """

    def __init__(self, prior: Any, draws: int, seed: int = 99) -> None:
        super().__init__()
        self.prior = prior
        gen = torch.Generator().manual_seed(seed)
        self.theta_KP = prior.sample(draws, 0, 0, generator=gen, dtype=torch.float64).meta[
            "weights"
        ]

    def forward(self, x_ctx: Tensor, y_ctx: Tensor, x_qry: Tensor) -> Categorical:
        probs = []
        for x_ND, y_N, x_MD in zip(x_ctx.double(), y_ctx.double(), x_qry.double(), strict=True):
            log_w_K = self.prior.log_likelihood(self.theta_KP, x_ND, y_N)
            w_K = torch.softmax(log_w_K, dim=0)
            p1_KM = self.prior.predictive(self.theta_KP, x_MD).probs  # binary: P(y = 1)
            p1_M = torch.einsum("k,km->m", w_K, p1_KM)
            probs.append(torch.stack([1 - p1_M, p1_M], dim=-1))
        return Categorical(probs=torch.stack(probs))
