"""Write your own prior, pretrain a PFN on it, and check it against the exact posterior.

The prior here is Bayesian linear regression, y = w·x + ε with w ~ N(0, I) and
ε ~ N(0, σ²), whose posterior predictive is Gaussian in closed form, so the PFN can be
scored against the Bayes optimum.

Run:  python examples/custom_prior.py [--steps 1500] [--smoke]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from dataclasses import dataclass
from typing import Any

import torch

from pfnkit import Batch, PFNConfig, TrainConfig, pretrain


@dataclass(frozen=True, kw_only=True)
class LinearPriorConfig:
    num_features: int = 2
    noise_std: float = 0.3

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class LinearPrior:
    """Any object with a plain-data `config` and this `sample` signature is a prior."""

    def __init__(self, config: LinearPriorConfig):
        self.config = config

    def sample(
        self, batch_size: int, n_ctx: int, n_qry: int, *, generator: torch.Generator
    ) -> Batch:
        d, t = self.config.num_features, n_ctx + n_qry
        x = torch.randn(batch_size, t, d, generator=generator)
        w = torch.randn(batch_size, d, generator=generator)
        noise = self.config.noise_std * torch.randn(batch_size, t, generator=generator)
        y = torch.einsum("btd,bd->bt", x, w) + noise
        return Batch(x[:, :n_ctx], y[:, :n_ctx], x[:, n_ctx:], y[:, n_ctx:], meta={"w": w})


def exact_predictive(task: Batch, noise_std: float) -> torch.distributions.Normal:
    """Closed-form Bayesian linear regression predictive for a single task."""
    x, y, xq = task.x_ctx[0].double(), task.y_ctx[0].double(), task.x_qry[0].double()
    precision = torch.eye(x.shape[1], dtype=x.dtype) + x.T @ x / noise_std**2
    cov = torch.linalg.inv(precision)
    mean_w = cov @ x.T @ y / noise_std**2
    var = (xq @ cov * xq).sum(-1) + noise_std**2
    return torch.distributions.Normal(xq @ mean_w, var.sqrt())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--smoke", action="store_true", help="a few steps, for the test suite")
    args = parser.parse_args(argv)
    steps = 20 if args.smoke else args.steps

    prior = LinearPrior(LinearPriorConfig())
    model_config = PFNConfig(
        num_features=2, d_model=64, n_heads=4, n_layers=3, d_ff=128, n_bars=200
    )
    train_config = TrainConfig(
        steps=steps,
        batch_size=32,
        n_ctx_max=30,
        n_qry=32,
        warmup_steps=min(100, steps // 4),
        lr=1e-3,
        num_workers=0,
        n_border_tasks=500,
    )
    with tempfile.TemporaryDirectory() as run_dir:
        model = pretrain(model_config, prior, train_config, run_dir=run_dir).model

    generator = torch.Generator().manual_seed(1)
    print(f"{'n_ctx':>6} {'PFN NLL':>9} {'exact NLL':>10} {'gap':>8}")
    for n_ctx in (2, 5, 20):
        batch = prior.sample(64, n_ctx, 50, generator=generator)
        with torch.inference_mode():
            pfn_nll = float(
                -model(batch.x_ctx, batch.y_ctx, batch.x_qry).log_prob(batch.y_qry).mean()
            )
        exact_nll = (
            sum(
                float(
                    -exact_predictive(batch.task(i), prior.config.noise_std)
                    .log_prob(batch.y_qry[i].double())
                    .mean()
                )
                for i in range(batch.batch_size)
            )
            / batch.batch_size
        )
        print(f"{n_ctx:6d} {pfn_nll:9.4f} {exact_nll:10.4f} {pfn_nll - exact_nll:+8.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
