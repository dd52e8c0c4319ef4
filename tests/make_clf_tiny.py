"""Make `tests/data/clf-tiny`: a tiny 10-feature, 4-class PFN classifier for the test suite.

scikit-learn's estimator checks fit datasets with up to 10 features and 4 classes and
expect a training accuracy above 0.83 on separable blobs, so the checkpoint is briefly
pretrained on the linear-softmax prior of `tests/logistic_prior.py` (each task uses 2 to
4 classes and 1 to 10 features, the rest zero as the "pad" mapping fills them).

Run from the repository root: ``python -m tests.make_clf_tiny [--steps N] [--out PATH]``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

from pfnkit.checkpoint import save_checkpoint, write_manifest
from pfnkit.models import PFNConfig
from pfnkit.training import TrainConfig, pretrain
from tests.logistic_prior import LogisticPrior, LogisticPriorConfig

__all__ = ["main"]

PRIOR = LogisticPriorConfig(num_features=10, n_classes=4, min_classes=2)
MODEL = PFNConfig(num_features=10, d_model=32, n_heads=4, n_layers=4, d_ff=64, n_classes=4)
TRAIN = dict(
    batch_size=32,
    n_ctx_min=2,
    n_ctx_max=200,
    n_qry=32,
    lr=1e-3,
    warmup_steps=100,
    num_workers=0,
    checkpoint_every=250,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--out", default="tests/data/clf-tiny")
    args = parser.parse_args(argv)
    train_config = TrainConfig(steps=args.steps, **TRAIN)
    with tempfile.TemporaryDirectory() as run_dir:
        result = pretrain(MODEL, LogisticPrior(PRIOR), train_config, run_dir=run_dir)
    command = shlex.join(["python", "-m", "tests.make_clf_tiny", *(argv or sys.argv[1:])])
    card = save_checkpoint(
        args.out,
        result.model,
        prior_name="logistic (tests/logistic_prior.py)",
        prior_config=PRIOR.to_dict(),
        train_config=train_config.to_dict(),
        command=command,
        data_mapping={"x": "standardize", "features": "pad"},
        training=result.summary,
        description=(
            "Tiny 10-feature, 4-class linear-softmax classifier for the test suite; "
            "not for real use."
        ),
    )
    write_manifest(Path(card).parent)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
