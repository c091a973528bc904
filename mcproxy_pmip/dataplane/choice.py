"""Which data plane a daemon runs on: ``--data-plane auto|mroute|nftables`` and the YAML key.

``auto`` picks the MRT plane only where the kernel has multicast routing and
every instance fits its limits; otherwise nftables:

- a kernel without ``CONFIG_IP_MROUTE`` / ``CONFIG_IPV6_MROUTE``;
- a static configuration with an instance of more interfaces than MRT's 32 vifs;
- a daemon with the pmipv6 plugin (a MAG), whose links come and go with its
  mobile nodes: one per MN, so MRT's limit would bite at the 32nd.

The choice and its reason are logged by the daemon (``data_plane_chosen``).
The implementations are imported only once chosen.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.config.model import Config
from mcproxy_pmip.dataplane.port import DataPlane
from mcproxy_pmip.errors import KernelError

MRT_MAX_INTERFACES = 32
KERNEL_OPTION = {Family.IPV4: "CONFIG_IP_MROUTE", Family.IPV6: "CONFIG_IPV6_MROUTE"}


@dataclass(frozen=True, slots=True)
class PlaneChoice:
    """The plane chosen and why (one line, for the log)."""

    name: str
    reason: str


def missing_mroute(families: frozenset[Family]) -> str | None:
    """None if the kernel has multicast routing for every family, else what it lacks."""
    from mcproxy_pmip.kernel.mroute import MrouteSocket
    for family in sorted(families):
        try:
            MrouteSocket(family, None).close()
        except KernelError as exc:
            if exc.errno == errno.EADDRINUSE:
                continue
            if exc.errno in (errno.ENOPROTOOPT, errno.EAFNOSUPPORT, errno.EOPNOTSUPP):
                return f"{KERNEL_OPTION[family]} is not set"
            return str(exc)
    return None


def choose(requested: str, config: Config, mobility: bool,
           probe: Callable[[frozenset[Family]], str | None] = missing_mroute) -> PlaneChoice:
    """The plane for ``requested`` ("auto", "mroute" or "nftables")."""
    if requested != "auto":
        return PlaneChoice(requested, "requested")
    missing = probe(config.families)
    if missing is not None:
        return PlaneChoice("nftables", f"the kernel has no multicast routing ({missing})")
    if mobility:
        return PlaneChoice("nftables", "a pmipv6 MAG gives every mobile node a link of its own")
    for instance in config.instances:
        if len(instance.interfaces) > MRT_MAX_INTERFACES:
            return PlaneChoice("nftables", f"instance {instance.name} has {len(instance.interfaces)} "
                               f"interfaces, more than MRT's {MRT_MAX_INTERFACES} per table")
    return PlaneChoice("mroute", "the kernel has multicast routing and every instance fits its limits")


def open_plane(name: str, config: Config, mobility: bool) -> DataPlane:
    """A new, not yet started plane of that name."""
    if name == "mroute":
        from mcproxy_pmip.dataplane.mroute import MroutePlane
        return MroutePlane(config.families, default_table=len(config.instances) == 1 and not mobility)
    if name == "nftables":
        from mcproxy_pmip.dataplane.nftables import NftablesPlane
        return NftablesPlane()
    raise ValueError(f"unknown data plane {name!r}")
