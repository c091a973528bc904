"""Address families and the address helpers shared by every layer.

Addresses are ``ipaddress.IPv4Address`` / ``IPv6Address`` objects throughout;
the family of an address is its ``version`` (4 or 6).
"""

from __future__ import annotations

import enum
import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_IPV4_LOCAL_SCOPE = ipaddress.ip_network("224.0.0.0/24")


class Family(enum.IntEnum):
    """An address family; the value is the IP version."""

    IPV4 = 4
    IPV6 = 6

    @property
    def protocol(self) -> str:
        """The group management protocol of this family."""
        return "IGMP" if self is Family.IPV4 else "MLD"

    @property
    def newest_version(self) -> int:
        """IGMPv3 or MLDv2."""
        return 3 if self is Family.IPV4 else 2

    @property
    def all_routers_report_group(self) -> IPAddress:
        """Where IGMPv3 / MLDv2 reports go (224.0.0.22, ff02::16)."""
        return ALL_V3_ROUTERS if self is Family.IPV4 else ALL_MLDV2_ROUTERS

    @property
    def all_nodes(self) -> IPAddress:
        """Where General Queries go (224.0.0.1, ff02::1)."""
        return ALL_SYSTEMS if self is Family.IPV4 else ALL_NODES

    @property
    def unspecified(self) -> IPAddress:
        return UNSPECIFIED_V4 if self is Family.IPV4 else UNSPECIFIED_V6


ALL_SYSTEMS = ipaddress.IPv4Address("224.0.0.1")
ALL_ROUTERS_V4 = ipaddress.IPv4Address("224.0.0.2")
ALL_V3_ROUTERS = ipaddress.IPv4Address("224.0.0.22")
ALL_NODES = ipaddress.IPv6Address("ff02::1")
ALL_ROUTERS_V6 = ipaddress.IPv6Address("ff02::2")
ALL_MLDV2_ROUTERS = ipaddress.IPv6Address("ff02::16")
UNSPECIFIED_V4 = ipaddress.IPv4Address("0.0.0.0")
UNSPECIFIED_V6 = ipaddress.IPv6Address("::")


def family_of(address: IPAddress) -> Family:
    return Family(address.version)


def is_link_local_scope_group(group: IPAddress) -> bool:
    """True for groups that never leave the link: 224.0.0.0/24 and ff02::/16 (docs/scenarios.md item 8).

    ff01::/16 (interface-local) and ff00::/16 (reserved scope 0) are treated alike.
    """
    if group.version == 4:
        return group in _IPV4_LOCAL_SCOPE
    scope = group.packed[1] & 0x0F
    return scope <= 2
