"""The per-turn budget on a real epoll reactor: readers are level-triggered, so nothing queued is stranded.

The Receiver stops after a bounded batch and relies on two things: the
reactor calls a reader again while its socket is still readable (epoll
without EPOLLET), and a zero-delay call brings the packets it had already
read. Both are checked here against Twisted's ``EPollReactor`` and a real
datagram socket pair (no root needed).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator

import pytest
from twisted.internet.epollreactor import EPollReactor

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.config.model import Limits
from mcproxy_pmip.kernel.igmp_socket import ReceivedIgmp
from mcproxy_pmip.proxy.reader import SocketReader
from mcproxy_pmip.proxy.receiver import Receiver
from mcproxy_pmip.wire import igmp
from mcproxy_pmip.wire.records import GroupRecord, RecordType

MAX_ITERATIONS = 200


@pytest.fixture
def reactor(pair) -> Iterator[EPollReactor]:
    """A fresh epoll reactor, its readers removed before ``pair`` closes."""
    reactor = EPollReactor()
    yield reactor
    reactor.removeAll()
    reactor.waker.connectionLost(None)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    sender, receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.setblocking(False)
    yield sender, receiver
    sender.close()
    receiver.close()


def iterate_until(reactor: EPollReactor, done, what: str) -> int:
    """Run reactor iterations until ``done()``; how many it took."""
    for iteration in range(MAX_ITERATIONS):
        if done():
            return iteration
        reactor.iterate(0.05)
    raise AssertionError(f"{what}: not done after {MAX_ITERATIONS} reactor iterations")


def test_epoll_calls_a_reader_again_while_its_socket_stays_readable(reactor, pair) -> None:
    sender, receiving = pair
    for n in range(5):
        sender.send(bytes([n]))
    got: list[bytes] = []
    reactor.addReader(SocketReader("one-per-call", receiving.fileno, lambda: got.append(receiving.recv(16))))
    iterate_until(reactor, lambda: len(got) == 5, "five datagrams, one per doRead")
    assert got == [bytes([n]) for n in range(5)]


class DatagramIgmp:
    """A packet socket stand-in over a datagram socket: each datagram is one IGMP payload on ifindex 3."""

    def __init__(self, sock: socket.socket, per_read: int) -> None:
        self.sock = sock
        self.per_read = per_read
        self.reads = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def read_packets(self) -> list[ReceivedIgmp]:
        self.reads += 1
        packets = []
        for _ in range(self.per_read):
            try:
                payload = self.sock.recv(2048)
            except BlockingIOError:
                break
            packets.append(ReceivedIgmp(3, ipaddress.IPv4Address("10.0.3.9"), ipaddress.IPv4Address("224.0.0.22"),
                                        1, True, payload))
        return packets


def test_a_receiver_over_budget_gets_everything_through_later_turns(reactor, pair) -> None:
    sender, receiving = pair
    count = 50
    for index in range(count):
        record = GroupRecord(RecordType.CHANGE_TO_EXCLUDE, ipaddress.IPv4Address(0xEF020000 + index))
        sender.send(igmp.build(igmp.IgmpV3Report((record,))))
    source = DatagramIgmp(receiving, per_read=7)
    delivered = []
    turns = []
    receiver = Receiver(source, None, delivered.append, lambda address: False, clock=reactor,
                        limits_for=lambda ifindex: Limits(host_report_burst=count, report_burst=count),
                        turn_packets=3)
    real_turn = receiver._turn
    reactor.addReader(SocketReader("igmp", source.fileno, receiver.read_igmp))

    def counted_turn(lane) -> None:
        before = len(delivered)
        real_turn(lane)
        turns.append(len(delivered) - before)
    receiver._turn = counted_turn
    iterate_until(reactor, lambda: len(delivered) == count, "every report delivered")
    assert [int(r.records[0].group) - 0xEF020000 for r in delivered] == list(range(count)), "in order"
    assert max(turns) == 3, "no turn handled more than its budget"
    assert receiver.pending(Family.IPV4) == 0
    assert source.reads > count // 7, "the socket was read again after each queue emptied"
