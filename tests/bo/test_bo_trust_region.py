"""The TuRBO trust region of `AskTellOptimizer`: its schedule by hand, and its local step
against a global optimiser given the same points mapped onto the box (a loop equivalent)."""

from __future__ import annotations

import numpy as np
import pytest

from pfnkit.bo import AcquisitionOptimizerConfig, AskTellOptimizer, TrustRegionConfig, minimize
from pfnkit.bo.trust_region import TrustRegion, inside
from tests.bo.conftest import save_tiny

FAST = AcquisitionOptimizerConfig(n_raw=32, n_restarts=2, n_steps=3)
BOUNDS = [(-5.0, 10.0), (0.0, 15.0)]
SAME_POINT_ATOL = 1e-6  # x units: one affine map done two ways, then the same search


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    return str(save_tiny(tmp_path_factory.mktemp("bo") / "tiny-bo"))


def bowl(x: np.ndarray) -> float:
    return float(((x - np.array([2.0, 5.0])) ** 2).sum())


def test_schedule_by_hand() -> None:
    region = TrustRegion(TrustRegionConfig(), dim=2)  # failure tolerance max(4, 2) = 4
    assert (region.length, region.failure_tolerance, region.min_points) == (0.8, 4, 4)
    for value in (9.0, 8.0, 7.0):  # three successes: doubled, capped at 1.6
        region.update(best_before=value + 1.0, value=value)
    assert region.length == 1.6 and region.successes == 0
    region.update(best_before=7.0, value=7.0 - 1e-4 * 7.0)  # below 1e-3 |best|: a failure
    assert region.failures == 1
    for _ in range(3):
        region.update(best_before=7.0, value=8.0)
    assert region.length == 0.8 and region.failures == 0  # four failures: halved
    region.update(best_before=7.0, value=6.0)  # a success clears the failures
    assert (region.successes, region.failures) == (1, 0)
    for _ in range(4 * 7):  # halved 7 times: 0.8 / 2^7 < 0.5^7, so it restarts at 0.8
        region.update(best_before=6.0, value=6.0)
    assert region.length == 0.8 and region.restarts == 1


def test_box_is_global_when_wide_or_thin() -> None:
    region = TrustRegion(TrustRegionConfig(min_points=3), dim=2)
    u = np.array([[0.5, 0.5], [0.52, 0.5], [0.5, 0.55], [0.9, 0.9]])
    y = np.array([0.0, 1.0, 2.0, 3.0])
    region.length = 0.2
    low, high = region.box(u, y)
    np.testing.assert_allclose(low, [0.4, 0.4])
    np.testing.assert_allclose(high, [0.6, 0.6])
    assert inside(u, low, high).tolist() == [True, True, True, False]
    region.length = 0.02  # only the best point inside: global
    assert region.box(u, y) is None
    region.length = 1.0
    assert region.box(u, y) is None


def test_a_region_as_wide_as_the_cube_is_the_global_optimiser(tiny) -> None:
    wide = TrustRegionConfig(length_init=1.0, length_min=1.0, length_max=1.0)
    runs = [
        minimize(bowl, BOUNDS, 9, n_init=3, checkpoint=tiny, seed=4, config=FAST, trust_region=tr)
        for tr in (wide, False)
    ]
    np.testing.assert_array_equal(runs[0].xs, runs[1].xs)


def test_a_local_step_is_the_global_step_on_the_box(tiny) -> None:
    """The proposal equals a global optimiser's whose bounds are the region's box and
    which observed only the points inside it."""
    rng = np.random.default_rng(0)
    low_x, width = np.array(BOUNDS)[:, 0], np.ptp(np.array(BOUNDS), axis=1)
    u = np.concatenate([rng.uniform(size=(6, 2)), 0.3 + 0.1 * rng.uniform(size=(6, 2))])
    xs = low_x + u * width
    ys = np.array([bowl(x) for x in xs])
    ys[7] = -1.0  # the best point, at the centre of the box
    config = TrustRegionConfig(length_init=0.4, min_points=3)
    local = AskTellOptimizer(BOUNDS, n_init=3, checkpoint=tiny, seed=2, config=FAST,
                             trust_region=config)  # fmt: skip
    local.observe(xs, ys)
    low_u, high_u = local.trust_region.box(u, ys)
    keep = inside(u, low_u, high_u)
    assert 3 <= keep.sum() < len(u)
    box_x = np.stack([low_x + low_u * width, low_x + high_u * width], axis=1)
    reference = AskTellOptimizer(box_x, n_init=3, checkpoint=tiny, seed=2, config=FAST,
                                 trust_region=False)  # fmt: skip
    reference.observe(xs[keep], ys[keep])
    proposal = local.ask()
    np.testing.assert_allclose(proposal, reference.ask(), atol=SAME_POINT_ATOL, rtol=0)
    assert ((proposal >= box_x[:, 0] - SAME_POINT_ATOL) & (proposal <= box_x[:, 1])).all()


def test_region_moves_with_told_values_and_bad_options_are_refused(tiny) -> None:
    opt = AskTellOptimizer(BOUNDS, n_init=2, checkpoint=tiny, seed=0, config=FAST)
    for _ in range(2 + 4):  # the design, then four proposals
        x = opt.ask()
        opt.tell(x, 5.0)  # never an improvement after the first
    assert opt.trust_region.length == 0.4  # four failures halve TuRBO's 0.8
    with pytest.raises(TypeError, match="trust_region"):
        AskTellOptimizer(BOUNDS, checkpoint=tiny, trust_region="yes")
    with pytest.raises(ValueError, match="length_min"):
        TrustRegionConfig(length_init=0.1, length_min=0.2)
    with pytest.raises(ValueError, match="success_tolerance"):
        TrustRegionConfig(success_tolerance=0)
