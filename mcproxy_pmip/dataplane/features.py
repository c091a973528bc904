"""The ``-c`` feature check: which data planes this kernel can run, and what is missing.

Three parts are probed, each with throw-away state that is removed at once:

- packet I/O (both planes need it): the IGMP and MLD packet sockets with their
  BPF filters and raw send sockets (``CONFIG_PACKET``);
- the mroute plane: ``MRT_INIT`` / ``MRT6_INIT`` on the default table
  (``EADDRINUSE`` there still proves the feature), ``MRT_TABLE``, multicast
  rules over rtnetlink (a rule for an absent interface, deleted again), and the
  vif limit (index ``MAXVIFS`` is refused with ``ENFILE`` before any table is
  touched);
- the nftables plane: libnftables, and one atomic batch that creates a probe
  table per family with a prerouting chain and a ``dup to`` rule, then deletes it.

A failed probe names the kernel option behind it (read from
``/proc/config.gz`` where the kernel exposes it) and says what to do. No
sysctl is checked: neither plane needs one raised.
"""

from __future__ import annotations

import errno
import gzip
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.errors import KernelError, McproxyError

PROBE_INTERFACE = "mcpp-probe0"
"""Name of the (absent) interface the mrule probe's rule matches."""
PROBE_TABLE = "mcproxy_pmip_probe"
KERNEL_CONFIG = Path("/proc/config.gz")


@dataclass(frozen=True, slots=True)
class FeatureCheck:
    """One probe's result; ``option`` the kernel option it depends on."""

    feature: str
    ok: bool
    detail: str
    option: str | None = None


@dataclass(frozen=True, slots=True)
class PlaneReport:
    """The probes of one part (packet I/O, a plane) and what to do if it is not usable."""

    name: str
    rows: tuple[FeatureCheck, ...]
    remedy: str

    @property
    def usable(self) -> bool:
        return all(row.ok for row in self.rows)


def read_kernel_config(path: Path = KERNEL_CONFIG) -> dict[str, str] | None:
    """``CONFIG_X`` -> value from the running kernel's config; None where it is not exposed."""
    try:
        text = gzip.decompress(path.read_bytes()).decode("ascii", "replace")
    except OSError:
        return None
    found = {}
    for line in text.splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            key, value = line.split("=", 1)
            found[key] = value
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            found[line[2:-len(" is not set")]] = "n"
    return found


def run_probe(feature: str, probe: Callable[[], str], option: str | None = None) -> FeatureCheck:
    """Run one probe; its failure becomes a row with ``ok`` False and the reason."""
    try:
        return FeatureCheck(feature, True, probe(), option)
    except (McproxyError, OSError, ValueError) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, KernelError) and exc.errno:
            reason = f"{errno.errorcode.get(exc.errno, exc.errno)} ({os.strerror(exc.errno)})"
        else:
            reason = str(exc)
        return FeatureCheck(feature, False, reason, option)


# -- packet I/O ----------------------------------------------------------------------

def probe_packet_socket(family: Family) -> str:
    from mcproxy_pmip.kernel.packet_socket import IgmpPacketSocket, MldPacketSocket
    sock = IgmpPacketSocket() if family is Family.IPV4 else MldPacketSocket()
    sock.close()
    return "packet socket with BPF filter and raw send socket opened and closed"


# -- mroute --------------------------------------------------------------------------

def _raw_socket(family: Family) -> socket.socket:
    if family is Family.IPV4:
        return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IGMP)
    return socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)


def _level(family: Family) -> int:
    return socket.IPPROTO_IP if family is Family.IPV4 else socket.IPPROTO_IPV6


def probe_mroute_socket(family: Family) -> str:
    from mcproxy_pmip.kernel import mroute
    try:
        sock = mroute.MrouteSocket(family, None)
    except KernelError as exc:
        if exc.errno == errno.EADDRINUSE:
            return "supported; the default table has another multicast router"
        raise
    sock.close()
    return "MRT_INIT and MRT_DONE on the default table"


def probe_table_option(family: Family) -> str:
    from mcproxy_pmip.kernel import mroute
    with _raw_socket(family) as sock:
        sock.setsockopt(_level(family), mroute.MRT_TABLE, struct.pack("@I", mroute.RT_TABLE_DEFAULT))
    return "MRT_TABLE accepted (several tables per namespace)"


def probe_vif_limit(family: Family) -> str:
    from mcproxy_pmip.kernel import mroute
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
    from mcproxy_pmip.kernel import mroute, mrules
    count = len(mrules.list_mrules(family, protocol=None))
    rule = mrules.add_mrule(family, mroute.RT_TABLE_DEFAULT, iif=PROBE_INTERFACE, priority=mrules.MRULE_PRIORITY)
    mrules.delete_mrule(rule)
    return f"dump ({count} rules), add and delete through rtnetlink"


# -- nftables ------------------------------------------------------------------------

def probe_nft_library() -> str:
    from mcproxy_pmip.kernel.nft import LIBRARY, NftContext
    NftContext().close()
    return f"{LIBRARY} loaded"


def probe_nft_dup(family: Family) -> str:
    from mcproxy_pmip.kernel.nft import NftContext
    table = "ip" if family is Family.IPV4 else "ip6"
    group = "239.255.0.1" if family is Family.IPV4 else "ff3e::1"
    with NftContext() as nft:
        nft.run([f"add table {table} {PROBE_TABLE}",
                 f"add chain {table} {PROBE_TABLE} pre {{ type filter hook prerouting priority raw; }}",
                 f"add rule {table} {PROBE_TABLE} pre {table} daddr {group} dup to {group} device \"lo\"",
                 f"delete table {table} {PROBE_TABLE}"])
    return f"table with a prerouting chain and a dup rule created and deleted ({table})"


# -- the report ----------------------------------------------------------------------

def check_features() -> list[PlaneReport]:
    """Probe the running kernel (in the current network namespace)."""
    packet_rows, mroute_rows, nft_rows = [], [], [run_probe("nftables library", probe_nft_library)]
    for family in (Family.IPV4, Family.IPV6):
        v = "IPv4" if family is Family.IPV4 else "IPv6"
        mr = "MRT" if family is Family.IPV4 else "MRT6"
        option = "CONFIG_IP_MROUTE" if family is Family.IPV4 else "CONFIG_IPV6_MROUTE"
        packet_rows.append(run_probe(f"{v} {family.protocol} packet I/O", lambda f=family: probe_packet_socket(f),
                                     "CONFIG_PACKET"))
        mroute_rows += [
            run_probe(f"{v} multicast routing socket ({mr}_INIT)", lambda f=family: probe_mroute_socket(f), option),
            run_probe(f"{v} multicast routing tables ({mr}_TABLE)", lambda f=family: probe_table_option(f),
                      f"{option}_MULTIPLE_TABLES"),
            run_probe(f"{v} multicast rules (rtnetlink)", lambda f=family: probe_mrules(f),
                      f"{option}_MULTIPLE_TABLES"),
            run_probe(f"{v} vifs per table", lambda f=family: probe_vif_limit(f), option),
        ]
        nft_rows.append(run_probe(f"{v} nftables dup to", lambda f=family: probe_nft_dup(f),
                                  f"CONFIG_NF_TABLES, CONFIG_NFT_DUP_{v.upper()}"))
    return [
        PlaneReport("packet I/O", tuple(packet_rows), "the daemon cannot run: it needs AF_PACKET sockets "
                    "(CONFIG_PACKET) and root or CAP_NET_RAW"),
        PlaneReport("mroute plane", tuple(mroute_rows), "rebuild the kernel with CONFIG_IP_MROUTE, "
                    "CONFIG_IPV6_MROUTE and their _MULTIPLE_TABLES options, or run with --data-plane nftables"),
        PlaneReport("nftables plane", tuple(nft_rows), "install the Debian package libnftables1 and use a kernel "
                    "with CONFIG_NF_TABLES, CONFIG_NFT_DUP_IPV4 and CONFIG_NFT_DUP_IPV6, or run with "
                    "--data-plane mroute"),
    ]


def _option_state(option: str, config: dict[str, str] | None) -> str:
    if config is None:
        return f"needs {option}"
    states = []
    for name in (part.strip() for part in option.split(",")):
        value = config.get(name)
        states.append(f"{name} {'is not set' if value in (None, 'n') else '=' + value}")
    return "; ".join(states)


def format_report(reports: list[PlaneReport], config: dict[str, str] | None = None) -> str:
    """Per part: a verdict line, then one line per probe; failures name their kernel option."""
    lines = []
    for report in reports:
        verdict = "usable" if report.usable else f"NOT USABLE: {report.remedy}"
        lines.append(f"{report.name}: {verdict}")
        for row in report.rows:
            detail = row.detail
            if not row.ok and row.option:
                detail += f" [{_option_state(row.option, config)}]"
            lines.append(f"  {'ok  ' if row.ok else 'FAIL'}  {row.feature}: {detail}")
    return "\n".join(lines)


def runnable(reports: list[PlaneReport]) -> bool:
    """Packet I/O works and at least one data plane does."""
    parts = {report.name: report.usable for report in reports}
    return parts["packet I/O"] and (parts["mroute plane"] or parts["nftables plane"])
