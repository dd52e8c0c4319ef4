"""Structural-causal-model prior over tabular classification tasks (the TabPFN prior).

Each task draws a random DAG, one random mechanism per node and exogenous inputs, then
evaluates the graph row by row; features and target are nodes of that graph (Hollmann et
al., arXiv 2207.01848; Müller et al., arXiv 2112.10510).

* **Graph.** K_task = d + 1 + h nodes: d feature nodes, one target node and
  h ~ U{0, ..., extra_nodes_max} latent nodes. Node indices are a topological order:
  ``adjacency[i, j] = 1`` marks an edge j → i (row i lists the parents of node i) and
  needs j < i, so the adjacency is strictly lower triangular. Every allowed edge is
  present with probability p ~ U[edge_prob_min, edge_prob_max], drawn per task. Features
  are random nodes in random column order, so the order itself is invisible to a model.
* **Mechanisms.** A node with parents computes z = f(z_pa) + σ ε with ε ~ N(0, 1) and
  σ log-uniform on [noise_std_min, noise_std_max] per task. f is, per node, either a
  linear map under the node's activation, f = act(w·z_pa + b), or a one-hidden-layer MLP,
  f = v·act(W z_pa + b) with mlp_width units; act is drawn per node from ``activations``.
  Weights ~ N(0, 1/|pa|), output weights v ~ N(0, 1/mlp_width), biases ~ N(0, 1). Both
  kinds share one layout: a linear node is an MLP whose only unit is unit 0, with v = e_0.
  With probability product_prob a linear node becomes a product node,
  f = act(w₀·z_pa + b₀) · act(w₁·z_pa + b₁): an interaction of its causes (products, and
  ratios once the causes are on a log scale), which a sum of per-feature effects misses.
* **Roots** (nodes without parents) take z = u, drawn per root node from N(0, 1),
  U[-√3, √3] or an equal-weight mixture of 3 Gaussians (means U[-2, 2], std 0.3).
* **Features.** d ~ U{num_features_min, ..., num_features} random non-target nodes fill
  columns 0..d-1; columns d..D-1 are zero, as in the GP prior and the estimators' "pad"
  mapping. With probability categorical_prob a feature is discretised: cut at k - 1
  random quantiles of its values in the task, k ~ U{2, ..., max_categories}, and its
  (at most k) bins get a random permutation of the codes 0..k-1 (categories are
  nominal). Every used column, categorical or not, is then standardized with the mean
  and population standard deviation of its context rows (all rows when n_ctx = 0), with
  the near-zero-scale rule of the estimators' "standardize" mapping of a fitted context.
* **Target.** A random node with parents (a root only in a graph without edges), cut
  into C ~ U{num_classes_min, ..., num_classes_max} classes, at most T = n_ctx + n_qry
  (fewer rows lower C; ``meta["n_classes"]`` holds the C used). Its values over the T
  rows are ranked (ties, of probability zero under continuous noise, are broken by row
  index) and C - 1 distinct cut ranks are drawn uniformly from 1..T-1, so every class
  holds at least one row. The C rank bins get a random permutation of the labels
  0..C-1, stored as floats. A classifier head has num_classes_max outputs
  (`SCMPriorConfig.n_classes`, which `SCMPrior.model_sizes` reports).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from pfnkit.data import Batch
from priors.scm_graph import (
    ACTIVATIONS,
    MIXTURE_COMPONENTS,
    ROOT_DISTRIBUTIONS,
    SCM,
    exogenous_inputs,
    propagate,
)

# ACTIVATIONS, ROOT_DISTRIBUTIONS, SCM and propagate live in priors.scm_graph; they are
# re-exported here.
__all__ = [
    "ACTIVATIONS",
    "MAX_CLASSES",
    "MAX_FEATURES",
    "ROOT_DISTRIBUTIONS",
    "SCM",
    "SCMPrior",
    "SCMPriorConfig",
    "propagate",
]

MAX_FEATURES = 32
MAX_CLASSES = 10
_MIN_SCALE = (
    1e-12  # as pfnkit.estimators._base: a column whose spread is below this is only centred
)


def _check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value}")


@dataclass(frozen=True, kw_only=True)
class SCMPriorConfig:
    """Classification tasks read off random structural causal models (see the module doc).

    Attributes:
        num_features: model input width D (at most 32); unused columns are zero.
        num_features_min: fewest used features d; d ~ U{num_features_min..num_features}.
        extra_nodes_max: most latent nodes (neither feature nor target) per task.
        edge_prob_min: lower bound of the per-task edge probability.
        edge_prob_max: upper bound of the per-task edge probability.
        mlp_prob: probability that a node's mechanism is an MLP rather than linear.
        mlp_width: hidden units of an MLP mechanism (at least 2 when product_prob > 0).
        product_prob: probability that a non-MLP node is a product of two activated
            linear forms of its parents (0 keeps every random draw of the plain prior).
        activations: per-node activations to draw from, a subset of ACTIVATIONS.
        root_distributions: per-root distributions, a subset of ROOT_DISTRIBUTIONS.
        noise_std_min: lower bound of the log-uniform per-task noise standard deviation.
        noise_std_max: upper bound of it.
        categorical_prob: probability that a used feature is discretised.
        max_categories: most categories of a discretised feature (at least 2).
        num_classes_min: fewest classes of a task (at least 2).
        num_classes_max: most classes of a task (at most 10).
    """

    num_features: int = 10
    num_features_min: int = 1
    extra_nodes_max: int = 8
    edge_prob_min: float = 0.1
    edge_prob_max: float = 0.6
    mlp_prob: float = 0.5
    mlp_width: int = 8
    product_prob: float = 0.0
    activations: tuple[str, ...] = ACTIVATIONS
    root_distributions: tuple[str, ...] = ROOT_DISTRIBUTIONS
    noise_std_min: float = 0.01
    noise_std_max: float = 0.5
    categorical_prob: float = 0.2
    max_categories: int = 5
    num_classes_min: int = 2
    num_classes_max: int = 10

    def __post_init__(self) -> None:
        _check_int("num_features", self.num_features, 1, MAX_FEATURES)
        _check_int("num_features_min", self.num_features_min, 1, self.num_features)
        _check_int("extra_nodes_max", self.extra_nodes_max, 0)
        _check_int("mlp_width", self.mlp_width, 1)
        _check_int("max_categories", self.max_categories, 2)
        _check_int("num_classes_min", self.num_classes_min, 2, MAX_CLASSES)
        _check_int("num_classes_max", self.num_classes_max, 2, MAX_CLASSES)
        if self.num_classes_min > self.num_classes_max:
            raise ValueError(
                f"num_classes_min ({self.num_classes_min}) must not exceed num_classes_max "
                f"({self.num_classes_max})"
            )
        low, high = self.edge_prob_min, self.edge_prob_max
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"need 0 <= edge_prob_min <= edge_prob_max <= 1, got {low}, {high}")
        low, high = self.noise_std_min, self.noise_std_max
        if not 0.0 < low <= high < math.inf:
            raise ValueError(f"need 0 < noise_std_min <= noise_std_max < inf, got {low}, {high}")
        if self.product_prob > 0 and self.mlp_width < 2:
            raise ValueError(f"product_prob > 0 needs mlp_width >= 2, got {self.mlp_width}")
        for name in ("mlp_prob", "categorical_prob", "product_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        for name, choices in (
            ("activations", ACTIVATIONS),
            ("root_distributions", ROOT_DISTRIBUTIONS),
        ):
            values = tuple(getattr(self, name))
            unknown = [v for v in values if v not in choices]
            if not values or unknown:
                raise ValueError(
                    f"{name} must be a non-empty list from {choices}, got {list(values)}"
                )
            object.__setattr__(self, name, values)

    @property
    def n_classes(self) -> int:
        """Width of a classifier head for this prior: num_classes_max."""
        return self.num_classes_max

    @property
    def max_nodes(self) -> int:
        """K, the node count every task is padded to: num_features + 1 + extra_nodes_max."""
        return self.num_features + 1 + self.extra_nodes_max

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON and TOML."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SCMPriorConfig:
        """Inverse of `to_dict` (lists are accepted for the tuple fields)."""
        return cls(**data)


def _standardize(x_BTD: Tensor, n_ctx: int) -> Tensor:
    """Columns centred and scaled by their context rows (all rows when n_ctx = 0)."""
    rows_BND = x_BTD[:, :n_ctx] if n_ctx > 0 else x_BTD
    loc_B1D = rows_BND.mean(1, keepdim=True)
    scale_B1D = rows_BND.std(1, correction=0, keepdim=True)
    scale_B1D = torch.where(scale_B1D > _MIN_SCALE * (1 + loc_B1D.abs()), scale_B1D, 1.0)
    return (x_BTD - loc_B1D) / scale_B1D


def _random_permutations(n_used: Tensor, width: int, generator: torch.Generator) -> Tensor:
    """(*n_used.shape, width) permutations whose first n_used entries permute 0..n_used-1."""
    scores = torch.rand((*n_used.shape, width), generator=generator, dtype=torch.float64)
    scores = torch.where(torch.arange(width) < n_used[..., None], scores, 2.0)
    return scores.argsort(-1)


class SCMPrior:
    """Batched sampler of SCM classification tasks (float64 inside, `dtype` out).

    `sample` = `draw_scm`, `draw_exogenous`, `propagate`, `observe`, in that order and on
    one generator. ``meta`` holds, per task: "adjacency" (B, K, K) with K =
    `SCMPriorConfig.max_nodes`; "n_nodes", "target_node", "n_classes",
    "num_used_features", "edge_prob", "noise_std" (B,); "feature_nodes" (B, D), the node
    behind each column (-1 for padding); "categorical" (B, D), 1 for a discretised
    column; "n_categories" (B, D), its category count (0 otherwise). All in `dtype`.
    """

    def __init__(self, config: SCMPriorConfig | None = None) -> None:
        self.config = config or SCMPriorConfig()

    def draw_scm(self, batch_size: int, generator: torch.Generator) -> SCM:
        """Draw B graphs with their mechanisms, roots and noise scales (float64)."""
        cfg = self.config
        b, k, h = batch_size, cfg.max_nodes, cfg.mlp_width
        f64 = {"generator": generator, "dtype": torch.float64}
        d_B = torch.randint(cfg.num_features_min, cfg.num_features + 1, (b,), generator=generator)
        extra_B = torch.randint(0, cfg.extra_nodes_max + 1, (b,), generator=generator)
        n_nodes_B = d_B + 1 + extra_B
        valid_BK = torch.arange(k) < n_nodes_B[:, None]
        edge_span = cfg.edge_prob_max - cfg.edge_prob_min
        edge_prob_B = cfg.edge_prob_min + edge_span * torch.rand(b, **f64)
        # j < i and node i in use (hence j too): acyclic, and padding nodes stay isolated.
        allowed_BKK = torch.ones(k, k, dtype=torch.bool).tril(-1) & valid_BK[:, :, None]
        adjacency_BKK = (torch.rand(b, k, k, **f64) < edge_prob_B[:, None, None]) & allowed_BKK
        n_parents_BK = adjacency_BKK.sum(-1).clamp_min(1).to(torch.float64)
        is_mlp_BK = torch.rand(b, k, **f64) < cfg.mlp_prob
        first_H = torch.arange(h) == 0
        is_product_BK = torch.zeros_like(is_mlp_BK)
        if cfg.product_prob > 0:  # drawn only then: the plain prior keeps its random stream
            is_product_BK = (torch.rand(b, k, **f64) < cfg.product_prob) & ~is_mlp_BK
        second_H = torch.arange(h) == 1
        unit_BKH = is_mlp_BK[..., None] | first_H | (is_product_BK[..., None] & second_H)
        # Drawn in float32, several times faster on CPU (as scm_graph's exogenous inputs).
        weight_in_BKHK = torch.randn((b, k, h, k), generator=generator).to(torch.float64)
        weight_in_BKHK = weight_in_BKHK / n_parents_BK.sqrt()[..., None, None]
        weight_in_BKHK = weight_in_BKHK * (adjacency_BKK[:, :, None, :] & unit_BKH[..., None])
        bias_in_BKH = torch.randn(b, k, h, **f64) * unit_BKH
        weight_out_BKH = torch.randn(b, k, h, **f64) / math.sqrt(h)
        weight_out_BKH = torch.where(is_mlp_BK[..., None], weight_out_BKH, first_H.double())
        act_ids = torch.tensor([ACTIVATIONS.index(a) for a in cfg.activations])
        root_ids = torch.tensor([ROOT_DISTRIBUTIONS.index(r) for r in cfg.root_distributions])
        activation_BK = act_ids[torch.randint(len(act_ids), (b, k), generator=generator)]
        root_kind_BK = root_ids[torch.randint(len(root_ids), (b, k), generator=generator)]
        mixture_means_BKM = 4.0 * torch.rand(b, k, MIXTURE_COMPONENTS, **f64) - 2.0
        log_lo, log_hi = math.log(cfg.noise_std_min), math.log(cfg.noise_std_max)
        noise_std_B = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(b, **f64))
        return SCM(
            adjacency_BKK=adjacency_BKK,
            n_nodes=n_nodes_B,
            num_used_features=d_B,
            weight_in_BKHK=weight_in_BKHK,
            bias_in_BKH=bias_in_BKH,
            weight_out_BKH=weight_out_BKH,
            activation=activation_BK,
            is_mlp=is_mlp_BK,
            is_product=is_product_BK,
            root_kind=root_kind_BK,
            mixture_means_BKM=mixture_means_BKM,
            noise_std=noise_std_B,
            edge_prob=edge_prob_B,
        )

    def draw_exogenous(self, scm: SCM, n_rows: int, generator: torch.Generator) -> Tensor:
        """Exogenous inputs u (B, T, K) of `scm` (`priors.scm_graph.exogenous_inputs`)."""
        return exogenous_inputs(scm, n_rows, generator)

    def observe(
        self,
        scm: SCM,
        z_BTK: Tensor,
        n_ctx: int,
        *,
        generator: torch.Generator,
        dtype: torch.dtype = torch.float32,
    ) -> Batch:
        """Pick features and target among the node values z (B, T, K) and emit the Batch."""
        cfg = self.config
        b, t, k = z_BTK.shape
        d = cfg.num_features
        valid_BK = scm.valid
        # The target: a random node, preferably one with parents (else a root).
        score_BK = torch.rand(b, k, generator=generator, dtype=torch.float64)
        target_B = (score_BK + scm.has_parent + 2.0 * valid_BK).argmax(-1)
        # The features: d random in-use non-target nodes, in random column order.
        candidate_BK = valid_BK & (torch.arange(k) != target_B[:, None])
        score_BK = torch.rand(b, k, generator=generator, dtype=torch.float64)
        feature_nodes_BD = torch.where(candidate_BK, score_BK, -1.0).topk(d, dim=-1).indices
        used_BD = torch.arange(d) < scm.num_used_features[:, None]
        x_BTD = z_BTK.gather(2, feature_nodes_BD[:, None, :].expand(b, t, d))
        x_BTD, n_categories_BD = self._discretise(x_BTD, used_BD, generator)
        x_BTD = torch.where(used_BD[:, None, :], _standardize(x_BTD, n_ctx), 0.0)
        y_BT, n_classes_B = self._labels(z_BTK[torch.arange(b), :, target_B], generator)
        meta = {
            "adjacency": scm.adjacency_BKK,
            "n_nodes": scm.n_nodes,
            "feature_nodes": torch.where(used_BD, feature_nodes_BD, -1),
            "target_node": target_B,
            "n_classes": n_classes_B,
            "categorical": n_categories_BD > 0,
            "n_categories": n_categories_BD,
            "num_used_features": scm.num_used_features,
            "edge_prob": scm.edge_prob,
            "noise_std": scm.noise_std,
        }
        return Batch(
            x_ctx=x_BTD[:, :n_ctx].to(dtype),
            y_ctx=y_BT[:, :n_ctx].to(dtype),
            x_qry=x_BTD[:, n_ctx:].to(dtype),
            y_qry=y_BT[:, n_ctx:].to(dtype),
            meta={key: value.to(dtype) for key, value in meta.items()},
        )

    def model_sizes(self, kind: str) -> dict[str, int]:
        """A PFN classifier's input width and head width (num_classes_max)."""
        if kind != "pfn":
            raise ValueError(f"an SCM prior trains a PFN ([model] kind = 'pfn'), not {kind!r}")
        return {"num_features": self.config.num_features, "n_classes": self.config.n_classes}

    def card_data_mapping(self, declared: dict[str, str] | None) -> dict[str, str] | None:
        """`declared` unchanged: the SCM prior adds nothing to check."""
        return declared

    def sample(
        self,
        batch_size: int,
        n_ctx: int,
        n_qry: int,
        *,
        generator: torch.Generator,
        dtype: torch.dtype = torch.float32,
    ) -> Batch:
        """Draw `batch_size` tasks with `n_ctx` context and `n_qry` query rows each.

        Labels are floats 0., 1., ..., C - 1 with C = ``meta["n_classes"]`` per task.
        """
        if batch_size < 1 or n_ctx < 0 or n_qry < 0 or n_ctx + n_qry < 1:
            raise ValueError(
                "need batch_size >= 1, n_ctx >= 0, n_qry >= 0 and at least one row, got "
                f"batch_size={batch_size}, n_ctx={n_ctx}, n_qry={n_qry}"
            )
        scm = self.draw_scm(batch_size, generator)
        z_BTK = propagate(scm, self.draw_exogenous(scm, n_ctx + n_qry, generator))
        return self.observe(scm, z_BTK, n_ctx, generator=generator, dtype=dtype)

    def _discretise(
        self, x_BTD: Tensor, used_BD: Tensor, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """Cut some columns at random quantiles into coded bins; (x, category counts (B, D))."""
        cfg = self.config
        b, t, d = x_BTD.shape
        n_max = cfg.max_categories
        chosen_BD = (
            torch.rand(b, d, generator=generator, dtype=torch.float64) < cfg.categorical_prob
        )
        n_drawn_BD = torch.randint(2, n_max + 1, (b, d), generator=generator)
        n_categories_BD = torch.where(chosen_BD & used_BD, n_drawn_BD, 0)
        # The value at a random quantile of a column is its value in a uniformly random row.
        rows_BCD = torch.randint(t, (b, n_max - 1, d), generator=generator)
        thresholds_BCD = x_BTD.gather(1, rows_BCD)
        active_BCD = torch.arange(n_max - 1)[:, None] < (n_categories_BD - 1)[:, None, :]
        above_BTCD = x_BTD[:, :, None, :] > thresholds_BCD[:, None]
        bins_BTD = (above_BTCD & active_BCD[:, None]).sum(2)
        codes_BDK = _random_permutations(n_categories_BD, n_max, generator)
        codes_BTD = codes_BDK.gather(2, bins_BTD.transpose(1, 2)).transpose(1, 2)
        x_BTD = torch.where(n_categories_BD[:, None, :] > 0, codes_BTD.to(x_BTD), x_BTD)
        return x_BTD, n_categories_BD

    def _labels(self, target_BT: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Class labels (B, T) from rank bins of the target values, and C (B,) per task."""
        cfg = self.config
        b, t = target_BT.shape
        n_classes_B = torch.randint(
            cfg.num_classes_min, cfg.num_classes_max + 1, (b,), generator=generator
        ).clamp_max(t)
        rank_BT = target_BT.argsort(dim=1, stable=True).argsort(dim=1)
        n_cuts = min(cfg.num_classes_max, t) - 1
        scores_BR = torch.rand(b, t - 1, generator=generator, dtype=torch.float64)
        cuts_BC = scores_BR.topk(n_cuts, dim=1).indices + 1  # distinct ranks in 1..T-1
        cuts_BC = torch.where(torch.arange(n_cuts) < n_classes_B[:, None] - 1, cuts_BC, t)
        bins_BT = (rank_BT[..., None] >= cuts_BC[:, None, :]).sum(-1)
        labels_BC = _random_permutations(n_classes_B, cfg.num_classes_max, generator)
        return labels_BC.gather(1, bins_BT).to(torch.float64), n_classes_B
