"""The PFN freeze-thaw surrogate: forward-pass identity, the exact GP as oracle, checks, seeds.

Oracles: the model's own uncached forward pass on the same rows (and row by row: queries
are independent), with zero features inserted by hand where the surrogate pads; the exact
freeze-thaw GP (`pfnkit.reference.freeze_thaw`, which shares no code with the PFN) at each
prior task's own hyperparameters, whose NLL the shipped ``ft-gp`` must stay within a
generous multiple of its card's measured gap of.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from pfnkit.bo.freeze_thaw import FreezeThaw
from pfnkit.bo.freeze_thaw_pfn import DEFAULT_FREEZE_THAW_CHECKPOINT, PFNFreezeThawSurrogate
from pfnkit.bo.freeze_thaw_surrogate import ExactFreezeThawSurrogate, FreezeThawSurrogate
from pfnkit.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
from pfnkit.models import PFNConfig
from pfnkit.reference.freeze_thaw import FreezeThawHyperparameters
from tests.conftest import FLOAT32_ATOL, FLOAT64_ATOL
from tests.helpers import TINY_CLF_CONFIG, make_tiny_pfn

# Statistical: the card's largest per-size NLL gap to the exact GP (128 tasks per size)
# doubled, for the 24 tasks here; and how far below the exact GP (the Bayes-optimal
# predictive) a PFN may score on so few tasks before the oracle or the plumbing is suspect.
CARD_GAP_FACTOR = 2.0
BELOW_BAYES_SLACK = 0.1  # nats per query cell
NLL_SIZES, NLL_TASKS_PER_SIZE, NLL_QUERIES = (5, 20, 50), 8, 50

TINY_FT = {"num_dims": 3, "num_dims_min": 2, "max_epoch": 10}  # a freeze-thaw prior config


def _tiny_ft_checkpoint(tmp_path: Path, n_ctx_max: int = 30, **prior: int) -> Path:
    """Random weights on a 3-feature freeze-thaw layout (2 or 3 features used) + the epoch."""
    config = PFNConfig(num_features=4, d_model=32, n_heads=4, n_layers=2, d_ff=64, n_bars=20)
    path = tmp_path / "ft-tiny"
    save_checkpoint(path, make_tiny_pfn(config), prior_name="freeze-thaw",
                    prior_config={**TINY_FT, **prior}, train_config={"n_ctx_max": n_ctx_max},
                    command="test")  # fmt: skip
    return path


def _rows(n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d + 1, generator=g, dtype=torch.float64)
    return x, 0.1 + 0.5 * torch.rand(n, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("d", [2, 3])
def test_predict_is_the_forward_pass_row_by_row(tmp_path: Path, d: int) -> None:
    """float64: cached predict = the uncached forward on (zero-padded) rows, one at a time."""
    surrogate = PFNFreezeThawSurrogate(_tiny_ft_checkpoint(tmp_path), dtype=torch.float64)
    assert isinstance(surrogate, FreezeThawSurrogate)
    x, y = _rows(12, d, 0)
    q, _ = _rows(7, d, 1)
    surrogate.fit(x, y)
    got = surrogate.predict(q)
    assert got.batch_shape == (7,) and got.borders.dtype == torch.float64

    def pad(rows: torch.Tensor) -> torch.Tensor:  # the unused feature is zero, the epoch last
        zeros = torch.zeros(len(rows), 3 - d, dtype=rows.dtype)
        return torch.cat([rows[:, :d], zeros, rows[:, d:]], dim=1)

    model = surrogate.model
    for m in range(len(q)):
        with torch.no_grad():
            one = model(pad(x)[None], y[None], pad(q[m : m + 1])[None])
        np.testing.assert_allclose(
            got.log_probs[m].numpy(), one.log_probs[0, 0].numpy(), atol=FLOAT64_ATOL, rtol=0
        )


def test_ft_gp_predict_is_its_forward_pass() -> None:
    """The shipped checkpoint in float32: cached predict = one uncached forward pass."""
    surrogate = PFNFreezeThawSurrogate(DEFAULT_FREEZE_THAW_CHECKPOINT)
    x, y = _rows(40, 4, 2)
    q, _ = _rows(9, 4, 3)
    surrogate.fit(x, y)
    with torch.no_grad():
        full = surrogate.model(x[None].float(), y[None].float(), q[None].float())
    np.testing.assert_allclose(
        surrogate.predict(q).log_probs.numpy(), full.log_probs[0].double().numpy(),
        atol=FLOAT32_ATOL, rtol=0,
    )  # fmt: skip


def test_ft_gp_nll_is_within_its_card_gap_of_the_exact_gp() -> None:
    """On fresh prior tasks: PFN NLL − exact GP NLL (the task's own GP) within the card's gap."""
    import priors

    pfn = PFNFreezeThawSurrogate(DEFAULT_FREEZE_THAW_CHECKPOINT)
    card = pfn.checkpoint.card
    prior = priors.make_prior(card["prior_name"], card["prior_config"])
    generator, gaps = torch.Generator().manual_seed(2024), []
    for n_ctx in NLL_SIZES:
        for _ in range(NLL_TASKS_PER_SIZE):
            task = prior.sample(1, n_ctx, NLL_QUERIES, generator=generator)
            hyper = FreezeThawHyperparameters(**prior.freeze_thaw_hyperparameters(task))
            x, y = task.x_ctx[0].double(), task.y_ctx[0].double()
            q, target = task.x_qry[0].double(), task.y_qry[0].double()
            nll = []
            for surrogate in (pfn, ExactFreezeThawSurrogate(hyper)):
                surrogate.fit(x, y)
                nll.append(-float(surrogate.predict(q).log_prob(target).mean()))
            gaps.append(nll[0] - nll[1])
    tolerance = CARD_GAP_FACTOR * card["validation"]["max_gap"]
    assert -BELOW_BAYES_SLACK <= float(np.mean(gaps)) <= tolerance


def _lookup(n: int, d: int, max_epoch: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    configs = rng.uniform(0, 1, (n, d))
    t = np.arange(1, max_epoch + 1) / max_epoch
    asymptote = 0.05 + 0.3 * ((configs - 0.4) ** 2).sum(1)
    return configs, asymptote[:, None] + 0.3 * np.exp(-t[None] / rng.uniform(0.05, 0.5, (n, 1)))


def _decisions(surrogate, seed: int, steps: int = 15) -> list[tuple[int, int]]:
    configs, curves = _lookup(10, 4, 10)
    ft, out = FreezeThaw(configs, 10, seed=seed, surrogate=surrogate), []
    for _ in range(steps):
        i, epoch = ft.ask()
        ft.tell(i, epoch, float(curves[i, epoch - 1]))
        out.append((i, epoch))
    return out


def test_freeze_thaw_on_ft_gp_is_seeded_whatever_names_the_checkpoint() -> None:
    first = _decisions("ft-gp", seed=3)
    _, card_path, _ = resolve_checkpoint("ft-gp")
    assert _decisions(card_path, seed=3) == first  # a path
    assert _decisions(load_checkpoint("ft-gp"), seed=3) == first  # a loaded Checkpoint
    assert _decisions(PFNFreezeThawSurrogate("ft-gp"), seed=3) == first
    assert _decisions("ft-gp", seed=4) != first


def test_configurations_the_pfn_never_saw_are_refused() -> None:
    configs, _ = _lookup(5, 2, 10)
    with pytest.raises(
        ValueError, match="2 features but checkpoint 'ft-gp' was trained on exactly 4"
    ):
        FreezeThaw(configs, 10, surrogate="ft-gp")
    surrogate = PFNFreezeThawSurrogate("ft-gp")
    with pytest.raises(ValueError, match="5 features"):
        surrogate.fit(*_rows(3, 5, 0))


def test_epochs_off_the_trained_grid_warn() -> None:
    configs, _ = _lookup(5, 4, 10)
    with pytest.warns(UserWarning, match="trained on curves of 50 epochs"):
        FreezeThaw(configs, 20, surrogate="ft-gp")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FreezeThaw(configs, 25, surrogate="ft-gp")  # 25 divides 50: on the grid


def test_a_context_beyond_training_warns_once(tmp_path: Path) -> None:
    surrogate = PFNFreezeThawSurrogate(_tiny_ft_checkpoint(tmp_path, n_ctx_max=10))
    surrogate.fit(*_rows(10, 3, 0))
    with pytest.warns(UserWarning, match="11 observed rows.*at most 10"):
        surrogate.fit(*_rows(11, 3, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        surrogate.fit(*_rows(12, 3, 0))


def test_checkpoints_that_are_not_freeze_thaw_pfns_are_refused(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    clf = tmp_path / "clf"
    save_checkpoint(clf, make_tiny_pfn(TINY_CLF_CONFIG), prior_name="freeze-thaw",
                    prior_config=TINY_FT, train_config={}, command="test")  # fmt: skip
    with pytest.raises(ValueError, match="not a regression PFN"):
        PFNFreezeThawSurrogate(clf)
    with pytest.raises(ValueError, match="not a freeze-thaw PFN"):
        PFNFreezeThawSurrogate(tiny_checkpoint)  # a GP-prior regression PFN
    with pytest.raises(ValueError, match="reads 4 features"):
        PFNFreezeThawSurrogate(_tiny_ft_checkpoint(tmp_path, num_dims=2, num_dims_min=2))
    path = _tiny_ft_checkpoint(tmp_path)
    card = json.loads(path.with_suffix(".json").read_text())
    card["data_mapping"] = {"x": "standardize", "y": "identity"}
    loaded = load_checkpoint(path)
    with pytest.raises(ValueError, match="data_mapping"):
        PFNFreezeThawSurrogate(type(loaded)(loaded.name, loaded.model, card))
    surrogate = PFNFreezeThawSurrogate(path)
    with pytest.raises(RuntimeError, match="fit before predict"):
        surrogate.predict(_rows(2, 3, 0)[0])
    with pytest.raises(ValueError, match="finite"):
        surrogate.fit(*_rows(2, 3, 0)[:1], torch.tensor([0.1, float("nan")]))
