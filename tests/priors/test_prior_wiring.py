"""What pretraining asks of a prior: model input sizes and the card's data mapping.

The sizes are checked against the batches the prior draws (the model has to read them),
not against the prior's config fields.
"""

from __future__ import annotations

import pytest
import torch

import priors
from pfnkit.data import MODEL_KINDS, PretrainPrior, prior_card_data_mapping, prior_model_sizes
from priors.bnn import BNNPrior, BNNPriorConfig
from priors.gp import GPPrior, GPPriorConfig
from tests.logistic_prior import LogisticPrior, LogisticPriorConfig

DRAWS = 5  # batches drawn per prior to check the sizes against
PAD = {"x": "standardize", "y": "standardize", "features": "pad"}


def _draws(prior: object) -> list:
    generator = torch.Generator().manual_seed(0)
    return [prior.sample(4, 6, 3, generator=generator) for _ in range(DRAWS)]


def _check_pfn_sizes(sizes: dict[str, int], batches: list) -> None:
    assert set(sizes) <= {"num_features", "n_classes"}
    for batch in batches:
        assert batch.num_features == sizes["num_features"]
        if "n_classes" in sizes:  # a classification head covers every label drawn
            labels = torch.cat([batch.y_ctx, batch.y_qry], dim=1)
            assert torch.equal(labels, labels.round()) and labels.min() >= 0
            assert labels.max() < sizes["n_classes"]


def _check_dt_sizes(sizes: dict[str, int], batches: list) -> None:
    assert set(sizes) == {"dim", "obs_dim", "k_max"}
    for batch in batches:
        assert batch.meta["theta"].shape[-1] == sizes["dim"]
        assert batch.num_features == sizes["obs_dim"]
        assert batch.meta["prior_logits"].shape[-1] <= sizes["k_max"]


@pytest.mark.parametrize("name", sorted(priors.REGISTRY))
def test_registered_prior_sizes_fit_its_batches(name: str) -> None:
    prior = priors.make_prior(name)
    assert isinstance(prior, PretrainPrior)
    batches, accepted = _draws(prior), []
    for kind in MODEL_KINDS:
        try:
            sizes = prior.model_sizes(kind)
        except ValueError as error:
            assert "kind" in str(error)
            continue
        accepted.append(kind)
        (_check_dt_sizes if kind == "dt" else _check_pfn_sizes)(sizes, batches)
    assert len(accepted) == 1, f"{name} trains exactly one model kind, accepted {accepted}"


@pytest.mark.parametrize("name", sorted(priors.REGISTRY))
def test_registered_prior_keeps_an_unremarkable_mapping(name: str) -> None:
    prior = priors.make_prior(name)  # default configs present data with no rescaling
    assert prior.card_data_mapping(None) is None
    assert prior.card_data_mapping(PAD) == PAD


def test_bnn_head_width_follows_the_likelihood() -> None:
    regression = BNNPrior(BNNPriorConfig(num_features=3))
    assert regression.model_sizes("pfn") == {"num_features": 3}
    for binary_logit in (False, True):
        config = BNNPriorConfig(num_features=3, output="classification", n_classes=2,
                                binary_logit=binary_logit)  # fmt: skip
        assert BNNPrior(config).model_sizes("pfn") == {"num_features": 3, "n_classes": 2}
    three = BNNPrior(BNNPriorConfig(num_features=2, output="classification", n_classes=3))
    _check_pfn_sizes(three.model_sizes("pfn"), _draws(three))
    with pytest.raises(ValueError, match="kind = 'pfn'"):
        regression.model_sizes("dt")


def test_gp_mapping_is_checked_against_and_filled_from_feature_rescale() -> None:
    rescaled = GPPrior(GPPriorConfig.general_purpose(num_features=3))
    assert rescaled.card_data_mapping(PAD) == {**PAD, "pad_rescale": "sqrt"}
    assert rescaled.card_data_mapping({**PAD, "pad_rescale": "sqrt"}) == {
        **PAD, "pad_rescale": "sqrt"}  # fmt: skip
    for wrong in ({**PAD, "pad_rescale": "none"}, {"x": "standardize"}, None):
        with pytest.raises(ValueError, match='features = "pad" and pad_rescale'):
            rescaled.card_data_mapping(wrong)
    plain = GPPrior(GPPriorConfig())
    with pytest.raises(ValueError, match="feature_rescale = 'none'"):
        plain.card_data_mapping({**PAD, "pad_rescale": "sqrt"})
    assert plain.card_data_mapping({"x": "standardize"}) == {"x": "standardize"}


def test_a_prior_without_the_methods_gets_the_defaults() -> None:
    prior = LogisticPrior(LogisticPriorConfig(num_features=4, n_classes=3))
    assert not isinstance(prior, PretrainPrior)
    assert prior_model_sizes(prior, "pfn") == {"num_features": 4}  # read off a drawn task
    assert prior_model_sizes(prior, "dt") == {}
    assert prior_card_data_mapping(prior, PAD) is PAD
    with pytest.raises(ValueError, match="model kind must be one of"):
        prior_model_sizes(prior, "gpt")


def test_the_helpers_defer_to_the_prior() -> None:
    prior = BNNPrior(BNNPriorConfig(num_features=5, output="classification", n_classes=4))
    assert prior_model_sizes(prior, "pfn") == {"num_features": 5, "n_classes": 4}
    with pytest.raises(ValueError, match="kind = 'pfn'"):
        prior_model_sizes(prior, "dt")
    rescaled = GPPrior(GPPriorConfig.general_purpose(num_features=3))
    assert prior_card_data_mapping(rescaled, PAD)["pad_rescale"] == "sqrt"
