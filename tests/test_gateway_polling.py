"""The gateway's busy-polling selector (gateway/polling.py) on real sockets: it returns what
a plain selector returns, honours timeouts, and polls only while waits are short."""

from __future__ import annotations

import selectors
import socket
import threading
import time

import pytest

from spendtrail.gateway.polling import BusyPollSelector


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair()
    yield ours, theirs
    ours.close()
    theirs.close()


def _selector(sock: socket.socket, window: float) -> BusyPollSelector:
    selector = BusyPollSelector(window)
    selector.register(sock, selectors.EVENT_READ, "ours")
    return selector


def _polling(pair, window: float) -> BusyPollSelector:
    """A selector whose last wait was short: it polls at the next one."""
    ours, theirs = pair
    selector = _selector(ours, window)
    theirs.send(b"x")
    selector.select(None)
    ours.recv(1)
    assert selector.polling
    return selector


def test_what_is_ready_is_returned_and_a_short_wait_turns_polling_on(pair):
    ours, theirs = pair
    selector = _selector(ours, 0.5)
    assert not selector.polling  # nothing measured yet: the first wait sleeps
    theirs.send(b"x")
    ready = selector.select(None)
    assert [(key.data, events) for key, events in ready] == [("ours", selectors.EVENT_READ)]
    assert selector.polling  # that wait was over within the window


def test_a_poll_that_catches_nothing_sleeps_out_the_timeout_and_stops_polling(pair):
    selector = _polling(pair, 0.05)
    start = time.monotonic()
    assert selector.select(0.3) == []
    assert time.monotonic() - start >= 0.3 - 0.005  # the poll's time counts in the timeout
    assert not selector.polling  # an idle gateway does not poll again


def test_a_poll_cut_short_by_a_due_timer_keeps_polling(pair):
    selector = _polling(pair, 0.5)
    assert selector.select(0.001) == []  # the loop's next timer, not a long wait
    assert selector.polling


def _ready_when_sent(selector: BusyPollSelector, sock: socket.socket, delay: float,
                     timeout: float | None) -> list:
    """What ``selector.select(timeout)`` returns while `sock` sends a byte after `delay` s."""
    sender = threading.Timer(delay, sock.send, args=(b"y",))
    sender.start()
    try:
        return [key.data for key, _ in selector.select(timeout)]
    finally:
        sender.join()


def test_polling_catches_what_arrives_during_the_poll(pair):
    selector = _polling(pair, 5.0)
    assert _ready_when_sent(selector, pair[1], 0.05, None) == ["ours"]
    assert selector.polling


def test_a_long_wait_does_not_turn_polling_on(pair):
    selector = _selector(pair[0], 0.001)
    assert _ready_when_sent(selector, pair[1], 0.1, 5.0) == ["ours"]
    assert not selector.polling


def test_a_zero_timeout_only_looks(pair):
    ours, _ = pair
    selector = _selector(ours, 0.5)
    assert selector.select(0) == []
    assert selector.select(-1) == []
    assert not selector.polling
