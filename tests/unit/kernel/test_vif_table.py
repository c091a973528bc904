"""VifTable against a fake mroute socket: a vif the kernel dropped with its device, and a re-created device.

The kernel deletes a vif when its device is unregistered; ``MRT_DEL_VIF`` /
``MRT6_DEL_MIF`` then answer ``EADDRNOTAVAIL``. The table must forget such a
vif, so the same name created again (a new ifindex) gets a vif again.
"""

from __future__ import annotations

import errno

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.errors import KernelError
from mcproxy_pmip.kernel import mroute
from mcproxy_pmip.kernel.vifs import VifTable


class FakeMrouteSocket:
    """Keeps the kernel's vifs by index; ``unregister(ifindex)`` drops a device's vif as the kernel does."""

    def __init__(self, family: Family) -> None:
        self.family = family
        self.table = 10
        self.kernel: dict[int, int] = {}  # vif index -> ifindex
        self.refuse: int | None = None

    def setsockopt(self, op: str, option: int, value: bytes) -> None:
        index = int.from_bytes(value[:2], "little")
        if self.refuse is not None:
            raise KernelError(op, self.refuse)
        if option == mroute.MRT_ADD_VIF:
            if self.family is Family.IPV4:
                ifindex = mroute.VIFCTL.unpack(value)[4]
            else:
                ifindex = mroute.MIF6CTL.unpack(value)[3]
            if index in self.kernel:
                raise KernelError(op, errno.EADDRINUSE)
            self.kernel[index] = ifindex
        elif option == mroute.MRT_DEL_VIF:
            if index not in self.kernel:
                raise KernelError(op, errno.EADDRNOTAVAIL)
            del self.kernel[index]

    def unregister(self, ifindex: int) -> None:
        self.kernel = {i: x for i, x in self.kernel.items() if x != ifindex}


@pytest.mark.parametrize("family", [Family.IPV4, Family.IPV6], ids=["vif", "mif"])
def test_a_vif_the_kernel_dropped_is_forgotten_and_the_name_gets_one_again(family) -> None:
    sock = FakeMrouteSocket(family)
    table = VifTable(sock)
    table.add("d1", 5)
    sock.unregister(5)
    assert table.remove("d1").ifindex == 5
    assert table.vif_of("d1") is None and len(table) == 0
    vif = table.add("d1", 9)
    assert sock.kernel == {vif.index: 9}


@pytest.mark.parametrize("family", [Family.IPV4, Family.IPV6], ids=["vif", "mif"])
def test_a_name_added_under_a_new_ifindex_replaces_its_stale_vif(family) -> None:
    sock = FakeMrouteSocket(family)
    table = VifTable(sock)
    table.add("up0", 3)
    table.add("d1", 5)
    sock.unregister(5)
    vif = table.add("d1", 9)
    assert table.ifindex_of("d1") == 9
    assert sorted(sock.kernel.values()) == [3, 9]
    assert table.interface_of(vif.index) == "d1"
    assert table.add("d1", 9) == vif


def test_any_other_refusal_keeps_the_vif() -> None:
    sock = FakeMrouteSocket(Family.IPV4)
    table = VifTable(sock)
    table.add("d1", 5)
    sock.refuse = errno.EPERM
    with pytest.raises(KernelError):
        table.remove("d1")
    assert table.ifindex_of("d1") == 5
