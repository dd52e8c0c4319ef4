"""The estimators' default float32 network: split-free predictions, float64's up to rounding.

`PFNRegressor` and `PFNClassifier` run the network in float32 by default (about twice as
fast as float64 on a CPU, benchmarks/inference.py) and form the ensemble's mixture and its
summaries in float64. These tests bound what float32 changes, on the tiny trained
checkpoints of tests/data and real-scale targets: how the queries are split into calls or
chunks, and the distance to the float64 predictions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pfnkit.distributions import BarDistribution
from pfnkit.estimators import PFNClassifier, PFNRegressor
from pfnkit.estimators.regressor import mixture_of_members
from tests.conftest import FLOAT32_ATOL, FLOAT64_ATOL

DATA = Path(__file__).parents[1] / "data"
# float32 against float64 predictions, in predictive standard deviations (mean, quantiles)
# or in probability; measured: under 1e-5 on the shipped checkpoints and on these
FLOAT32_VS_FLOAT64 = 1e-4


def _table(n: int, seed: int, classes: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four columns in raw units (offsets, spreads, skew) and a price-like target."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)) * [1.0, 300.0, 0.01, 5.0] + [0.0, 2e4, 1.0, -40.0]
    x[:, 3] = np.exp(x[:, 3] / 5.0)
    signal = np.sin(x[:, 0]) + (x[:, 1] - 2e4) / 300.0 + 0.2 * rng.normal(size=n)
    if classes:
        return x, np.digitize(signal, np.quantile(signal, [1 / 3, 2 / 3]))
    return x, 5e4 + 1e3 * signal


def _splits(predict, x_test: np.ndarray) -> list[np.ndarray]:
    """`predict` on all rows at once, one row per call, and in uneven pieces."""
    whole = predict(x_test)
    one_by_one = np.concatenate([predict(row[None]) for row in x_test])
    pieces = np.concatenate([predict(p) for p in np.split(x_test, [3, 4, 30])])
    return [whole, one_by_one, pieces]


def test_regressor_predictions_do_not_depend_on_how_queries_are_split() -> None:
    x, y = _table(60, seed=0)
    x_test = _table(41, seed=1)[0]
    reg = PFNRegressor(checkpoint=str(DATA / "gp10-tiny.safetensors")).fit(x, y)
    assert reg.dtype == "float32" and reg.checkpoint_.model.borders.dtype == torch.float32
    scale = y.std()
    for chunk in (4096, 5):  # one chunk, then chunks smaller than a call
        reg.set_params(query_chunk_size=chunk)
        means = _splits(reg.predict, x_test)
        quantiles = _splits(lambda rows: reg.predict_quantiles(rows, [0.05, 0.5, 0.95]), x_test)
        log_probs = _splits(lambda rows: reg.predict_distribution(rows).log_probs.numpy(), x_test)
        for (whole, *others), atol in ((means, FLOAT32_ATOL * scale),
                                       (quantiles, FLOAT32_ATOL * scale),
                                       (log_probs, FLOAT32_ATOL)):  # fmt: skip
            for got in others:
                np.testing.assert_allclose(got, whole, rtol=0, atol=atol)
    assert reg.predict_distribution(x_test).probs.dtype == torch.float64


def test_classifier_probabilities_do_not_depend_on_how_queries_are_split() -> None:
    x, y = _table(60, seed=0, classes=3)
    x_test = _table(41, seed=1)[0]
    clf = PFNClassifier(checkpoint=str(DATA / "clf-tiny.safetensors")).fit(x, y)
    assert clf.dtype == "float32"
    for chunk in (4096, 5):
        clf.set_params(query_chunk_size=chunk)
        whole, *others = _splits(clf.predict_proba, x_test)
        for got in others:
            np.testing.assert_allclose(got, whole, rtol=0, atol=FLOAT32_ATOL)


def test_float32_predictions_are_float64_ones_up_to_rounding() -> None:
    x, y = _table(60, seed=0)
    x_test = _table(41, seed=1)[0]
    checkpoint = str(DATA / "gp10-tiny.safetensors")
    fast = PFNRegressor(checkpoint=checkpoint).fit(x, y)
    exact = PFNRegressor(checkpoint=checkpoint, dtype="float64").fit(x, y)
    std = exact.predict_distribution(x_test).stddev.numpy()
    levels = [0.05, 0.5, 0.95]
    mean_gap = np.abs(fast.predict(x_test) - exact.predict(x_test)) / std
    quantile_gap = np.abs(fast.predict_quantiles(x_test, levels)
                          - exact.predict_quantiles(x_test, levels)) / std[:, None]  # fmt: skip
    assert mean_gap.max() < FLOAT32_VS_FLOAT64 and quantile_gap.max() < FLOAT32_VS_FLOAT64
    x, y = _table(60, seed=0, classes=3)
    checkpoint = str(DATA / "clf-tiny.safetensors")
    fast = PFNClassifier(checkpoint=checkpoint).fit(x, y).predict_proba(x_test)
    exact = PFNClassifier(checkpoint=checkpoint, dtype="float64").fit(x, y).predict_proba(x_test)
    np.testing.assert_allclose(fast, exact, rtol=0, atol=FLOAT32_VS_FLOAT64)


def test_the_mixture_refuses_nan_logits_and_is_differentiable() -> None:
    logits = torch.zeros(2, 3, 5)
    logits[1, 2, 4] = float("nan")
    members = BarDistribution(torch.linspace(-1, 1, 6), logits, validate_args=False)
    with pytest.raises(ValueError, match="logits hold NaN or inf"):
        mixture_of_members(members)
    logits = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)
    mixture = mixture_of_members(BarDistribution(torch.linspace(-1, 1, 6), logits), 0.7)
    assert mixture.batch_shape == (3,) and mixture.probs.dtype == torch.float64
    expected = torch.softmax(logits.detach() / 0.7, dim=-1).mean(0)
    torch.testing.assert_close(mixture.probs.detach(), expected, atol=FLOAT64_ATOL, rtol=0)
    mixture.mean.sum().backward()  # differentiable when the logits are
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
