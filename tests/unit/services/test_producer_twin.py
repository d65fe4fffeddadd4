"""The synthetic twin (``producer --from-model``) against a fake estimates topic."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from services.common.estimates_follower import EstimateFollower
from services.common.settings import ProducerServiceSettings
from services.producer.service import run
from services.producer.twin import NewestEstimate, TwinStream
from tests.unit.services.monitor_fakes import FakeConsumer, make_estimate
from tests.unit.services.test_producer_service import FakeProducer

# Chi-square critical value at a false-alarm rate of 0.001 with 2 degrees of freedom.
CHI2_2_AT_0_001 = 13.816


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def estimate_bytes(**fields: object) -> bytes:
    return make_estimate(**fields).to_bytes()


def followed(consumer: FakeConsumer, model_id: str = "m") -> tuple[EstimateFollower,
                                                                    NewestEstimate]:
    newest = NewestEstimate(model_id)
    follower = EstimateFollower(consumer, "estimates", newest)
    follower.start()
    follower.poll_once()
    return follower, newest


def test_the_newest_of_the_model_is_kept_and_the_rest_passed_over() -> None:
    newest = NewestEstimate("m")
    assert newest.offer(estimate_bytes(model_id="m", timestamp=10.0, step=5)) is not None
    assert newest.offer(estimate_bytes(model_id="m", timestamp=9.0, step=4)) is None  # older
    assert newest.offer(estimate_bytes(model_id="other", timestamp=11.0)) is None
    assert newest.offer(b"{not json") is None and newest.invalid == 1
    changed_k = estimate_bytes(model_id="m", timestamp=12.0, num_categories=2,
                               probabilities=[0.5, 0.5], baseline_probabilities=[0.5, 0.5])
    assert newest.offer(changed_k) is None and newest.other_k == 1
    assert newest.estimate is not None and newest.estimate.step == 5


def test_the_twin_draws_from_the_estimate_with_gumbel_max_and_never_a_zero() -> None:
    probs = [0.0, 0.3, 0.7]
    consumer = FakeConsumer("estimates", {0: [estimate_bytes(
        model_id="m", probabilities=probs, baseline_probabilities=probs)]})
    stream = TwinStream(*followed(consumer), seed=7)
    n = 50_000
    counts = Counter(stream.next_chunk(n))
    assert 0 not in counts and stream.produced == n
    # Seed 7 is fixed, so this is deterministic; over random seeds it fails 1 in 1000.
    stat = sum((counts[c] - n * p) ** 2 / (n * p) for c, p in enumerate(probs) if p > 0)
    stat += (n - sum(counts.values())) ** 2  # nothing outside 0..K-1
    assert stat < CHI2_2_AT_0_001


def test_the_twin_follows_a_newer_estimate_once_its_poll_interval_passed() -> None:
    consumer = FakeConsumer("estimates", {0: [estimate_bytes(
        model_id="m", timestamp=1.0, probabilities=[1.0, 0.0, 0.0],
        baseline_probabilities=[1.0, 0.0, 0.0])]})
    clock = Clock()
    stream = TwinStream(*followed(consumer), poll_interval_s=0.5, clock=clock)
    assert set(stream.next_chunk(100)) == {0}
    consumer.log[0].append(estimate_bytes(model_id="m", timestamp=2.0, step=11,
                                          probabilities=[0.0, 0.0, 1.0],
                                          baseline_probabilities=[0.0, 0.0, 1.0]))
    clock.now = 0.4
    assert set(stream.next_chunk(100)) == {0} and stream.switches == 0  # not polled yet
    clock.now = 0.6
    assert set(stream.next_chunk(100)) == {2} and stream.switches == 1
    assert stream.probabilities == [0.0, 0.0, 1.0] and stream.following.step == 11


def settings(**producer: object) -> ProducerServiceSettings:
    return ProducerServiceSettings(
        producer={"rate": 0, "metrics_port": 0, "from_model": "m", **producer})


def test_run_writes_count_records_drawn_from_the_model_and_exports_it_as_the_truth() -> None:
    consumer = FakeConsumer("estimates", {0: [estimate_bytes(model_id="other"),
                                              estimate_bytes(model_id="m")]})
    fake, registry = FakeProducer(), CollectorRegistry()
    assert run(settings(count=2_000), producer=fake, consumer=consumer, registry=registry,
               serve_metrics=False) == 0
    assert len(fake.sent) == 2_000 and {v for _, v in fake.sent} <= {b"0", b"1", b"2"}
    truth = [registry.get_sample_value("gumbel_true_probability", {"category": str(c)})
             for c in range(3)]
    assert truth == [0.2, 0.3, 0.5]  # make_estimate's probabilities


def test_run_waits_for_the_first_estimate_and_a_stop_ends_the_wait() -> None:
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    fake = FakeProducer()
    assert run(settings(count=10), producer=fake, consumer=FakeConsumer("estimates", {0: []}),
               registry=CollectorRegistry(), stop=stop, serve_metrics=False) == 0
    assert fake.sent == []


def test_names_that_do_not_match_the_models_categories_stop_it_with_status_2(caplog) -> None:
    consumer = FakeConsumer("estimates", {0: [estimate_bytes(model_id="m")]})  # K = 3
    config = ProducerServiceSettings(producer={"rate": 0, "from_model": "m"},
                                     events={"format": "string", "categories": ["a", "b"]})
    assert run(config, producer=FakeProducer(), consumer=consumer,
               registry=CollectorRegistry(), serve_metrics=False) == 2
    assert "events.categories" in caplog.text


@pytest.mark.parametrize("given", [{"probabilities": [0.5, 0.5]},
                                   {"drift": "10=0.1,0.2,0.3,0.2,0.2"}])
def test_a_distribution_of_its_own_is_refused_with_from_model(given: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="from_model"):
        settings(**given)
