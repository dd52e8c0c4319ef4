"""Extrapolate one partial learning curve with a single-curve PFN (`python cli.py extrapolate`).

A single-curve checkpoint (e.g. ``lc-curve``, trained on the `lc-parametric` prior; LC-PFN,
Adriaensen et al., arXiv 2310.20447) reads epochs 1..k of one curve as inputs t / T (T: its
prior's ``max_epoch``, from the card) and predicts every later epoch. `extrapolate_curve`
returns the predictive mean and central-interval quantiles of epochs k + 1..T, and the
probability that the final epoch beats a threshold when one is given; `forecast_table` and
`forecast_to_dict` present it. Every mistake of the caller's is a ValueError that says what
to fix; cli.py turns it into the exit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from rich.table import Table

if TYPE_CHECKING:
    from pfnkit.checkpoint import Checkpoint

__all__ = [
    "DEFAULT_CURVE_CHECKPOINT",
    "CurveForecast",
    "extrapolate_command",
    "extrapolate_curve",
    "forecast_table",
    "forecast_to_dict",
]

DEFAULT_CURVE_CHECKPOINT = "lc-curve"
LEVELS = (0.05, 0.5, 0.95)  # quantile levels reported: a central 90% interval and the median


@dataclass(frozen=True)
class CurveForecast:
    """The predictive of epochs k + 1..T given epochs 1..k.

    Attributes:
        observed: the k observed values.
        epochs: the forecast epochs k + 1..T.
        mean: predictive mean per forecast epoch.
        quantiles: per forecast epoch, one value per level in `levels`.
        levels: the quantile levels.
        threshold: the value the final epoch is compared with (None: no comparison).
        prob_below_threshold: P(final epoch's value < threshold) (None without threshold).
    """

    observed: list[float]
    epochs: list[int]
    mean: list[float]
    quantiles: list[list[float]]
    levels: tuple[float, ...]
    threshold: float | None = None
    prob_below_threshold: float | None = None


def _max_epoch(checkpoint: Checkpoint) -> int:
    """T of the checkpoint's prior: the inputs it was trained on are t / T."""
    prior_config = checkpoint.card.get("prior_config", {})
    if "max_epoch" not in prior_config or checkpoint.card.get("model_kind", "pfn") != "pfn":
        raise ValueError(
            f"checkpoint {checkpoint.name!r} is not a single-curve PFN (its prior config has no "
            "max_epoch); use one trained on the lc-parametric prior, e.g. lc-curve"
        )
    return int(prior_config["max_epoch"])


def extrapolate_curve(
    checkpoint: Checkpoint,
    values: Sequence[float],
    *,
    levels: Sequence[float] = LEVELS,
    threshold: float | None = None,
) -> CurveForecast:
    """The PFN's predictive of epochs k + 1..T after observing `values` at epochs 1..k.

    Raises:
        ValueError: not a single-curve checkpoint, no values or k ≥ T, a non-finite value,
            or a level outside (0, 1).
    """
    t_max, k = _max_epoch(checkpoint), len(values)
    if not 1 <= k < t_max:
        raise ValueError(f"give 1 to {t_max - 1} observed epochs (T = {t_max}), got {k}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"every observed value must be finite, got {list(values)}")
    if not all(0 < q < 1 for q in levels):
        raise ValueError(f"quantile levels must lie in (0, 1), got {list(levels)}")
    model = checkpoint.model.eval()
    x_ctx = (torch.arange(1, k + 1, dtype=torch.float32) / t_max)[None, :, None]
    x_qry = (torch.arange(k + 1, t_max + 1, dtype=torch.float32) / t_max)[None, :, None]
    y_ctx = torch.tensor([list(values)], dtype=torch.float32)
    with torch.inference_mode():
        dist = model.predict_from_cache(model.encode_context(x_ctx, y_ctx), x_qry)
        quantiles = torch.stack([dist.icdf(torch.full_like(dist.mean, q)) for q in levels], -1)
        below = None
        if threshold is not None:
            below = float(dist.cdf(torch.full_like(dist.mean, threshold))[0, -1])
    return CurveForecast(
        observed=[float(v) for v in values], epochs=list(range(k + 1, t_max + 1)),
        mean=dist.mean[0].tolist(), quantiles=quantiles[0].tolist(), levels=tuple(levels),
        threshold=threshold, prob_below_threshold=below,
    )  # fmt: skip


def forecast_table(forecast: CurveForecast, *, every: int = 1) -> Table:
    """The forecast as a rich table: one row per `every`-th epoch and the final epoch."""
    caption = None
    if forecast.threshold is not None:
        caption = (f"P(epoch {forecast.epochs[-1]} < {forecast.threshold:g}) = "
                   f"{forecast.prob_below_threshold:.3f}")  # fmt: skip
    table = Table(title=f"forecast after {len(forecast.observed)} observed epochs",
                  caption=caption, caption_justify="left")  # fmt: skip
    table.add_column("epoch", justify="right")
    table.add_column("mean", justify="right")
    for level in forecast.levels:
        table.add_column(f"q{100 * level:g}", justify="right")
    last = len(forecast.epochs) - 1
    for i, epoch in enumerate(forecast.epochs):
        if i % every == 0 or i == last:
            table.add_row(str(epoch), f"{forecast.mean[i]:.4f}",
                          *(f"{q:.4f}" for q in forecast.quantiles[i]))  # fmt: skip
    return table


def forecast_to_dict(forecast: CurveForecast) -> dict[str, Any]:
    """Plain data for JSON."""
    return {**forecast.__dict__, "levels": list(forecast.levels)}


def extrapolate_command(
    checkpoint: str = DEFAULT_CURVE_CHECKPOINT, values: str = "", *,
    threshold: float | None = None, json_path: str | None = None, every: int = 1,
) -> Table:  # fmt: skip
    """Load `checkpoint`, read comma-separated `values`, forecast; write JSON when asked."""
    from pfnkit.checkpoint import load_checkpoint

    try:
        parsed = [float(word) for word in values.split(",") if word.strip()]
    except ValueError as error:
        raise ValueError(f"--values must be comma-separated numbers, got {values!r}") from error
    forecast = extrapolate_curve(load_checkpoint(checkpoint), parsed, threshold=threshold)
    if json_path is not None:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(forecast_to_dict(forecast), indent=1) + "\n")
    return forecast_table(forecast, every=every)
