"""The ``Examples`` sections of gumbel_core's docstrings are runnable doctests."""

import doctest
import importlib

import pytest
import torch

import gumbel_core

MODULES = [
    "gumbel_core.noise",
    "gumbel_core.sampling",
    "gumbel_core.softmax",
    "gumbel_core.estimators",
    "gumbel_core.schedules",
    "gumbel_core.gan",
    "gumbel_core.online",
    "gumbel_core.counting",
    "gumbel_core.drift",
    "gumbel_core.distances",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    globs = {"torch": torch, **{n: getattr(gumbel_core, n) for n in gumbel_core.__all__}}
    result = doctest.testmod(module, extraglobs=globs, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0


def test_public_api_is_explicit():
    for name in gumbel_core.__all__:
        assert hasattr(gumbel_core, name)
    for name in (
        "gumbel_softmax",
        "gumbel_max",
        "OnlineGAN",
        "CountingEstimator",
        "total_variation",
        "kl_divergence",
    ):
        assert name in gumbel_core.__all__
