"""load_factory: the one place that resolves "package.module:callable" specs (anomaly scorers,
COP-Gen generators)."""

import pytest

from nda_plugins._imports import load_factory


def test_resolves_dotted_attributes():
    import os.path

    assert load_factory("os:path.join") is os.path.join


@pytest.mark.parametrize(
    "spec, message",
    [
        ("no_colon", "must look like 'package.module:callable'"),
        ("a:b:c", "must look like"),
        (":x", "must look like"),
        ("no_such_module_xyz:f", "cannot import 'no_such_module_xyz'"),
        ("collections:NoSuchThing", "has no attribute 'NoSuchThing'"),
        ("math:pi", "is not callable"),
    ],
)
def test_bad_specs_name_what_and_the_spec(spec, message):
    with pytest.raises(ValueError, match="generator factory") as info:
        load_factory(spec, what="generator factory")
    assert message in str(info.value)


def test_copgen_and_anomaly_use_it():
    from nda_plugins import anomaly, copgen

    assert anomaly.load_factory is load_factory
    with pytest.raises(ValueError, match="generator factory 'math:pi' is not callable"):
        copgen.load_generator("math:pi")
