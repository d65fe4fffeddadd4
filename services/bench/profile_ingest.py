"""One actor ingesting ASCII records on a real broker, for a profiler to watch.

``py-spy record --threads --format raw -o actor.raw -- python -m services.bench.profile_ingest``
(docs/performance.md shows the breakdown of the polling and learning threads).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from services.bench.streaming import _steady_rate, _trainer_settings, bench_broker, fill_topic
from services.common.settings import KafkaSettings
from services.trainer.actor import TrainerActor


def main(n: int = 600_000) -> float:
    """Values/s of one in-process actor over ``n`` ASCII records on one partition."""
    with bench_broker() as broker, tempfile.TemporaryDirectory() as checkpoints:
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers)
        fill_topic(kafka, "profile", n, partitions=1)
        settings = _trainer_settings(kafka, "profile", Path(checkpoints), num_actors=1)
        actor = TrainerActor(settings, 0, 1)
        actor.start()
        rate = _steady_rate(lambda: actor.status().samples_seen, n, timeout_s=600)
        actor.stop(final_checkpoint=False)
    print(f"{rate:,.0f} values/s")
    return rate


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 600_000)
