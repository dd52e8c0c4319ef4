"""tp-exact's pieces: the scipy-cdf coverage of the oracle, and the prior it accepts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pfnkit.checkpoint import Checkpoint
from pfnkit.metrics import interval_coverage
from pfnkit.validation import ValidationOptions, validate
from pfnkit.validation.per_size import LEVELS
from pfnkit.validation.tp_exact import exact_student_t_coverage
from priors.gp import GPPrior
from tests.conftest import FLOAT64_ATOL
from tests.validation.test_validators_contract import StudentTWithQuantiles


def test_cdf_coverage_equals_quantile_coverage() -> None:
    """Inside the central interval by the cdf (the validator) iff between its quantiles."""
    generator = torch.Generator().manual_seed(0)
    df_BM = 1 + 9 * torch.rand(3, 40, generator=generator, dtype=torch.float64)
    loc_BM = torch.randn(3, 40, generator=generator, dtype=torch.float64)
    scale_BM = 0.1 + torch.rand(3, 40, generator=generator, dtype=torch.float64)
    dist = StudentTWithQuantiles(df_BM, loc_BM, scale_BM)
    y_BM = loc_BM + 2 * scale_BM * torch.randn(3, 40, generator=generator, dtype=torch.float64)
    assert exact_student_t_coverage(dist, y_BM, LEVELS) == interval_coverage(dist, y_BM, LEVELS)


def test_a_gp_prior_is_refused_with_a_message_naming_the_validator() -> None:
    prior = GPPrior()
    checkpoint = Checkpoint(name="gp-rbf", model=nn.Identity(), card={"reference": "tp-exact"})
    with pytest.raises(ValueError, match="tp-exact validator needs a Student-t-process prior"):
        validate(checkpoint, prior, options=ValidationOptions(tasks=1, sizes=(1,)))


def test_tp_and_freeze_thaw_share_one_report_with_the_cards_keys() -> None:
    """One report class gates both; its JSON keys and figures match a hand computation."""
    from pfnkit.validation.freeze_thaw_exact import FreezeThawValidationReport
    from pfnkit.validation.per_size import SizeResult, SizeValidationReport
    from pfnkit.validation.tp_exact import TPValidationReport

    assert TPValidationReport is FreezeThawValidationReport is SizeValidationReport
    cov = lambda c90: {0.5: 0.5, 0.9: c90, 0.95: 0.95}  # noqa: E731
    sizes = [SizeResult(1, 4, 1.5, 1.0, cov(0.75), cov(0.9), 0.1, 0.2),
             SizeResult(5, 4, 0.9, 0.8, cov(0.95), cov(0.9), 0.1, 0.2)]  # fmt: skip
    report = TPValidationReport("tp-rbf", sizes, {"nll_gap_mean": 0.2})
    out = report.to_dict()
    assert set(out) == {"checkpoint", "sizes", "mean_gap", "max_gap", "coverage90_error_max",
                        "tolerances", "checks", "passed"}  # fmt: skip
    size_keys = {"n_ctx", "n_tasks", "pfn_nll", "exact_nll", "pfn_coverage", "exact_coverage",
                 "pfn_seconds_per_task", "exact_seconds_per_task", "gap",
                 "coverage90_error"}  # fmt: skip
    assert set(out["sizes"][0]) == size_keys
    assert out["mean_gap"] == pytest.approx((0.5 + 0.1) / 2, abs=FLOAT64_ATOL)
    assert out["max_gap"] == pytest.approx(0.5, abs=FLOAT64_ATOL)
    assert out["coverage90_error_max"] == pytest.approx(0.15, abs=FLOAT64_ATOL)
    assert [c["name"] for c in out["checks"]] == ["nll_gap_mean", "coverage90_error_max"]
    assert out["tolerances"] == {"nll_gap_mean": 0.2} and out["passed"] is False
