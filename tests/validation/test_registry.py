"""The validator registry: options and their defaults, registration, and reference lookup."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pfnkit.validation import VALIDATORS, ValidationOptions, register_validator, resolve_reference


def test_options_left_none_take_the_validator_defaults() -> None:
    defaults = ValidationOptions(tasks=64, sizes=(2, 5), nuts_tasks=4)
    options = ValidationOptions(tasks=8, seed=7).with_defaults(defaults)
    assert options.tasks == 8 and options.sizes == (2, 5) and options.nuts_tasks == 4
    assert options.seed == 7 and options.dims is None  # set fields and unset defaults stay


@pytest.mark.parametrize(
    ("own", "reference", "expected"),
    [
        ("gp-exact", None, "gp-exact"),
        ("gp-exact", "nuts", "gp-nuts"),
        ("gp-nuts", "exact", "gp-exact"),
        ("dt-exact", "nuts", "dt-nuts"),
        ("bnn-nuts", "nuts", "bnn-nuts"),
        ("gp-exact", "dt-exact", "dt-exact"),  # a registered name is taken as it is
    ],
)
def test_the_card_names_its_reference_and_aliases_keep_its_target(
    own: str, reference: str | None, expected: str
) -> None:
    assert resolve_reference({"reference": own}, reference) == expected


@pytest.mark.parametrize(
    ("card", "reference", "message"),
    [
        ({"prior_name": "scm"}, None, "names no reference"),
        ({"prior_name": "gp"}, "nuts", "names no reference"),
        ({"reference": "bnn-nuts"}, "exact", "no 'exact' reference"),
        ({"reference": "gp-exact"}, "gp-magic", "unknown reference"),
    ],
)
def test_an_unresolvable_reference_is_refused_clearly(
    card: dict, reference: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_reference(card, reference)


def test_every_registered_validator_declares_its_defaults() -> None:
    for name, validator in VALIDATORS.items():
        assert validator.name == name
        assert isinstance(validator.defaults, ValidationOptions)
        assert validator.defaults.tasks and validator.defaults.sizes is not None


def test_registration_needs_defaults_and_a_new_name() -> None:
    @dataclass
    class Bare:
        name: str = "bare"

    with pytest.raises(TypeError, match="defaults"):
        register_validator(Bare())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="already registered"):
        register_validator(VALIDATORS["gp-exact"])
    assert "bare" not in VALIDATORS
