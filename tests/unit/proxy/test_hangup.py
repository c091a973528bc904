"""HangupLatch: SIGHUP held before the reactor runs, reloads serialised and coalesced."""

from __future__ import annotations

import signal

import pytest

from mcproxy_pmip.proxy.hangup import HangupLatch


class Turns:
    """``callFromThread`` of a reactor whose turns the test runs one at a time."""

    def __init__(self) -> None:
        self.queued: list = []

    def __call__(self, function, *args) -> None:
        self.queued.append((function, args))

    def run(self) -> None:
        while self.queued:
            function, args = self.queued.pop(0)
            function(*args)


@pytest.fixture
def latch():
    made = HangupLatch()
    made.install()
    yield made
    made.uninstall()


def test_a_sighup_before_connect_is_held_then_delivered_once(latch) -> None:
    signal.raise_signal(signal.SIGHUP)
    signal.raise_signal(signal.SIGHUP)
    assert latch.pending and latch.received == 2
    reloads = []
    turns = Turns()
    latch.connect(lambda: reloads.append(1), turns)
    assert reloads == [], "the reload waits for a reactor turn"
    turns.run()
    assert reloads == [1]
    assert not latch.pending


def test_a_burst_coalesces_into_one_reload(latch) -> None:
    reloads = []
    turns = Turns()
    latch.connect(lambda: reloads.append(1), turns)
    for _ in range(20):
        signal.raise_signal(signal.SIGHUP)
    assert len(turns.queued) == 1
    turns.run()
    assert reloads == [1] and latch.coalesced == 19


def test_a_sighup_during_a_reload_runs_one_more_after_it_never_inside(latch) -> None:
    turns = Turns()
    runs = []

    def reload():
        runs.append("start")
        if len(runs) == 1:
            signal.raise_signal(signal.SIGHUP)
            signal.raise_signal(signal.SIGHUP)
        runs.append("end")
    latch.connect(reload, turns)
    signal.raise_signal(signal.SIGHUP)
    turns.run()
    assert runs == ["start", "end", "start", "end"], "reloads interleaved or the late SIGHUP was lost"


def test_after_disconnect_sighups_are_only_counted(latch) -> None:
    turns = Turns()
    reloads = []
    latch.connect(lambda: reloads.append(1), turns)
    latch.disconnect()
    signal.raise_signal(signal.SIGHUP)
    turns.run()
    assert reloads == [] and latch.received == 1


def test_uninstall_gives_back_the_previous_handler() -> None:
    before = signal.getsignal(signal.SIGHUP)
    made = HangupLatch()
    made.install()
    assert signal.getsignal(signal.SIGHUP) == made._on_signal
    made.uninstall()
    assert signal.getsignal(signal.SIGHUP) == before
