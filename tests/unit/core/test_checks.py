"""One list of generic checks run over every learner variant (river's ``checks/`` style).

Each variant is something with ``learn_many(values)``, ``estimate()``, ``state_dict()`` and
``load_state_dict(state)``: every estimator's :class:`OnlineGAN`, its other paths (autograd,
MLP discriminator, ``samples_per_step``, replay), :class:`CountingEstimator` with and without
forgetting, and :class:`GraphedOnlineGAN` run eagerly on the CPU (``capture=False``; the
capture itself is checked only on a GPU, in test_gpu_step.py). Comparisons are between two
runs on this machine, so bit-identical means bit-identical here, whatever the CPU.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from gumbel_core import ESTIMATORS, CountingEstimator, OnlineGAN
from gumbel_core.cuda_graphs import GraphedOnlineGAN

K = 5
TRUTH = torch.tensor([0.0, 0.05, 0.15, 0.3, 0.5])
SWITCHED = torch.tensor([0.5, 0.3, 0.15, 0.05, 0.0])  # so that the drift response runs too


@dataclass(frozen=True)
class Variant:
    name: str
    make: Callable[[int], Any]  # seed -> a fresh learner

    def __repr__(self) -> str:
        return self.name


VARIANTS = [
    *(Variant(f"OnlineGAN[{e}]", lambda seed, e=e: OnlineGAN(K, e, seed=seed)) for e in ESTIMATORS),
    Variant("OnlineGAN[st, autograd]", lambda seed: OnlineGAN(K, seed=seed, closed_form=False)),
    Variant("OnlineGAN[st, MLP D]", lambda seed: OnlineGAN(K, seed=seed, discriminator="mlp")),
    Variant("OnlineGAN[chunked]", lambda seed: OnlineGAN(K, seed=seed, samples_per_step=50)),
    Variant(
        "OnlineGAN[replay]",
        lambda seed: OnlineGAN(K, seed=seed, replay_steps=3, replay_records=2_000),
    ),
    Variant("CountingEstimator", lambda seed: CountingEstimator(K)),
    Variant("CountingEstimator[decay]", lambda seed: CountingEstimator(K, decay=0.999)),
    *(
        Variant(
            f"GraphedOnlineGAN[{e}]",
            lambda seed, e=e: GraphedOnlineGAN(OnlineGAN(K, e, seed=seed), 128, capture=False),
        )
        for e in ("st", "soft")
    ),
]


def stream(seed: int, steps: int = 40, switch_at: int = 30) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.multinomial(TRUTH if i < switch_at else SWITCHED, 128, True, generator=gen)
        for i in range(steps)
    ]


def learn(learner: Any, batches: list[torch.Tensor]) -> None:
    for batch in batches:
        learner.learn_many(batch)


# -- the checks ---------------------------------------------------------------------------


def check_estimate_is_a_distribution(variant: Variant) -> None:
    learner = variant.make(0)
    for _ in range(2):
        est = learner.estimate()
        assert est.shape == (K,) and bool(torch.isfinite(est).all()) and bool((est >= 0).all())
        assert abs(float(est.sum()) - 1.0) < 1e-6
        learn(learner, stream(1, steps=5))


def check_same_seed_same_result(variant: Variant) -> None:
    a, b = variant.make(3), variant.make(3)
    batches = stream(2)
    learn(a, batches)
    learn(b, batches)
    assert torch.equal(a.estimate(), b.estimate())


def check_state_dict_round_trip_continues_bit_identically(variant: Variant) -> None:
    batches = stream(4, steps=60, switch_at=20)
    original = variant.make(0)
    learn(original, batches[:25])
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)  # as a checkpoint stores it
    buffer.seek(0)
    restored = variant.make(7)  # another seed: everything must come from the state
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    learn(original, batches[25:])
    learn(restored, batches[25:])
    assert torch.equal(original.estimate(), restored.estimate())
    assert_same_state(original.state_dict(), restored.state_dict())


def check_pickling_round_trip_continues_identically(variant: Variant) -> None:
    batches = stream(5)
    original = variant.make(1)
    learn(original, batches[:32])
    clone = pickle.loads(pickle.dumps(original))
    learn(original, batches[32:])
    learn(clone, batches[32:])
    assert torch.equal(original.estimate(), clone.estimate())


def check_bad_input_raises_value_error_and_changes_nothing(variant: Variant) -> None:
    learner = variant.make(0)
    learn(learner, stream(6, steps=3))
    before = learner.estimate().clone()
    bad_inputs = [
        torch.tensor([0, 1, K]),
        torch.tensor([0, -1, 2]),
        torch.tensor([0.0, 1.0]),
        torch.tensor([[0, 1], [1, 2]]),
        [0, 1, 2],
    ]
    for bad in bad_inputs:
        with pytest.raises(ValueError):
            learner.learn_many(bad)
    assert torch.equal(learner.estimate(), before)


def check_inputs_not_mutated(variant: Variant) -> None:
    learner = variant.make(0)
    batches = stream(8, steps=3)
    copies = [b.clone() for b in batches]
    learn(learner, batches)
    assert all(torch.equal(b, c) for b, c in zip(batches, copies, strict=True))


CHECKS = [
    check_estimate_is_a_distribution,
    check_same_seed_same_result,
    check_state_dict_round_trip_continues_bit_identically,
    check_pickling_round_trip_continues_identically,
    check_bad_input_raises_value_error_and_changes_nothing,
    check_inputs_not_mutated,
]


def assert_same_state(a: Any, b: Any, path: str = "state") -> None:
    """Nested dicts, lists and tensors equal exactly (the random state included)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_same_state(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{path}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    elif path.endswith("['seed']"):
        pass  # the seed the learner was built with; everything it seeded is restored
    else:
        assert a == b, path


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("variant", VARIANTS, ids=repr)
def test_check(variant: Variant, check: Callable[[Variant], None]) -> None:
    check(variant)


def test_every_learner_is_covered():
    covered = {v.name for v in VARIANTS}
    assert {f"OnlineGAN[{e}]" for e in ESTIMATORS} <= covered
    assert {"CountingEstimator", "GraphedOnlineGAN[st]", "GraphedOnlineGAN[soft]"} <= covered
