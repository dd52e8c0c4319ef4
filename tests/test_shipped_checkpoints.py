"""Slow: the shipped checkpoints meet the tolerances their cards declare, on fresh tasks."""

from __future__ import annotations

import pytest

import priors
from pfnkit.checkpoint import load_checkpoint
from pfnkit.validation import validate_against_exact_gp

N_TASKS = 64
COVERAGE_TOLERANCE = 0.03  # 90% intervals: |coverage - 0.90| on 64 tasks x 100 queries


@pytest.mark.slow
def test_gp_rbf_meets_its_card_tolerance_against_the_exact_gp() -> None:
    ckpt = load_checkpoint("gp-rbf")
    prior = priors.make_prior(ckpt.card["prior_name"], ckpt.card["prior_config"])
    report = validate_against_exact_gp(
        ckpt.model,
        prior,
        kernel=prior.config.kernel,
        checkpoint=ckpt.name,
        n_tasks=N_TASKS,
        seed=2024,
        tolerances=ckpt.card["tolerances"],
    )
    assert report.passed, report.to_dict()
    for size in report.sizes:
        assert abs(size.pfn_coverage[0.9] - 0.9) < COVERAGE_TOLERANCE, size
