"""One ingest actor and the learner ingesting records on a real broker, in one process for a
profiler to watch.

``py-spy record --threads --format raw -o actor.raw -- python -m services.bench.profile_ingest``
profiles ASCII records (one value each); ``... profile_ingest --packed`` profiles the
``ingest_packed`` bench's records instead: 1,024 u8 values a record, 16 records a poll, every
value learned (docs/performance.md shows the breakdown of the polling and learning threads).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from services.bench.streaming import _steady_rate, _trainer_settings, bench_broker, fill_topic
from services.common.settings import KafkaSettings
from services.trainer.local import LocalTrainer

PACKED_VALUES_PER_RECORD = 1024
PACKED_MAX_BATCH = 16  # records a poll, as bench_ingest polls packed records


def main(n: int = 600_000, values_per_record: int = 1) -> float:
    """Values/s of one in-process actor over ``n`` values on one partition: ASCII records,
    or packed ones of ``values_per_record`` values each (polled 16 records at a time)."""
    trainer = {} if values_per_record == 1 else {"max_batch": PACKED_MAX_BATCH}
    with bench_broker() as broker, tempfile.TemporaryDirectory() as checkpoints:
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers)
        fill_topic(kafka, "profile", n, partitions=1, values_per_record=values_per_record)
        settings = _trainer_settings(kafka, "profile", Path(checkpoints), num_actors=1,
                                     **trainer)
        actor = LocalTrainer(settings, 1).start()
        rate = _steady_rate(lambda: actor.status().samples_seen, n, timeout_s=600)
        actor.stop(final_checkpoint=False)
    print(f"{rate:,.0f} values/s")
    return rate


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, nargs="?",
                        help="values to learn (default 600,000 ASCII, 4,000,000 packed)")
    parser.add_argument("--packed", action="store_true",
                        help=f"packed records of {PACKED_VALUES_PER_RECORD} u8 values each "
                             "(the ingest_packed bench)")
    args = parser.parse_args()
    if args.packed:
        main(args.n or 4_000_000, PACKED_VALUES_PER_RECORD)
    else:
        main(args.n or 600_000)
