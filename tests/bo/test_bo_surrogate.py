"""PFNSurrogate: cached equals a full pass, the box map, and gradients of every acquisition."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pfnkit.bo import (
    ACQUISITIONS,
    Box,
    PFNSurrogate,
    expected_improvement,
    probability_of_improvement,
    upper_confidence_bound,
)
from pfnkit.bo.outputs import OutputTransform
from pfnkit.models import PFNConfig
from tests.bo.conftest import save_tiny
from tests.conftest import FLOAT64_ATOL
from tests.helpers import TINY_CLF_CONFIG

BOUNDS = [(-5.0, 10.0), (0.0, 15.0)]


def fitted_surrogate(
    checkpoint: Path, n: int = 7, **kwargs
) -> tuple[PFNSurrogate, np.ndarray, np.ndarray]:
    surrogate = PFNSurrogate(BOUNDS, checkpoint, dtype=torch.float64, **kwargs)
    rng = np.random.default_rng(0)
    u = rng.random((n, 2))
    y = np.sin(6 * u[:, 0]) + u[:, 1] ** 2 * 30.0
    return surrogate.fit(u, y), u, y


def test_cached_posterior_equals_a_full_pass(tiny_bo_checkpoint) -> None:
    surrogate, u, y = fitted_surrogate(tiny_bo_checkpoint)
    queries = torch.rand(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    cached = surrogate.posterior_unit(queries)
    model = surrogate.model
    x_ctx = surrogate.model_inputs(torch.as_tensor(u)).unsqueeze(0)
    y_ctx = torch.as_tensor(surrogate.transform_y(y)).unsqueeze(0)
    full = model(x_ctx, y_ctx, surrogate.model_inputs(queries).unsqueeze(0))
    assert torch.allclose(cached.logits, full.logits[0], rtol=0, atol=FLOAT64_ATOL)


def test_posterior_in_box_units_equals_unit_cube(tiny_bo_checkpoint) -> None:
    surrogate, _, _ = fitted_surrogate(tiny_bo_checkpoint)
    u = torch.rand(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x = torch.as_tensor(surrogate.box.from_unit(u.numpy()))
    assert torch.allclose(surrogate.posterior(x).logits, surrogate.posterior_unit(u).logits)


def test_box_maps_to_standardized_padded_inputs(tiny_bo_checkpoint) -> None:
    surrogate = PFNSurrogate(BOUNDS, tiny_bo_checkpoint, dtype=torch.float64)
    corners = torch.tensor([[0.0, 1.0], [0.5, 0.5]], dtype=torch.float64)
    inputs = surrogate.model_inputs(corners)
    rescale = math.sqrt(3 / 2)  # pad_rescale "sqrt": √(num_features / d)
    expected = torch.tensor([[-math.sqrt(3), math.sqrt(3), 0.0], [0.0, 0.0, 0.0]]) * rescale
    expected[:, 2] = 0.0
    assert torch.allclose(inputs, expected.double(), atol=FLOAT64_ATOL)


def test_identity_card_reads_the_unit_cube(tmp_path) -> None:
    config = PFNConfig(num_features=2, d_model=32, n_heads=4, n_layers=2, d_ff=64, n_bars=20)
    path = save_tiny(tmp_path / "unit", config, {"x": "identity", "y": "identity"})
    surrogate = PFNSurrogate(BOUNDS, path, dtype=torch.float64)
    u = torch.tensor([[0.25, 0.75]], dtype=torch.float64)
    assert torch.equal(surrogate.model_inputs(u), u)
    assert surrogate.transform_y(np.array([3.0]))[0] == 3.0  # fixed units: no transform


@pytest.mark.parametrize("kind", ["standardize", "power", "rank"])
def test_output_transform_is_increasing_and_inverts(kind) -> None:
    y = np.array([0.4, 0.5, 1.2, 3.0, 17.0, 150.0, 300.0])
    transform = OutputTransform(kind).fit(y)
    z = transform.transform(y)
    assert np.all(np.diff(z) > 0)
    assert abs(z.mean()) < 1e-9 and abs(z.std() - 1) < 1e-9
    assert np.allclose(transform.inverse(z), y, rtol=1e-9)
    if kind != "standardize":  # the warps spread the low values of a heavy tail apart
        assert z[1] - z[0] > 3 * (0.5 - 0.4) / y.std()  # rank: ~800 times
    between = transform.transform(np.array([0.45, 1000.0, -1.0]))
    assert z[0] < between[0] < z[1] and between[1] > z[-1] and between[2] < z[0]


def test_refuses_what_it_cannot_serve(tmp_path, tiny_bo_checkpoint) -> None:
    with pytest.raises(ValueError, match="box has 4 dimensions but checkpoint .* at most 3"):
        PFNSurrogate([(0, 1)] * 4, tiny_bo_checkpoint)
    classifier = save_tiny(tmp_path / "clf", TINY_CLF_CONFIG)
    with pytest.raises(ValueError, match="not a regression PFN"):
        PFNSurrogate(BOUNDS, classifier)
    surrogate = PFNSurrogate(BOUNDS, tiny_bo_checkpoint)
    with pytest.raises(RuntimeError, match="call fit"):
        surrogate.posterior_unit(torch.zeros(1, 2))
    with pytest.raises(ValueError, match="NaN or inf"):
        surrogate.fit(np.zeros((2, 2)), np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match=r"u of shape \(n, 2\)"):
        surrogate.fit(np.zeros((2, 3)), np.zeros(2))


@pytest.mark.parametrize("name", sorted(ACQUISITIONS))
def test_acquisition_gradients_match_finite_differences(tiny_bo_checkpoint, name) -> None:
    """torch.autograd.gradcheck through the cached context, in float64."""
    surrogate, _, y = fitted_surrogate(tiny_bo_checkpoint)
    incumbent = torch.tensor(float(surrogate.transform_y(y.min())), dtype=torch.float64)
    acquisition = ACQUISITIONS[name]
    u = torch.rand(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    u = (0.1 + 0.8 * u).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda q: acquisition(surrogate.posterior_unit(q), incumbent), (u,), eps=1e-6, atol=1e-6
    )


@pytest.mark.parametrize(
    "acquisition",
    [
        expected_improvement,
        probability_of_improvement,
        lambda dist, tau: upper_confidence_bound(dist, 0.8),
    ],
    ids=["ei", "pi", "ucb"],
)
def test_plain_acquisition_gradients_in_box_units(tiny_bo_checkpoint, acquisition) -> None:
    surrogate, _, y = fitted_surrogate(tiny_bo_checkpoint)
    x = torch.tensor([[1.0, 7.0], [-2.0, 3.0]], dtype=torch.float64, requires_grad=True)
    tau = float(surrogate.transform_y(y.min()))
    assert torch.autograd.gradcheck(
        lambda q: acquisition(surrogate.posterior(q), tau), (x,), eps=1e-6, atol=1e-6
    )


def test_box_round_trips_points() -> None:
    box = Box.from_bounds(BOUNDS)
    assert np.allclose(box.from_unit(box.to_unit(np.array([3.0, 4.0]))), [3.0, 4.0])
    assert np.allclose(box.to_unit(np.array([[-5.0, 15.0]])), [[0.0, 1.0]])
