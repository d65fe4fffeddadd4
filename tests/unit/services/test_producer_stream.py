"""CategoryStream: seeded, follows its distribution, switches exactly at drift steps."""

from __future__ import annotations

from collections import Counter

import pytest

from services.common.settings import parse_drift
from services.producer.stream import CategoryStream

# Chi-square critical values at a false-alarm rate of 0.001, by degrees of freedom.
CHI2_CRITICAL_0_001 = {1: 10.828, 2: 13.816, 3: 16.266, 4: 18.467}


def chi_square(ids: list[int], probabilities: list[float]) -> tuple[float, int]:
    counts = Counter(ids)
    n = len(ids)
    stat = sum((counts[c] - n * p) ** 2 / (n * p) for c, p in enumerate(probabilities) if p > 0)
    return stat, sum(1 for p in probabilities if p > 0) - 1


def test_same_seed_same_stream() -> None:
    a = CategoryStream([0.2, 0.3, 0.5], seed=7)
    b = CategoryStream([0.2, 0.3, 0.5], seed=7)
    assert a.next_chunk(500) == b.next_chunk(500)
    assert a.next_chunk(500) != CategoryStream([0.2, 0.3, 0.5], seed=8).next_chunk(500)


def test_follows_the_distribution() -> None:
    # Seed 0 is fixed, so this is deterministic; over random seeds it would fail 1 in 1000.
    probs = [0.0, 0.0, 0.1, 0.3, 0.6]
    stream = CategoryStream(probs, seed=0)
    ids = [i for _ in range(10) for i in stream.next_chunk(10_000)]
    assert {0, 1}.isdisjoint(ids)  # zero-probability categories never appear
    stat, df = chi_square(ids, probs)
    assert stat < CHI2_CRITICAL_0_001[df]
    assert stream.produced == 100_000


def test_record_drift_switches_exactly_at_the_step() -> None:
    stream = CategoryStream([1.0, 0.0], parse_drift("1000=0,1;2500=1,0"), seed=1)
    chunks = []
    while stream.produced < 4000:
        chunks.append(stream.next_chunk(700))
    ids = [i for chunk in chunks for i in chunk]
    assert ids[:1000] == [0] * 1000
    assert ids[1000:2500] == [1] * 1500
    assert set(ids[2500:]) == {0}
    assert stream.switches == 2
    assert stream.probabilities == [1.0, 0.0]


def test_seconds_drift_switches_at_the_first_chunk_after_the_time() -> None:
    stream = CategoryStream([1.0, 0.0], parse_drift("30s=0,1"), seed=1)
    assert set(stream.next_chunk(100, elapsed_s=29.9)) == {0}
    assert set(stream.next_chunk(100, elapsed_s=30.0)) == {1}
    assert stream.switches == 1


def test_drift_at_zero_applies_from_the_start() -> None:
    stream = CategoryStream([1.0, 0.0], parse_drift("0=0,1"))
    assert set(stream.next_chunk(10)) == {1}


def test_rejects_an_empty_chunk() -> None:
    with pytest.raises(ValueError, match="chunk size"):
        CategoryStream([0.5, 0.5]).next_chunk(0)
