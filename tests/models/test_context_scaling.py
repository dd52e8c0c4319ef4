"""Per-context standardization: `LocScaleBars` against `BarDistribution.affine` row by row,
the statistics against numpy, a standardizing PFN's translation equivariance and the
normalization of its density on the y scale, and its borders and training."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from pfnkit.distributions import BarDistribution
from pfnkit.models import PFN, LocScaleBars, PFNConfig
from pfnkit.models.context_scaling import context_loc_scale
from pfnkit.training import TrainConfig, initial_model, pretrain
from priors.gp import GPPrior

ATOL64 = 1e-10  # float64 round-off of the same arithmetic done two ways
INTEGRAL_ATOL = 2e-3  # trapezoid rule on a 40001-point grid over the bars' support
FLOOR = 0.05
TINY = PFNConfig(
    num_features=1, d_model=32, n_heads=4, n_layers=2, d_ff=64, n_bars=40, y_context_floor=FLOOR
)


def _bars(batch: tuple[int, ...], seed: int = 0) -> BarDistribution:
    g = torch.Generator().manual_seed(seed)
    borders = torch.cumsum(torch.rand(13, generator=g, dtype=torch.float64) + 0.1, 0) - 3
    return BarDistribution(borders, torch.randn(*batch, 12, generator=g, dtype=torch.float64))


def _tiny_scaled_pfn(seed: int = 0) -> PFN:
    torch.manual_seed(seed)
    model = PFN(TINY, torch.linspace(-4, 4, TINY.n_bars + 1)).double().eval()
    with torch.no_grad():
        model.query_marker.normal_()
    return model


def test_context_statistics_match_numpy() -> None:
    y = torch.randn(4, 9, dtype=torch.float64)
    loc, scale = context_loc_scale(y, FLOOR)
    np.testing.assert_allclose(loc[:, 0].numpy(), y.numpy().mean(1), atol=ATOL64)
    np.testing.assert_allclose(
        scale[:, 0].numpy(), np.sqrt(y.numpy().var(1) + FLOOR**2), atol=ATOL64
    )
    _, one = context_loc_scale(y[:, :1], FLOOR)
    assert torch.allclose(one, torch.full_like(one, FLOOR))
    with pytest.raises(ValueError, match="floor must be positive"):
        context_loc_scale(y, 0.0)
    with pytest.raises(ValueError, match="N >= 1"):
        context_loc_scale(y[:, :0], FLOOR)


def test_loc_scale_bars_match_affine_bars_row_by_row() -> None:
    base = _bars((3, 4))
    loc = torch.tensor([[0.5], [-2.0], [10.0]], dtype=torch.float64)
    scale = torch.tensor([[0.01], [1.0], [7.5]], dtype=torch.float64)
    dist = LocScaleBars(base, loc, scale)
    g = torch.Generator().manual_seed(1)
    levels = torch.tensor([0.05, 0.5, 0.95], dtype=torch.float64)
    for i in range(3):
        row = base[i].affine(float(loc[i]), float(scale[i]))  # the independent oracle
        y = row.sample((5,), generator=g)
        assert torch.allclose(dist.log_prob(y.unsqueeze(1).expand(5, 3, 4))[:, i], row.log_prob(y),
                              atol=ATOL64)  # fmt: skip
        assert torch.allclose(
            dist.cdf(y.unsqueeze(1).expand(5, 3, 4))[:, i], row.cdf(y), atol=ATOL64
        )
        q = torch.full((3, 4), 0.3, dtype=torch.float64)
        assert torch.allclose(dist.icdf(q)[i], row.icdf(q[i]), atol=ATOL64)
        assert torch.allclose(dist.quantiles(levels)[i], row.quantiles(levels), atol=ATOL64)
        for name in ("mean", "variance", "median", "mode"):
            assert torch.allclose(getattr(dist, name)[i], getattr(row, name), atol=ATOL64), name
        assert torch.allclose(dist.entropy()[i], row.entropy(), atol=ATOL64)
        assert torch.allclose(dist[i].mean, row.mean, atol=ATOL64)
    draws = dist.sample((4000,), generator=g)
    assert draws.shape == (4000, 3, 4)
    z = (draws - dist.mean) / dist.variance.sqrt()
    assert float(z.mean(0).abs().max()) < 0.25  # 4000 draws: 5 sd of a standardized mean is 0.08


def test_loc_scale_bars_reject_bad_shapes_and_scales() -> None:
    base = _bars((3, 4))
    with pytest.raises(ValueError, match="positive"):
        LocScaleBars(base, torch.zeros(3, 1), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="broadcast"):
        LocScaleBars(base, torch.zeros(3, 4, 2), torch.ones(3, 1))


def test_config_refuses_a_negative_floor_or_a_classifier() -> None:
    with pytest.raises(ValueError, match="y_context_floor"):
        dataclasses.replace(TINY, y_context_floor=-1.0)
    with pytest.raises(ValueError, match="y_context_floor"):
        PFNConfig(n_classes=3, y_context_floor=0.1)
    assert PFNConfig.from_dict({"num_features": 2}).y_context_floor == 0.0  # old cards


def test_standardizing_pfn_is_translation_equivariant() -> None:
    """With its (loc, log scale) embedding zeroed, shifting every target shifts the predictive.

    Translation leaves the z scale unchanged, so the network sees the same tokens, and the
    predictive must move by the shift exactly: this checks that loc enters both ends.
    """
    model = _tiny_scaled_pfn()
    with torch.no_grad():
        model.stat_encoder.weight.zero_()
        model.stat_encoder.bias.zero_()
    g = torch.Generator().manual_seed(2)
    x_ctx, x_qry = torch.rand(2, 6, 1, generator=g), torch.rand(2, 5, 1, generator=g)
    y_ctx, y_qry = torch.randn(2, 6, generator=g), torch.randn(2, 5, generator=g)
    x_ctx, x_qry, y_ctx, y_qry = (t.double() for t in (x_ctx, x_qry, y_ctx, y_qry))
    shift = torch.tensor([[3.0], [-40.0]], dtype=torch.float64)
    with torch.no_grad():
        base = model(x_ctx, y_ctx, x_qry)
        moved = model(x_ctx, y_ctx + shift, x_qry)
    assert isinstance(base, LocScaleBars)
    assert torch.allclose(moved.log_prob(y_qry + shift), base.log_prob(y_qry), atol=1e-8)
    assert torch.allclose(moved.mean, base.mean + shift, atol=1e-8)


def test_standardizing_pfn_density_integrates_to_one_on_the_y_scale() -> None:
    """The Jacobian 1 / scale: the density over y, not over z, integrates to one."""
    model = _tiny_scaled_pfn()
    g = torch.Generator().manual_seed(3)
    x_ctx, x_qry = (
        torch.rand(1, 4, 1, generator=g).double(),
        torch.rand(1, 1, 1, generator=g).double(),
    )
    y_ctx = 5.0 + 0.3 * torch.randn(1, 4, generator=g).double()
    with torch.no_grad():
        dist = model.predict_from_cache(model.encode_context(x_ctx, y_ctx), x_qry)
        lo, hi = float(dist.icdf(torch.tensor(1e-7))), float(dist.icdf(torch.tensor(1 - 1e-7)))
        grid = torch.linspace(lo, hi, 40001, dtype=torch.float64)
        density = dist.log_prob(grid.reshape(-1, 1, 1)).exp()[:, 0, 0]
    assert abs(float(torch.trapezoid(density, grid)) - 1.0) < INTEGRAL_ATOL
    # the cached pass and the one-shot pass agree
    with torch.no_grad():
        once = model(x_ctx, y_ctx, x_qry)
    assert torch.allclose(once.log_prob(dist.mean), dist.log_prob(dist.mean), atol=1e-10)


def test_standardizing_pfn_borders_are_on_the_z_scale_and_it_trains(tmp_path: Path) -> None:
    """Borders from standardized targets: a prior with y shifted by 100 gets the same bars."""
    config = TrainConfig(steps=20, batch_size=16, n_ctx_min=2, n_ctx_max=12, n_qry=16,
                         warmup_steps=2, lr=3e-3, num_workers=0, n_border_tasks=640,
                         checkpoint_every=10)  # fmt: skip

    class Shifted(GPPrior):
        def sample(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            batch = super().sample(*args, **kwargs)
            return dataclasses.replace(batch, y_ctx=batch.y_ctx + 100, y_qry=batch.y_qry + 100)

    plain = initial_model(TINY, GPPrior(), config).borders
    shifted = initial_model(TINY, Shifted(), config).borders
    assert torch.allclose(plain, shifted, atol=1e-4)  # float32 targets near 100
    assert -3 < float(plain[TINY.n_bars // 2]) < 3  # the median target, in context sd units
    trained = pretrain(TINY, GPPrior(), config, run_dir=tmp_path).model
    batch = GPPrior().sample(8, 6, 10, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        nll = -trained(batch.x_ctx, batch.y_ctx, batch.x_qry).log_prob(batch.y_qry)
    assert bool(torch.isfinite(nll).all())
