"""Bytes on disk, produce and read rate of each Kafka compression codec on ``numbers`` records.

For each codec kafka-python can use here (``none``, ``gzip``, ``snappy``, ``lz4``, ``zstd``)
and each wire format (ASCII, one value per record; packed ``u8``, ``values_per_record`` values
per record), the producer service's own loop (``services.producer.service.produce``, through
``make_producer``) writes ``--values`` values drawn from the Compose default distribution
to a one-partition topic of a real Apache Kafka broker. The bytes on disk are the partition's
size as the broker reports it (DescribeLogDirs, what ``kafka-log-dirs.sh`` prints); the read
rate is a plain consumer (``make_consumer``) draining the topic.

    python -m services.bench.compression                 # starts Apache Kafka from the jars
    python -m services.bench.compression --bootstrap-servers host:9092 --values 1000000 --json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from services.bench.streaming import PROBABILITIES, _create_topic, bench_broker
from services.common.settings import COMPRESSION_TYPES, KafkaSettings, codec_available

__all__ = ["CompressionResult", "available_codecs", "topic_bytes", "measure", "main"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompressionResult:
    codec: str
    format: str  # "ascii" or "packed-u8/<values per record>"
    values: int
    records: int
    bytes_on_disk: int
    produce_values_per_s: float
    read_values_per_s: float

    @property
    def bytes_per_million_values(self) -> float:
        return self.bytes_on_disk * 1_000_000 / self.values


def available_codecs() -> list[str]:
    """The codecs kafka-python can compress with in this environment, ``none`` first."""
    return [codec for codec in COMPRESSION_TYPES if codec_available(codec)]


def topic_bytes(kafka: KafkaSettings, topic: str) -> int:
    """The topic's size on the brokers' disks (all partitions, all log dirs), as the brokers
    report it (DescribeLogDirs)."""
    from services.common.kafka import make_admin

    admin = make_admin(kafka)
    try:
        answers = admin.describe_log_dirs([topic])
    finally:
        admin.close()
    total = 0
    for answer in answers if isinstance(answers, list) else [answers]:
        for log_dir in _field(answer, "results", "log_dirs"):
            for topic_entry in _field(log_dir, "topics"):
                if _field(topic_entry, "name", "topic") != topic:
                    continue
                for partition in _field(topic_entry, "partitions"):
                    total += int(_field(partition, "partition_size", "size"))
    return total


def _field(obj: Any, *names: str) -> Any:
    """A field of a kafka-python response, as an object attribute or a dict key."""
    for name in names:
        if isinstance(obj, dict) and name in obj:
            return obj[name]
        if hasattr(obj, name):
            return getattr(obj, name)
    raise KeyError(f"none of {names} in {type(obj).__name__}: {obj!r}"[:500])


def _read_all(kafka: KafkaSettings, topic: str, records: int) -> float:
    """Seconds a plain consumer takes to read ``records`` records of partition 0."""
    from kafka import TopicPartition

    from services.common.kafka import make_consumer

    consumer = make_consumer(kafka, client_id="gumbel-bench-compression")
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    seen = 0
    start = time.perf_counter()
    deadline = time.monotonic() + 300
    while seen < records:
        if time.monotonic() > deadline:
            raise RuntimeError(f"read {seen}/{records} records of {topic} in 300 s")
        for batch in consumer.poll(timeout_ms=500, max_records=100_000).values():
            seen += len(batch)
    elapsed = time.perf_counter() - start
    consumer.close()
    return elapsed


def measure(
    kafka: KafkaSettings, codec: str, values: int, values_per_record: int | None = None,
    seed: int = 0,
) -> CompressionResult:
    """Produce ``values`` values with ``codec`` to a new topic; its size and rates."""
    from prometheus_client import CollectorRegistry

    from services.common.kafka import make_producer
    from services.producer.metrics import ProducerMetrics
    from services.producer.pacing import Pacer
    from services.producer.service import produce
    from services.producer.stream import CategoryStream

    fmt = "ascii" if values_per_record is None else f"packed-u8/{values_per_record}"
    topic = f"compression-{codec}-{fmt.replace('/', '-')}-{uuid.uuid4().hex[:6]}"
    _create_topic(kafka, topic, 1)
    settings = kafka.model_copy(update={"compression_type": codec})
    producer = make_producer(settings, client_id="gumbel-bench-compression")
    start = time.perf_counter()
    result = produce(producer, topic, CategoryStream(PROBABILITIES, [], seed), Pacer(0),
                     ProducerMetrics(CollectorRegistry()), count=values,
                     values_per_record=values_per_record)
    producer.flush()
    produce_s = time.perf_counter() - start
    producer.close()
    if result.sent != values or result.errors:
        raise RuntimeError(f"{codec}/{fmt}: sent {result.sent}/{values}, {result.errors} errors")
    records = values if values_per_record is None else -(-values // values_per_record)
    read_s = _read_all(kafka, topic, records)
    return CompressionResult(codec, fmt, values, records, topic_bytes(kafka, topic),
                             values / produce_s, values / read_s)


def markdown(results: list[CompressionResult]) -> str:
    """The table of docs/performance.md: bytes per million values, and the ratio to none."""
    none = {r.format: r.bytes_on_disk for r in results if r.codec == "none"}
    lines = [
        "| format | codec | bytes on disk per 1M values | vs none | produce values/s "
        "| read values/s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        ratio = f"{r.bytes_on_disk / none[r.format]:.3f}" if r.format in none else "-"
        lines.append(
            f"| {r.format} | {r.codec} | {r.bytes_per_million_values:,.0f} | {ratio} "
            f"| {r.produce_values_per_s:,.0f} | {r.read_values_per_s:,.0f} |")
    return "\n".join(lines)


def run(kafka: KafkaSettings, values: int, values_per_record: int,
        codecs: list[str]) -> list[CompressionResult]:
    results = []
    for fmt in (None, values_per_record):
        for codec in codecs:
            result = measure(kafka, codec, values, fmt)
            log.info("%s %s: %d bytes", result.format, codec, result.bytes_on_disk)
            results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.bench.compression",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap-servers", help="an existing broker (default: start "
                        "Apache Kafka from the pinned jars)")
    parser.add_argument("--values", type=int, default=1_000_000)
    parser.add_argument("--values-per-record", type=int, default=1024,
                        help="packed records (the producer's default)")
    parser.add_argument("--codecs", default=",".join(available_codecs()))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    missing = [c for c in codecs if not codec_available(c)]
    if missing:
        parser.error(f"--codecs: no kafka-python codec library for {', '.join(missing)} "
                     "(pip install lz4 zstandard python-snappy)")
    if args.bootstrap_servers:
        results = run(KafkaSettings(bootstrap_servers=args.bootstrap_servers), args.values,
                      args.values_per_record, codecs)
    else:
        with bench_broker() as broker:
            results = run(KafkaSettings(bootstrap_servers=broker.bootstrap_servers),
                          args.values, args.values_per_record, codecs)
    if args.json:
        print(json.dumps([{**asdict(r), "bytes_per_million_values": r.bytes_per_million_values}
                          for r in results], indent=2))
    else:
        print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
