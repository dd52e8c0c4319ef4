"""Slow: the shipped checkpoints meet the tolerances their cards declare, on fresh tasks."""

from __future__ import annotations

import pytest

import priors
from pfnkit.checkpoint import load_checkpoint
from pfnkit.validation import validate_against_exact_gp

N_TASKS = 64
# 90% intervals, 64 tasks x 100 correlated queries: PFN against exact coverage on the same
# points per size, and the PFN's coverage averaged over sizes against the nominal 0.90
PAIRED_COVERAGE_TOLERANCE = 0.03
MEAN_COVERAGE_TOLERANCE = 0.02


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
        assert abs(size.pfn_coverage[0.9] - size.exact_coverage[0.9]) < PAIRED_COVERAGE_TOLERANCE
    mean_coverage = sum(s.pfn_coverage[0.9] for s in report.sizes) / len(report.sizes)
    assert abs(mean_coverage - 0.9) < MEAN_COVERAGE_TOLERANCE
