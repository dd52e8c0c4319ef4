"""DT-vs-NUTS validation, checked on a conjugate task where the exact posterior is known."""

from __future__ import annotations

from io import StringIO

import pytest
import torch
from rich.console import Console
from torch.distributions import MixtureSameFamily

from pfnkit.checkpoint import Checkpoint
from pfnkit.models.distribution_transformer import gmm
from pfnkit.reference import conjugate_gmm_posterior
from pfnkit.reference.mcmc import NUTSConfig
from pfnkit.validation import VALIDATORS, ValidationOptions
from pfnkit.validation.dt_nuts import evidence_nll, validate_dt_nuts
from pfnkit.validation.tables import dt_nuts_tables
from tests.validation.test_validate_dt_exact import OBS_COV, PRIOR, ExactPosterior

IS_TOL = 0.02  # nats: defensive importance sampling with 20k draws on a 2-D posterior
C2ST_CHANCE = 0.1  # accuracy within 0.5 ± 0.1 for identical distributions


def _first(post: MixtureSameFamily) -> MixtureSameFamily:
    comp = post.component_distribution
    return gmm(post.mixture_distribution.logits[0], comp.loc[0], comp.scale_tril[0])


def test_evidence_nll_matches_the_closed_form_with_an_imperfect_proposal() -> None:
    gen = torch.Generator().manual_seed(3)
    for n_obs in (1, 8):
        task = PRIOR.sample(1, n_obs, 0, generator=gen).to(torch.float64)
        m = task.meta
        parts = (m["prior_logits"], m["prior_means"], m["prior_scale_tril"])
        exact = conjugate_gmm_posterior(*parts, task.x_ctx, OBS_COV)
        prior = gmm(*(p[0] for p in parts))
        theta = m["theta"][0]
        post = _first(exact)
        comp = post.component_distribution
        # an imperfect "q": the exact posterior shifted by half its scale, 1.5x wider
        shift = 0.5 * comp.scale_tril.diagonal(dim1=-2, dim2=-1)
        poor = gmm(post.mixture_distribution.logits, comp.loc + shift, 1.5 * comp.scale_tril)
        estimate = evidence_nll(PRIOR.log_joint, task, poor, prior, theta, gen)
        assert abs(estimate - float(-exact.log_prob(theta[None]))) < IS_TOL


@pytest.mark.slow
def test_the_exact_posterior_matches_nuts() -> None:
    report = validate_dt_nuts(
        ExactPosterior(), PRIOR, n_obs_sizes=(6,), n_tasks=5, n_nuts_tasks=3,
        nuts=NUTSConfig(num_chains=2, warmup=200, num_samples=400, max_tree_depth=6),
        tolerances={"nll_gap_mean": IS_TOL, "c2st_mean": 0.5 + C2ST_CHANCE},
    )  # fmt: skip
    size = report.sizes[0]
    assert size.n_tasks == 5 and size.n_nuts == 3 and size.n_trusted >= 2
    assert abs(size.gap) < IS_TOL
    assert size.c2st < 0.5 + C2ST_CHANCE
    assert report.passed


def test_without_nuts_runs_the_nlls_still_gate_and_the_table_renders() -> None:
    blind = validate_dt_nuts(
        ExactPosterior(ignore_data=True), PRIOR, n_obs_sizes=(6,), n_tasks=8, n_nuts_tasks=0,
        tolerances={"nll_gap_mean": IS_TOL},
    )  # fmt: skip
    size = blind.sizes[0]
    assert size.n_nuts == 0 and size.gap > 0.5 and not blind.passed
    assert [(c.name, c.gated) for c in blind.checks()] == [
        ("nll_gap_mean", True),
        ("c2st_mean", False),
    ]
    console = Console(file=StringIO(), width=200)
    for table in dt_nuts_tables(blind.to_dict()):
        console.print(table)
    assert "vs NUTS" in console.file.getvalue() and "NUTS budget" in console.file.getvalue()


def test_the_validator_maps_its_options_and_needs_a_log_joint() -> None:
    validator = VALIDATORS["dt-nuts"]
    checkpoint = Checkpoint(name="dt-tiny", model=ExactPosterior(), card={"prior_name": "gmm"})
    options = ValidationOptions(tasks=2, sizes=(3,), nuts_tasks=0, nuts_warmup=7, seed=4)
    report = validator.run(checkpoint, PRIOR, options)
    assert report.nuts["warmup"] == 7 and report.nuts["num_samples"] == 500  # the default
    assert [(s.n_obs, s.n_tasks, s.n_nuts) for s in report.sizes] == [(3, 2, 0)]
    with pytest.raises(ValueError, match="log_joint"):
        validator.run(checkpoint, object(), options)
