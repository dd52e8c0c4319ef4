"""The validator contract, run over every registered validator.

For each name in `VALIDATORS`, `CASES` holds a builder of tiny settings: a prior, a card, an
exact stand-in model (it predicts what the validator's oracle computes, by an independent
route) and a model blind to the data (it predicts the prior predictive, ignoring the
context). Through `pfnkit.validation.validate` and the card's ``reference``, the exact
stand-in passes every gated check and the blind model fails one. A validator without a case
fails `test_every_registered_validator_has_a_case`, so none can skip the contract.

To add a case: write a builder returning a `Setup` and add it to `CASES` under the
validator's name (``slow=True`` when it runs NUTS or takes more than a few seconds).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.table import Table
from scipy import stats
from torch import Tensor, nn
from torch.distributions import Distribution, Normal, StudentT, constraints

from pfnkit.checkpoint import Checkpoint
from pfnkit.report import Report
from pfnkit.validation import VALIDATORS, ValidationOptions, validate
from priors.gp import GPPrior, GPPriorConfig, Hyperprior, kernel_matrix


@dataclass(frozen=True)
class Setup:
    """One validator's tiny settings: the prior, its card and the two stand-in models.

    Attributes:
        prior: the prior the validator draws tasks from.
        card: the card fields the validator reads (prior_name, prior_config, tolerances,
            ...); the test adds ``reference``.
        exact: a model that predicts what the oracle computes.
        blind: a model that ignores the context (the prior predictive).
        options: tiny run settings.
    """

    prior: Any
    card: dict[str, Any]
    exact: nn.Module
    blind: nn.Module
    options: ValidationOptions


@dataclass(frozen=True)
class Case:
    """How to build a validator's `Setup`, and whether running it is slow."""

    build: Callable[[], Setup]
    slow: bool = False


# ------------------------------------------------------------------ GP stand-ins
class NormalMixture(Distribution):
    """Per query point a weighted mixture of S normals: batch shape (B, M), S components."""

    arg_constraints: dict = {}
    support = constraints.real
    _BISECTIONS = 80  # halvings of a bracket of width ~ 20 std: below float64 resolution

    def __init__(self, log_weights_BS: Tensor, mean_BMS: Tensor, std_BMS: Tensor) -> None:
        self.log_weights_B1S = log_weights_BS.log_softmax(-1)[:, None, :]
        self.components = Normal(mean_BMS, std_BMS)
        super().__init__(batch_shape=mean_BMS.shape[:-1], validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        log_p_BMS = self.components.log_prob(value.double()[..., None])
        return torch.logsumexp(self.log_weights_B1S + log_p_BMS, -1)

    def cdf(self, value: Tensor) -> Tensor:
        cdf_BMS = self.components.cdf(value.double()[..., None])
        return (self.log_weights_B1S.exp() * cdf_BMS).sum(-1)

    def icdf(self, value: Tensor) -> Tensor:
        """By bisection on the mixture's cdf."""
        loc, scale = self.components.loc, self.components.scale
        low = (loc - 10 * scale).amin(-1).expand(value.shape).clone()
        high = (loc + 10 * scale).amax(-1).expand(value.shape).clone()
        for _ in range(self._BISECTIONS):
            middle = (low + high) / 2
            below = self.cdf(middle) < value.double()
            low, high = torch.where(below, middle, low), torch.where(below, high, middle)
        return (low + high) / 2

    @property
    def mean(self) -> Tensor:
        return (self.log_weights_B1S.exp() * self.components.loc).sum(-1)

    def quantiles(self, levels: Tensor) -> Tensor:
        """(*batch_shape, L), as `BarDistribution.quantiles`."""
        return torch.stack([self.icdf(torch.full(self.batch_shape, float(q))) for q in levels], -1)


class GPStandIn(nn.Module):
    """A PFN stand-in averaging the GP predictive over hyperparameter draws.

    Each draw is weighted by its marginal likelihood of the context (importance sampling
    from the prior), or uniformly when `blind` (the prior predictive). The GP algebra is a
    Cholesky by hand on `priors.gp.kernel_matrix`: no code shared with gpytorch or NUTS.
    """

    def __init__(self, config: GPPriorConfig, *, draws: int, blind: bool = False) -> None:
        super().__init__()
        self.kernel, self.blind = config.kernel, blind
        hyper = GPPrior(config).sample_hyperparameters(draws, torch.Generator().manual_seed(0))
        self.lengthscale_SD = hyper["lengthscale"]
        self.outputscale_S, self.noise_S = hyper["outputscale"], hyper["noise"]

    def forward(self, x_ctx: Tensor, y_ctx: Tensor, x_qry: Tensor) -> NormalMixture:
        return self.predict_from_cache(self.encode_context(x_ctx, y_ctx), x_qry)

    def encode_context(self, x_ctx: Tensor, y_ctx: Tensor) -> tuple[Tensor, Tensor]:
        return x_ctx.double(), y_ctx.double()

    def predict_from_cache(self, cache: tuple[Tensor, Tensor], x_qry: Tensor) -> NormalMixture:
        parts = [self._one_task(x, y, q.double()) for x, y, q in zip(*cache, x_qry, strict=True)]
        return NormalMixture(*(torch.stack(p) for p in zip(*parts, strict=True)))

    def _one_task(self, x_ND: Tensor, y_N: Tensor, x_MD: Tensor) -> tuple[Tensor, ...]:
        s, n = len(self.noise_S), len(y_N)
        prior_var_S = self.outputscale_S + self.noise_S
        if self.blind or n == 0:
            std_MS = prior_var_S.sqrt().expand(len(x_MD), s)
            return torch.zeros(s, dtype=torch.float64), torch.zeros_like(std_MS), std_MS
        k = lambda a, b: kernel_matrix(  # noqa: E731
            self.kernel, a.expand(s, *a.shape), b.expand(s, *b.shape), self.lengthscale_SD,
            self.outputscale_S,
        )  # fmt: skip
        eye = torch.eye(n, dtype=torch.float64)
        chol_SNN = torch.linalg.cholesky(k(x_ND, x_ND) + self.noise_S[:, None, None] * eye)
        white_SN1 = torch.linalg.solve_triangular(
            chol_SNN, y_N.expand(s, n)[..., None], upper=False
        )
        log_det_S = chol_SNN.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        log_weights_S = -0.5 * white_SN1.square().sum((-2, -1)) - log_det_S
        cross_SNM = torch.linalg.solve_triangular(chol_SNN, k(x_ND, x_MD), upper=False)
        mean_SM = (cross_SNM * white_SN1).sum(-2)
        var_SM = prior_var_S[:, None] - cross_SNM.square().sum(-2)
        return log_weights_S, mean_SM.T, var_SM.clamp_min(1e-12).sqrt().T


def _gp_case(config: GPPriorConfig, draws: int, tolerances: dict[str, float], options) -> Setup:
    card = {"prior_name": "gp", "prior_config": config.to_dict(), "tolerances": tolerances}
    exact = GPStandIn(config, draws=draws)
    blind = GPStandIn(config, draws=draws, blind=True)
    return Setup(GPPrior(config), card, exact, blind, options)


GP_EXACT_GAP = 1e-6  # one fixed draw: the stand-in is the exact GP (float64, two routes)


def _gp_exact_case() -> Setup:
    """The 1-D RBF GP of gp-rbf; its one fixed draw makes the stand-in the exact GP."""
    tolerances = {"nll_gap_mean": GP_EXACT_GAP, "nll_gap_max": GP_EXACT_GAP}
    options = ValidationOptions(tasks=4, sizes=(1, 8), n_qry=10)
    return _gp_case(GPPriorConfig(), 1, tolerances, options)


# Importance sampling and NUTS are both Monte Carlo estimates of the same predictive; on one
# task's 10 query points their NLLs agree to a few hundredths of a nat (0.03 measured). The
# blind model is far behind (the prior predictive after 6 informative points; 1.0 measured).
GP_NUTS_GAP = 0.1
GP_NUTS_IS_DRAWS = 20_000


def _gp_nuts_case() -> Setup:
    """A 1-D GP with tight hyperpriors: cheap NUTS runs that pass their R-hat and ESS gates."""
    config = GPPriorConfig(
        lengthscale=Hyperprior(family="lognormal", a=math.log(0.3), b=0.3),
        outputscale=Hyperprior(family="lognormal", a=0.0, b=0.3),
        noise=Hyperprior(family="loguniform", a=0.01, b=0.1),
    )
    tolerances = {"nll_gap_mean": GP_NUTS_GAP, "nll_gap_max": GP_NUTS_GAP}
    options = ValidationOptions(tasks=1, sizes=(6,), dims=(1,), n_qry=10)
    return _gp_case(config, GP_NUTS_IS_DRAWS, tolerances, options)


# ------------------------------------------------------------ BNN and DT stand-ins
BNN_NUTS_GAP = 0.05  # nats: importance sampling vs NUTS on 2 tasks x 20 points (Monte Carlo)
BNN_IS_DRAWS = 100_000  # prior draws of the importance-sampling stand-in


def _bnn_nuts_case() -> Setup:
    """Logistic regression on one input (a depth-0 binary BNN): two weights, cheap NUTS."""
    from priors.bnn import BNNPrior
    from tests.helpers import ImportanceSamplingPredictive
    from tests.validation.test_validate_bnn_nuts import SMALL, DataBlind

    prior = BNNPrior(SMALL)
    card = {"prior_name": "bnn", "prior_config": SMALL.to_dict(),
            "tolerances": {"nll_gap_mean": BNN_NUTS_GAP}}  # fmt: skip
    options = ValidationOptions(tasks=2, sizes=(5,), n_qry=20, curve_tasks=0)
    return Setup(prior, card, ImportanceSamplingPredictive(prior, BNN_IS_DRAWS), DataBlind(),
                 options)  # fmt: skip


# The exact stand-in is the closed-form posterior: gaps vanish up to float64 (dt-exact) or
# up to the evidence's importance-sampling error (dt-nuts); C2ST within chance (0.5 ± 0.1).
DT_EXACT_TOLERANCES = {"nll_gap_mean": 1e-9, "c2st_mean": 0.6, "fusion_gap": 1e-8}
DT_NUTS_TOLERANCES = {"nll_gap_mean": 0.02, "c2st_mean": 0.6}


def _dt_case(tolerances: dict[str, float], options: ValidationOptions) -> Setup:
    """The Gaussian location simulator (conjugate), so the exact posterior is closed-form."""
    from tests.validation.test_validate_dt_exact import PRIOR, ExactPosterior

    card = {"prior_name": "gmm", "prior_config": PRIOR.config.to_dict(), "tolerances": tolerances}
    return Setup(PRIOR, card, ExactPosterior(), ExactPosterior(ignore_data=True), options)


def _dt_exact_case() -> Setup:
    return _dt_case(DT_EXACT_TOLERANCES, ValidationOptions(tasks=3, sizes=(0, 4)))


def _dt_nuts_case() -> Setup:
    options = ValidationOptions(tasks=4, sizes=(6,), nuts_tasks=1, nuts_warmup=200,
                                nuts_samples=400)  # fmt: skip
    return _dt_case(DT_NUTS_TOLERANCES, options)


# ------------------------------------------------------------------ Student-t stand-ins
class StudentTWithQuantiles(StudentT):
    """torch's StudentT with the icdf it lacks (scipy's t.ppf), so coverage can be read off."""

    def icdf(self, value: Tensor) -> Tensor:
        ppf = stats.t.ppf(value.double().numpy(), self.df.numpy(), self.loc.numpy(),
                          self.scale.numpy())  # fmt: skip
        return torch.as_tensor(ppf, dtype=torch.float64)


class TPStandIn(nn.Module):
    """The exact Student-t-process predictive by another route than the validator's oracle.

    The scale σ² ~ InvGamma(α, β) is conjugate: after n points with m = yᵀC⁻¹y it is
    InvGamma(α + n/2, β + m/2), and y* is the GP predictive with that scale integrated out,
    a Student-t with 2α + n degrees of freedom. The algebra is `torch.linalg.solve` (no
    Cholesky); `blind` ignores the context (the prior predictive, n = 0).
    """

    def __init__(self, prior: Any, *, blind: bool = False) -> None:
        super().__init__()
        self.prior, self.blind = prior, blind
        hyper = prior.student_t_hyperparameters()
        self.alpha, self.beta, self.noise = hyper["concentration"], hyper["rate"], hyper["noise"]

    def forward(self, x_ctx: Tensor, y_ctx: Tensor, x_qry: Tensor) -> StudentTWithQuantiles:
        return self.predict_from_cache(self.encode_context(x_ctx, y_ctx), x_qry)

    def encode_context(self, x_ctx: Tensor, y_ctx: Tensor) -> tuple[Tensor, Tensor]:
        if self.blind:
            return x_ctx[:, :0].double(), y_ctx[:, :0].double()
        return x_ctx.double(), y_ctx.double()

    def predict_from_cache(
        self, cache: tuple[Tensor, Tensor], x_qry: Tensor
    ) -> StudentTWithQuantiles:
        x_BND, y_BN = cache
        x_BMD, n = x_qry.double(), y_BN.shape[-1]
        k = self.prior.kernel_matrix
        c_BNN = k(x_BND, x_BND) + self.noise * torch.eye(n, dtype=torch.float64)
        k_BNM = k(x_BND, x_BMD)
        weights_BNM = torch.linalg.solve(c_BNN, k_BNM)
        alpha_n = self.alpha + n / 2
        beta_B = self.beta + 0.5 * (y_BN * torch.linalg.solve(c_BNN, y_BN)).sum(-1)
        mean_BM = (weights_BNM * y_BN[..., None]).sum(-2)
        prior_var_BM = k(x_BMD, x_BMD).diagonal(dim1=-2, dim2=-1) + self.noise
        var_BM = prior_var_BM - (weights_BNM * k_BNM).sum(-2)
        scale_BM = (beta_B[:, None] / alpha_n * var_BM).sqrt()
        return StudentTWithQuantiles(torch.full_like(mean_BM, 2 * alpha_n), mean_BM, scale_BM)


TP_EXACT_GAP = 1e-9  # float64: two routes to one closed form
# 90% coverage of the exact predictive on 8 tasks x 50 points per size is off 0.90 by sampling
# error alone (0.04 measured); the blind model misses by 0.145 and its NLL gap is 1.09 nats.
TP_COVERAGE_ERROR = 0.08


def _tp_exact_case() -> Setup:
    """The 1-D RBF Student-t process of tp-rbf (the prior's defaults)."""
    from priors.student_t import StudentTPrior, StudentTPriorConfig

    config = StudentTPriorConfig()
    prior = StudentTPrior(config)
    card = {"prior_name": "tp", "prior_config": config.to_dict(),
            "tolerances": {"nll_gap_mean": TP_EXACT_GAP,
                           "coverage90_error_max": TP_COVERAGE_ERROR}}  # fmt: skip
    options = ValidationOptions(tasks=8, sizes=(1, 8), n_qry=50)
    return Setup(prior, card, TPStandIn(prior), TPStandIn(prior, blind=True), options)


def _freeze_thaw_exact_case() -> Setup:
    """A small freeze-thaw prior (the fitted defaults); stand-ins condition densely."""
    from tests.validation.test_validate_freeze_thaw_exact import contract_parts

    return Setup(*contract_parts())


def _lc_nuts_case() -> Setup:
    """A noisy parametric curve prior; the exact stand-in is importance sampling from it."""
    from tests.validation.test_lc_nuts import contract_parts as lc_parts

    return Setup(*lc_parts())


CASES: dict[str, Case] = {
    "gp-exact": Case(_gp_exact_case),
    "gp-nuts": Case(_gp_nuts_case, slow=True),
    "bnn-nuts": Case(_bnn_nuts_case, slow=True),  # NUTS: about 45 s
    "dt-exact": Case(_dt_exact_case, slow=True),  # sbi's C2STs: about 30 s
    "dt-nuts": Case(_dt_nuts_case, slow=True),  # NUTS and C2ST: about 35 s
    "tp-exact": Case(_tp_exact_case),
    "freeze-thaw-exact": Case(_freeze_thaw_exact_case),
    "lc-nuts": Case(_lc_nuts_case, slow=True),  # NUTS on 2 curves, twice: about 4.5 min
    "lc-smc": Case(_lc_nuts_case, slow=True),  # the lc-nuts case; SMC on 2 curves: about 35 s
}


# ------------------------------------------------------------------------- the contract
def _registered() -> list:
    marks = lambda name: [pytest.mark.slow] if name in CASES and CASES[name].slow else []  # noqa: E731
    return [pytest.param(name, marks=marks(name)) for name in sorted(VALIDATORS)]


def _report(name: str, setup: Setup, model: nn.Module, label: str) -> tuple[Checkpoint, Report]:
    card = {**setup.card, "reference": name}
    checkpoint = Checkpoint(name=f"{name}-{label}", model=model, card=card)
    return checkpoint, validate(checkpoint, setup.prior, options=setup.options)


def test_every_registered_validator_has_a_case() -> None:
    assert sorted(CASES) == sorted(VALIDATORS)


@pytest.mark.parametrize("name", _registered())
def test_the_exact_stand_in_passes_and_a_blind_model_fails(name: str, tmp_path: Path) -> None:
    assert name in CASES, f"add a case for the {name!r} validator to CASES"
    validator = VALIDATORS[name]
    setup = CASES[name].build()
    checkpoint, report = _report(name, setup, setup.exact, "exact")
    checks = report.checks()
    assert any(check.gated for check in checks), "the case's card gates nothing"
    assert report.passed, [check.to_dict() for check in checks]
    data = json.loads(json.dumps(report.to_dict()))  # plain data, JSON-safe
    assert data["passed"] and [c["name"] for c in data["checks"]] == [c.name for c in checks]
    tables = validator.tables(report)
    assert tables and all(isinstance(table, Table) for table in tables)
    paths = validator.plots(checkpoint, setup.prior, report, tmp_path)
    assert all(Path(path).is_file() and Path(path).stat().st_size > 0 for path in paths)

    _, blind = _report(name, setup, setup.blind, "blind")
    assert not blind.passed, [check.to_dict() for check in blind.checks()]
    assert not blind.to_dict()["passed"]
