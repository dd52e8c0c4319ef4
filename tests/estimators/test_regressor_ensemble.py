"""PFNRegressor as an ensemble: the exact mixture of its members, invariant and chunk-free."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pfnkit.checkpoint import save_checkpoint
from pfnkit.distributions import BarDistribution
from pfnkit.estimators import PFNRegressor
from pfnkit.models import PFNConfig
from tests.helpers import make_tiny_pfn

FLOAT64_ATOL = 1e-10  # float64 identities (same model, other route or summation order)
BISECTION_ATOL = 1e-9  # a quantile found by inverting the mixture's CDF


@pytest.fixture
def reg3(tmp_path: Path) -> str:
    """A random 3-feature regression checkpoint that standardizes x and y ('reg3')."""
    config = PFNConfig(num_features=3, d_model=32, n_heads=4, n_layers=2, d_ff=64, n_bars=20)
    card = save_checkpoint(
        tmp_path / "reg3",
        make_tiny_pfn(config).double(),
        prior_name="gp",
        prior_config={},
        train_config={"n_ctx_max": 100},
        command="pytest fixture",
        data_mapping={"x": "standardize", "y": "standardize", "features": "pad"},
    )
    return str(card.with_suffix(".safetensors"))


def _table(n: int = 30, d: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.exponential(size=n), rng.normal(size=(n, d - 1))])
    return x, 50.0 + 10.0 * np.sin(2 * x[:, 0]) + x[:, 1] + 0.3 * rng.standard_normal(n)


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_the_ensemble_is_the_mixture_of_a_loop_over_its_members(
    reg3: str, temperature: float
) -> None:
    x, y = _table()
    x_test = _table(n=6, seed=1)[0]
    reg = PFNRegressor(checkpoint=reg3, n_estimators=4, query_chunk_size=4,
                       softmax_temperature=temperature, dtype="float64").fit(x, y)  # fmt: skip
    assert reg.cache_.keys[0].shape[0] == 4  # one encoded context per member
    assert [reg.views_.methods[m] for _, m in reg.views_.layout] == [
        "none", "quantile", "power", "robust"
    ]  # fmt: skip
    loc, scale = y.mean(), y.std()
    ctx, qry = reg.views_.transform(x), reg.views_.transform(x_test)
    y_model = torch.as_tensor((y - loc) / scale)[None]
    targets = torch.as_tensor(np.linspace(30, 70, 9)[:, None] + np.zeros(6))  # (9, 6)
    densities, means = [], []
    for view in range(4):  # each member alone, through the uncached forward pass
        with torch.no_grad():
            member = reg.checkpoint_.model(
                torch.as_tensor(ctx[view])[None], y_model, torch.as_tensor(qry[view])[None]
            )[0]
        member = BarDistribution(member.borders, member.logits / temperature)
        densities.append(member.log_prob((targets - loc) / scale).exp() / scale)
        means.append(loc + scale * member.mean)
    dist = reg.predict_distribution(x_test)
    expected = torch.stack(densities).mean(0).log()
    torch.testing.assert_close(dist.log_prob(targets), expected, atol=FLOAT64_ATOL, rtol=0)
    expected_mean = torch.stack(means).mean(0).numpy()
    np.testing.assert_allclose(reg.predict(x_test), expected_mean, atol=FLOAT64_ATOL, rtol=0)
    # the quantiles are those of the same mixture: its CDF there is the level
    levels = [0.05, 0.5, 0.95]
    quantiles = torch.as_tensor(reg.predict_quantiles(x_test, levels))
    cdf = dist.cdf(quantiles.T).T
    torch.testing.assert_close(cdf, torch.tensor(levels, dtype=torch.float64).expand(6, 3),
                               atol=BISECTION_ATOL, rtol=0)  # fmt: skip


def test_predictions_ignore_row_order_and_how_queries_are_chunked(reg3: str) -> None:
    x, y = _table(n=40)
    x[::6, 1] = np.nan  # holes, so imputation and indicators are covered too
    x_test = _table(n=9, seed=2)[0]
    x_test[3, 1] = np.nan
    options = dict(checkpoint=reg3, n_estimators=8, random_state=1, dtype="float64")
    reg = PFNRegressor(**options).fit(x, y)
    mean, dist = reg.predict(x_test), reg.predict_distribution(x_test)
    rows = np.random.default_rng(0).permutation(len(x))
    shuffled = PFNRegressor(**options).fit(x[rows], y[rows])
    np.testing.assert_allclose(shuffled.predict(x_test), mean, atol=FLOAT64_ATOL, rtol=0)
    torch.testing.assert_close(shuffled.predict_distribution(x_test).log_probs, dist.log_probs,
                               atol=FLOAT64_ATOL, rtol=0)  # fmt: skip
    reg.set_params(query_chunk_size=2)
    np.testing.assert_allclose(reg.predict(x_test), mean, atol=FLOAT64_ATOL, rtol=0)
    one_by_one = np.concatenate([reg.predict(row[None]) for row in x_test])
    np.testing.assert_allclose(one_by_one, mean, atol=FLOAT64_ATOL, rtol=0)


def test_members_and_options(reg3: str) -> None:
    x, y = _table()
    views = lambda **options: PFNRegressor(checkpoint=reg3, **options).fit(x, y).views_.layout  # noqa: E731
    assert len(views(n_estimators=1)) == 1
    assert len(views(n_estimators=6, preprocessing="none")) == 6  # 6 = 3! column orders
    assert len(views(n_estimators=20, preprocessing="none")) == 6  # no more distinct views
    assert len(views(n_estimators=20, preprocessing=("none", "quantile"))) == 12
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="n_estimators must be a positive int"):
            PFNRegressor(checkpoint=reg3, n_estimators=bad).fit(x, y)
    with pytest.raises(ValueError, match="preprocessing must be 'auto'"):
        PFNRegressor(checkpoint=reg3, preprocessing="log").fit(x, y)
    for bad in (0.0, -1.0, np.inf, "1", True):
        with pytest.raises(
            ValueError, match="softmax_temperature must be .auto. or a positive number"
        ):
            PFNRegressor(checkpoint=reg3, softmax_temperature=bad).fit(x, y)


def test_auto_temperature_sharpens_only_checkpoints_for_real_tables(
    reg3: str, tiny_checkpoint: Path
) -> None:
    x, y = _table()
    auto = PFNRegressor(checkpoint=reg3).fit(x, y).predict_distribution(x[:4])
    fixed = PFNRegressor(checkpoint=reg3, softmax_temperature=0.7).fit(x, y)
    torch.testing.assert_close(auto.log_probs, fixed.predict_distribution(x[:4]).log_probs)
    x1 = x[:, :1] / x[:, 0].max()  # the tiny checkpoint: one feature in fixed units
    auto = PFNRegressor(checkpoint=str(tiny_checkpoint)).fit(x1, y).predict(x1)
    plain = PFNRegressor(checkpoint=str(tiny_checkpoint), softmax_temperature=1.0)
    np.testing.assert_array_equal(auto, plain.fit(x1, y).predict(x1))


def test_string_columns_are_categorical(reg3: str) -> None:
    x, y = _table()
    colours = np.array(["red", "green", "blue"], dtype=object)[np.arange(30) % 3]
    table = np.column_stack([x[:, :2], colours])
    reg = PFNRegressor(checkpoint=reg3).fit(table, y + (colours == "red"))
    np.testing.assert_array_equal(reg.preprocessor_.categorical_, [False, False, True])
    assert np.isfinite(reg.predict(table[:5])).all()
    assert math.isfinite(reg.score(table, y))
