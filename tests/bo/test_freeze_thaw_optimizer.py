"""The freeze-thaw optimiser: the ask/tell contract, refused reports, seeds, the surrogate.

The exact surrogate's log-EI is checked against scipy's normal distribution (an
independent oracle); that the surrogate hands its rows to `pfnkit.reference.freeze_thaw`
(checked against dense conditioning in its own tests) is a plumbing test, not an oracle.
The optimiser runs on synthetic lookup curves; a decision stays pending until told.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from pfnkit.bo.freeze_thaw import FreezeThaw
from pfnkit.bo.freeze_thaw_surrogate import (
    DEFAULT_FREEZE_THAW_HYPERPARAMETERS,
    ExactFreezeThawSurrogate,
    FreezeThawSurrogate,
    log_ei,
)
from pfnkit.reference.freeze_thaw import FreezeThawHyperparameters, freeze_thaw_predictive
from tests.conftest import FLOAT64_ATOL

N_CONFIGS, MAX_EPOCH = 12, 10
LOG_EI_RTOL = 1e-9  # log-EI against the direct scipy formula (EI does not underflow here)


def _lookup(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Configurations on [0, 1]² and error curves falling to an asymptote that depends on x."""
    rng = np.random.default_rng(seed)
    configs = rng.uniform(0, 1, (N_CONFIGS, 2))
    asymptote = 0.05 + 0.5 * ((configs - 0.3) ** 2).sum(1)
    t = np.arange(1, MAX_EPOCH + 1)
    curves = asymptote[:, None] + 0.3 * np.exp(-t[None, :] / rng.uniform(1, 5, (N_CONFIGS, 1)))
    return configs, np.clip(curves, 0, 1)


def _run(ft: FreezeThaw, curves: np.ndarray, steps: int) -> list[tuple[int, int]]:
    decisions = []
    for _ in range(steps):
        i, epoch = ft.ask()
        assert 0 <= i < len(curves) and epoch == ft.epochs_trained(i) + 1 <= ft.max_epoch
        ft.tell(i, epoch, float(curves[i, epoch - 1]))
        decisions.append((i, epoch))
    return decisions


def test_ask_tell_contract_and_best() -> None:
    configs, curves = _lookup()
    ft = FreezeThaw(configs, MAX_EPOCH, seed=0)
    with pytest.raises(RuntimeError, match="tell first"):
        ft.best()
    decisions = _run(ft, curves, 40)
    told = {(i, e): curves[i, e - 1] for i, e in decisions}
    i_best, value_best = ft.best()
    assert (
        value_best == min(told.values()) and told[(i_best, ft.epochs_trained(i_best))] >= value_best
    )
    assert ft.total_epochs == len(decisions)
    rows, values = ft.observations()
    assert rows.shape == (40, 3) and values.shape == (40,)


def test_same_seed_same_decisions() -> None:
    configs, curves = _lookup(1)
    first = _run(FreezeThaw(configs, MAX_EPOCH, seed=3), curves, 30)
    again = _run(FreezeThaw(configs, MAX_EPOCH, seed=3), curves, 30)
    other = _run(FreezeThaw(configs, MAX_EPOCH, seed=4), curves, 30)
    assert first == again and first != other


def test_ask_is_pending_until_told_and_repeated_asks_change_nothing() -> None:
    """Asking twice gives one decision; extra asks leave the seeded trajectory unchanged."""
    configs, curves = _lookup(1)
    plain = _run(FreezeThaw(configs, MAX_EPOCH, seed=3), curves, 20)
    ft, repeated = FreezeThaw(configs, MAX_EPOCH, seed=3), []
    for _ in range(20):
        i, epoch = ft.ask()
        state = ft.state()
        assert ft.ask() == ft.ask() == (i, epoch) and ft.state() == state
        ft.tell(i, epoch, float(curves[i, epoch - 1]))
        repeated.append((i, epoch))
    assert repeated == plain


def test_a_tell_of_another_cell_keeps_the_pending_decision_and_the_generator() -> None:
    """Unasked reports are recorded; the pending decision stays until its epoch is reported."""
    configs, curves = _lookup(1)
    ft = FreezeThaw(configs, MAX_EPOCH, seed=3, step=3)
    i, epoch = ft.ask()
    assert epoch == 3
    other = (i + 1) % N_CONFIGS
    rng_before = ft.state()["rng"]
    for cell in [(other, 1), (i, 1), (i, 2)]:  # an unasked cell, then the epochs on the way
        ft.tell(*cell, float(curves[cell[0], cell[1] - 1]))
        assert ft.ask() == (i, epoch) and ft.state()["rng"] == rng_before
    ft.tell(i, epoch, float(curves[i, epoch - 1]))
    assert ft.state()["pending"] is None


def test_good_configurations_get_the_training() -> None:
    """On curves whose asymptotes follow x, most epochs go to the better half of configurations."""
    configs, curves = _lookup(2)
    ft = FreezeThaw(configs, MAX_EPOCH, seed=0)
    _run(ft, curves, 50)
    final = curves[:, -1]
    better = final <= np.median(final)
    spent = np.array([ft.epochs_trained(i) for i in range(N_CONFIGS)])
    assert spent[better].sum() > spent[~better].sum()
    assert ft.best()[0] in np.argsort(final)[:3]


def test_bad_reports_are_refused_and_change_nothing() -> None:
    configs, curves = _lookup()
    ft = FreezeThaw(configs, MAX_EPOCH, seed=0)
    _run(ft, curves, 5)
    seen_i = max(range(N_CONFIGS), key=ft.epochs_trained)
    fresh = min(i for i in range(N_CONFIGS) if ft.epochs_trained(i) == 0)
    before = ft.state()
    bad = [
        ((fresh, 1, math.nan), "finite"),
        ((fresh, 1, math.inf), "finite"),
        ((fresh, 1, -0.01), "value_range"),
        ((fresh, 1, 1.5), "value_range"),
        ((fresh, 1, "low"), "number"),
        ((-1, 1, 0.5), "unknown configuration"),
        ((N_CONFIGS, 1, 0.5), "unknown configuration"),
        ((1.0, 1, 0.5), "unknown configuration"),
        ((True, 1, 0.5), "unknown configuration"),
        ((fresh, 0, 0.5), "outside 1..max_epoch"),
        ((fresh, MAX_EPOCH + 1, 0.5), "outside 1..max_epoch"),
        ((fresh, 2.0, 0.5), "must be an int"),
        ((seen_i, 1, 0.5), "already has a value"),
    ]
    for args, message in bad:
        with pytest.raises(ValueError, match=message):
            ft.tell(*args)
        assert ft.state() == before


def test_finished_configurations_are_never_asked_and_exhaustion_is_an_error() -> None:
    configs, curves = _lookup()
    ft = FreezeThaw(configs[:2], 3, seed=0, horizon=2)
    _run(ft, curves[:2, :3], 6)
    with pytest.raises(RuntimeError, match="every configuration"):
        ft.ask()


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"configs": [[0.5, 1.2]]}, "unit cube"),
        ({"configs": [[0.5, 0.2], [0.5, 0.2]]}, "duplicate"),
        ({"max_epoch": 0}, "max_epoch"),
        ({"horizon": 0}, "horizon"),
        ({"step": 0}, "step"),
    ],
)
def test_bad_construction_is_refused(kwargs: dict, message: str) -> None:
    args = {"configs": [[0.1, 0.2], [0.3, 0.4]], "max_epoch": 5, **kwargs}
    with pytest.raises(ValueError, match=message):
        FreezeThaw(**args)


def _surrogate_on_observations() -> tuple[torch.distributions.Normal, torch.Tensor, tuple]:
    """The default exact surrogate fitted to 15 decisions; its predictive at every final epoch."""
    configs, curves = _lookup()
    ft = FreezeThaw(configs, MAX_EPOCH, seed=0)
    _run(ft, curves, 15)
    rows, values = (torch.from_numpy(a) for a in ft.observations())
    surrogate = ExactFreezeThawSurrogate()
    assert isinstance(surrogate, FreezeThawSurrogate)
    surrogate.fit(rows, values)
    query = torch.tensor([[*configs[i], 1.0] for i in range(N_CONFIGS)], dtype=torch.float64)
    return surrogate.predict(query), values, (rows, query)


def test_exact_surrogate_plumbs_its_rows_and_defaults_to_the_reference() -> None:
    """Plumbing, not an oracle: the surrogate calls freeze_thaw_predictive at the defaults."""
    dist, values, (rows, query) = _surrogate_on_observations()
    ref = freeze_thaw_predictive(rows, values, query, DEFAULT_FREEZE_THAW_HYPERPARAMETERS)
    np.testing.assert_allclose(dist.loc.numpy(), ref.mean.numpy(), atol=FLOAT64_ATOL, rtol=0)
    np.testing.assert_allclose(
        dist.variance.numpy(), ref.variance.numpy(), atol=FLOAT64_ATOL, rtol=0
    )


def test_log_ei_is_scipys() -> None:
    """log-EI of the surrogate's Gaussian against scipy's normal pdf and cdf (the oracle)."""
    dist, values, _ = _surrogate_on_observations()
    tau = float(values.min())
    mu, sigma = dist.loc.numpy(), dist.scale.numpy()
    u = (tau - mu) / sigma
    expected = np.log(sigma * stats.norm.pdf(u) + (tau - mu) * stats.norm.cdf(u))
    np.testing.assert_allclose(log_ei(dist, tau).numpy(), expected, rtol=LOG_EI_RTOL)


def test_default_surrogate_is_the_prior_default() -> None:
    """pfnkit cannot import priors, so the surrogate's defaults are a copy: they must agree."""
    import priors

    prior = priors.make_prior("freeze-thaw")
    task = prior.sample(1, 3, 2, generator=torch.Generator().manual_seed(0))
    drawn = FreezeThawHyperparameters(**prior.freeze_thaw_hyperparameters(task)).to_dict()
    expected = DEFAULT_FREEZE_THAW_HYPERPARAMETERS.to_dict()
    assert drawn.keys() == expected.keys()
    for name, value in expected.items():
        if name == "lengthscale":  # one shared value here, one per feature in the prior's draw
            assert drawn[name] == pytest.approx(value * len(drawn[name]), rel=1e-6)
        else:
            assert drawn[name] == (value if name == "kernel" else pytest.approx(value, rel=1e-6))
