"""The MRT plane's table numbers and its record of them, without a kernel.

Automatic numbers skip what the configuration, other instances and the
kernel (a fake listing standing in for ``mrules.tables_in_use``) already use;
a number another process holds at ``MRT_INIT`` is skipped too. The numbered
tables in use are in the plane's state file while it runs, and a crashed
run's file names the tables the next start may clear.
"""

from __future__ import annotations

import errno
import json
import os

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.dataplane import mroute
from mcproxy_pmip.errors import KernelError
from mcproxy_pmip.kernel import statefile

BOTH = frozenset({Family.IPV4, Family.IPV6})


class FakeKernel:
    """Table numbers in use per family, and the tables another process holds (``EADDRINUSE``)."""

    def __init__(self, in_use: dict[Family, set[int]], held: set[int] = frozenset()) -> None:
        self.in_use = in_use
        self.held = set(held)
        self.probes = 0

    def tables_in_use(self, family: Family) -> set[int]:
        self.probes += 1
        return set(self.in_use.get(family, ()))


class FakeInstancePlane:
    """Stands in for ``MrouteInstancePlane``: refuses the tables the fake kernel says are held."""

    kernel: FakeKernel

    def __init__(self, name, families, table, view, on_close, **others) -> None:
        if table in self.kernel.held:
            raise KernelError("MRT_INIT", errno.EADDRINUSE, f"table {table}")
        self.name, self.table, self._on_close = name, table, on_close

    def close(self) -> None:
        self._on_close()


@pytest.fixture
def kernel(monkeypatch, tmp_path):
    monkeypatch.setenv(statefile.STATE_DIR_ENV, str(tmp_path))
    fake = FakeKernel({Family.IPV4: {1000, 1001, 253}, Family.IPV6: {1003}})
    FakeInstancePlane.kernel = fake
    monkeypatch.setattr(mroute, "MrouteInstancePlane", FakeInstancePlane)
    return fake


def recorded() -> dict:
    with open(statefile.own_path(mroute.STATE_KIND), encoding="utf-8") as handle:
        return json.load(handle)


def test_automatic_numbers_skip_what_the_kernel_uses(kernel) -> None:
    plane = mroute.MroutePlane(BOTH, probe_tables=kernel.tables_in_use)
    plane._configured = {1002}
    first = plane.open_instance("a", BOTH, None, view=None)
    second = plane.open_instance("b", BOTH, None, view=None)
    assert (first.table, second.table) == (1004, 1005)
    assert kernel.probes >= 2


def test_a_table_held_by_another_process_is_skipped(kernel) -> None:
    kernel.in_use = {}
    kernel.held = {1000, 1001}
    plane = mroute.MroutePlane(BOTH, probe_tables=kernel.tables_in_use)
    assert plane.open_instance("a", BOTH, None, view=None).table == 1002


def test_a_configured_table_held_elsewhere_is_an_error(kernel) -> None:
    kernel.held = {7}
    plane = mroute.MroutePlane(BOTH, probe_tables=kernel.tables_in_use)
    with pytest.raises(KernelError):
        plane.open_instance("a", BOTH, 7, view=None)
    assert recorded()["tables"] == []


def test_a_failed_probe_still_chooses_past_known_numbers(kernel) -> None:
    def broken(family: Family) -> set[int]:
        raise KernelError("RTM_GETRULE", errno.EPERM, family.name)
    plane = mroute.MroutePlane(BOTH, probe_tables=broken)
    plane.open_instance("a", BOTH, None, view=None)
    assert plane.open_instance("b", BOTH, None, view=None).table == 1001


def test_tables_in_use_are_recorded_until_close(kernel) -> None:
    kernel.in_use = {}
    plane = mroute.MroutePlane(BOTH, probe_tables=kernel.tables_in_use)
    plane._configured = {10}
    a = plane.open_instance("a", BOTH, 10, view=None)
    plane.open_instance("b", BOTH, None, view=None)
    assert recorded()["tables"] == [[4, 10], [6, 10], [4, 1000], [6, 1000]]
    assert recorded()["pid"] == os.getpid()
    a.close()
    plane._configured = set()
    plane.open_instance("c", BOTH, None, view=None)
    assert recorded()["tables"] == [[4, 1000], [6, 1000], [4, 1001], [6, 1001]]
    plane.close()
    assert not os.path.exists(statefile.own_path(mroute.STATE_KIND))


def test_recorded_tables_keep_only_our_families_and_sane_entries() -> None:
    data = {"tables": [[4, 10], [6, 10], [5, 3], ["x"], [4]]}
    assert mroute.recorded_tables(data, frozenset({Family.IPV4})) == {(Family.IPV4, 10)}


def test_an_unwritable_state_directory_does_not_stop_an_instance(kernel, tmp_path, monkeypatch, caplog) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(statefile.STATE_DIR_ENV, str(blocker / "state"))
    plane = mroute.MroutePlane(BOTH, probe_tables=kernel.tables_in_use)
    assert plane.open_instance("a", BOTH, None, view=None).table == 1002
    assert "mroute_state_write_failed" in caplog.text
    plane.close()
