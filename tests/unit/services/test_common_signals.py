"""stop_on_signals: SIGTERM and SIGINT set the stop event, and the old handlers come back."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from services.common.signals import stop_on_signals


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_sets_stop_and_handlers_are_restored(sig: signal.Signals) -> None:
    before = signal.getsignal(sig)
    stop = threading.Event()
    with stop_on_signals(stop):
        os.kill(os.getpid(), sig)
        assert stop.wait(5)
    assert signal.getsignal(sig) is before


def test_off_the_main_thread_it_only_yields_the_event() -> None:
    stop = threading.Event()
    seen: list[bool] = []

    def body() -> None:
        with stop_on_signals(stop) as event:
            seen.append(event is stop)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [True]
