"""The model contract, run over every model of `pfnkit.models` (tiny float64 instances).

Each property is an equivalence, so the oracle is the model itself along another route:
a cached context equals one full pass, query chunks equal one pass, a batch equals a loop
over its tasks, a permuted context changes nothing, each query's prediction ignores the
other queries, and the fused SDPA attention equals the plain softmax(QKᵀ/√d)V reference.
Model-specific behaviour (heads, input checks, component equivariance) is tested beside
each model in tests/models/.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import Distribution, MixtureSameFamily

from pfnkit.nn import KVAttention
from tests.conftest import FLOAT64_ATOL
from tests.helpers import TINY_CLF_CONFIG, make_tiny_dt, make_tiny_pfn

Inputs = dict[str, Tensor]  # forward arguments in order, batch-first

N_CTX, N_QRY, N_TASKS = 7, 5, 3
CHUNK_SIZES = (1, 2, N_QRY, N_QRY + 3)


@dataclass(frozen=True)
class ModelCase:
    """How the contract drives one model.

    Attributes:
        name: test id.
        build: a tiny float64 model in eval mode.
        sample: (n_tasks, n_ctx, n_qry, seed) -> the forward's inputs by name.
        read: the numbers a returned distribution carries, one row per task on dim 0
            and, for a model with queries, one per query on dim 1.
        batch_shape: (n_tasks, n_qry) -> the distribution's batch shape.
        target: (n_tasks, n_qry) -> a value of the distribution's support.
        context: inputs whose dim 1 indexes exchangeable context points.
        queries: inputs whose dim 1 indexes query points; empty for a model without.
        encode: (model, inputs) -> a context cache; None for a model without one.
        predict: (model, cache, inputs, chunk_size) -> the distribution from the cache.
    """

    name: str
    build: Callable[[], nn.Module]
    sample: Callable[[int, int, int, int], Inputs]
    read: Callable[[Distribution], Tensor]
    batch_shape: Callable[[int, int], tuple[int, ...]]
    target: Callable[[int, int], Tensor]
    context: tuple[str, ...]
    queries: tuple[str, ...] = ()
    encode: Callable[[nn.Module, Inputs], Any] | None = None
    predict: Callable[[nn.Module, Any, Inputs, int | None], Distribution] | None = None


def _pfn_inputs(n_classes: int) -> Callable[[int, int, int, int], Inputs]:
    def sample(b: int, n: int, m: int, seed: int) -> Inputs:
        gen = torch.Generator().manual_seed(seed)
        x_ctx = torch.rand(b, n, 2, generator=gen, dtype=torch.float64)
        if n_classes:
            y_ctx = torch.randint(0, n_classes, (b, n), generator=gen).double()
        else:
            y_ctx = torch.randn(b, n, generator=gen, dtype=torch.float64)
        x_qry = torch.rand(b, m, 2, generator=gen, dtype=torch.float64)
        return {"x_ctx": x_ctx, "y_ctx": y_ctx, "x_qry": x_qry}

    return sample


def _dt_inputs(b: int, n: int, m: int, seed: int) -> Inputs:
    del m  # the posterior is over θ: no query points
    gen = torch.Generator().manual_seed(seed)
    k, d = 3, 2
    raw = torch.randn(b, k, d, d, generator=gen, dtype=torch.float64)
    cov = raw @ raw.transpose(-1, -2) + 0.5 * torch.eye(d, dtype=torch.float64)
    return {
        "logits": torch.randn(b, k, generator=gen, dtype=torch.float64),
        "means": 2 * torch.randn(b, k, d, generator=gen, dtype=torch.float64),
        "scale_tril": torch.linalg.cholesky(cov),
        "obs": torch.randn(b, n, d, generator=gen, dtype=torch.float64),
    }


def _read_mixture(dist: MixtureSameFamily) -> Tensor:
    """(B, K, 1 + d + d²): each component's logit, mean and Cholesky factor."""
    comp = dist.component_distribution
    logits_BK1 = dist.mixture_distribution.logits.unsqueeze(-1)
    return torch.cat([logits_BK1, comp.loc, comp.scale_tril.flatten(-2)], dim=-1)


def _pfn_case(name: str, build: Callable[[], nn.Module], n_classes: int) -> ModelCase:
    return ModelCase(
        name=name,
        build=build,
        sample=_pfn_inputs(n_classes),
        read=lambda dist: dist.logits,
        batch_shape=lambda b, m: (b, m),
        target=lambda b, m: torch.zeros(b, m, dtype=torch.float64),
        context=("x_ctx", "y_ctx"),
        queries=("x_qry",),
        encode=lambda model, inputs: model.encode_context(inputs["x_ctx"], inputs["y_ctx"]),
        predict=lambda model, cache, inputs, chunk: model.predict_from_cache(
            cache, inputs["x_qry"], chunk_size=chunk
        ),
    )


CASES = [
    _pfn_case("pfn-regression", lambda: make_tiny_pfn().double(), n_classes=0),
    _pfn_case(
        "pfn-classification",
        lambda: make_tiny_pfn(TINY_CLF_CONFIG).double(),
        n_classes=TINY_CLF_CONFIG.n_classes,
    ),
    ModelCase(
        name="distribution-transformer",
        build=make_tiny_dt,
        sample=_dt_inputs,
        read=_read_mixture,
        batch_shape=lambda b, m: (b,),
        target=lambda b, m: torch.zeros(b, 2, dtype=torch.float64),
        context=("obs",),
    ),
]
ALL = [pytest.param(case, id=case.name) for case in CASES]
WITH_QUERIES = [pytest.param(case, id=case.name) for case in CASES if case.queries]
WITH_CACHE = [pytest.param(case, id=case.name) for case in CASES if case.encode]


def _run(model: nn.Module, inputs: Inputs) -> Distribution:
    return model(*inputs.values())


def _assert_identical(actual: Tensor, expected: Tensor) -> None:
    torch.testing.assert_close(actual, expected, atol=FLOAT64_ATOL, rtol=0)


@pytest.mark.parametrize("case", ALL)
def test_returns_a_distribution_of_the_contract_shape(case: ModelCase) -> None:
    dist = _run(case.build(), case.sample(N_TASKS, N_CTX, N_QRY, 0))
    assert isinstance(dist, Distribution)
    assert dist.batch_shape == case.batch_shape(N_TASKS, N_QRY)
    assert torch.isfinite(dist.log_prob(case.target(N_TASKS, N_QRY))).all()


@pytest.mark.parametrize("case", ALL)
def test_fused_attention_equals_the_reference(case: ModelCase) -> None:
    model, inputs = case.build(), case.sample(N_TASKS, N_CTX, N_QRY, 0)
    fused = case.read(_run(model, inputs))
    attentions = [m for m in model.modules() if isinstance(m, KVAttention)]
    assert attentions, f"{case.name} has no KVAttention to switch"
    for attention in attentions:
        attention.use_reference = True
    _assert_identical(case.read(_run(model, inputs)), fused)


@pytest.mark.parametrize("case", ALL)
def test_batch_equals_a_loop_over_tasks(case: ModelCase) -> None:
    model, inputs = case.build(), case.sample(N_TASKS, N_CTX, N_QRY, 0)
    batched = case.read(_run(model, inputs))
    for i in range(N_TASKS):
        single = {name: value[i : i + 1] for name, value in inputs.items()}
        _assert_identical(case.read(_run(model, single)), batched[i : i + 1])


@pytest.mark.parametrize("case", ALL)
def test_permuting_the_context_changes_nothing(case: ModelCase) -> None:
    model, inputs = case.build(), case.sample(N_TASKS, N_CTX, N_QRY, 0)
    perm = torch.randperm(N_CTX, generator=torch.Generator().manual_seed(3))
    permuted = {k: v[:, perm] if k in case.context else v for k, v in inputs.items()}
    _assert_identical(case.read(_run(model, permuted)), case.read(_run(model, inputs)))


@pytest.mark.parametrize("case", WITH_QUERIES)
def test_each_query_ignores_the_other_queries(case: ModelCase) -> None:
    model, inputs = case.build(), case.sample(N_TASKS, N_CTX, N_QRY, 0)
    together = case.read(_run(model, inputs))
    for j in range(N_QRY):
        alone = {k: v[:, j : j + 1] if k in case.queries else v for k, v in inputs.items()}
        _assert_identical(case.read(_run(model, alone)), together[:, j : j + 1])


@pytest.mark.parametrize("case", WITH_CACHE)
def test_a_context_cached_once_equals_one_full_pass_per_query_set(case: ModelCase) -> None:
    model, inputs = case.build(), case.sample(N_TASKS, N_CTX, N_QRY, 0)
    cache = case.encode(model, inputs)
    for seed in (1, 2):  # the cache is reused, and left unchanged, across query sets
        new = case.sample(N_TASKS, N_CTX, N_QRY, seed)
        queried = {k: new[k] if k in case.queries else v for k, v in inputs.items()}
        cached = case.read(case.predict(model, cache, queried, None))
        _assert_identical(cached, case.read(_run(model, queried)))


@pytest.mark.parametrize("case", WITH_CACHE)
def test_query_chunks_equal_one_pass(case: ModelCase) -> None:
    model, inputs = case.build(), case.sample(N_TASKS, N_CTX, N_QRY, 0)
    whole = case.read(_run(model, inputs))
    cache = case.encode(model, inputs)
    for chunk_size in CHUNK_SIZES:
        _assert_identical(case.read(case.predict(model, cache, inputs, chunk_size)), whole)


@pytest.mark.parametrize("case", WITH_CACHE)
def test_no_queries_give_an_empty_batch(case: ModelCase) -> None:
    model, inputs = case.build(), case.sample(N_TASKS, N_CTX, 0, 0)
    dist = case.predict(model, case.encode(model, inputs), inputs, None)
    assert dist.batch_shape == case.batch_shape(N_TASKS, 0)
