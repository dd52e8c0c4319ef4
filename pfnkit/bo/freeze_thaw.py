"""Freeze-thaw Bayesian optimisation over a finite set of configurations (arXiv 1406.3896).

The optimiser decides, one step at a time, which configuration to train further and up
to which epoch; the user trains and reports values (lower is better, e.g. validation
error):

    ft = FreezeThaw(configs, max_epoch, seed=0)  # configs: (n, d) in the unit cube
    i, epoch = ft.ask()        # train configuration i up to `epoch`
    ft.tell(i, epoch, value)   # the value observed at that epoch
    i_best, value_best = ft.best()

The surrogate is the exact freeze-thaw GP unless one is passed; ``surrogate="ft-gp"`` (a
checkpoint name or path) runs it on a PFN trained on the freeze-thaw prior instead, as
ifBO does (`pfnkit.bo.freeze_thaw_pfn`).

Acquisition (first version; the benchmark of issue 18 is where it gets measured and
tuned): every configuration that is not finished is scored by the log expected
improvement, over the best value seen so far, of its value ``horizon`` epochs beyond
what it has (capped at max_epoch); the best-scoring one is trained ``step`` more epochs.
With ``horizon = "random"`` each decision draws the look-ahead uniformly from 1..T, as
ifBO's random-horizon acquisition does (Rakotoarison et al., arXiv 2404.16795): no single
horizon suits both cheap promising restarts and long runs. The first decision (nothing
observed yet) picks a configuration at random. Ties go to a seeded random order, so the
same seed and the same reports give the same decisions.

A decision stays pending until it is reported: ``ask`` returns the same (i, epoch), and
draws nothing from the random generator, until ``tell`` reports configuration i at that
epoch or later. ``tell`` also accepts any other cell not yet reported (the epochs in
between when ``step > 1``, or runs the user chose); such a report is recorded, never
touches the generator and leaves the pending decision in place, so asking again, or
reporting extra cells, never shifts the seeded sequence of draws.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from pfnkit.bo.freeze_thaw_pfn import PFNFreezeThawSurrogate
from pfnkit.bo.freeze_thaw_surrogate import ExactFreezeThawSurrogate, FreezeThawSurrogate, log_ei
from pfnkit.checkpoint import Checkpoint

__all__ = ["FreezeThaw"]


def _surrogate(
    surrogate: FreezeThawSurrogate | str | Path | Checkpoint | None, d: int, max_epoch: int
) -> FreezeThawSurrogate:
    """The exact GP for None, a PFN surrogate for a checkpoint; a PFN's design is checked."""
    if surrogate is None:
        return ExactFreezeThawSurrogate()
    if isinstance(surrogate, (str, Path, Checkpoint)):
        surrogate = PFNFreezeThawSurrogate(surrogate)
    if isinstance(surrogate, PFNFreezeThawSurrogate):
        surrogate.check_design(d, max_epoch)
    return surrogate


class FreezeThaw:
    """Ask/tell freeze-thaw optimiser over n configurations trained for up to max_epoch epochs.

    Args:
        configs: (n, d) configurations in the unit cube [0, 1]^d.
        max_epoch: T, the most epochs any configuration is trained.
        seed: seeds every random choice (first configuration, horizons, tie order).
        surrogate: a `FreezeThawSurrogate`, or a freeze-thaw PFN checkpoint (short name
            such as "ft-gp", path, or loaded `Checkpoint`) wrapped in a
            `PFNFreezeThawSurrogate`; by default the exact freeze-thaw GP.
        horizon: look-ahead in epochs, an int >= 1 or "random" (uniform on 1..T per ask).
        step: epochs to train per decision, >= 1.
        value_range: the interval every reported value must lie in (validation error: [0, 1]).
    """

    def __init__(
        self,
        configs: np.ndarray | Sequence[Sequence[float]],
        max_epoch: int,
        seed: int = 0,
        *,
        surrogate: FreezeThawSurrogate | str | Path | Checkpoint | None = None,
        horizon: int | str = "random",
        step: int = 1,
        value_range: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        configs = np.asarray(configs, dtype=float)
        if configs.ndim != 2 or configs.shape[0] == 0 or configs.shape[1] == 0:
            raise ValueError(f"configs must be a non-empty (n, d) array, got shape {configs.shape}")
        if not np.isfinite(configs).all() or configs.min() < 0 or configs.max() > 1:
            raise ValueError(
                "configs must be finite and lie in the unit cube [0, 1]^d; rescale them"
            )
        if len({tuple(row) for row in configs}) < len(configs):
            raise ValueError("configs holds duplicate rows; each configuration must be distinct")
        if not isinstance(max_epoch, int) or max_epoch < 1:
            raise ValueError(f"max_epoch must be a positive int, got {max_epoch!r}")
        if horizon != "random" and not (isinstance(horizon, int) and horizon >= 1):
            raise ValueError(f"horizon must be 'random' or an int >= 1, got {horizon!r}")
        if not isinstance(step, int) or step < 1:
            raise ValueError(f"step must be an int >= 1, got {step!r}")
        if not value_range[0] < value_range[1]:
            raise ValueError(f"value_range must be (low, high) with low < high, got {value_range}")
        self.configs = configs
        self.max_epoch = max_epoch
        self.horizon = horizon
        self.step = step
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.surrogate = _surrogate(surrogate, configs.shape[1], max_epoch)
        self._rng = np.random.default_rng(seed)
        self._curves: dict[int, dict[int, float]] = {}  # config -> {epoch: value}
        self._pending: tuple[int, int] | None = None  # the decision asked and not yet told

    @property
    def n_configs(self) -> int:
        return len(self.configs)

    def epochs_trained(self, i: int) -> int:
        """The highest epoch reported for configuration i (0 if none)."""
        return max(self._curves.get(i, {0: 0.0}))

    @property
    def total_epochs(self) -> int:
        """Sum over configurations of their highest reported epoch (the training spent)."""
        return sum(self.epochs_trained(i) for i in self._curves)

    def observations(self) -> tuple[np.ndarray, np.ndarray]:
        """Reported rows (N, d + 1), the epoch fraction last, and their values (N,)."""
        rows, values = [], []
        for i in sorted(self._curves):
            for epoch in sorted(self._curves[i]):
                rows.append([*self.configs[i], epoch / self.max_epoch])
                values.append(self._curves[i][epoch])
        d = self.configs.shape[1]
        return np.asarray(rows, dtype=float).reshape(-1, d + 1), np.asarray(values, dtype=float)

    def ask(self) -> tuple[int, int]:
        """The next decision: (configuration i, epoch to train it up to).

        Until that decision is reported (``tell(i, epoch', ...)`` with epoch' >= epoch),
        every ask returns it again without drawing from the random generator.
        """
        if self._pending is None:
            self._pending = self._decide()
        return self._pending

    def _decide(self) -> tuple[int, int]:
        open_ = [i for i in range(self.n_configs) if self.epochs_trained(i) < self.max_epoch]
        if not open_:
            raise RuntimeError(f"every configuration is trained to max_epoch={self.max_epoch}")
        order = self._rng.permutation(len(open_))
        horizon = self.horizon
        if horizon == "random":
            horizon = int(self._rng.integers(1, self.max_epoch + 1))
        candidates = [open_[k] for k in order]
        if not self._curves:
            i = candidates[0]
        else:
            i = candidates[int(np.argmax(self._scores(candidates, horizon)))]
        return i, min(self.epochs_trained(i) + self.step, self.max_epoch)

    def _scores(self, candidates: list[int], horizon: int) -> np.ndarray:
        rows, values = self.observations()
        self.surrogate.fit(torch.from_numpy(rows), torch.from_numpy(values))
        epochs = [min(self.epochs_trained(i) + horizon, self.max_epoch) for i in candidates]
        query = [
            [*self.configs[i], t / self.max_epoch] for i, t in zip(candidates, epochs, strict=True)
        ]
        dist = self.surrogate.predict(torch.tensor(query, dtype=torch.float64))
        return log_ei(dist, float(values.min())).detach().cpu().double().numpy()

    def tell(self, i: int, epoch: int, value: float) -> None:
        """Report the value of configuration i at `epoch`; a bad report changes nothing.

        Any cell not yet reported is accepted, asked for or not; reporting configuration i
        at or beyond the pending decision's epoch settles it, so the next ask decides anew.

        Raises:
            ValueError: i is not a configuration index, epoch is not in 1..max_epoch or
                was already reported for i, or value is NaN, infinite or outside value_range.
        """
        if (
            isinstance(i, bool)
            or not isinstance(i, (int, np.integer))
            or not 0 <= i < self.n_configs
        ):
            raise ValueError(
                f"unknown configuration {i!r}: expected an index in [0, {self.n_configs})"
            )
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)):
            raise ValueError(f"epoch must be an int, got {epoch!r}")
        if not 1 <= epoch <= self.max_epoch:
            raise ValueError(f"epoch {epoch} is outside 1..max_epoch={self.max_epoch}")
        if epoch in self._curves.get(int(i), {}):
            raise ValueError(f"configuration {i} already has a value at epoch {epoch}")
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"value must be a number, got {value!r}") from None
        low, high = self.value_range
        if not math.isfinite(value) or not low <= value <= high:
            raise ValueError(
                f"value {value} for configuration {i} at epoch {epoch} is not a finite number in "
                f"value_range [{low}, {high}]; report validation error (lower is better)"
            )
        self._curves.setdefault(int(i), {})[int(epoch)] = value
        if self._pending is not None and self._pending[0] == i and epoch >= self._pending[1]:
            self._pending = None

    def best(self) -> tuple[int, float]:
        """(configuration, value) of the lowest value reported so far, at any epoch."""
        if not self._curves:
            raise RuntimeError("nothing reported yet; call tell first")
        return min(
            ((i, v) for i, curve in self._curves.items() for v in curve.values()),
            key=lambda item: (item[1], item[0]),
        )

    def state(self) -> dict:
        """A deep copy of everything a report can change (for tests and checkpoints)."""
        return {
            "curves": copy.deepcopy(self._curves),
            "rng": copy.deepcopy(self._rng.bit_generator.state),
            "pending": self._pending,
        }
