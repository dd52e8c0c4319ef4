"""The `lc-nuts` validator: a single-curve PFN against NUTS over the parametric posterior.

Fast tests run a tiny random PFN and a tiny NUTS budget through the whole report (figures,
JSON, tables, checks), check the per-size aggregation against a loop, and the refusal of a
prior without a parametric posterior. `contract_parts` gives the validator contract
(tests/validation/test_validators_contract.py) its stand-ins: the posterior predictive by
importance sampling from the prior (independent of NUTS), and the prior predictive.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import torch
from rich.table import Table
from torch import Tensor, nn

from pfnkit.checkpoint import Checkpoint
from pfnkit.models import PFN, PFNConfig
from pfnkit.reference.mcmc import NUTSConfig
from pfnkit.validation import ValidationOptions, validate
from pfnkit.validation.lc_nuts import (
    LcNutsReport,
    LcNutsSize,
    LcNutsTask,
    lc_nuts_tables,
    validate_lc_nuts,
)
from priors.gp import GPPrior
from priors.learning_curves_parametric import ParametricCurvePrior, ParametricCurvePriorConfig

FLOAT64_ATOL = 1e-12  # float64 identity: the same average along two routes
TINY_NUTS = NUTSConfig(num_chains=1, warmup=10, num_samples=10, max_tree_depth=3)
TINY_LC_PFN = PFNConfig(num_features=1, d_model=16, n_heads=2, n_layers=1, d_ff=32, n_bars=40)
# The contract's noisy prior: sigma around e^-3, so prior draws are an adequate proposal
# for the importance-sampling stand-in; 30 epochs keep every NUTS step cheap.
NOISY = ParametricCurvePriorConfig(max_epoch=30, noise_log_mean=-3.0, noise_log_std=0.3)
IS_DRAWS = 40_000
# Importance sampling and NUTS estimate the same predictive: on 2 tasks x 20 query epochs
# the exact stand-in's gap is -0.033 nats, the blind prior predictive's 0.48 (measured).
LC_NUTS_GAP = 0.1


def _tiny_pfn() -> nn.Module:
    """A random PFN whose bars span the curves' range (no training: the report is checked)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return PFN(TINY_LC_PFN, torch.linspace(-0.2, 1.2, TINY_LC_PFN.n_bars + 1)).eval()


def test_a_tiny_pfn_gets_a_full_report() -> None:
    prior = ParametricCurvePrior()
    report = validate_lc_nuts(
        _tiny_pfn(), prior, checkpoint="tiny", n_ctx_sizes=(3,), n_tasks=1, n_qry=5,
        nuts=TINY_NUTS, tolerances={"nll_gap_mean": 0.05, "speedup_min": 1.0},
    )  # fmt: skip
    data = json.loads(json.dumps(report.to_dict()))
    (size,) = data["sizes"]
    assert size["n_ctx"] == 3 and size["n_tasks"] == 1
    assert math.isfinite(size["pfn_nll_all"]) and math.isfinite(size["ref_nll_all"])
    assert data["speedup"] > 0 and size["ref_seconds_per_task"] > 0
    assert data["reference"].startswith("nuts") and set(data["tasks"][0]["diagnostics"]) == {
        "max_r_hat", "min_ess"}  # fmt: skip
    names = ["nll_gap_mean", "coverage90_error_max", "speedup_min", "trusted_fraction_min"]
    assert [c["name"] for c in data["checks"]] == names
    assert data["tolerances"] == {"nll_gap_mean": 0.05, "speedup_min": 1.0}
    tables = lc_nuts_tables(data)
    assert len(tables) == 2 and all(isinstance(t, Table) for t in tables)
    if size["n_trusted"] == 0:  # 10 draws rarely pass the gate: the gap is unmeasured
        assert data["mean_gap"] is None and not data["passed"]


def _task(pfn: float, ref: float, trusted: bool, seconds: float = 1.0) -> LcNutsTask:
    return LcNutsTask(pfn_nll=pfn, ref_nll=ref, pfn_coverage=0.8, ref_coverage=0.9,
                      pfn_seconds=0.001, ref_seconds=seconds, trusted=trusted,
                      diagnostics={"max_r_hat": 1.0, "min_ess": 200.0})  # fmt: skip


def test_sizes_average_trusted_tasks_and_the_checks_gate_them() -> None:
    tasks = [_task(1.0, 0.5, True), _task(3.0, 2.0, True), _task(9.0, 0.0, False, 3.0)]
    size = LcNutsSize.from_tasks(5, tasks)
    assert size.n_trusted == 2
    assert size.gap == pytest.approx((1.0 + 3.0) / 2 - (0.5 + 2.0) / 2, abs=FLOAT64_ATOL)
    assert size.pfn_nll_all == pytest.approx(13.0 / 3, abs=FLOAT64_ATOL)
    assert size.ref_seconds_per_task == pytest.approx(5.0 / 3, abs=FLOAT64_ATOL)
    report = LcNutsReport("m", {}, [size], {"nll_gap_mean": 1.0, "speedup_min": 1000.0})
    assert report.speedup == pytest.approx((5.0 / 3) / 0.001)
    assert report.passed
    strict = LcNutsReport("m", {}, [size], {"speedup_min": 1e4})
    assert not strict.passed  # a lower bound: 1667x is not 10^4x
    untrusted = LcNutsSize.from_tasks(8, [_task(1.0, 0.5, False)])
    both = LcNutsReport("m", {}, [size, untrusted], {"trusted_fraction_min": 0.5})
    assert both.mean_gap == pytest.approx(size.gap, abs=FLOAT64_ATOL)  # trusted sizes only
    assert both.trusted_fraction == pytest.approx(2 / 4) and both.passed
    assert LcNutsReport("m", {}, [untrusted], {"nll_gap_mean": 1.0}).mean_gap is None


def test_gap_standard_errors_are_over_paired_trusted_tasks() -> None:
    # trusted paired differences 0.5 and 1.0: sample sd 0.5 / sqrt(2) over sqrt(2) tasks = 0.25
    tasks = [_task(1.0, 0.5, True), _task(3.0, 2.0, True), _task(9.0, 0.0, False)]
    size = LcNutsSize.from_tasks(5, tasks)
    assert size.gap_stderr == pytest.approx(0.25, abs=FLOAT64_ATOL)
    other = LcNutsSize.from_tasks(10, [_task(0.0, 0.0, True), _task(2.0, 0.0, True)])
    assert other.gap_stderr == pytest.approx(1.0, abs=FLOAT64_ATOL)  # differences 0 and 2
    report = LcNutsReport("m", {}, [size, other], {})
    # the mean of two independent gaps: sqrt(0.25^2 + 1^2) / 2
    assert report.mean_gap_stderr == pytest.approx(math.sqrt(0.0625 + 1.0) / 2, abs=FLOAT64_ATOL)
    assert report.to_dict()["mean_gap_stderr"] == pytest.approx(report.mean_gap_stderr)
    lone = LcNutsSize.from_tasks(2, [_task(1.0, 0.0, True)])
    assert (
        lone.gap_stderr is None and LcNutsReport("m", {}, [size, lone], {}).mean_gap_stderr is None
    )


def test_a_prior_without_a_parametric_posterior_is_refused() -> None:
    card = {"prior_name": "gp", "prior_config": {}, "reference": "lc-nuts"}
    checkpoint = Checkpoint(name="gp-like", model=_tiny_pfn(), card=card)
    with pytest.raises(ValueError, match="lc-parametric"):
        validate(checkpoint, GPPrior(), options=ValidationOptions(tasks=1, sizes=(2,)))


# ---------------------------------------------------------------- contract stand-ins
class CurveStandIn(nn.Module):
    """The posterior predictive by self-normalised importance sampling from the prior.

    Weights are the context likelihood of each prior draw (``blind``: uniform, the prior
    predictive); the predictive is the weighted mixture of N(curve(t | θ), σ²).
    """

    def __init__(self, prior: ParametricCurvePrior, *, blind: bool = False) -> None:
        super().__init__()
        self.prior, self.blind = prior, blind
        self.params_SP = prior.sample_params(IS_DRAWS, torch.Generator().manual_seed(99))

    def encode_context(self, x_ctx: Tensor, y_ctx: Tensor) -> tuple[Tensor, Tensor]:
        return x_ctx.double(), y_ctx.double()

    def predict_from_cache(self, cache: tuple[Tensor, Tensor], x_qry: Tensor) -> Any:
        from tests.validation.test_validators_contract import NormalMixture

        weights, means, stds = [], [], []
        for x_ND, y_N, x_MD in zip(*cache, x_qry.double(), strict=True):
            t_N = torch.round(x_ND[:, 0] * self.prior.config.max_epoch)
            log_w_S = self.prior.log_likelihood(self.params_SP, t_N, y_N)
            weights.append(torch.zeros_like(log_w_S) if self.blind else log_w_S)
            obs = self.prior.observation_distribution(self.params_SP, x_MD)
            means.append(obs.loc.T)
            stds.append(obs.scale.T)
        return NormalMixture(torch.stack(weights), torch.stack(means), torch.stack(stds))


def contract_parts() -> tuple[Any, dict[str, Any], nn.Module, nn.Module, ValidationOptions]:
    """Prior, card, exact and blind stand-ins and options for the validator contract."""
    prior = ParametricCurvePrior(NOISY)
    card = {"prior_name": "lc-parametric", "prior_config": NOISY.to_dict(),
            "tolerances": {"nll_gap_mean": LC_NUTS_GAP}}  # fmt: skip
    options = ValidationOptions(tasks=2, sizes=(3,), n_qry=20, nuts_warmup=200,
                                nuts_samples=200)  # fmt: skip
    return prior, card, CurveStandIn(prior), CurveStandIn(prior, blind=True), options
