"""The ``-c`` kernel feature check: can this kernel run the proxy?

Each probe is throw-away and leaves nothing behind: sockets are closed,
``MRT_TABLE`` only names the kernel's default table (253, which always
exists), the mrule probe adds and deletes a rule for an interface that does
not exist, and the vif limit is probed with index ``MAXVIFS``, which the
kernel refuses (``ENFILE``) before touching any table. The multicast routing
socket is probed with ``MRT_INIT`` on the default table; ``EADDRINUSE`` there
still proves the feature (another multicast router owns that table).

A probe's failure becomes a ``(feature, False, detail)`` row, never an
exception, so the operator sees every missing feature at once.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.errors import KernelError
from mcproxy_pmip.kernel import mroute, mrules

PROBE_INTERFACE = "mcpp-probe0"
"""Name of the (absent) interface the mrule probe's rule matches."""


class FeatureCheck(NamedTuple):
    """One row of the report."""

    feature: str
    ok: bool
    detail: str


def _raw_socket(family: Family) -> socket.socket:
    if family is Family.IPV4:
        return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IGMP)
    return socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)


def _level(family: Family) -> int:
    return socket.IPPROTO_IP if family is Family.IPV4 else socket.IPPROTO_IPV6


def probe_raw_socket(family: Family) -> str:
    with _raw_socket(family):
        return "opened and closed"


def probe_mroute_socket(family: Family) -> str:
    try:
        sock = mroute.MrouteSocket(family, None)
    except KernelError as exc:
        if exc.errno == errno.EADDRINUSE:
            return "supported; the default table has another multicast router"
        raise
    sock.close()
    return "MRT_INIT and MRT_DONE on the default table"


def probe_table_option(family: Family) -> str:
    with _raw_socket(family) as sock:
        sock.setsockopt(_level(family), mroute.MRT_TABLE, struct.pack("@I", mroute.RT_TABLE_DEFAULT))
    return "MRT_TABLE accepted (several tables per namespace)"


def probe_vif_limit(family: Family) -> str:
    limit = mroute.MAXVIFS
    if family is Family.IPV4:
        option, value = mroute.MRT_ADD_VIF, mroute.pack_vifctl(limit, socket.if_nametoindex("lo"))
    else:
        option, value = mroute.MRT6_ADD_MIF, mroute.pack_mif6ctl(limit, socket.if_nametoindex("lo"))
    with _raw_socket(family) as sock:
        sock.setsockopt(_level(family), mroute.MRT_TABLE, struct.pack("@I", mroute.RT_TABLE_DEFAULT))
        try:
            sock.setsockopt(_level(family), option, value)
        except OSError as exc:
            if exc.errno == errno.ENFILE:
                return f"{limit} per table (index {limit} refused with ENFILE)"
            raise
        raise KernelError("vif limit probe", errno.EEXIST, f"index {limit} accepted: the limit is not {limit}")


def probe_mrules(family: Family) -> str:
    count = len(mrules.list_mrules(family, protocol=None))
    rule = mrules.add_mrule(family, mroute.RT_TABLE_DEFAULT, iif=PROBE_INTERFACE, priority=mrules.MRULE_PRIORITY)
    mrules.delete_mrule(rule)
    return f"dump ({count} rules), add and delete through rtnetlink"


def _read_sysctl(key: str) -> int:
    return int(Path("/proc/sys", *key.split(".")).read_text().strip())


def probe_sysctl(key: str, minimum: int, meaning: str, init_netns_only_default: int | None = None) -> str:
    """Read and check a sysctl. Some (``mld_max_msf``) exist only in the initial namespace."""
    try:
        value = _read_sysctl(key)
    except FileNotFoundError:
        if init_netns_only_default is None:
            raise
        return (
            f"global sysctl, not visible from this network namespace "
            f"(kernel default {init_netns_only_default} {meaning})"
        )
    if value < minimum:
        raise KernelError(f"sysctl {key}", errno.ERANGE, f"{value}, need at least {minimum} ({meaning})")
    return f"{value} {meaning}"


def run_probe(feature: str, probe: Callable[[], str]) -> FeatureCheck:
    """Run one probe; its failure becomes a row with ``ok`` False and the reason."""
    try:
        return FeatureCheck(feature, True, probe())
    except KernelError as exc:
        return FeatureCheck(feature, False, str(exc))
    except (OSError, ValueError) as exc:
        reason = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else str(exc)
        return FeatureCheck(feature, False, reason)


def check_features() -> list[FeatureCheck]:
    """Probe the running kernel (in the current network namespace); one row per feature."""
    rows = []
    for family in (Family.IPV4, Family.IPV6):
        v = "IPv4" if family is Family.IPV4 else "IPv6"
        prefix = "MRT" if family is Family.IPV4 else "MRT6"
        protocol = "IGMP" if family is Family.IPV4 else "ICMPv6"
        rows += [
            run_probe(f"{v} raw {protocol} socket", lambda f=family: probe_raw_socket(f)),
            run_probe(f"{v} multicast routing socket ({prefix}_INIT)", lambda f=family: probe_mroute_socket(f)),
            run_probe(f"{v} multicast routing tables ({prefix}_TABLE)", lambda f=family: probe_table_option(f)),
            run_probe(f"{v} multicast rules (rtnetlink)", lambda f=family: probe_mrules(f)),
            run_probe(f"{v} vifs per table", lambda f=family: probe_vif_limit(f)),
        ]
    rows += [
        # The proxy joins 224.0.0.22 and 224.0.0.2 on each downstream (DESIGN: the
        # mroute socket does not receive reports by itself).
        run_probe(
            "IPv4 group memberships per socket (net.ipv4.igmp_max_memberships, IP_MAX_MEMBERSHIPS)",
            lambda: probe_sysctl("net.ipv4.igmp_max_memberships", 2, "groups per socket"),
        ),
        run_probe(
            "IPv4 sources per socket filter (net.ipv4.igmp_max_msf)",
            lambda: probe_sysctl("net.ipv4.igmp_max_msf", 1, "sources per socket and group"),
        ),
        run_probe(
            "IPv6 sources per socket filter (net.ipv6.mld_max_msf)",
            lambda: probe_sysctl("net.ipv6.mld_max_msf", 1, "sources per socket and group", 64),
        ),
    ]
    return rows


def format_report(rows: list[FeatureCheck]) -> str:
    """The report as text lines: ``ok``/``FAIL``, feature, detail."""
    return "\n".join(f"{'ok  ' if row.ok else 'FAIL'}  {row.feature}: {row.detail}" for row in rows)
