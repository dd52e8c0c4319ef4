"""DT-vs-NUTS validation, checked on a conjugate task where the exact posterior is known."""

from __future__ import annotations

import pytest
import torch

from pfnkit.models.distribution_transformer import gmm
from pfnkit.reference import conjugate_gmm_posterior
from pfnkit.reference.mcmc import NUTSConfig
from pfnkit.validation.dt_nuts import evidence_nll, validate_dt_nuts
from priors.gmm import GMMPrior, GMMPriorConfig
from tests.validation.test_validate_dt_exact import OBS_COV, ExactPosterior

IS_TOL = 0.02  # nats: defensive importance sampling with 20k draws on a 2-D posterior
C2ST_CHANCE = 0.1  # accuracy within 0.5 ± 0.1 for identical distributions
PRIOR = GMMPrior(GMMPriorConfig())


def _log_joint(theta_SD, task):
    theta = theta_SD[:, None]
    return (PRIOR.log_likelihood(theta, task.x_ctx) + PRIOR.log_prior(theta, task.meta))[:, 0]


def _first(post):
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
        estimate = evidence_nll(_log_joint, task, poor, prior, theta, gen)
        assert abs(estimate - float(-exact.log_prob(theta[None]))) < IS_TOL


@pytest.mark.slow
def test_the_exact_posterior_matches_nuts() -> None:
    report = validate_dt_nuts(
        ExactPosterior(), lambda n, k, gen: PRIOR.sample(n, k, 0, generator=gen), _log_joint,
        n_obs_sizes=(6,), n_tasks=5, n_nuts_tasks=3,
        nuts=NUTSConfig(num_chains=2, warmup=200, num_samples=400, max_tree_depth=6),
        tolerances={"nll_gap_mean": IS_TOL, "c2st_mean": 0.5 + C2ST_CHANCE},
    )  # fmt: skip
    size = report.sizes[0]
    assert size.n_tasks == 5 and size.n_nuts == 3 and size.n_trusted >= 2
    assert abs(size.gap) < IS_TOL
    assert size.c2st < 0.5 + C2ST_CHANCE
    assert report.passed
