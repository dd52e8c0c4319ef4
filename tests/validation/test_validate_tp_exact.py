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
