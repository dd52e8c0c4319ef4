"""The optimiser's contract on a tiny checkpoint: bounds, seeds, the ask/tell protocol, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pfnkit.bo import (
    AcquisitionOptimizerConfig,
    AskTellOptimizer,
    EvaluationError,
    OptimizeResult,
    maximize_acquisition,
    minimize,
)
from tests.bo.conftest import save_tiny

FAST = AcquisitionOptimizerConfig(n_raw=32, n_restarts=2, n_steps=3)
BOUNDS = [(-5.0, 10.0), (0.0, 15.0)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    return str(save_tiny(tmp_path_factory.mktemp("bo") / "tiny-bo"))


def bowl(x: np.ndarray) -> float:
    return float(((x - np.array([2.0, 5.0])) ** 2).sum())


def run(tiny: str, seed: int = 0, n_evals: int = 6, **kwargs: object) -> OptimizeResult:
    return minimize(
        bowl, BOUNDS, n_evals, n_init=3, checkpoint=tiny, seed=seed, config=FAST, **kwargs
    )


def test_result_holds_the_history_inside_the_bounds(tiny) -> None:
    result = run(tiny)
    low, high = np.array(BOUNDS).T
    assert result.xs.shape == (6, 2) and result.ys.shape == (6,)
    assert np.all(result.xs >= low) and np.all(result.xs <= high)
    assert np.allclose(result.ys, [bowl(x) for x in result.xs])
    assert result.y_best == result.ys.min() and np.array_equal(
        result.x_best, result.xs[result.ys.argmin()]
    )
    assert result.ask_seconds.shape == (6,) and np.all(result.ask_seconds[:3] == 0)
    assert len({tuple(x) for x in result.xs}) == 6  # no point evaluated twice


@pytest.mark.parametrize("acquisition", ["ei", "pi", "lcb"])
def test_same_seed_same_trajectory(tiny, acquisition) -> None:
    first = run(tiny, seed=3, acquisition=acquisition)
    again = run(tiny, seed=3, acquisition=acquisition)
    other = run(tiny, seed=4, acquisition=acquisition)
    assert np.array_equal(first.xs, again.xs) and np.array_equal(first.ys, again.ys)
    assert not np.array_equal(first.xs, other.xs)


def test_ask_tell_equals_minimize(tiny) -> None:
    optimizer = AskTellOptimizer(BOUNDS, n_init=3, checkpoint=tiny, seed=0, config=FAST)
    for _ in range(6):
        x = optimizer.ask()
        optimizer.tell(x, bowl(x))
    assert np.array_equal(optimizer.result().xs, run(tiny).xs)


def test_pending_points_are_distinct_and_told_in_any_order(tiny) -> None:
    optimizer = AskTellOptimizer(BOUNDS, n_init=2, checkpoint=tiny, seed=0, config=FAST)
    for _ in range(2):
        x = optimizer.ask()
        optimizer.tell(x, bowl(x))
    batch = [optimizer.ask() for _ in range(3)]  # three asks before any tell
    assert len({tuple(x) for x in batch}) == 3
    for x in reversed(batch):
        optimizer.tell(x, bowl(x))
    assert optimizer.result().n_evals == 5


def test_tell_refuses_unknown_points_and_repeats(tiny) -> None:
    optimizer = AskTellOptimizer(BOUNDS, checkpoint=tiny, config=FAST)
    with pytest.raises(ValueError, match="not a pending point of ask"):
        optimizer.tell([1.0, 2.0], 3.0)
    x = optimizer.ask()
    optimizer.tell(x, 1.0)
    with pytest.raises(ValueError, match="told already"):
        optimizer.tell(x, 1.0)


def test_non_finite_values_leave_the_history_alone(tiny) -> None:
    optimizer = AskTellOptimizer(BOUNDS, checkpoint=tiny, config=FAST)
    x = optimizer.ask()
    for bad in (float("nan"), float("inf"), "abc", [1.0, 2.0]):
        with pytest.raises(ValueError, match=r"value at x = \["):
            optimizer.tell(x, bad)
    assert optimizer.ys.shape == (0,)
    optimizer.tell(x, 2.0)  # the point stayed pending
    y = optimizer.ask()
    optimizer.discard(y)
    with pytest.raises(ValueError, match="not a pending point"):
        optimizer.tell(y, 1.0)
    assert optimizer.result().n_evals == 1


def test_minimize_names_the_point_where_f_failed(tiny) -> None:
    calls = []

    def fails_third(x: np.ndarray) -> float:
        calls.append(x)
        return float("nan") if len(calls) == 3 else bowl(x)

    with pytest.raises(EvaluationError, match=r"evaluation 3 of 6: the value at x = \[") as info:
        minimize(fails_third, BOUNDS, 6, n_init=3, checkpoint=tiny, config=FAST)
    assert np.array_equal(info.value.x, calls[2]) and np.isnan(info.value.value)
    assert info.value.result.n_evals == 2 and np.isfinite(info.value.result.ys).all()


@pytest.mark.parametrize(
    ("bounds", "message"),
    [
        ([(1.0, 0.0)], r"bounds\[0\] = \(1, 0\) has low >= high"),
        ([(0.0, 1.0), (2.0, 2.0)], r"bounds\[1\] = \(2, 2\) has low >= high"),
        ([0.0, 1.0], r"shape \(d, 2\)"),
        ([(0.0, np.inf)], "finite"),
    ],
)
def test_bad_bounds_are_refused(tiny, bounds, message) -> None:
    with pytest.raises(ValueError, match=message):
        minimize(bowl, bounds, 5, checkpoint=tiny)


def test_bad_budgets_and_options_are_refused(tiny) -> None:
    with pytest.raises(ValueError, match="n_evals=3 is below n_init=5"):
        minimize(bowl, BOUNDS, 3, n_init=5, checkpoint=tiny)
    with pytest.raises(ValueError, match="n_evals must be a positive int"):
        minimize(bowl, BOUNDS, 0, checkpoint=tiny)
    with pytest.raises(ValueError, match="unknown acquisition 'ucb'"):
        minimize(bowl, BOUNDS, 5, acquisition="ucb", checkpoint=tiny)
    with pytest.raises(ValueError, match="n_restarts must be at least 1"):
        AcquisitionOptimizerConfig(n_restarts=0)
    assert (
        minimize(bowl, BOUNDS, 2, checkpoint=tiny, config=FAST).n_evals == 2
    )  # default n_init capped


def test_maximize_acquisition_climbs_to_the_peak_and_stays_in_the_cube() -> None:
    generator = torch.Generator().manual_seed(0)
    config = AcquisitionOptimizerConfig(n_raw=64, n_restarts=4, n_steps=200, step_size=0.01)
    peak = torch.tensor([0.3, 0.8], dtype=torch.float64)
    observed = torch.tensor([[0.9, 0.1]], dtype=torch.float64)

    def inside(u):
        return -((u - peak) ** 2).sum(-1)

    found = maximize_acquisition(inside, observed, generator=generator, config=config)
    assert torch.allclose(found, peak, atol=1e-3)

    def outside(u):  # peak beyond the cube: the answer is on its face
        return -((u - torch.tensor([1.5, 0.4], dtype=torch.float64)) ** 2).sum(-1)

    found = maximize_acquisition(outside, observed, generator=generator, config=config)
    assert found[0] == 1.0 and abs(float(found[1]) - 0.4) < 1e-3


# ------------------------------------------------------------- issue 17, item 3: contract
def test_nan_after_the_design_leaves_the_clean_runs_prefix(tiny) -> None:
    """A NaN from f at evaluation 5 (a surrogate proposal): the history before it is the
    clean run's, bit for bit (same seed), and holds no NaN."""
    clean = run(tiny, seed=2)
    calls = []

    def fails_fifth(x: np.ndarray) -> float:
        calls.append(x)
        return float("nan") if len(calls) == 5 else bowl(x)

    with pytest.raises(EvaluationError, match="evaluation 5 of 6") as info:
        minimize(fails_fifth, BOUNDS, 6, n_init=3, checkpoint=tiny, seed=2, config=FAST)
    partial = info.value.result
    assert np.array_equal(partial.xs, clean.xs[:4]) and np.array_equal(partial.ys, clean.ys[:4])
    assert np.array_equal(info.value.x, clean.xs[4])  # the failed point is the clean 5th


@pytest.mark.parametrize("bad", [float("nan"), float("-inf"), None, "1.0x"])
def test_f_returning_a_non_number_is_an_evaluation_error(tiny, bad) -> None:
    with pytest.raises(EvaluationError, match="evaluation 1 of 4") as info:
        minimize(lambda x: bad, BOUNDS, 4, n_init=2, checkpoint=tiny, config=FAST)
    assert info.value.result is None  # nothing was evaluated before


def test_a_rejected_value_does_not_reach_the_surrogate(tiny) -> None:
    """After a NaN is refused and its point discarded, the next proposals equal those of
    an optimiser that never saw the point (same seed, same told values)."""
    told = AskTellOptimizer(BOUNDS, n_init=3, checkpoint=tiny, seed=5, config=FAST)
    clean = AskTellOptimizer(BOUNDS, n_init=3, checkpoint=tiny, seed=5, config=FAST)
    for _ in range(3):
        x, x_clean = told.ask(), clean.ask()
        told.tell(x, bowl(x))
        clean.tell(x_clean, bowl(x_clean))
    x = told.ask()
    with pytest.raises(ValueError, match="finite values"):
        told.tell(x, float("nan"))
    told.discard(x)
    assert np.isfinite(told.ys).all() and told.ys.shape == (3,)
    clean.discard(clean.ask())  # the same draw from the seeded search, never told
    assert np.array_equal(told.ask(), clean.ask())


def test_observe_counts_towards_the_design_and_refuses_bad_data(tiny) -> None:
    optimizer = AskTellOptimizer(BOUNDS, n_init=3, checkpoint=tiny, seed=0, config=FAST)
    xs = np.array([[0.0, 1.0], [5.0, 5.0], [-4.0, 14.0]])
    for bad_xs, bad_ys, message in [
        (xs, [1.0, float("nan"), 2.0], r"value at x = \[5.0, 5.0\]"),
        (xs + [[0, 0], [0, 0], [0, 2]], [1.0, 2.0, 3.0], r"xs\[2\] .* outside the bounds"),
        (xs[:, :1], [1.0, 2.0, 3.0], r"xs must have shape \(n, 2\)"),
        (xs, [1.0, 2.0], r"ys must have shape \(3,\)"),
    ]:
        with pytest.raises(ValueError, match=message):
            optimizer.observe(bad_xs, bad_ys)
        assert optimizer.ys.shape == (0,)  # nothing recorded
    optimizer.observe(xs, [bowl(x) for x in xs])
    x = optimizer.ask()  # the design is complete: a surrogate proposal
    optimizer.tell(x, bowl(x))
    result = optimizer.result()
    assert np.array_equal(result.xs[:3], xs) and result.ask_seconds[3] > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bounds": [(2.0, -2.0)]}, r"bounds\[0\] = \(2, -2\) has low >= high"),
        ({"bounds": BOUNDS, "n_init": 0}, "n_init must be a positive int"),
        ({"bounds": BOUNDS, "n_init": 2.5}, "n_init must be a positive int"),
    ],
)
def test_ask_tell_refuses_bad_bounds_and_designs(tiny, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        AskTellOptimizer(checkpoint=tiny, **kwargs)


@pytest.mark.parametrize("n_evals", [2.5, True, -1])
def test_minimize_refuses_budgets_that_are_not_positive_ints(tiny, n_evals) -> None:
    with pytest.raises(ValueError, match="n_evals must be a positive int"):
        minimize(bowl, BOUNDS, n_evals, checkpoint=tiny)


def test_same_seed_same_batch_of_pending_points(tiny) -> None:
    def batch(seed: int) -> np.ndarray:
        optimizer = AskTellOptimizer(BOUNDS, n_init=2, checkpoint=tiny, seed=seed, config=FAST)
        for _ in range(2):
            x = optimizer.ask()
            optimizer.tell(x, bowl(x))
        return np.array([optimizer.ask() for _ in range(3)])

    assert np.array_equal(batch(7), batch(7)) and not np.array_equal(batch(7), batch(8))


def test_default_search_ends_fine_from_few_steps() -> None:
    """The default search's few gradient steps (halved when they fail) bring the best raw
    candidate (no steps, same seed, so the same candidates) several times closer to a peak
    that no raw candidate hits."""
    peak = torch.tensor([0.437, 0.611], dtype=torch.float64)
    observed = torch.tensor([[0.9, 0.1]], dtype=torch.float64)

    def distance(config: AcquisitionOptimizerConfig) -> float:
        found = maximize_acquisition(
            lambda u: -((u - peak) ** 2).sum(-1).sqrt(),  # a cone: gradients never shrink
            observed,
            generator=torch.Generator().manual_seed(0),
            config=config,
        )
        return float(torch.linalg.vector_norm(found - peak))

    raw_only = distance(AcquisitionOptimizerConfig(n_steps=0))
    refined = distance(AcquisitionOptimizerConfig())
    assert refined < 0.01 and refined < raw_only / 4, (refined, raw_only)


def test_bad_search_settings_are_refused() -> None:
    for kwargs, message in [
        ({"step_size": 0.0}, "step_size must be positive"),
        ({"local_scale_min": 0.1}, "local_scale_min=0.1 exceeds local_scale=0.05"),
        ({"local_scale_min": 0.0}, "local_scale_min must be positive"),
    ]:
        with pytest.raises(ValueError, match=message):
            AcquisitionOptimizerConfig(**kwargs)
