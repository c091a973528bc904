"""A table's life in a real kernel: open/close, exclusive ownership, vifs up to the limit, MFC visibility."""

from __future__ import annotations

import errno
import ipaddress
import struct
from pathlib import Path

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.errors import KernelError
from mcproxy_pmip.kernel import mfc, mroute, vifs
from mcproxy_pmip.kernel.mroute import MrouteSocket
from tests.netns.planes import requires_mroute
from tests.netns.netns_fixtures import Netns, netns_factory  # noqa: F401 (fixture)

pytestmark = [pytest.mark.netns, requires_mroute]

FAMILIES = pytest.mark.parametrize("family", [Family.IPV4, Family.IPV6], ids=["ipv4", "ipv6"])


@pytest.fixture
def ns(netns_factory) -> Netns:  # noqa: F811
    return netns_factory()


def veth_pairs(ns: Netns, count: int) -> list[str]:
    """``count`` veth pairs inside ``ns`` in one ``ip -batch``; returns one end of each, up."""
    commands = []
    for i in range(count):
        commands.append(f"link add v{i}a type veth peer name v{i}b")
        commands.append(f"link set v{i}a up")
        commands.append(f"link set v{i}b up")
    batch = Path(f"/tmp/{ns.name}.batch")
    batch.write_text("\n".join(commands) + "\n")
    try:
        ns.run(["ip", "-batch", str(batch)])
    finally:
        batch.unlink()
    return [f"v{i}a" for i in range(count)]


@FAMILIES
def test_table_is_exclusive_until_closed(ns: Netns, family: Family):
    with ns.entered():
        first = MrouteSocket(family, 7)
        try:
            with pytest.raises(KernelError) as refused:
                MrouteSocket(family, 7)
            assert refused.value.errno == errno.EADDRINUSE
            assert "already has a multicast router" in str(refused.value)
            other = MrouteSocket(family, 8)  # another table is independent
            other.close()
        finally:
            first.close()
        assert first.closed
        again = MrouteSocket(family, 7)
        again.close()


@FAMILIES
def test_32_vifs_then_a_clear_error(ns: Netns, family: Family):
    interfaces = veth_pairs(ns, mroute.MAXVIFS + 1)
    with ns.entered():
        sock = MrouteSocket(family, 9)
        try:
            table = vifs.VifTable(sock)
            added = [table.add(name) for name in interfaces[: mroute.MAXVIFS]]
            assert [vif.index for vif in added] == list(range(mroute.MAXVIFS))
            assert table.add(interfaces[0]) == added[0], "adding an installed interface is idempotent"
            with pytest.raises(vifs.VifLimitReached) as full:
                table.add(interfaces[-1])
            assert full.value.limit == 32 and "32 vifs" in str(full.value)
            assert isinstance(full.value, KernelError) and full.value.errno == errno.ENFILE
            # The premise: the kernel itself refuses index 32 with the misleading ENFILE.
            ifindex = vifs.interface_index(interfaces[-1])
            if family is Family.IPV4:
                option, value = mroute.MRT_ADD_VIF, mroute.pack_vifctl(32, ifindex)
            else:
                option, value = mroute.MRT6_ADD_MIF, mroute.pack_mif6ctl(32, ifindex)
            with pytest.raises(KernelError) as kernel_says:
                sock.setsockopt("raw add vif 32", option, value)
            assert kernel_says.value.errno == errno.ENFILE
            # Freeing one makes room, and the freed index is reused.
            table.remove(interfaces[5])
            assert table.add(interfaces[-1]).index == 5
            assert len(table) == 32
        finally:
            sock.close()


def test_default_table_shows_in_proc(ns: Netns):
    """Without MRT_TABLE the socket drives the default table, the one /proc/net shows."""
    interfaces = veth_pairs(ns, 2)
    source, group = ipaddress.ip_address("10.9.0.2"), ipaddress.ip_address("239.9.9.9")
    source6, group6 = ipaddress.ip_address("fd09::2"), ipaddress.ip_address("ff15::9")
    with ns.entered():
        sock4, sock6 = MrouteSocket(Family.IPV4, None), MrouteSocket(Family.IPV6, None)
        try:
            t4, t6 = vifs.VifTable(sock4), vifs.VifTable(sock6)
            a4, b4 = (t4.add(name) for name in interfaces)
            a6, b6 = (t6.add(name) for name in interfaces)
            proc_vif = Path("/proc/net/ip_mr_vif").read_text()
            assert all(name in proc_vif for name in interfaces), proc_vif
            assert all(name in Path("/proc/net/ip6_mr_vif").read_text() for name in interfaces)
            mfc.MfcTable(sock4).install(source, group, a4.index, {b4.index})
            mfc.MfcTable(sock6).install(source6, group6, a6.index, {b6.index})
            cache4 = Path("/proc/net/ip_mr_cache").read_text().splitlines()[1:]
            # Group and Origin are printed as the raw __be32 in host order hex.
            hexes = [f"{struct.unpack('@I', a.packed)[0]:08X}" for a in (group, source)]
            # Columns: Group Origin Iif Pkts Bytes Wrong, then "vif:ttl" per output.
            expected4 = [*hexes, str(a4.index), "0", "0", "0", f"{b4.index}:1"]
            assert [line.split() for line in cache4] == [expected4], cache4
            cache6 = Path("/proc/net/ip6_mr_cache").read_text().splitlines()[1:]
            expected6 = [group6.exploded, source6.exploded, str(a6.index), "0", "0", "0", f"{b6.index}:1"]
            assert [line.split() for line in cache6] == [expected6], cache6
        finally:
            sock4.close()
            sock6.close()
        assert Path("/proc/net/ip_mr_cache").read_text().splitlines()[1:] == [], "MRT_DONE flushes the MFC"
        assert Path("/proc/net/ip_mr_vif").read_text().splitlines()[1:] == [], "MRT_DONE drops the vifs"


def test_entries_of_a_group_are_found_without_scanning(ns: Netns):
    """MfcTable.of_group follows installs and removals (Routing recomputes one group with it)."""
    interfaces = veth_pairs(ns, 2)
    g1, g2 = ipaddress.ip_address("239.9.9.1"), ipaddress.ip_address("239.9.9.2")
    s1, s2 = ipaddress.ip_address("10.9.0.1"), ipaddress.ip_address("10.9.0.2")
    with ns.entered():
        sock = MrouteSocket(Family.IPV4, 77)
        try:
            table = vifs.VifTable(sock)
            a, b = (table.add(name).index for name in interfaces)
            entries = mfc.MfcTable(sock)
            entries.install(s1, g1, a, {b})
            entries.install(s2, g1, a, ())
            entries.install(s1, g2, a, {b})
            assert sorted(str(e.source) for e in entries.of_group(g1)) == ["10.9.0.1", "10.9.0.2"]
            entries.remove(s2, g1)
            assert [(e.source, e.group) for e in entries.of_group(g1)] == [(s1, g1)]
            entries.remove(s1, g2)
            assert entries.of_group(g2) == [] and len(entries) == 1
        finally:
            sock.close()
