"""PFNRegressor: agrees with the raw model, maps units with the Jacobian, rejects bad input."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from pfnkit.checkpoint import save_checkpoint
from pfnkit.estimators import PFNRegressor
from pfnkit.models import PFNConfig
from tests.conftest import FLOAT64_ATOL
from tests.helpers import make_tiny_pfn


@pytest.fixture
def standardizing_checkpoint(tmp_path: Path) -> Path:
    config = PFNConfig(num_features=3, d_model=32, n_heads=4, n_layers=2, d_ff=64, n_bars=20)
    card = save_checkpoint(
        tmp_path / "tiny-std",
        make_tiny_pfn(config),
        prior_name="gp",
        prior_config={},
        train_config={"n_ctx_max": 50},
        command="pytest fixture",
        data_mapping={"x": "standardize", "y": "standardize", "features": "pad"},
    )
    return card.with_suffix(".safetensors")


def _data(n: int = 12, d: int = 1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, size=(n, d))
    return x, np.sin(6 * x[:, 0]) + 0.1 * rng.standard_normal(n)


def test_predictions_match_the_raw_model(tiny_checkpoint: Path) -> None:
    x, y = _data()
    x_test = np.linspace(0, 1, 7).reshape(-1, 1)
    reg = PFNRegressor(checkpoint=str(tiny_checkpoint), query_chunk_size=3, dtype="float64")
    reg.fit(x, y)
    assert len(reg.views_.layout) == 1  # one feature in fixed units: one distinct view
    model = reg.checkpoint_.model
    with torch.no_grad():
        raw = model(torch.tensor(x)[None], torch.tensor(y)[None], torch.tensor(x_test)[None])[0]
    dist = reg.predict_distribution(x_test)
    assert dist.batch_shape == (7,)
    torch.testing.assert_close(dist.log_probs, raw.log_probs, atol=FLOAT64_ATOL, rtol=0)
    np.testing.assert_allclose(reg.predict(x_test), raw.mean.numpy(), atol=FLOAT64_ATOL, rtol=0)
    q = reg.predict_quantiles(x_test, [0.05, 0.5, 0.95])
    assert q.shape == (7, 3) and np.all(np.diff(q, axis=1) > 0)
    assert isinstance(reg.score(x, y), float)


def test_log_prob_includes_the_jacobian_and_broadcasts(standardizing_checkpoint: Path) -> None:
    x, y = _data(d=2)
    y = 1000.0 + 50.0 * y
    reg = PFNRegressor(checkpoint=str(standardizing_checkpoint), n_estimators=1,
                       preprocessing="none", softmax_temperature=1.0,
                       dtype="float64").fit(x, y)  # fmt: skip
    x_test = np.random.default_rng(1).uniform(0, 1, size=(4, 2))
    dist = reg.predict_distribution(x_test)
    loc, scale = reg.mapping_.y_loc, reg.mapping_.y_scale
    assert loc == pytest.approx(y.mean()) and scale == pytest.approx(y.std())
    model_dist = reg.checkpoint_.model.predict_from_cache(
        reg.cache_, torch.as_tensor(reg.views_.transform(x_test))
    )[0]
    y_query = torch.tensor([990.0, 1000.0, 1010.0, 1050.0], dtype=torch.float64)
    expected = model_dist.log_prob((y_query - loc) / scale) - math.log(scale)
    torch.testing.assert_close(
        dist.log_prob(y_query.double()), expected.double(), atol=FLOAT64_ATOL, rtol=0
    )
    # broadcasting like any torch Distribution: (k, m) targets against batch (m,)
    y_km = torch.stack([y_query, y_query + 5.0, y_query - 5.0])
    lp = dist.log_prob(y_km)
    assert lp.shape == (3, 4)
    for k in range(3):
        torch.testing.assert_close(lp[k], dist.log_prob(y_km[k]), atol=0, rtol=0)


@pytest.mark.parametrize(
    ("x", "y", "match"),
    [
        (np.array([[np.inf], [0.5]]), np.array([0.0, 1.0]), "inf in column"),
        (np.array([[0.1], [0.5]]), np.array([np.inf, 1.0]), "y contains infinity"),
        (np.array([[0.1], [0.5]]), np.array([np.nan, 1.0]), "y contains NaN"),
        (np.zeros((0, 1)), np.zeros(0), "0 sample"),
    ],
)
def test_bad_input_raises_a_clear_value_error(tiny_checkpoint, x, y, match) -> None:
    with pytest.raises(ValueError, match=match):
        PFNRegressor(checkpoint=str(tiny_checkpoint)).fit(x, y)


def test_more_features_than_the_model_reads_become_subsets(standardizing_checkpoint) -> None:
    x, y = _data(d=7)
    message = "X has 7 features but checkpoint 'tiny-std' reads at most 3; each of the 4 ensemble"
    with pytest.warns(UserWarning, match=message + " views sees a random subset of 3"):
        reg = PFNRegressor(checkpoint=str(standardizing_checkpoint)).fit(x, y)
    assert sorted(set(reg.views_.orders.ravel())) == list(range(7))
    assert np.isfinite(reg.predict(x)).all()


def test_predict_rejects_inf_and_wrong_feature_count(tiny_checkpoint) -> None:
    reg = PFNRegressor(checkpoint=str(tiny_checkpoint)).fit(*_data())
    with pytest.raises(ValueError, match="inf in column"):
        reg.predict(np.array([[np.inf]]))
    with pytest.raises(ValueError, match="features"):
        reg.predict(np.zeros((2, 3)))


def test_context_larger_than_trained_warns_and_runs(tiny_checkpoint) -> None:
    x, y = _data(n=60)
    with pytest.warns(UserWarning, match="trained on at most 50"):
        reg = PFNRegressor(checkpoint=str(tiny_checkpoint)).fit(x, y)
    assert np.isfinite(reg.predict(x)).all()


def test_constant_and_huge_targets_give_finite_predictions(
    tiny_checkpoint, standardizing_checkpoint
) -> None:
    x, _ = _data(d=1)
    noise = np.random.default_rng(0).standard_normal(len(x))
    targets = (np.full(len(x), 3.0), 1e12 * np.sin(6 * x[:, 0]), 1e12 + 0.01 * noise)
    for y in targets:
        for dtype in ("float64", "float32"):
            reg = PFNRegressor(checkpoint=str(standardizing_checkpoint), dtype=dtype).fit(x, y)
            assert np.isfinite(reg.predict(x)).all()
            q = reg.predict_quantiles(x, [0.05, 0.95])
            assert np.isfinite(q).all() and (q[:, 1] > q[:, 0]).all()
    with pytest.warns(UserWarning, match="outside"):
        reg = PFNRegressor(checkpoint=str(tiny_checkpoint)).fit(x, 1e12 * np.ones(len(x)))
    assert np.isfinite(reg.predict(x)).all()


def test_in_range_targets_raise_no_warning(tiny_checkpoint) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PFNRegressor(checkpoint=str(tiny_checkpoint)).fit(*_data()).predict(np.zeros((2, 1)))


_CPU_OOM = "DefaultCPUAllocator: can't allocate memory: you tried to allocate 80000000000 bytes."


def _raiser(error: BaseException):
    def fail(*args, **kwargs):
        raise error

    return fail


@pytest.mark.parametrize(
    "error", [RuntimeError(_CPU_OOM), torch.OutOfMemoryError("CUDA out of memory.")]
)
def test_out_of_memory_names_the_knobs(tiny_checkpoint, monkeypatch, error) -> None:
    x, y = _data()
    reg = PFNRegressor(checkpoint=str(tiny_checkpoint), query_chunk_size=1000, dtype="float64")
    reg.fit(x, y)
    model_cls = type(reg.checkpoint_.model)
    monkeypatch.setattr(model_cls, "predict_from_cache", _raiser(error))
    for predict in (reg.predict, reg.predict_distribution):
        with pytest.raises(MemoryError, match=r"query_chunk_size \(now 1000.*float32") as info:
            predict(x)
        assert info.value.__cause__ is error
    monkeypatch.setattr(model_cls, "encode_context", _raiser(error))
    with pytest.raises(MemoryError, match="context of 12 points.*fewer context points"):
        reg.fit(x, y)


def test_other_runtime_errors_pass_through(tiny_checkpoint, monkeypatch) -> None:
    reg = PFNRegressor(checkpoint=str(tiny_checkpoint)).fit(*_data())
    error = RuntimeError("mat1 and mat2 shapes cannot be multiplied")
    monkeypatch.setattr(type(reg.checkpoint_.model), "predict_from_cache", _raiser(error))
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        reg.predict(np.zeros((2, 1)))
