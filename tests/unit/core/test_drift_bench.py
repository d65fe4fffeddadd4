"""The drift bench's own parts: what "settled" means, and the detector-restarted counter."""

from __future__ import annotations

import torch

from services.bench.drift import SETTLE_RECORDS, TOLERANCE, DetectorCounter, Follow


def test_settled_is_the_start_of_the_first_run_in_tolerance_that_lasts():
    follow = Follow()
    follow.update(256, 0.2)
    follow.update(512, TOLERANCE / 2)  # the first crossing ...
    follow.update(768, 0.1)  # ... then back up: the overshoot
    records = 1024
    while follow.settled is None:
        follow.update(records, TOLERANCE / 2)
        records += 256
    assert follow.figures() == {"settled": 1024, "first": 512, "overshoot": 0.1}
    assert records - 256 - 1024 >= SETTLE_RECORDS


def test_a_learner_that_never_stays_in_tolerance_never_settles():
    follow = Follow()
    for i in range(1, 1_000):
        follow.update(256 * i, 0.01 if i % 50 else 0.2)  # dips out every 12,800 records
    assert follow.settled is None and follow.first == 256 and follow.overshoot == 0.2


def test_the_detector_counter_restarts_with_the_batch_that_fired():
    gen = torch.Generator().manual_seed(0)
    before, after = torch.tensor([0.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 0.0])
    counter = DetectorCounter(3)
    for _ in range(100):
        counter.learn_many(torch.multinomial(before, 256, True, generator=gen))
    while counter.detector.detections == 0:
        counter.learn_many(torch.multinomial(after, 256, True, generator=gen))
    assert counter.estimate().tolist() == [1.0, 0.0, 0.0]
