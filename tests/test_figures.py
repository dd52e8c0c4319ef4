"""The report plots write readable PNGs through the shared figure helper."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

import priors
from pfnkit.checkpoint import load_checkpoint
from pfnkit.figures import pyplot, save_figure
from pfnkit.validation.plots import plot_dt_posteriors


def test_save_figure_creates_folders_and_closes_the_figure(tmp_path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = save_figure(fig, tmp_path / "a" / "b" / "line.png", dpi=50)
    assert path.exists() and Image.open(path).size == (320, 240)  # 6.4 x 4.8 in at 50 dpi
    assert not plt.fignum_exists(fig.number)


def test_dt_posterior_contours_are_drawn_for_each_task(tmp_path: Path) -> None:
    ckpt = load_checkpoint("dt-gauss2d")
    prior = priors.make_prior(ckpt.card["prior_name"], ckpt.card["prior_config"])
    gen = torch.Generator().manual_seed(0)
    tasks = [prior.sample(1, n_obs, 0, generator=gen) for n_obs in (2, 5)]
    path = tmp_path / "contours.png"
    path = plot_dt_posteriors(ckpt.model, tasks, prior.obs_cov, path, title="t")
    width, height = Image.open(path).size
    assert width > height  # one panel per task, side by side
