"""Benchmarks on a real Apache Kafka broker the benchmark starts: produce, ingest, scale.

Each figure is ours against the best the same parts can do, in the same run:
- ``produce``: the producer service's loop vs a bare ``KafkaProducer.send`` loop over
  precomputed values, both with the same client settings (idempotent, acks=all).
- ``ingest``: one trainer actor learning from N records vs a bare consumer draining them.
- ``scale``: two trainer actors (Ray) vs one on a 2-partition topic.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from services.bench.results import BenchResult
from services.common.settings import KafkaSettings, TrainerServiceSettings

__all__ = ["bench_broker", "bench_produce", "bench_ingest", "bench_scale"]

log = logging.getLogger(__name__)

PROBABILITIES = [0.0, 0.0, 0.1, 0.3, 0.6]


@contextmanager
def bench_broker() -> Iterator[Any]:
    """Apache Kafka (from the pinned jars) in a temporary folder, for one benchmark run."""
    from services.brokers import start_apache_kafka

    with tempfile.TemporaryDirectory(prefix="gumbel-bench-") as workdir:
        broker = start_apache_kafka(Path(workdir), heap="1g")
        try:
            yield broker
        finally:
            broker.stop()


def _create_topic(kafka: KafkaSettings, topic: str, partitions: int) -> None:
    from kafka.admin import NewTopic

    from services.common.kafka import make_admin

    admin = make_admin(kafka)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()


def _values(n: int, seed: int = 0) -> list[bytes]:
    import random

    rng = random.Random(seed)
    ids = rng.choices(range(len(PROBABILITIES)), weights=PROBABILITIES, k=n)
    encoded = [str(c).encode() for c in range(len(PROBABILITIES))]
    return [encoded[c] for c in ids]


def fill_topic(
    kafka: KafkaSettings, topic: str, n: int, partitions: int, values_per_record: int = 1
) -> None:
    """Write ``n`` values to a new topic (round-robin over partitions): ASCII records, or
    packed ones of ``values_per_record`` values each."""
    from services.common.codec import encode_packed
    from services.common.kafka import make_producer

    _create_topic(kafka, topic, partitions)
    producer = make_producer(kafka)
    values = _values(n)
    if values_per_record == 1:
        for i, value in enumerate(values):
            producer.send(topic, value, partition=i % partitions)
    else:
        ids = [int(v) for v in values]
        for i, start in enumerate(range(0, n, values_per_record)):
            value, headers = encode_packed(ids[start : start + values_per_record], 5)
            producer.send(topic, value, headers=headers, partition=i % partitions)
    producer.flush()
    producer.close()


def _median_pairs(run_a: Callable[[int], float], run_b: Callable[[int], float], repeats: int):
    """Run A and B alternately (A B A B ...): a drifting machine affects both alike."""
    a, b = [], []
    for i in range(repeats):
        a.append(run_a(i))
        b.append(run_b(i))
    return statistics.median(a), statistics.median(b)


# -- produce -------------------------------------------------------------------------------


def bench_produce(kafka: KafkaSettings, n: int, repeats: int = 2) -> BenchResult:
    from prometheus_client import CollectorRegistry

    from services.common.kafka import make_producer
    from services.producer.metrics import ProducerMetrics
    from services.producer.pacing import Pacer
    from services.producer.service import produce
    from services.producer.stream import CategoryStream

    values = _values(n)

    def bare(i: int) -> float:
        topic = f"produce-bare-{i}"
        _create_topic(kafka, topic, 4)
        producer = make_producer(kafka)
        start = time.perf_counter()
        send = producer.send
        for value in values:
            send(topic, value)
        producer.flush()
        elapsed = time.perf_counter() - start
        producer.close()
        return n / elapsed

    def service(i: int) -> float:
        topic = f"produce-service-{i}"
        _create_topic(kafka, topic, 4)
        producer = make_producer(kafka)
        stream = CategoryStream(PROBABILITIES, [], seed=i)
        metrics = ProducerMetrics(CollectorRegistry())
        start = time.perf_counter()
        result = produce(producer, topic, stream, Pacer(0), metrics, count=n)
        producer.flush()
        elapsed = time.perf_counter() - start
        producer.close()
        if result.sent != n or result.errors:
            raise RuntimeError(f"producer sent {result.sent}/{n}, {result.errors} errors")
        return n / elapsed

    ours, baseline = _median_pairs(service, bare, repeats)
    return BenchResult(
        "produce",
        ours,
        baseline,
        "records/s",
        "gumbel-stream bench produce",
        f"{n:,} records, 4 partitions, acks=all idempotent, median of {repeats}",
    )


# -- ingest --------------------------------------------------------------------------------


def _trainer_settings(kafka: KafkaSettings, topic: str, checkpoint_dir: Path, **trainer: Any):
    return TrainerServiceSettings(
        kafka={
            **kafka.model_dump(exclude_none=True),
            "numbers_topic": topic,
            "sasl_password": None,
        },
        trainer={
            "checkpoint_dir": checkpoint_dir,
            "checkpoint_interval_s": 3600.0,
            "group_id": f"bench-{topic}",
            **trainer,
        },
    )


def _steady_rate(count: Callable[[], int], n: int, timeout_s: float, every_s: float = 0.2) -> float:
    """Records/s from the first record counted to the ``n``-th: start-up costs excluded.

    ``count`` is read every ``every_s``: often enough for the timing, rarely enough not to
    perturb what it measures.
    """
    deadline = time.monotonic() + timeout_s
    first_count, first_time = 0, 0.0
    while True:
        seen, now = count(), time.perf_counter()
        if seen and not first_count:
            first_count, first_time = seen, now
        if seen >= n:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"learned {seen}/{n} records in {timeout_s:g}s")
        time.sleep(every_s)
    if seen <= first_count:
        raise RuntimeError("all records arrived within one sample: use more records")
    return (seen - first_count) / (now - first_time)


def bench_ingest(
    kafka: KafkaSettings,
    n: int,
    repeats: int = 2,
    values_per_record: int = 1,
    backpressure: str = "learn_all",
) -> BenchResult:
    """Values/s of one trainer actor vs a bare consumer draining the same topic."""
    import torch

    from gumbel_core import total_variation
    from services.common.kafka import make_consumer, topic_partitions
    from services.trainer.local import LocalTrainer

    topic = "ingest" if values_per_record == 1 else f"ingest-packed-{backpressure}"
    fill_topic(kafka, topic, n, partitions=1, values_per_record=values_per_record)

    # Records per poll, the same for both sides: packed, 16 records (16k values) per poll.
    max_records = 4096 if values_per_record == 1 else 16

    def values_in(records: list[Any]) -> int:
        if values_per_record == 1:
            return len(records)
        return sum(len(r.value) for r in records)  # u8 packing: one byte per value

    def bare(i: int) -> float:
        consumer = make_consumer(kafka)
        consumer.assign(topic_partitions(consumer, topic))
        consumer.seek_to_beginning()
        seen = first_seen = 0
        first_time = 0.0
        while seen < n:
            for records in consumer.poll(timeout_ms=200, max_records=max_records).values():
                seen += values_in(records)
            if seen and not first_seen:  # timed from the first records, like the actor
                first_seen, first_time = seen, time.perf_counter()
        elapsed = time.perf_counter() - first_time
        consumer.close()
        return (seen - first_seen) / elapsed

    def actor(i: int) -> float:
        with tempfile.TemporaryDirectory() as checkpoints:
            settings = _trainer_settings(
                kafka,
                topic,
                Path(checkpoints),
                num_actors=1,
                max_batch=max_records,
                backpressure=backpressure,
                group_id=f"bench-{topic}-{i}",  # a new group: nothing committed by run i-1
            )
            trainer = LocalTrainer(settings, 1).start()
            rate = _steady_rate(lambda: trainer.status().samples_seen, n, timeout_s=600)
            status = trainer.stop(final_checkpoint=False)
        truth = torch.tensor(PROBABILITIES, dtype=torch.float64)
        tvs.append(float(total_variation(torch.tensor(status.estimate, dtype=torch.float64),
                                         truth)))
        steps.append(status.steps)
        return rate

    tvs: list[float] = []  # each run's GAN estimate against the truth, after all n values
    steps: list[int] = []
    ours, baseline = _median_pairs(actor, bare, repeats)
    if values_per_record == 1:
        return BenchResult(
            "ingest",
            ours,
            baseline,
            "values/s",
            "gumbel-stream bench ingest",
            f"{n:,} ASCII records (one value each), 1 partition, 1 actor (in-process) vs bare "
            f"consumer, steady state (first record to last), median of {repeats}",
        )
    how = (
        "learning every value"
        if backpressure == "learn_all"
        else "backpressure=sample (behind, the GAN learns 8 steps of 256 a round and counts "
        "the rest)"
    )
    return BenchResult(
        f"ingest_packed{'' if backpressure == 'learn_all' else '_sample'}",
        ours,
        baseline,
        "values/s",
        "gumbel-stream bench ingest",
        f"{n:,} values packed {values_per_record} per record (u8), 1 partition, 1 actor "
        f"{how} vs bare consumer, steady state, median of {repeats}; GAN TV to the truth "
        f"after all of them {max(tvs):.4f} (worst run), {statistics.median(steps):,.0f} steps",
    )


# -- scale ---------------------------------------------------------------------------------


def _ray_actors_rate(kafka: KafkaSettings, topic: str, n: int, num_actors: int, run: int = 0
                     ) -> tuple[float, int]:
    """Records/s of the learner fed by ``num_actors`` Ray ingest actors learning ``n`` records
    from the topic's start (run ``run``: a consumer group of its own); how many nodes ran the
    ingest actors."""
    import ray

    from services.trainer.service import remote_ingest_class, remote_learner_class

    with tempfile.TemporaryDirectory() as checkpoints:
        settings = _trainer_settings(
            kafka, topic, Path(checkpoints), num_actors=num_actors, model_id=f"scale{num_actors}",
            group_id=f"bench-{topic}-{run}",
        )
        learner = remote_learner_class(settings).remote(settings, autostart=True)
        ray.get(learner.status.remote())
        ingest_cls = remote_ingest_class(settings)
        actors = [ingest_cls.remote(settings, i, num_actors, learner) for i in range(num_actors)]
        ray.get([a.start.remote() for a in actors])
        rate = _steady_rate(lambda: ray.get(learner.status.remote()).samples_seen, n,
                            timeout_s=600)
        nodes = len({s.node_id for s in ray.get([a.status.remote() for a in actors])})
        ray.get([a.pause.remote() for a in actors])
        ray.get(learner.stop.remote(final_checkpoint=False))
        for a in [*actors, learner]:
            ray.kill(a)
    return rate, nodes


def bench_ingest_partitions(kafka: KafkaSettings, n: int, widths: tuple[int, ...] = (2, 32, 128),
                            repeats: int = 3) -> list[BenchResult]:
    """Records/s the learner learns from ``n`` ASCII records fed by 2 Ray ingest actors, on
    topics of each width: one result per width past the first, against the first.

    The widths run in rounds (2, 32, 128, 2, 32, 128, ...) and each reports its median: one
    run of a few seconds on a 2-core machine swings by a third with whatever else runs."""
    from services.trainer.service import init_ray

    started = init_ray(None, num_cpus=3)  # the learner and 2 ingest actors
    try:
        rates: dict[int, list[float]] = {width: [] for width in widths}
        for width in widths:
            fill_topic(kafka, f"partitions-{width}", n, partitions=width)
        for run in range(repeats):
            for width in widths:
                rate, _ = _ray_actors_rate(kafka, f"partitions-{width}", n, 2, run)
                rates[width].append(rate)
    finally:
        if started:
            import ray

            ray.shutdown()
    first = widths[0]
    return [
        BenchResult(
            f"ingest_partitions_{width}", statistics.median(rates[width]),
            statistics.median(rates[first]), "records/s",
            "gumbel-stream bench ingest_partitions",
            f"{n:,} ASCII records learned by the one learner fed by 2 Ray ingest actors: "
            f"{width} partitions vs {first}, median of {repeats} alternating runs",
        )
        for width in widths[1:]
    ]


def bench_scale(kafka: KafkaSettings, n: int) -> BenchResult:
    from services.trainer.service import init_ray

    topic = "scale"
    fill_topic(kafka, topic, n, partitions=2)
    started = init_ray(None, num_cpus=3)  # the learner and 2 ingest actors
    try:
        one, _ = _ray_actors_rate(kafka, topic, n, 1)
        two, nodes = _ray_actors_rate(kafka, topic, n, 2)
    finally:
        if started:
            import ray

            ray.shutdown()
    return BenchResult(
        "scale",
        two,
        one,
        "records/s",
        "gumbel-stream bench scale",
        f"{n:,} records, 2 partitions: the learner fed by 2 Ray ingest actors (on {nodes} Ray "
        f"node{'s' * (nodes > 1)}) vs by 1; RAY_ADDRESS joins a cluster",
    )
