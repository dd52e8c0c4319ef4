"""Scoring half of benchmarks/peer_pfns.py: NLL gaps to the exact GP, and inference times.

Both models are scored by pfnkit's own validator loop (`validate_against_exact_gp`, which
runs `pfnkit.validation.per_size.score_sizes`): the same seed draws the same fresh tasks for
each, one task at a time, against the exact GP at the prior's hyperparameters in float64.
The pfns model enters that loop through `PfnsRegressionModel`, which gives it pfnkit's
`encode_context` / `predict_from_cache` surface (no cache: the context is re-read on every
call) and returns its output as a torch Distribution whose log-density is pfns's own
(`FullSupportBarDistribution.forward`, the negative log density it trains on).

Inference is timed on the inputs of benchmarks/inference.py (`make_data`, mapped by
`model_inputs` as the regressor maps them), in rounds that call each contender once in turn
(`interleaved_medians` of benchmarks/inference_methods.py), so that all share the machine's
load of the moment.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from inference import make_data, model_inputs
from inference_methods import interleaved_medians
from torch import Tensor, nn
from torch.distributions import Distribution, constraints

from pfnkit.data import GPRegressionPrior
from pfnkit.estimators import PFNRegressor
from pfnkit.validation.gp_exact import GPValidationReport, validate_against_exact_gp

__all__ = [
    "PfnsBarPredictive",
    "PfnsRegressionModel",
    "score_models",
    "time_inference",
]

PFNS_FORWARD = "pfns forward"
PFNKIT_FORWARD = "pfnkit forward"
PFNKIT_PREDICT = "PFNRegressor.predict"
PFNKIT_FIT_PREDICT = "PFNRegressor.fit + predict"


class PfnsBarPredictive(Distribution):
    """pfns's bar distribution over `logits_BMK` as a torch Distribution, batch shape (B, M).

    `log_prob` is minus pfns's loss (its full-support log density); `icdf` is pfns's
    quantile function for one level shared by all points (it places the quantile inside
    the bars, tails included in the outer bars).
    """

    arg_constraints: dict[str, constraints.Constraint] = {}
    support = constraints.real

    def __init__(self, criterion: nn.Module, logits_BMK: Tensor) -> None:
        self.criterion = criterion
        self.logits = logits_BMK
        super().__init__(batch_shape=logits_BMK.shape[:-1], validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        return -self.criterion(self.logits, value.to(self.logits.dtype))

    def icdf(self, value: Tensor) -> Tensor:
        level = value.flatten()[0]
        if not bool((value == level).all()):
            raise ValueError("pfns's icdf takes one level for all points")
        return self.criterion.icdf(self.logits, float(level))

    @property
    def mean(self) -> Tensor:
        return self.criterion.mean(self.logits)


class PfnsRegressionModel(nn.Module):
    """A pfns model (with its `criterion`) behind pfnkit's model surface, for validators."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def encode_context(self, x_ctx_BND: Tensor, y_ctx_BN: Tensor) -> tuple[Tensor, Tensor]:
        return x_ctx_BND, y_ctx_BN

    def predict_from_cache(self, cache: tuple[Tensor, Tensor], x_qry_BMD: Tensor,
                           **_: Any) -> PfnsBarPredictive:  # fmt: skip
        x_ctx_BND, y_ctx_BN = cache
        logits_BMK = self.model(x_ctx_BND, y_ctx_BN, test_x=x_qry_BMD)
        return PfnsBarPredictive(self.model.criterion, logits_BMK)


def score_models(
    models: Mapping[str, nn.Module],
    prior: GPRegressionPrior,
    *,
    sizes: Sequence[int],
    tasks: int,
    n_qry: int,
    seed: int,
) -> dict[str, GPValidationReport]:
    """Each model against the exact GP on the same fresh tasks (`seed`), per context size.

    Raises:
        RuntimeError: the exact GP's NLL differs between two models' runs at some size,
            i.e. they were not scored on the same tasks.
    """
    reports = {
        name: validate_against_exact_gp(model, prior, checkpoint=name, n_ctx_sizes=sizes,
                                        n_tasks=tasks, n_qry=n_qry, seed=seed)
        for name, model in models.items()
    }  # fmt: skip
    exact = {name: [s.exact_nll for s in r.sizes] for name, r in reports.items()}
    if len({tuple(v) for v in exact.values()}) != 1:
        raise RuntimeError(f"the models were scored on different tasks: exact NLLs {exact}")
    return reports


def score_figures(reports: Mapping[str, GPValidationReport]) -> dict[str, Any]:
    """Per size: the exact NLL and each model's NLL, gap and own exact NLL; mean gaps."""
    names = list(reports)
    first = reports[names[0]]
    sizes = []
    for k, size in enumerate(first.sizes):
        row: dict[str, Any] = {"n_ctx": size.n_ctx, "n_tasks": size.n_tasks,
                               "exact_nll": size.exact_nll}  # fmt: skip
        for name in names:
            s = reports[name].sizes[k]
            row[name] = {"nll": s.pfn_nll, "gap": s.gap, "exact_nll": s.exact_nll,
                         "coverage_90": s.pfn_coverage.get(0.9)}  # fmt: skip
        sizes.append(row)
    return {"sizes": sizes, "mean_gap": {name: reports[name].mean_gap for name in names}}


def _no_grad(fn: Any) -> Any:
    def call() -> object:
        with torch.no_grad():
            return fn()

    return call


def time_inference(
    card: Path, pfns_model: nn.Module, *, n_ctx: int, n_qry: int, repeats: int
) -> dict[str, Any]:
    """Median seconds of each contender on the same float32 inputs (one warm-up round first).

    pfnkit's raw forward is the regressor's own model (`card`, float32, its logits); pfns's
    is one `model(x_ctx, y_ctx, test_x=x_qry)` call (its logits). The regressor runs on its
    defaults; its `predict` reuses the context its `fit` encoded.
    """
    X, y, Xq = make_data(n_ctx, n_qry)
    reg = PFNRegressor(checkpoint=str(card))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a context larger than trained, in smoke runs
        reg.fit(X, y)
        x_ctx, x_qry, y_ctx = model_inputs(reg, X, Xq, y)
        pfnkit_model = copy.deepcopy(reg.checkpoint_.model).float().eval()
        pfns = pfns_model.float().eval()
        x_ctx, x_qry, y_ctx = x_ctx.float(), x_qry.float(), y_ctx.float()
        calls = {
            PFNS_FORWARD: _no_grad(lambda: pfns(x_ctx, y_ctx, test_x=x_qry)),
            PFNKIT_FORWARD: _no_grad(lambda: pfnkit_model(x_ctx, y_ctx, x_qry).logits),
            PFNKIT_PREDICT: lambda: reg.predict(Xq),
            PFNKIT_FIT_PREDICT: lambda: reg.fit(X, y).predict(Xq),
        }
        seconds = interleaved_medians(calls, repeats)
    return {"seconds": seconds, "n_ctx": n_ctx, "n_qry": n_qry, "repeats": repeats,
            "threads": torch.get_num_threads(), "regressor_dtype": reg.dtype,
            "regressor_members": len(reg._member_views())}  # fmt: skip
