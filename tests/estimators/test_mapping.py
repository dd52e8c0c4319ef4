"""PFNRegressor data mapping: affine invariance with the Jacobian; padding as the prior pads."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pfnkit.checkpoint import save_checkpoint
from pfnkit.estimators import PFNRegressor
from pfnkit.estimators.ensemble import pad_features
from pfnkit.models import PFNConfig
from priors.gp import GPPrior, GPPriorConfig
from tests.conftest import FLOAT32_ATOL
from tests.helpers import make_tiny_pfn

AFFINE_ATOL = 1e-9  # float64: the same model on inputs that differ by rounding only
GENERAL = GPPriorConfig.general_purpose(num_features=4)


def _checkpoint(tmp_path: Path, mapping: dict[str, str], name: str = "tiny-pad") -> str:
    config = PFNConfig(num_features=4, d_model=32, n_heads=4, n_layers=2, d_ff=64, n_bars=20)
    card = save_checkpoint(
        tmp_path / name,
        make_tiny_pfn(config),
        prior_name="gp",
        prior_config=GENERAL.to_dict(),
        train_config={"n_ctx_max": 50},
        command="pytest fixture",
        data_mapping=mapping,
    )
    return str(card.with_suffix(".safetensors"))


@pytest.fixture
def rescaling_checkpoint(tmp_path: Path) -> str:
    mapping = {"x": "standardize", "y": "standardize", "features": "pad", "pad_rescale": "sqrt"}
    return _checkpoint(tmp_path, mapping)


def test_predictions_are_invariant_to_affine_maps_of_x_and_y(rescaling_checkpoint: str) -> None:
    rng = np.random.default_rng(0)
    x, x_test = rng.normal(size=(15, 3)), rng.normal(size=(6, 3))
    y, y_test = np.sin(x).sum(1), rng.normal(size=6)
    scale, shift = np.array([3.0, 0.02, 700.0]), np.array([-5.0, 100.0, 1e4])
    y_scale, y_shift = 250.0, -3e3
    base = PFNRegressor(checkpoint=rescaling_checkpoint, dtype="float64").fit(x, y)
    moved = PFNRegressor(checkpoint=rescaling_checkpoint, dtype="float64").fit(
        x * scale + shift, y * y_scale + y_shift
    )
    dist, moved_dist = (
        base.predict_distribution(x_test),
        moved.predict_distribution(x_test * scale + shift),
    )
    expected = dist.log_prob(torch.tensor(y_test)) - math.log(y_scale)
    got = moved_dist.log_prob(torch.tensor(y_test * y_scale + y_shift))
    torch.testing.assert_close(got, expected, atol=AFFINE_ATOL, rtol=0)
    np.testing.assert_allclose(
        moved.predict(x_test * scale + shift), base.predict(x_test) * y_scale + y_shift,
        atol=AFFINE_ATOL * y_scale, rtol=0,
    )  # fmt: skip
    levels = [0.05, 0.5, 0.95]
    np.testing.assert_allclose(
        moved.predict_quantiles(x_test * scale + shift, levels),
        base.predict_quantiles(x_test, levels) * y_scale + y_shift,
        atol=AFFINE_ATOL * y_scale, rtol=0,
    )  # fmt: skip


@pytest.mark.parametrize("d", [1, 2, 4])
def test_pad_rescale_reproduces_the_prior_inputs(tmp_path: Path, d: int) -> None:
    """Standardized features padded by the card's mapping are exactly the prior's x."""
    batch = GPPrior(GENERAL).sample(1, 9, 3, generator=torch.Generator().manual_seed(d),
                                     num_used_features=d)  # fmt: skip
    x_prior = batch.x_ctx[0].double().numpy()
    x_std = x_prior[:, :d] / math.sqrt(4 / d)  # the standardized features the prior drew
    np.testing.assert_allclose(pad_features(x_std, 4, "sqrt"), x_prior, atol=FLOAT32_ATOL, rtol=0)
    mapping = {"x": "identity", "y": "identity", "features": "pad", "pad_rescale": "sqrt"}
    reg = PFNRegressor(checkpoint=_checkpoint(tmp_path, mapping)).fit(x_std, batch.y_ctx[0].numpy())
    first_view = reg.views_.transform(x_std)[0]  # the columns in their order
    np.testing.assert_allclose(first_view, x_prior, atol=FLOAT32_ATOL, rtol=0)


def test_without_pad_rescale_padding_is_plain_zeros(tmp_path: Path) -> None:
    mapping = {"x": "identity", "y": "identity", "features": "pad"}
    x = np.arange(6.0).reshape(3, 2)
    reg = PFNRegressor(checkpoint=_checkpoint(tmp_path, mapping)).fit(x, np.arange(3.0))
    np.testing.assert_array_equal(reg.views_.transform(x)[0], np.c_[x, np.zeros((3, 2))])


def test_unknown_pad_rescale_is_a_clear_error(tmp_path: Path) -> None:
    mapping = {"x": "identity", "features": "pad", "pad_rescale": "cube"}
    with pytest.raises(ValueError, match=r"pad_rescale'\]='cube'"):
        PFNRegressor(checkpoint=_checkpoint(tmp_path, mapping)).fit(np.ones((3, 2)), np.ones(3))
