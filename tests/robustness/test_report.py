"""`robustness_report` takes any exact predictor: checked against a plain loop of attacks.

The oracle is the loop the report stands for: `attack_context` on the PFN and on the exact
predictor, each from the one seed `attack_seed` draws, with nothing shared but the inputs.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from pfnkit.data import Batch
from pfnkit.models import PFN, PFNConfig
from pfnkit.reference.exact_gp import GPHyperparameters
from pfnkit.robustness.attacks import Predictor, attack_context, exact_gp_predictor
from pfnkit.robustness.pgd import AttackConfig
from pfnkit.robustness.report import attack_seed, robustness_report
from pfnkit.robustness.tp_exact import exact_student_t_predictor
from priors.gp import GPPrior, GPPriorConfig
from priors.student_t import StudentTPrior, StudentTPriorConfig
from tests.conftest import FLOAT64_ATOL
from tests.helpers import make_tiny_pfn

EPS = (0.0, 0.1, 0.3)
CONFIG = AttackConfig(steps=3)
LENGTHSCALE = 0.3


@pytest.fixture
def pfn64_1d() -> PFN:
    config = PFNConfig(num_features=1, d_model=32, n_heads=4, n_layers=2, d_ff=64, n_bars=20)
    return make_tiny_pfn(config).double()


def _gp() -> tuple[GPPrior, Predictor]:
    prior = GPPrior(GPPriorConfig(lengthscale=LENGTHSCALE))
    return prior, exact_gp_predictor(GPHyperparameters(**prior.fixed_gp_hyperparameters()))


def _tp() -> tuple[StudentTPrior, Predictor]:
    prior = StudentTPrior(StudentTPriorConfig(lengthscale=LENGTHSCALE))
    return prior, exact_student_t_predictor(prior)


def _loop_kl_EB(predictor: Callable, batch: Batch, dtype: torch.dtype, seed: int) -> torch.Tensor:
    inputs = (t.to(dtype) for t in (batch.x_ctx, batch.y_ctx, batch.x_qry))
    attacks = attack_context(predictor, *inputs, EPS, target="xy", config=CONFIG,
                             generator=torch.Generator().manual_seed(seed))  # fmt: skip
    return torch.stack([a.kl_B for a in attacks])


@pytest.mark.parametrize("make", [_gp, _tp], ids=["exact-gp", "exact-student-t"])
def test_the_report_is_the_loop_of_attacks_on_the_model_and_the_exact_predictor(
    make: Callable, pfn64_1d: PFN
) -> None:
    prior, exact = make()
    batch = prior.sample(3, 6, 5, generator=torch.Generator().manual_seed(0))
    report = robustness_report(pfn64_1d, batch, exact, eps=EPS, target="xy", config=CONFIG,
                               generator=torch.Generator().manual_seed(1))  # fmt: skip
    seed = attack_seed(torch.Generator().manual_seed(1))
    model_kl_EB = _loop_kl_EB(pfn64_1d, batch, torch.float64, seed)
    exact_kl_EB = _loop_kl_EB(exact, batch, torch.float64, seed)
    assert report.eps == EPS and report.target == "xy" and report.n_qry == 5
    for kl_EB, side in ((model_kl_EB, "model_kl"), (exact_kl_EB, "exact_kl")):
        got_EB = torch.tensor([getattr(r, side) for r in report.results], dtype=torch.float64)
        torch.testing.assert_close(got_EB, kl_EB, rtol=0, atol=FLOAT64_ATOL)
    assert bool((exact_kl_EB[-1] > 0).all())


def test_the_report_asks_for_a_predictor_not_gp_hyperparameters(pfn64_1d: PFN) -> None:
    prior, _ = _gp()
    batch = prior.sample(1, 4, 3, generator=torch.Generator().manual_seed(0))
    hyper = GPHyperparameters(**prior.fixed_gp_hyperparameters())
    with pytest.raises(TypeError, match=r"exact_gp_predictor\(hyper\)"):
        robustness_report(pfn64_1d, batch, hyper, eps=EPS, generator=torch.Generator())
