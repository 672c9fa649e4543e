"""`pipeline backfill`'s Ctrl-C handling: the first signal asks the run to stop, a second one stops it now."""

from __future__ import annotations

import os
import signal

import pytest

from pipeline.commands.backfill import _stop_requests


@pytest.mark.parametrize("first", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_asks_to_stop_and_a_second_stops_at_once(first: signal.Signals) -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with _stop_requests() as should_stop:
        assert should_stop() is False
        os.kill(os.getpid(), first)
        assert should_stop() is True
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
