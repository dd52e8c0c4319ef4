"""`cli.py` with a GP prior that records a fingerprint of every task each DDP rank draws.

tests/training/test_distributed_training.py runs it as `python tests/ddp_recording_cli.py pretrain
--prior recording-gp ... --devices 2 --strategy ddp`; Lightning's ddp strategy relaunches this
same command once for every further rank. Once the process group is up (training, not the
bar-border draw every rank makes alike beforehand), each rank appends one line per drawn
task (a sha256 of its query targets) to `$PFNKIT_RECORD_DIR/rank<R>.txt`.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cli  # noqa: E402
import priors  # noqa: E402
from pfnkit.data import Batch  # noqa: E402
from priors.gp import GPPrior, GPPriorConfig  # noqa: E402

__all__ = ["RecordingGPPrior"]


class RecordingGPPrior(GPPrior):
    """A `GPPrior` that logs the tasks it draws for distributed training, one file per rank."""

    def sample(
        self, batch_size: int, n_ctx: int, n_qry: int, *, generator: torch.Generator
    ) -> Batch:
        batch = super().sample(batch_size, n_ctx, n_qry, generator=generator)
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()):
            return batch  # setup before training, e.g. the shared bar borders
        rank = dist.get_rank()
        lines = [hashlib.sha256(y_M.numpy().tobytes()).hexdigest() for y_M in batch.y_qry]
        record = Path(os.environ["PFNKIT_RECORD_DIR"]) / f"rank{rank}.txt"
        with open(record, "a") as handle:
            handle.write("".join(f"{line}\n" for line in lines))
        return batch


if __name__ == "__main__":
    priors.REGISTRY["recording-gp"] = (RecordingGPPrior, GPPriorConfig)
    sys.exit(cli.main())
