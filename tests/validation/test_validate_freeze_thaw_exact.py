"""freeze-thaw-exact: stand-ins for the contract test, and the validator's own pieces.

`DenseFreezeThaw` is the exact predictive by another route than the validator's oracle: the
full joint covariance over every context and query (configuration, epoch) row, written by
hand from the model's definition (a Matérn-5/2 over configurations, the exponential-decay
kernel and the amplitude term within a curve), conditioned with `torch.linalg.solve`. The
oracle (`pfnkit.reference.freeze_thaw`) instead works curve by curve in block form through
gpytorch's kernels. With ``blind`` it ignores the context and predicts the prior.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import Normal

from pfnkit.checkpoint import Checkpoint
from pfnkit.models import PFNConfig
from pfnkit.validation import VALIDATORS, ValidationOptions, validate
from priors.gp import GPPrior
from priors.learning_curves import FreezeThawPrior, FreezeThawPriorConfig
from tests.helpers import make_tiny_pfn

# A small task family for the contract: 2 features, 8 epochs, fixed hyperparameters (the
# defaults, fitted to real curves), so a stand-in can read the GP off the config.
CONTRACT_CONFIG = FreezeThawPriorConfig(num_dims=2, max_epoch=8, num_configs_max=6)
FT_EXACT_GAP = 1e-6  # float64, dense solve vs block form of one Gaussian (float32 inputs)
# 90% coverage of the exact predictive on 16 tasks x 30 cells per size is off 0.90 by sampling
# error (queries of one task share its curves; 0.006-0.033 measured over three seeds); the
# blind model's mean NLL gap (0.44-0.54 nats measured) is far above FT_EXACT_GAP.
FT_COVERAGE_ERROR = 0.08
CONTRACT_OPTIONS = ValidationOptions(tasks=16, sizes=(3, 20), n_qry=30)


class DenseFreezeThaw(nn.Module):
    """The freeze-thaw GP's predictive by dense joint conditioning (or the prior, if blind)."""

    def __init__(self, config: FreezeThawPriorConfig, *, blind: bool = False) -> None:
        super().__init__()
        if config.has_hyperpriors or config.kernel != "matern52":
            raise ValueError("the stand-in reads fixed hyperparameters of a Matérn-5/2 prior")
        self.h = {name: getattr(config, name).a for name in (
            "mean", "lengthscale", "outputscale", "curve_scale", "alpha", "beta", "noise",
            "amplitude_mean", "amplitude_var")}  # fmt: skip
        self.blind = blind

    def _basis(self, s: Tensor) -> Tensor:
        return (self.h["beta"] / (s + self.h["beta"])) ** self.h["alpha"]

    def _mean(self, rows: Tensor) -> Tensor:
        return self.h["mean"] + self.h["amplitude_mean"] * self._basis(rows[..., -1])

    def _cov(self, a: Tensor, b: Tensor) -> Tensor:
        h = self.h
        r = torch.cdist(a[:, :-1], b[:, :-1]) / h["lengthscale"]
        k_x = (
            h["outputscale"] * (1 + math.sqrt(5) * r + 5 * r**2 / 3) * torch.exp(-math.sqrt(5) * r)
        )
        same = (a[:, None, :-1] == b[None, :, :-1]).all(-1)
        s_a, s_b = a[:, -1], b[:, -1]
        k_t = (
            h["curve_scale"] * (h["beta"] / (s_a[:, None] + s_b[None, :] + h["beta"])) ** h["alpha"]
        )
        k_t = k_t + h["amplitude_var"] * self._basis(s_a)[:, None] * self._basis(s_b)[None, :]
        return k_x + same * k_t

    def _one(self, x_ND: Tensor, y_N: Tensor, x_MD: Tensor) -> tuple[Tensor, Tensor]:
        prior_var_M = self._cov(x_MD, x_MD).diagonal() + self.h["noise"]
        if self.blind or len(y_N) == 0:
            return self._mean(x_MD), prior_var_M
        k_NN = self._cov(x_ND, x_ND) + self.h["noise"] * torch.eye(len(y_N), dtype=torch.float64)
        k_NM = self._cov(x_ND, x_MD)
        weights_NM = torch.linalg.solve(k_NN, k_NM)
        mean_M = self._mean(x_MD) + weights_NM.T @ (y_N - self._mean(x_ND))
        return mean_M, prior_var_M - (weights_NM * k_NM).sum(0)

    def forward(self, x_ctx: Tensor, y_ctx: Tensor, x_qry: Tensor) -> Normal:
        return self.predict_from_cache(self.encode_context(x_ctx, y_ctx), x_qry)

    def encode_context(self, x_ctx: Tensor, y_ctx: Tensor) -> tuple[Tensor, Tensor]:
        return x_ctx.double(), y_ctx.double()

    def predict_from_cache(self, cache: tuple[Tensor, Tensor], x_qry: Tensor) -> Normal:
        parts = [self._one(x, y, q.double()) for x, y, q in zip(*cache, x_qry, strict=True)]
        mean_BM = torch.stack([m for m, _ in parts])
        var_BM = torch.stack([v for _, v in parts])
        return Normal(mean_BM, var_BM.clamp_min(1e-12).sqrt())


def contract_parts() -> tuple[Any, dict[str, Any], nn.Module, nn.Module, ValidationOptions]:
    """Prior, card, exact and blind stand-ins, options: the contract test's `Setup` fields."""
    card = {
        "prior_name": "freeze-thaw",
        "prior_config": CONTRACT_CONFIG.to_dict(),
        "tolerances": {"nll_gap_mean": FT_EXACT_GAP, "coverage90_error_max": FT_COVERAGE_ERROR},
    }
    return (FreezeThawPrior(CONTRACT_CONFIG), card, DenseFreezeThaw(CONTRACT_CONFIG),
            DenseFreezeThaw(CONTRACT_CONFIG, blind=True), CONTRACT_OPTIONS)  # fmt: skip


def _checkpoint(model: nn.Module, tolerances: dict[str, float] | None = None) -> Checkpoint:
    card = {"reference": "freeze-thaw-exact", "tolerances": tolerances or {}}
    return Checkpoint(name="ft-test", model=model, card=card)


def test_exact_stand_in_matches_the_oracle_per_size() -> None:
    """The dense route and the block-form oracle give the same NLL at every size."""
    report = validate(_checkpoint(DenseFreezeThaw(CONTRACT_CONFIG)),
                      FreezeThawPrior(CONTRACT_CONFIG), options=CONTRACT_OPTIONS)  # fmt: skip
    for size in report.sizes:
        assert abs(size.gap) < FT_EXACT_GAP
        assert size.pfn_coverage == pytest.approx(size.exact_coverage, abs=1e-12)


def test_an_untrained_pfn_runs_through_the_front_door() -> None:
    """A tiny random PFN over D + 1 inputs: the report, its tables, and a failed gate."""
    config = PFNConfig(num_features=3, d_model=32, n_heads=4, n_layers=2, d_ff=64, n_bars=20)
    checkpoint = _checkpoint(make_tiny_pfn(config), {"nll_gap_mean": 0.05})
    report = validate(checkpoint, FreezeThawPrior(CONTRACT_CONFIG),
                      options=ValidationOptions(tasks=2, sizes=(1, 10), n_qry=5))  # fmt: skip
    assert [s.n_ctx for s in report.sizes] == [1, 10]
    assert all(math.isfinite(s.pfn_nll) and math.isfinite(s.exact_nll) for s in report.sizes)
    assert not report.passed  # untrained: far from the Bayes optimum
    assert len(VALIDATORS["freeze-thaw-exact"].tables(report)) == 2


def test_a_gp_prior_is_refused_with_a_message_naming_the_validator() -> None:
    with pytest.raises(ValueError, match="freeze-thaw-exact validator needs a freeze-thaw prior"):
        validate(_checkpoint(nn.Identity()), GPPrior(),
                 options=ValidationOptions(tasks=1, sizes=(1,)))  # fmt: skip
