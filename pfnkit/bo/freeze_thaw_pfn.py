"""A PFN trained on the freeze-thaw prior as the surrogate of `FreezeThaw` (ifBO-style).

ifBO (Rakotoarison et al., arXiv 2404.16795) runs freeze-thaw Bayesian optimisation with a
PFN in place of the freeze-thaw GP: one forward pass conditions on every partial curve and
predicts any configuration at any epoch. `PFNFreezeThawSurrogate` does the same with a
checkpoint of pfnkit's ``freeze-thaw`` prior (e.g. ``ft-gp``): `fit` encodes the observed
rows once (`PFN.encode_context`), `predict` decodes queries against that cache.

Rows are (configuration features..., epoch fraction t / T) in the unit cube, as the prior
draws them, so the card must say that the model reads them unchanged (``data_mapping``
``x`` and ``y`` both ``"identity"``). What the card's prior config fixes is checked:

* configuration dimensions: the prior drew tasks with ``num_dims_min`` to ``num_dims``
  features, the unused ones zero (a zero column adds nothing to the kernel's distances).
  Configurations of d features in that range are zero-padded to ``num_dims``; any other d
  is a ValueError (``ft-gp``: exactly 4, padding was never trained);
* epochs: the prior's curves have ``max_epoch`` epochs, so it only saw fractions
  k / max_epoch; an optimiser whose T does not divide that grid gets a warning
  (`check_design`);
* context size: more observed rows than the card's ``train_config.n_ctx_max`` warns once
  per surrogate (the PFN extrapolates in context size).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
from torch import Tensor

from pfnkit.bo.surrogate import load_regression_pfn
from pfnkit.checkpoint import Checkpoint
from pfnkit.distributions import BarDistribution
from pfnkit.models import PFN
from pfnkit.models.pfn import ContextCache

__all__ = ["DEFAULT_FREEZE_THAW_CHECKPOINT", "PFNFreezeThawSurrogate"]

log = logging.getLogger(__name__)

DEFAULT_FREEZE_THAW_CHECKPOINT = "ft-gp"
_GRID_ATOL = 1e-6  # an epoch fraction counts as on the prior's grid k / max_epoch within this


class PFNFreezeThawSurrogate:
    """Predictive of a freeze-thaw PFN checkpoint over (configuration, epoch fraction) rows.

    Args:
        checkpoint: short name or path of a regression PFN trained on the freeze-thaw
            prior, or a loaded `Checkpoint` (whose model is moved to `device` and `dtype`,
            and frozen, in place).
        device: torch device of the model.
        dtype: torch dtype of the model (predictions come back with float64 borders).
        query_chunk_size: query rows per forward pass.

    Raises:
        ValueError: the checkpoint is not a regression PFN of the freeze-thaw prior, or its
            card maps inputs or targets in a way this surrogate does not read.
    """

    def __init__(
        self,
        checkpoint: str | Path | Checkpoint = DEFAULT_FREEZE_THAW_CHECKPOINT,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        query_chunk_size: int = 2048,
    ) -> None:
        loaded = load_regression_pfn(
            checkpoint,
            device,
            needed_by="freeze-thaw needs one trained on the freeze-thaw prior, e.g. "
            f"{DEFAULT_FREEZE_THAW_CHECKPOINT!r}",
        )
        model = loaded.model
        prior = loaded.card.get("prior_config", {})
        if "num_dims" not in prior or "max_epoch" not in prior:
            raise ValueError(
                f"checkpoint {loaded.name!r} (prior {loaded.card.get('prior_name')!r}) is not a "
                "freeze-thaw PFN: its prior config has no num_dims and max_epoch; use one "
                f"trained on the freeze-thaw prior, e.g. {DEFAULT_FREEZE_THAW_CHECKPOINT!r}"
            )
        self.num_dims = int(prior["num_dims"])
        self.num_dims_min = int(prior.get("num_dims_min", self.num_dims))
        self.prior_max_epoch = int(prior["max_epoch"])
        if model.config.num_features != self.num_dims + 1:
            raise ValueError(
                f"checkpoint {loaded.name!r} reads {model.config.num_features} features, not "
                f"its prior's {self.num_dims} configuration features plus the epoch"
            )
        mapping = loaded.data_mapping
        if mapping.get("x", "identity") != "identity" or mapping.get("y", "identity") != "identity":
            raise ValueError(
                f"checkpoint {loaded.name!r} has data_mapping {mapping}; a freeze-thaw surrogate "
                "reads rows and values unchanged (x and y 'identity')"
            )
        self.checkpoint = loaded
        self.model: PFN = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
        self.device, self.dtype = torch.device(device), dtype
        self.query_chunk_size = int(query_chunk_size)
        self.cache: ContextCache | None = None
        self._warned_context = False

    # ------------------------------------------------------------------ checks
    def check_design(self, num_config_dims: int, max_epoch: int) -> None:
        """Refuse configurations the PFN never saw; warn about epochs off its grid.

        Raises:
            ValueError: `num_config_dims` outside the prior's [num_dims_min, num_dims].
        """
        self._check_dims(num_config_dims)
        if self.prior_max_epoch % max_epoch:
            warnings.warn(
                f"max_epoch={max_epoch}, but checkpoint {self.checkpoint.name!r} was trained on "
                f"curves of {self.prior_max_epoch} epochs (fractions k/{self.prior_max_epoch}); "
                "fractions t/max_epoch off that grid are interpolated",
                UserWarning,
                stacklevel=2,
            )

    def _check_dims(self, d: int) -> None:
        if not self.num_dims_min <= d <= self.num_dims:
            trained = (
                f"exactly {self.num_dims}"
                if self.num_dims_min == self.num_dims
                else f"{self.num_dims_min} to {self.num_dims}"
            )
            raise ValueError(
                f"the configurations have {d} features but checkpoint "
                f"{self.checkpoint.name!r} was trained on {trained} (its prior config's "
                "num_dims_min..num_dims); map them to that many unit-cube features, or use a "
                "PFN trained for them, or the exact surrogate"
            )

    def _model_rows(self, x_NE: Tensor, name: str) -> Tensor:
        """(N, d + 1) rows to (N, num_dims + 1): zero features inserted before the epoch."""
        if x_NE.ndim != 2:
            raise ValueError(f"{name} must be (N, d + 1) rows, got shape {tuple(x_NE.shape)}")
        self._check_dims(x_NE.shape[1] - 1)
        pad = self.num_dims + 1 - x_NE.shape[1]
        x_NE = x_NE.to(self.device, self.dtype)
        if pad:
            zeros = x_NE.new_zeros(x_NE.shape[0], pad)
            x_NE = torch.cat([x_NE[:, :-1], zeros, x_NE[:, -1:]], dim=1)
        return x_NE

    # --------------------------------------------------------------- protocol
    def fit(self, x_NE: Tensor, y_N: Tensor) -> None:
        """Encode N observed rows (N, d + 1), the epoch fraction last, and their values (N,).

        Raises:
            ValueError: no row, shapes that disagree, a feature count the PFN was not
                trained on, or non-finite values.
        """
        if x_NE.ndim != 2 or x_NE.shape[0] == 0 or y_N.shape != (x_NE.shape[0],):
            raise ValueError(
                f"fit needs N >= 1 rows (N, d + 1) and values (N,), got {tuple(x_NE.shape)} "
                f"and {tuple(y_N.shape)}"
            )
        if not bool(torch.isfinite(y_N).all() and torch.isfinite(x_NE).all()):
            raise ValueError("rows or values hold NaN or inf; the surrogate needs finite ones")
        rows_NE = self._model_rows(x_NE, "x_NE")
        n_max = self.checkpoint.trained_n_ctx_max
        if x_NE.shape[0] > n_max and not self._warned_context:
            self._warned_context = True
            warnings.warn(
                f"{x_NE.shape[0]} observed rows, but checkpoint {self.checkpoint.name!r} was "
                f"trained on at most {n_max}; the surrogate extrapolates (warned once)",
                UserWarning,
                stacklevel=2,
            )
        low, high = float(self.model.borders[0]), float(self.model.borders[-1])
        y_N = y_N.to(self.device, self.dtype)
        outside = int(((y_N < low) | (y_N > high)).sum())
        if outside:
            log.info("%d value(s) clipped to the borders [%.3g, %.3g]", outside, low, high)
        with torch.no_grad():
            self.cache = self.model.encode_context(rows_NE[None], y_N.clamp(low, high)[None])

    def predict(self, x_ME: Tensor) -> BarDistribution:
        """The predictive at M rows (M, d + 1): a `BarDistribution`, batch shape (M,), float64."""
        if self.cache is None:
            raise RuntimeError("call fit before predict")
        rows_ME = self._model_rows(x_ME, "x_ME")
        with torch.no_grad():
            dist = self.model.predict_from_cache(
                self.cache, rows_ME[None], chunk_size=self.query_chunk_size
            )
        return BarDistribution(dist.borders.double(), dist.logits[0])
