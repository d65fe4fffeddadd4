"""The producer's Prometheus metrics: the true distribution and the records produced."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["ProducerMetrics"]


class ProducerMetrics:
    """``gumbel_true_probability{category}`` and ``gumbel_produced_total``, on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.true_probability = Gauge(
            "gumbel_true_probability",
            "Probability of each category in the distribution the producer draws from now.",
            ["category"],
            registry=registry,
        )
        self.produced = Counter(
            "gumbel_produced",
            "Records handed to the Kafka client for the numbers topic (sent; acknowledged "
            "unless gumbel_produce_errors_total says otherwise).",
            registry=registry,
        )
        self.errors = Counter(
            "gumbel_produce_errors",
            "Records the Kafka client gave up on (not acknowledged by the broker).",
            registry=registry,
        )

    def set_distribution(self, probabilities: Sequence[float]) -> None:
        for category, p in enumerate(probabilities):
            self.true_probability.labels(category=str(category)).set(p)
