"""What the membership engine asks the IO layer to do, and what it reports.

Every engine entry point returns a list of these frozen dataclasses; the IO
layer (Sender, Routing, logging) carries them out. Nothing here performs IO.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcproxy_pmip.addresses import Family, IPAddress
from mcproxy_pmip.wire.records import GroupRecord, RecordType

_CURRENT_STATE_TYPES = frozenset({RecordType.MODE_IS_INCLUDE, RecordType.MODE_IS_EXCLUDE})


@dataclass(frozen=True, slots=True)
class SendQuery:
    """Send one query on ``interface`` (router side, RFC 3376 §4.1 / RFC 3810 §5.1).

    ``version``: the message format (IGMP 1/2/3, MLD 1/2). ``group`` None is a
    General Query, else group-specific; with ``sources`` it is group-and-source
    specific (the Sender splits source lists that do not fit the MTU).
    ``max_resp_interval`` seconds (encoded by the Sender), ``suppress_router_processing``
    the S flag, ``robustness`` the QRV, ``query_interval`` the QQI in seconds.
    """

    interface: str
    family: Family
    version: int
    group: IPAddress | None
    sources: tuple[IPAddress, ...]
    max_resp_interval: float
    suppress_router_processing: bool
    robustness: int
    query_interval: float


@dataclass(frozen=True, slots=True)
class SendReport:
    """Send one report on ``interface`` (host side, RFC 3376 §5 / RFC 3810 §6).

    ``version`` 3 (IGMP) / 2 (MLD): one report carrying ``records`` (split to
    the MTU by the Sender). Older versions: one message per record, where a
    record with no sources and type CHANGE_TO_INCLUDE or MODE_IS_INCLUDE becomes
    a Leave / Done (IGMPv1 has none: nothing is sent), any other a Report.
    """

    interface: str
    family: Family
    version: int
    records: tuple[GroupRecord, ...]


@dataclass(frozen=True, slots=True)
class MembershipChanged:
    """Router side: the forwarding state of ``group`` on ``interface`` changed
    (filter mode, forwarded or blocked sources, group created or deleted)."""

    interface: str
    family: Family
    group: IPAddress


@dataclass(frozen=True, slots=True)
class ForwardingChanged:
    """Instance level: the output interfaces of (S, ``group``) may have changed for
    some S; the IO layer recomputes the MFC entries it holds for that group."""

    family: Family
    group: IPAddress


@dataclass(frozen=True, slots=True)
class QuerierChanged:
    """Router side: this router became (``is_querier`` True) or stopped being the querier."""

    interface: str
    family: Family
    is_querier: bool
    other_querier: IPAddress | None


@dataclass(frozen=True, slots=True)
class Trace:
    """A structured trace record for the IO layer to log (the engine never logs).

    ``event`` is a slug (``limit_groups_hit``, ``record_ignored``); ``fields``
    key=value pairs; ``warning`` asks for the warning level (the RFCs' "SHOULD
    log a warning", rate-limited by the engine) instead of debug.
    """

    event: str
    fields: tuple[tuple[str, object], ...] = ()
    warning: bool = False


Action = SendQuery | SendReport | MembershipChanged | ForwardingChanged | QuerierChanged | Trace


def coalesce_reports(actions: list[Action]) -> list[Action]:
    """Merge the ``SendReport`` actions of one engine step into one per report.

    Reports for the same interface, family and version become one, at the
    place of the first, with the records in their original order (a later
    record for a group still comes after an earlier one), so the Sender packs
    as many records per message as the MTU allows (RFC 3376 §4.2.16, RFC 3810
    §5.2.15). Current-state records (answers to queries) and state-change
    records are kept in separate reports (RFC 3376 §5, RFC 3810 §6 tell the two
    kinds of report apart). Other actions keep their order.
    """
    merged: dict[tuple[str, Family, int, bool], list[GroupRecord]] = {}
    result: list[Action | tuple[str, Family, int, bool]] = []
    reports = 0
    for action in actions:
        if not isinstance(action, SendReport) or not action.records:
            result.append(action)
            continue
        reports += 1
        key = (action.interface, action.family, action.version,
               action.records[0].record_type in _CURRENT_STATE_TYPES)
        records = merged.get(key)
        if records is None:
            merged[key] = list(action.records)
            result.append(key)
        else:
            records.extend(action.records)
    if reports == len(merged):
        return actions
    return [SendReport(item[0], item[1], item[2], tuple(merged[item])) if isinstance(item, tuple)
            else item for item in result]
