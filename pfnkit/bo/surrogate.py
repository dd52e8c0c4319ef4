"""A regression PFN checkpoint as the surrogate of Bayesian optimisation on a box.

`PFNSurrogate.fit` encodes the observations once (the model's context cache,
`PFN.encode_context`); `posterior` then decodes any number of query batches against that
cache, with gradients to the query inputs, so an acquisition optimiser can climb it.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from pfnkit.bo.box import Box
from pfnkit.bo.outputs import OutputTransform
from pfnkit.checkpoint import Checkpoint, load_checkpoint
from pfnkit.distributions import BarDistribution
from pfnkit.models import PFN
from pfnkit.models.pfn import ContextCache

__all__ = ["DEFAULT_CHECKPOINT", "PFNSurrogate", "load_regression_pfn"]

log = logging.getLogger(__name__)

# The surrogate of `minimize`, `AskTellOptimizer` and `python cli.py optimize` when none is
# named: "gp-bo-lownoise", the general GP regressor "gp" fine-tuned on a BO prior (inputs on
# the unit cube in 1 to 10 dimensions, noise variances down to 1e-5; examples/configs/
# gp_bo.toml, then gp_bo_ft.toml), up to 128 observations. With the trust region on, it
# ranked ahead of "gp" and "gp-bo" in pfnkit-only reruns of benchmarks/bo.py (README).
DEFAULT_CHECKPOINT = "gp-bo-lownoise"

_SQRT12 = math.sqrt(12.0)  # 1 / std of U(0, 1)


def load_regression_pfn(
    checkpoint: str | Path | Checkpoint, device: str | torch.device, *, needed_by: str
) -> Checkpoint:
    """`checkpoint` loaded (unless it is already), or a ValueError if it is no regression PFN.

    `needed_by` ends the error message (who needs a regression PFN, and an example).
    """
    loaded = (
        checkpoint
        if isinstance(checkpoint, Checkpoint)
        else load_checkpoint(checkpoint, device=device)
    )
    model = loaded.model
    if not isinstance(model, PFN) or model.config.is_classifier:
        raise ValueError(
            f"checkpoint {loaded.name!r} is not a regression PFN (model_kind "
            f"{loaded.card.get('model_kind')!r}); {needed_by}"
        )
    if model.config.y_context_floor > 0:
        raise ValueError(
            f"checkpoint {loaded.name!r} standardizes its targets per context (y_context_floor "
            f"{model.config.y_context_floor}), so its bars are not on the y scale that the "
            f"acquisitions read; {needed_by}"
        )
    return loaded


class PFNSurrogate:
    """Posterior predictive of a regression PFN over a search box.

    Inputs. The box is mapped affinely onto the unit cube ``u ∈ [0, 1]^d``, and the
    model reads, as its card's ``data_mapping["x"]`` declares:

    * ``"standardize"`` (the general-purpose "gp", trained on standardized features,
      and "gp-bo"): ``√12 (u - 1/2)``, the box's uniform distribution standardized to mean
      0 and variance 1 per coordinate, so the box maps to ``[-√3, √3]^d``. The map is
      fixed by the box, not by the points observed, so it does not move as points are
      added. With ``data_mapping["features"] == "pad"`` the d coordinates are then
      zero-padded to the model's width (times ``√(D / d)`` when ``pad_rescale`` is
      ``"sqrt"``), as `PFNRegressor` does;
    * ``"identity"`` (a prior on the unit cube, such as "gp-rbf"): u itself.

    Targets. When the card standardizes them (``data_mapping["y"] == "standardize"``),
    observed values pass through `OutputTransform(y_transform)`, fitted at every `fit`:
    standardized and, by default, warped by their ranks (`pfnkit.bo.outputs`). On a
    card with fixed target units (``"identity"``) they pass unchanged. Either way they
    are clipped to the range of the model's bar borders for encoding. `posterior`
    returns the predictive of the transformed value; `transform_y` maps values (an
    incumbent) into the same units, and the map is increasing.

    Args:
        box: the search box, or its bounds as (low, high) pairs.
        checkpoint: short name or path of a regression PFN checkpoint, or a loaded
            `Checkpoint` (whose model is moved to `device` and `dtype`, and frozen, in
            place).
        device: torch device of the model.
        dtype: torch dtype of the model (float32 is about twice as fast on a CPU; the
            acquisitions compute in float64 either way).
        y_transform: "power" (default), "rank" or "standardize" (`OutputTransform`).
        softmax_temperature: the model's logits are divided by it (1.0: the model's own
            posterior predictive).
        query_chunk_size: query points per forward pass.
    """

    def __init__(
        self,
        box: Box | np.ndarray | list,
        checkpoint: str | Path | Checkpoint = DEFAULT_CHECKPOINT,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        y_transform: str = "power",
        softmax_temperature: float = 1.0,
        query_chunk_size: int = 2048,
    ) -> None:
        box = box if isinstance(box, Box) else Box.from_bounds(box)
        if not softmax_temperature > 0:
            raise ValueError(f"softmax_temperature must be positive, got {softmax_temperature}")
        loaded = load_regression_pfn(
            checkpoint, device, needed_by="Bayesian optimisation needs one, e.g. 'gp'"
        )
        model = loaded.model
        self.checkpoint = loaded
        # inference only: gradients flow to the query points, never to the weights
        self.model: PFN = model.to(device=device, dtype=dtype).requires_grad_(False)
        self.box = box
        self.device = torch.device(device)
        self.dtype = dtype
        self.softmax_temperature = float(softmax_temperature)
        self.query_chunk_size = int(query_chunk_size)
        self._spec = loaded.data_mapping
        self._check_dimension()
        standardized = self._spec.get("y", "identity") == "standardize"
        self.y_transform = OutputTransform(y_transform) if standardized else None
        self.cache: ContextCache | None = None
        self.n_observations = 0

    def _check_dimension(self) -> None:
        d, width = self.box.dim, self.model.config.num_features
        mode = self._spec.get("features", "exact")
        if d > width or (mode != "pad" and d != width):
            supported = f"at most {width}" if mode == "pad" else f"exactly {width}"
            raise ValueError(
                f"the box has {d} dimensions but checkpoint {self.checkpoint.name!r} was "
                f"trained for {supported} features"
            )
        if self._spec.get("x", "identity") not in ("identity", "standardize"):
            raise ValueError(f"card data_mapping['x']={self._spec['x']!r} is not supported here")

    # -------------------------------------------------------------------- inputs
    def model_inputs(self, u: Tensor) -> Tensor:
        """(..., d) unit-cube points to (..., num_features) model inputs (differentiable)."""
        if self._spec.get("x", "identity") == "standardize":
            u = (u - 0.5) * _SQRT12
        d, width = self.box.dim, self.model.config.num_features
        if d < width:
            if self._spec.get("pad_rescale", "none") == "sqrt":
                u = u * math.sqrt(width / d)
            u = torch.cat([u, u.new_zeros(*u.shape[:-1], width - d)], dim=-1)
        return u

    # ------------------------------------------------------------------- context
    def fit(self, u: np.ndarray | Tensor, y: np.ndarray | Tensor) -> PFNSurrogate:
        """Encode observations at unit-cube points `u` (n, d) with values `y` (n,).

        Raises:
            ValueError: shapes that do not match the box, no observation, or non-finite y.
        """
        u_nd = torch.as_tensor(np.asarray(u, dtype=np.float64))
        y_n = np.asarray(y, dtype=np.float64)
        if u_nd.ndim != 2 or u_nd.shape[1] != self.box.dim or y_n.shape != (u_nd.shape[0],):
            raise ValueError(
                f"fit needs u of shape (n, {self.box.dim}) and y of shape (n,), got "
                f"{tuple(u_nd.shape)} and {y_n.shape}"
            )
        if u_nd.shape[0] == 0:
            raise ValueError("fit needs at least one observation")
        if not np.isfinite(y_n).all():
            raise ValueError("y holds NaN or inf; the surrogate needs finite observations")
        n_max = self.checkpoint.trained_n_ctx_max
        if u_nd.shape[0] > n_max:
            warnings.warn(
                f"{u_nd.shape[0]} observations, but checkpoint {self.checkpoint.name!r} was "
                f"trained on at most {n_max} context points; the surrogate extrapolates",
                UserWarning,
                stacklevel=2,
            )
        if self.y_transform is not None:
            self.y_transform.fit(y_n)
        low, high = float(self.model.borders[0]), float(self.model.borders[-1])
        y_model = self.transform_y(y_n)
        outside = int(((y_model < low) | (y_model > high)).sum())
        if outside:
            log.info(
                "%d value(s) clipped to the borders [%.3g, %.3g] for encoding", outside, low, high
            )
        y_model = np.clip(y_model, low, high)
        x_1ND = self.model_inputs(u_nd).to(self.device, self.dtype).unsqueeze(0)
        y_1N = torch.as_tensor(y_model, dtype=self.dtype, device=self.device).unsqueeze(0)
        with torch.no_grad():
            self.cache = self.model.encode_context(x_1ND, y_1N)
        self.n_observations = int(u_nd.shape[0])
        return self

    def transform_y(self, y: np.ndarray | float) -> np.ndarray:
        """Values in the units of `posterior` (increasing in y), as fitted by the last `fit`."""
        return (
            np.asarray(y, dtype=np.float64)
            if self.y_transform is None
            else self.y_transform.transform(y)
        )

    def untransform_y(self, z: np.ndarray | float) -> np.ndarray:
        """The inverse of `transform_y`: values of `posterior`'s units in the user's units."""
        return (
            np.asarray(z, dtype=np.float64)
            if self.y_transform is None
            else self.y_transform.inverse(z)
        )

    # ------------------------------------------------------------------ predicting
    def posterior_unit(self, u: Tensor) -> BarDistribution:
        """Predictive at unit-cube points `u` (..., d), batch shape ``...``, `transform_y` units.

        Differentiable in `u`; the context is the cached one of the last `fit`.
        """
        if self.cache is None:
            raise RuntimeError("call fit(u, y) before asking the surrogate for a posterior")
        if u.shape[-1] != self.box.dim:
            raise ValueError(
                f"query points must have {self.box.dim} coordinates, got {u.shape[-1]}"
            )
        batch = u.shape[:-1]
        x_1MD = self.model_inputs(u.reshape(1, -1, self.box.dim)).to(self.device, self.dtype)
        # no argument validation: the acquisition optimiser treats non-finite scores itself
        dist = self.model.predict_from_cache(
            self.cache, x_1MD, chunk_size=self.query_chunk_size, validate_args=False
        )
        logits = dist.logits.reshape(*batch, -1) / self.softmax_temperature
        # float64 borders, so that the acquisitions compute in float64
        return BarDistribution(dist.borders.double(), logits, validate_args=False)

    def posterior(self, x: Tensor) -> BarDistribution:
        """Predictive at points `x` (..., d) of the box, in `transform_y` units; differentiable."""
        return self.posterior_unit(self.box.to_unit_tensor(x))
