"""Inputs that crowd around a few centres, as the points of a Bayesian-optimisation run do.

A surrogate trained only on uniform designs meets, inside a BO loop, a design it never saw:
after the first few points, most evaluations sit in small neighbourhoods of the incumbents,
often on a face or a corner of the box, where the acquisition search stops at the bounds.
On such designs the BO checkpoints trained on uniform inputs fall far behind an ML-II GP
(``benchmarks/bo_designs.py`` measures it). The design does not
depend on the function, so a GP posterior given a clustered design is still the exact one;
only the inputs the network sees widen.

Each task draws, in the unit cube (then mapped affinely onto [low, high]^D):

* ``n_centres`` ~ U{1, ..., MAX_CENTRES} centres, uniform in the cube, except that each
  coordinate lies on a face (0 or 1, equally likely) with probability FACE_PROBABILITY;
* a clustered share π ~ U(0, MAX_CLUSTERED_SHARE) of its points; the other points are
  uniform in the cube, so that π near 0 is the plain uniform design;

and each clustered point picks a centre uniformly, a radius ρ log-uniform on
[MIN_RADIUS, MAX_RADIUS] (coarse and fine neighbourhoods, as the jitter of an acquisition
search probes them), and lies at ``clip(centre + ρ ε, 0, 1)`` with ε ~ N(0, I_D), so points
near a face pile up on it as projected gradient steps do.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "FACE_PROBABILITY",
    "MAX_CENTRES",
    "MAX_CLUSTERED_SHARE",
    "MAX_RADIUS",
    "MIN_RADIUS",
    "draw_clustered_unit",
]

MAX_CENTRES = 3
FACE_PROBABILITY = 0.15
MAX_CLUSTERED_SHARE = 0.9
MIN_RADIUS = 0.005
MAX_RADIUS = 0.2


def draw_clustered_unit(shape: tuple[int, int, int], generator: torch.Generator) -> Tensor:
    """(B, T, D) float64 points in [0, 1]^D, clustered per task as the module says."""
    b, t, d = shape
    options = {"generator": generator, "dtype": torch.float64}
    uniform_BTD = torch.rand(shape, **options)
    centres_BKD = torch.rand(b, MAX_CENTRES, d, **options)
    on_face_BKD = torch.rand(b, MAX_CENTRES, d, **options) < FACE_PROBABILITY
    face_BKD = (torch.rand(b, MAX_CENTRES, d, **options) < 0.5).to(torch.float64)
    centres_BKD = torch.where(on_face_BKD, face_BKD, centres_BKD)
    n_centres_B1 = torch.randint(1, MAX_CENTRES + 1, (b, 1), generator=generator)
    which_BT = (torch.rand(b, t, **options) * n_centres_B1).long().clamp_max(MAX_CENTRES - 1)
    centre_BTD = torch.gather(centres_BKD, 1, which_BT[..., None].expand(b, t, d))
    log_low, log_high = math.log(MIN_RADIUS), math.log(MAX_RADIUS)
    radius_BT1 = torch.exp(log_low + (log_high - log_low) * torch.rand(b, t, 1, **options))
    local_BTD = (centre_BTD + radius_BT1 * torch.randn(shape, **options)).clamp(0.0, 1.0)
    share_B1 = MAX_CLUSTERED_SHARE * torch.rand(b, 1, **options)
    clustered_BT = torch.rand(b, t, **options) < share_B1
    return torch.where(clustered_BT[..., None], local_BTD, uniform_BTD)
