"""The MRT plane's source ageing: one unreadable counter spares its entry, not the sweep."""

from __future__ import annotations

import errno
import ipaddress

from mcproxy_pmip.errors import KernelError
from mcproxy_pmip.kernel import counters

GROUP = ipaddress.ip_address("232.1.1.1")


def test_a_failed_counter_read_affects_that_entry_only():
    keys = [(ipaddress.ip_address(f"10.0.0.{n}"), GROUP) for n in range(1, 5)]
    broken = keys[1]

    def read(source, group):
        if (source, group) == broken:
            raise KernelError("SIOCGETSGCNT", errno.EADDRNOTAVAIL, "no such entry")
        return counters.SgCounters(0, 0, 0)

    ageing = counters.SourceAgeing(read)
    assert ageing.sweep(0.0, keys, idle_interval=10.0) == []
    assert ageing.sweep(10.0, keys, idle_interval=10.0) == [keys[0], keys[2], keys[3]]
    assert ageing.read_failures == 2
    assert ageing.last_active_at(*broken) == 0.0, "the unreadable entry was forgotten"


def test_a_sweep_in_steps_reads_at_most_the_budget_per_step_and_ends_like_a_whole_sweep():
    keys = [(ipaddress.ip_address(f"10.0.{n // 250}.{n % 250 + 1}"), GROUP) for n in range(2500)]
    reads = []

    def read(source, group):
        reads.append(source)
        return counters.SgCounters(0, 0, 0)

    ageing = counters.SourceAgeing(read)
    assert ageing.sweep(0.0, keys, idle_interval=10.0) == []
    ageing.begin(10.0, keys)
    idle, steps = [], 0
    done = False
    while not done:
        before = len(reads)
        found, done = ageing.step(1000, idle_interval=10.0)
        assert len(reads) - before <= 1000
        idle += found
        steps += 1
    assert steps == 3 and idle == keys
