"""Multicast routing rules (``ip mrule``) through rtnetlink, never by running ``ip``.

With several multicast routing tables the kernel picks a packet's table by
FIB rules of family ``RTNL_FAMILY_IPMR`` (128) / ``RTNL_FAMILY_IP6MR`` (129):
``iif IF lookup N`` sends what arrives on IF to table N (action
``FR_ACT_TO_TBL``); ``oif IF lookup N`` does the same for locally sent packets.
An instance adds one ``iif`` rule per interface of its table.

Our rules carry ``FRA_PROTOCOL`` = :data:`MRULE_PROTOCOL`, so they are found
again after a crash (``kernel.leftovers``) and are told apart from the
operator's. :func:`tables_in_use` lists the tables the kernel shows in use
(named by anyone's rule, or holding MFC entries), so an automatic table
number can avoid them. The synchronous ``IPRoute`` blocks while it waits for the kernel;
these are rare configuration steps.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_GETROUTE
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.errors import KernelError
from mcproxy_pmip.kernel.interfaces import rtnl_dump

log = logging.getLogger(__name__)

RTNL_FAMILY_IPMR = 128
RTNL_FAMILY_IP6MR = 129
FR_ACT_TO_TBL = 1
MRULE_PROTOCOL = 201
"""``FRA_PROTOCOL`` of every mrule this daemon adds (unassigned in iproute2's rt_protos)."""
MRULE_PRIORITY = 1000
"""Default rule priority: before the kernel's catch-all rule at 32767."""


@dataclass(frozen=True, slots=True)
class Mrule:
    """One multicast routing rule: packets in through ``iif`` / out through ``oif`` use ``table``."""

    family: Family
    table: int
    priority: int
    iif: str | None = None
    oif: str | None = None
    protocol: int = MRULE_PROTOCOL


def rtnl_family(family: Family) -> int:
    return RTNL_FAMILY_IPMR if family is Family.IPV4 else RTNL_FAMILY_IP6MR


def _request(rule: Mrule) -> dict[str, object]:
    request: dict[str, object] = {
        "family": rtnl_family(rule.family),
        "table": rule.table,
        "priority": rule.priority,
        "action": FR_ACT_TO_TBL,
        "protocol": rule.protocol,
    }
    if rule.iif is not None:
        request["iifname"] = rule.iif
    if rule.oif is not None:
        request["oifname"] = rule.oif
    return request


def _netlink(op: str, command: str, rule: Mrule) -> None:
    try:
        with IPRoute() as ipr:
            ipr.rule(command, **_request(rule))
    except NetlinkError as exc:
        raise KernelError(op, exc.code, str(rule)) from exc
    except OSError as exc:
        raise KernelError(op, exc.errno or errno.EIO, str(rule)) from exc


def add_mrule(
    family: Family, table: int, *, iif: str | None = None, oif: str | None = None, priority: int = MRULE_PRIORITY
) -> Mrule:
    """Add ``[iif IF] [oif IF] lookup table`` (our protocol mark); ``EEXIST`` if present."""
    if (iif is None) == (oif is None):
        raise ValueError("an mrule needs exactly one of iif and oif")
    rule = Mrule(family, table, priority, iif, oif)
    _netlink("RTM_NEWRULE", "add", rule)
    log.debug("mrule_added %s", rule)
    return rule


def delete_mrule(rule: Mrule) -> None:
    """Delete exactly this rule (``ENOENT`` if it is gone)."""
    _netlink("RTM_DELRULE", "del", rule)
    log.debug("mrule_deleted %s", rule)


def list_mrules(family: Family, *, protocol: int | None = MRULE_PROTOCOL) -> list[Mrule]:
    """The multicast rules of ``family``; only ours unless ``protocol`` is None."""
    try:
        with IPRoute() as ipr:
            messages = list(ipr.rule("dump", family=rtnl_family(family)))
    except NetlinkError as exc:
        raise KernelError("RTM_GETRULE", exc.code, family.name) from exc
    except OSError as exc:
        raise KernelError("RTM_GETRULE", exc.errno or errno.EIO, family.name) from exc
    rules = []
    for message in messages:
        if message["family"] != rtnl_family(family):
            continue
        rule = Mrule(
            family=family,
            table=message.get("FRA_TABLE") or message["table"],
            priority=message.get("FRA_PRIORITY") or 0,
            iif=message.get("FRA_IIFNAME"),
            oif=message.get("FRA_OIFNAME"),
            protocol=message.get("FRA_PROTOCOL") or 0,
        )
        if protocol is None or rule.protocol == protocol:
            rules.append(rule)
    return rules


def tables_in_use(family: Family) -> set[int]:
    """The tables of ``family`` the kernel shows in use: named by any mrule (anyone's), or with MFC entries."""
    tables = {rule.table for rule in list_mrules(family, protocol=None)}
    request = rtmsg()
    request["family"] = rtnl_family(family)
    for message in rtnl_dump(request, RTM_GETROUTE, None):
        tables.add(message.get("RTA_TABLE") or message["table"])
    return tables
