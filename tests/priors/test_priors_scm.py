"""The SCM prior: DAGs, mechanisms in topological order, feature and label layout, config."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import priors
from pfnkit.data import Batch
from pfnkit.models import PFN, PFNConfig
from priors.scm import ACTIVATIONS, SCMPrior, SCMPriorConfig, propagate
from tests.conftest import FLOAT32_ATOL, FLOAT64_ATOL, STANDARD_ERRORS

META_KEYS = {
    "adjacency",
    "n_nodes",
    "feature_nodes",
    "target_node",
    "n_classes",
    "categorical",
    "n_categories",
    "num_used_features",
    "edge_prob",
    "noise_std",
}
RANGES = {
    "num_features": 12,
    "num_features_min": 3,
    "num_classes_min": 3,
    "num_classes_max": 6,
    "extra_nodes_max": 4,
    "categorical_prob": 0.3,
    "max_categories": 4,
}
_NP_ACTIVATIONS = {
    "tanh": np.tanh,
    "relu": lambda h: np.maximum(h, 0.0),
    "sin": np.sin,
    "identity": lambda h: h,
}


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _draw(prior: SCMPrior, batch_size: int, n_rows: int, seed: int = 0):
    generator = _gen(seed)
    scm = prior.draw_scm(batch_size, generator)
    u = prior.draw_exogenous(scm, n_rows, generator)
    return scm, u, propagate(scm, u), generator


def _descendants(adjacency: np.ndarray, node: int) -> set[int]:
    """Nodes reachable from `node` along edges j → i (adjacency[i, j]), by search."""
    found, frontier = set(), [node]
    while frontier:
        parent = frontier.pop()
        for child in np.flatnonzero(adjacency[:, parent]):
            if int(child) not in found:
                found.add(int(child))
                frontier.append(int(child))
    return found


def _runs(values: np.ndarray) -> int:
    """Number of maximal runs of equal consecutive entries."""
    return 1 + int(np.count_nonzero(values[1:] != values[:-1]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("n_ctx", "n_qry"), [(0, 5), (1, 4), (7, 3)])
def test_batch_layout(dtype: torch.dtype, n_ctx: int, n_qry: int) -> None:
    config = SCMPriorConfig(num_features=6, extra_nodes_max=3)
    batch = SCMPrior(config).sample(5, n_ctx, n_qry, generator=_gen(), dtype=dtype)
    assert isinstance(batch, Batch)
    assert batch.x_ctx.shape == (5, n_ctx, 6) and batch.y_ctx.shape == (5, n_ctx)
    assert batch.x_qry.shape == (5, n_qry, 6) and batch.y_qry.shape == (5, n_qry)
    assert set(batch.meta) == META_KEYS
    shapes = {"adjacency": (5, 10, 10), "feature_nodes": (5, 6)}
    shapes |= {"categorical": (5, 6), "n_categories": (5, 6)}
    for key, value in batch.meta.items():
        assert value.shape == shapes.get(key, (5,)), key
    for tensor in (batch.x_ctx, batch.y_ctx, batch.x_qry, batch.y_qry, *batch.meta.values()):
        assert tensor.dtype == dtype
        assert torch.isfinite(tensor).all()


def test_same_seed_same_batch_other_seed_other_batch() -> None:
    prior = SCMPrior(SCMPriorConfig(num_features=5))
    first, again = (prior.sample(4, 8, 3, generator=_gen(3)) for _ in range(2))
    other = prior.sample(4, 8, 3, generator=_gen(4))
    for name in ("x_ctx", "y_ctx", "x_qry", "y_qry"):
        torch.testing.assert_close(getattr(first, name), getattr(again, name), atol=0, rtol=0)
    for key in first.meta:
        torch.testing.assert_close(first.meta[key], again.meta[key], atol=0, rtol=0)
    assert not torch.equal(first.x_ctx, other.x_ctx)
    assert not torch.equal(first.meta["adjacency"], other.meta["adjacency"])


def test_graphs_are_acyclic_with_the_drawn_edge_density() -> None:
    prior = SCMPrior(SCMPriorConfig(num_features=8, extra_nodes_max=6))
    meta = prior.sample(400, 2, 0, generator=_gen()).meta
    adjacency = meta["adjacency"].numpy().astype(bool)
    n_nodes = meta["n_nodes"].numpy().astype(int)
    k = adjacency.shape[1]
    assert not np.triu(adjacency).any()  # strictly lower triangular: j → i needs j < i
    walks = adjacency.astype(np.float64)  # walks[b, i, j] > 0 iff a walk j → ... → i
    for _ in range(k - 1):
        walks = np.minimum(walks @ adjacency, 1.0)
    assert not walks.any()  # A^K = 0: no walk of length K, so no cycle
    edges, expected, variance = 0, 0.0, 0.0
    for b in range(400):
        n = n_nodes[b]
        assert not adjacency[b, n:].any() and not adjacency[b, :, n:].any()  # padding
        p, pairs = float(meta["edge_prob"][b]), n * (n - 1) / 2
        edges += int(adjacency[b].sum())
        expected += p * pairs
        variance += p * (1 - p) * pairs
    assert abs(edges - expected) < STANDARD_ERRORS * math.sqrt(variance)


def test_every_node_is_its_mechanism_of_its_parents() -> None:
    """Recompute each node from its parents' sampled values and the stored mechanism."""
    prior = SCMPrior(SCMPriorConfig(num_features=7, extra_nodes_max=5, mlp_prob=0.5))
    scm, u, z, _ = _draw(prior, 12, 15)
    adjacency, u, z = scm.adjacency_BKK.numpy(), u.numpy(), z.numpy()
    w_in, b_in = scm.weight_in_BKHK.numpy(), scm.bias_in_BKH.numpy()
    w_out = scm.weight_out_BKH.numpy()
    assert scm.is_mlp.any() and (~scm.is_mlp).any()
    for b in range(12):
        n = int(scm.n_nodes[b])
        np.testing.assert_array_equal(z[b, :, n:], 0.0)
        for i in range(n):
            parents = np.flatnonzero(adjacency[b, i])
            if parents.size == 0:
                np.testing.assert_array_equal(z[b, :, i], u[b, :, i])
                continue
            if not scm.is_mlp[b, i]:  # a linear node uses unit 0 only
                np.testing.assert_array_equal(w_out[b, i], np.eye(len(w_out[b, i]))[0])
                assert not w_in[b, i, 1:].any()
            act = _NP_ACTIVATIONS[ACTIVATIONS[int(scm.activation[b, i])]]
            pre = z[b][:, parents] @ w_in[b, i][:, parents].T + b_in[b, i]
            expected = act(pre) @ w_out[b, i] + u[b, :, i]
            np.testing.assert_allclose(z[b, :, i], expected, atol=FLOAT64_ATOL, rtol=0)


def test_product_nodes_multiply_two_activated_linear_forms() -> None:
    """A product node is act(w0·z_pa + b0) · act(w1·z_pa + b1), recomputed in numpy."""
    config = SCMPriorConfig(num_features=7, extra_nodes_max=5, mlp_prob=0.3, product_prob=0.5)
    scm, u, z, _ = _draw(SCMPrior(config), 12, 15)
    adjacency, u, z = scm.adjacency_BKK.numpy(), u.numpy(), z.numpy()
    w_in, b_in = scm.weight_in_BKHK.numpy(), scm.bias_in_BKH.numpy()
    product = scm.is_product.numpy() & adjacency.any(-1)
    assert product.any() and not (scm.is_product & scm.is_mlp).any()
    for b, i in zip(*np.nonzero(product), strict=True):
        parents = np.flatnonzero(adjacency[b, i])
        assert not w_in[b, i, 2:].any()  # only units 0 and 1 carry weights
        act = _NP_ACTIVATIONS[ACTIVATIONS[int(scm.activation[b, i])]]
        pre = z[b][:, parents] @ w_in[b, i][:2, parents].T + b_in[b, i, :2]
        expected = act(pre[:, 0]) * act(pre[:, 1]) + u[b, :, i]
        np.testing.assert_allclose(z[b, :, i], expected, atol=FLOAT64_ATOL, rtol=0)
    # the share of product nodes among the non-MLP ones is product_prob
    non_mlp = (~scm.is_mlp).numpy() & scm.valid.numpy()
    share, n = scm.is_product.numpy()[non_mlp].mean(), non_mlp.sum()
    assert abs(share - 0.5) < STANDARD_ERRORS * math.sqrt(0.25 / n)


def test_product_prob_zero_keeps_the_plain_prior_stream() -> None:
    plain = SCMPrior(SCMPriorConfig(num_features=5)).sample(4, 10, 5, generator=_gen(3))
    zero = SCMPrior(SCMPriorConfig(num_features=5, product_prob=0.0))
    again = zero.sample(4, 10, 5, generator=_gen(3))
    assert torch.equal(plain.x_ctx, again.x_ctx) and torch.equal(plain.y_qry, again.y_qry)


def test_changing_a_nodes_noise_moves_only_its_descendants() -> None:
    prior = SCMPrior(SCMPriorConfig(num_features=6, extra_nodes_max=4, edge_prob_min=0.4))
    scm, u, z, _ = _draw(prior, 16, 10, seed=1)
    moved = u.clone()
    nodes = [int(n) // 2 for n in scm.n_nodes]  # a middle node of each task
    for b, node in enumerate(nodes):
        moved[b, :, node] += 1.0
    z_moved = propagate(scm, moved)
    changed_descendants = 0
    for b, node in enumerate(nodes):
        descendants = _descendants(scm.adjacency_BKK[b].numpy(), node)
        diff = (z_moved[b] - z[b]).abs().amax(0)
        assert float(diff[node]) > 0.5
        for other in set(range(z.shape[2])) - descendants - {node}:
            assert float(diff[other]) <= FLOAT64_ATOL, (b, node, other)
        changed_descendants += sum(float(diff[d]) > FLOAT64_ATOL for d in descendants)
    assert changed_descendants > 0  # the check above had descendants to tell apart


def test_sample_reads_features_and_labels_off_the_nodes() -> None:
    config = SCMPriorConfig(num_features=8, categorical_prob=0.4, max_categories=4)
    prior = SCMPrior(config)
    n_ctx, n_qry = 12, 9
    batch = prior.sample(30, n_ctx, n_qry, generator=_gen(5), dtype=torch.float64)
    scm, _, z, generator = _draw(prior, 30, n_ctx + n_qry, seed=5)
    again = prior.observe(scm, z, n_ctx, generator=generator, dtype=torch.float64)
    for name in ("x_ctx", "y_ctx", "x_qry", "y_qry"):
        torch.testing.assert_close(getattr(batch, name), getattr(again, name), atol=0, rtol=0)
    x = torch.cat([batch.x_ctx, batch.x_qry], 1).numpy()
    y = torch.cat([batch.y_ctx, batch.y_qry], 1).numpy()
    z, meta = z.numpy(), {k: v.numpy() for k, v in batch.meta.items()}
    assert meta["categorical"].any()
    for b in range(30):
        d, target = int(meta["num_used_features"][b]), int(meta["target_node"][b])
        nodes = meta["feature_nodes"][b, :d].astype(int)
        assert len(set(nodes)) == d and target not in nodes
        assert nodes.max() < meta["n_nodes"][b] and (meta["feature_nodes"][b, d:] == -1).all()
        np.testing.assert_array_equal(x[b, :, d:], 0.0)
        for column, node in enumerate(nodes):
            values, order = z[b, :, node], np.argsort(z[b, :, node])
            if meta["categorical"][b, column]:
                codes = x[b, order, column]
                assert len(np.unique(codes)) <= meta["n_categories"][b, column]
                assert _runs(codes) == len(np.unique(codes))  # bins are intervals of z
            else:
                ctx = values[:n_ctx]
                expected = (values - ctx.mean()) / ctx.std()
                np.testing.assert_allclose(x[b, :, column], expected, atol=FLOAT64_ATOL)
        labels = y[b, np.argsort(z[b, :, target], kind="stable")]
        n_classes = int(meta["n_classes"][b])
        assert set(labels.tolist()) == set(range(n_classes))
        assert _runs(labels) == n_classes  # each class is one interval of target ranks


def test_counts_stay_in_their_ranges() -> None:
    config = SCMPriorConfig(**RANGES)
    batch = SCMPrior(config).sample(600, 25, 15, generator=_gen(2))
    meta = {k: v.numpy() for k, v in batch.meta.items()}
    d, n_classes = meta["num_used_features"].astype(int), meta["n_classes"].astype(int)
    assert set(d) == set(range(3, 13)) and set(n_classes) == set(range(3, 7))
    extra = meta["n_nodes"] - d - 1
    assert extra.min() == 0 and extra.max() == 4
    y = torch.cat([batch.y_ctx, batch.y_qry], 1).numpy()
    x_ctx = batch.x_ctx.numpy()
    for b in range(600):
        assert set(y[b].tolist()) == set(range(n_classes[b]))
        np.testing.assert_array_equal(x_ctx[b, :, d[b] :], 0.0)
        assert not meta["categorical"][b, d[b] :].any()
        np.testing.assert_allclose(x_ctx[b, :, : d[b]].mean(0), 0.0, atol=FLOAT32_ATOL)
    n_cat = meta["n_categories"][meta["categorical"] > 0]
    assert n_cat.min() == 2 and n_cat.max() == 4
    n_used = int(d.sum())
    variance = n_used * 0.3 * 0.7
    assert abs(len(n_cat) - 0.3 * n_used) < STANDARD_ERRORS * math.sqrt(variance)


def test_few_rows_lower_the_class_count() -> None:
    prior = SCMPrior(SCMPriorConfig(num_features=3))
    batch = prior.sample(50, 2, 1, generator=_gen())
    y = torch.cat([batch.y_ctx, batch.y_qry], 1)
    assert batch.meta["n_classes"].max() <= 3
    for b in range(50):
        assert set(y[b].tolist()) == set(range(int(batch.meta["n_classes"][b])))
    single = prior.sample(4, 1, 0, generator=_gen())
    assert (single.meta["n_classes"] == 1).all() and (single.y_ctx == 0).all()
    with pytest.raises(ValueError, match="at least one row"):
        prior.sample(2, 0, 0, generator=_gen())
    with pytest.raises(ValueError, match="n_ctx"):
        prior.sample(2, -1, 3, generator=_gen())


def test_uniform_roots_stay_in_their_box() -> None:
    config = SCMPriorConfig(num_features=4, root_distributions=("uniform",), edge_prob_max=0.2)
    scm, u, _, _ = _draw(SCMPrior(config), 40, 50)
    roots = (scm.valid & ~scm.has_parent)[:, None, :].expand_as(u)
    assert u[roots].abs().max() <= math.sqrt(3.0)
    assert float(u[roots].var()) == pytest.approx(1.0, abs=0.1)


def test_labels_fit_a_classification_pfn_head() -> None:
    config = SCMPriorConfig(num_features=5, num_classes_max=4)
    batch = SCMPrior(config).sample(3, 10, 6, generator=_gen())
    model_config = PFNConfig(
        num_features=5, d_model=16, n_heads=2, n_layers=1, d_ff=16, n_classes=config.n_classes
    )
    dist = PFN(model_config)(batch.x_ctx, batch.y_ctx, batch.x_qry)
    assert dist.batch_shape == (3, 6)
    assert torch.isfinite(dist.log_prob(batch.y_qry)).all()


def test_config_round_trip_and_registry() -> None:
    data = {"num_features": 5, "activations": ["tanh", "sin"], "num_classes_max": 4}
    prior = priors.make_prior("scm", data)
    assert isinstance(prior, SCMPrior)
    assert priors.REGISTRY["scm"] == (SCMPrior, SCMPriorConfig)
    config = prior.config
    assert config == SCMPriorConfig(num_features=5, activations=("tanh", "sin"), num_classes_max=4)
    assert config.n_classes == 4 and config.max_nodes == 5 + 1 + config.extra_nodes_max
    assert SCMPriorConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes_max": 11}, "num_classes_max must be at most 10"),
        ({"num_classes_min": 5, "num_classes_max": 3}, r"num_classes_min \(5\) must not exceed"),
        ({"num_classes_min": 1}, "num_classes_min must be an integer >= 2"),
        ({"num_features": 33}, "num_features must be at most 32"),
        ({"num_features": 2.5}, "num_features must be an integer"),
        ({"num_features": 4, "num_features_min": 5}, "num_features_min must be at most 4"),
        ({"num_features_min": 0}, "num_features_min must be an integer >= 1"),
        ({"extra_nodes_max": -1}, "extra_nodes_max"),
        ({"mlp_width": 0}, "mlp_width"),
        ({"max_categories": 1}, "max_categories"),
        ({"edge_prob_min": 0.7, "edge_prob_max": 0.5}, "edge_prob_min <= edge_prob_max"),
        ({"edge_prob_max": 1.5}, "edge_prob_max <= 1"),
        ({"noise_std_min": 0.0}, "0 < noise_std_min"),
        ({"noise_std_min": 0.5, "noise_std_max": 0.1}, "noise_std_min <= noise_std_max"),
        ({"mlp_prob": 1.5}, r"mlp_prob must lie in \[0, 1\]"),
        ({"categorical_prob": -0.1}, "categorical_prob"),
        ({"activations": ("swish",)}, "activations must be a non-empty list"),
        ({"activations": ()}, "activations must be a non-empty list"),
        ({"root_distributions": ["cauchy"]}, "root_distributions"),
    ],
)
def test_config_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SCMPriorConfig(**kwargs)
