"""The router's reaction to group records, as data: RFC 3376 §6.4 and §7.3.2, RFC 3810 §7.4 and §8.3.2.

Everything here is a table; ``router_group.apply_row`` is the one interpreter.

``ROWS`` maps (router filter mode, record type) to a ``Row`` holding the new
state and the actions of that line of the RFC table. The set expressions take
the current state and the record's source list as ``(x, y, r)``: in INCLUDE
mode ``x`` is the RFC's source list A and ``y`` is empty; in EXCLUDE mode
``x`` is X (requested, timers running) and ``y`` is Y (excluded, timer 0).
RFC 3810 §7.4.1 / §7.4.2 are the same tables with MALI for GMI and "filter
timer" for "group timer".

``COMPAT`` says how an older-version compatibility mode (RFC 3376 §7.3.2,
RFC 3810 §8.3.2) treats each record type before the table is consulted.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from mcproxy_pmip.wire.records import FilterMode, RecordType

SetExpr = Callable[[set, set, frozenset], set]

INCLUDE = FilterMode.INCLUDE
EXCLUDE = FilterMode.EXCLUDE
_NONE: frozenset = frozenset()


class TimerValue(enum.Enum):
    """What a table action sets source timers to."""

    GMI = "GMI"                  # Group Membership Interval (MLD: MALI)
    GROUP_TIMER = "Group Timer"  # the group (filter) timer's current deadline


@dataclass(frozen=True, slots=True)
class Row:
    """One line of RFC 3376 §6.4.1 / §6.4.2 (RFC 3810 §7.4.1 / §7.4.2).

    ``new_x`` / ``new_y``: the new state's sets (sources in neither are deleted).
    ``source_timers``: "(set)=value" actions, applied in order with the old
    group timer. ``group_timer_gmi``: "Group Timer=GMI". ``query_sources``:
    "Send Q(G,set)", computed on the old state. ``query_group``: "Send Q(G)".
    """

    section: str
    text: str
    new_mode: FilterMode
    new_x: SetExpr
    new_y: SetExpr
    source_timers: tuple[tuple[SetExpr, TimerValue], ...] = ()
    group_timer_gmi: bool = False
    query_sources: SetExpr | None = None
    query_group: bool = False


def _empty(x: set, y: set, r: frozenset) -> frozenset:
    return _NONE


ROWS: dict[tuple[FilterMode, RecordType], Row] = {
    # RFC 3376 §6.4.1 / RFC 3810 §7.4.1: current-state records.
    (INCLUDE, RecordType.MODE_IS_INCLUDE): Row(
        "RFC 3376 §6.4.1", "INCLUDE (A) IS_IN (B) -> INCLUDE (A+B); (B)=GMI",
        INCLUDE, lambda x, y, r: x | r, _empty,
        source_timers=((lambda x, y, r: r, TimerValue.GMI),)),
    (INCLUDE, RecordType.MODE_IS_EXCLUDE): Row(
        "RFC 3376 §6.4.1",
        "INCLUDE (A) IS_EX (B) -> EXCLUDE (A*B,B-A); (B-A)=0, Delete (A-B), Group Timer=GMI",
        EXCLUDE, lambda x, y, r: x & r, lambda x, y, r: r - x,
        group_timer_gmi=True),
    (EXCLUDE, RecordType.MODE_IS_INCLUDE): Row(
        "RFC 3376 §6.4.1", "EXCLUDE (X,Y) IS_IN (A) -> EXCLUDE (X+A,Y-A); (A)=GMI",
        EXCLUDE, lambda x, y, r: x | r, lambda x, y, r: y - r,
        source_timers=((lambda x, y, r: r, TimerValue.GMI),)),
    (EXCLUDE, RecordType.MODE_IS_EXCLUDE): Row(
        "RFC 3376 §6.4.1",
        "EXCLUDE (X,Y) IS_EX (A) -> EXCLUDE (A-Y,Y*A); (A-X-Y)=GMI, Delete (X-A), Delete (Y-A),"
        " Group Timer=GMI",
        EXCLUDE, lambda x, y, r: r - y, lambda x, y, r: y & r,
        source_timers=((lambda x, y, r: r - x - y, TimerValue.GMI),),
        group_timer_gmi=True),
    # RFC 3376 §6.4.2 / RFC 3810 §7.4.2: state-change records.
    (INCLUDE, RecordType.ALLOW_NEW_SOURCES): Row(
        "RFC 3376 §6.4.2", "INCLUDE (A) ALLOW (B) -> INCLUDE (A+B); (B)=GMI",
        INCLUDE, lambda x, y, r: x | r, _empty,
        source_timers=((lambda x, y, r: r, TimerValue.GMI),)),
    (INCLUDE, RecordType.BLOCK_OLD_SOURCES): Row(
        "RFC 3376 §6.4.2", "INCLUDE (A) BLOCK (B) -> INCLUDE (A); Send Q(G,A*B)",
        INCLUDE, lambda x, y, r: x, _empty,
        query_sources=lambda x, y, r: x & r),
    (INCLUDE, RecordType.CHANGE_TO_EXCLUDE): Row(
        "RFC 3376 §6.4.2",
        "INCLUDE (A) TO_EX (B) -> EXCLUDE (A*B,B-A); (B-A)=0, Delete (A-B), Send Q(G,A*B),"
        " Group Timer=GMI",
        EXCLUDE, lambda x, y, r: x & r, lambda x, y, r: r - x,
        group_timer_gmi=True, query_sources=lambda x, y, r: x & r),
    (INCLUDE, RecordType.CHANGE_TO_INCLUDE): Row(
        "RFC 3376 §6.4.2", "INCLUDE (A) TO_IN (B) -> INCLUDE (A+B); (B)=GMI, Send Q(G,A-B)",
        INCLUDE, lambda x, y, r: x | r, _empty,
        source_timers=((lambda x, y, r: r, TimerValue.GMI),),
        query_sources=lambda x, y, r: x - r),
    (EXCLUDE, RecordType.ALLOW_NEW_SOURCES): Row(
        "RFC 3376 §6.4.2", "EXCLUDE (X,Y) ALLOW (A) -> EXCLUDE (X+A,Y-A); (A)=GMI",
        EXCLUDE, lambda x, y, r: x | r, lambda x, y, r: y - r,
        source_timers=((lambda x, y, r: r, TimerValue.GMI),)),
    (EXCLUDE, RecordType.BLOCK_OLD_SOURCES): Row(
        "RFC 3376 §6.4.2",
        "EXCLUDE (X,Y) BLOCK (A) -> EXCLUDE (X+(A-Y),Y); (A-X-Y)=Group Timer, Send Q(G,A-Y)",
        EXCLUDE, lambda x, y, r: x | (r - y), lambda x, y, r: y,
        source_timers=((lambda x, y, r: r - x - y, TimerValue.GROUP_TIMER),),
        query_sources=lambda x, y, r: r - y),
    (EXCLUDE, RecordType.CHANGE_TO_EXCLUDE): Row(
        "RFC 3376 §6.4.2",
        "EXCLUDE (X,Y) TO_EX (A) -> EXCLUDE (A-Y,Y*A); (A-X-Y)=Group Timer, Delete (X-A),"
        " Delete (Y-A), Send Q(G,A-Y), Group Timer=GMI",
        EXCLUDE, lambda x, y, r: r - y, lambda x, y, r: y & r,
        source_timers=((lambda x, y, r: r - x - y, TimerValue.GROUP_TIMER),),
        group_timer_gmi=True, query_sources=lambda x, y, r: r - y),
    (EXCLUDE, RecordType.CHANGE_TO_INCLUDE): Row(
        "RFC 3376 §6.4.2",
        "EXCLUDE (X,Y) TO_IN (A) -> EXCLUDE (X+A,Y-A); (A)=GMI, Send Q(G,X-A), Send Q(G)",
        EXCLUDE, lambda x, y, r: x | r, lambda x, y, r: y - r,
        source_timers=((lambda x, y, r: r, TimerValue.GMI),),
        query_sources=lambda x, y, r: x - r, query_group=True),
}


class Compat(enum.Enum):
    """How a group in an older compatibility mode treats a record."""

    AS_IS = "as is"
    NO_SOURCES = "source list ignored"
    IGNORED = "ignored"


class CompatMode(enum.Enum):
    """Group Compatibility Mode, named by the behaviour it demands.

    ``CURRENT``: IGMPv3 / MLDv2. ``V2``: IGMPv2 or MLDv1 hosts present.
    ``V1``: IGMPv1 hosts present (IPv4 only).
    """

    CURRENT = "current"
    V2 = "v2"
    V1 = "v1"


COMPAT: dict[tuple[CompatMode, RecordType], Compat] = {
    # RFC 3376 §7.3.2 / RFC 3810 §8.3.2: "BLOCK messages are ignored, as are
    # source-lists in TO_EX() messages".
    (CompatMode.V2, RecordType.BLOCK_OLD_SOURCES): Compat.IGNORED,
    (CompatMode.V2, RecordType.CHANGE_TO_EXCLUDE): Compat.NO_SOURCES,
    # RFC 3376 §7.3.2: in IGMPv1 mode, additionally "IGMPv2 Leave messages and
    # IGMPv3 TO_IN() messages are also ignored".
    (CompatMode.V1, RecordType.BLOCK_OLD_SOURCES): Compat.IGNORED,
    (CompatMode.V1, RecordType.CHANGE_TO_EXCLUDE): Compat.NO_SOURCES,
    (CompatMode.V1, RecordType.CHANGE_TO_INCLUDE): Compat.IGNORED,
}


# -- the rows as per-class fates (what ``router_group.apply_row`` executes) ----------

class Fate(enum.Enum):
    """What a row does to one source record of a class."""

    KEEP = "keep"        # in the new X: its timer (or 0) is kept
    TO_Y = "to Y"        # in the new Y: timer 0
    TIMED = "timed"      # a "(set)=value" action sets its timer
    DELETE = "delete"    # in neither new set


#: The five classes a source can be in for one record: in X only, in Y only, in
#: X and the record, in Y and the record, in the record only. A row's set
#: expressions are unions, intersections and differences of x, y and r, so each
#: maps every member of a class the same way.
X_ONLY, Y_ONLY, X_AND_R, Y_AND_R, R_ONLY = "x-r", "y-r", "x*r", "y*r", "r-x-y"
CLASSES = (X_ONLY, Y_ONLY, X_AND_R, Y_AND_R, R_ONLY)
IN_X = frozenset({X_ONLY, X_AND_R})
IN_Y = frozenset({Y_ONLY, Y_AND_R})
_PROBE = ({X_ONLY, X_AND_R}, {Y_ONLY, Y_AND_R}, frozenset({X_AND_R, Y_AND_R, R_ONLY}))


@dataclass(frozen=True, slots=True)
class RowPlan:
    """A ``Row`` evaluated once on one probe member per class.

    ``fate`` / ``timer``: per class, what happens to its sources (the last
    timer action naming a class wins, as in the row's order); ``timer_gmi``:
    per timed class, True for GMI, False for the group timer. ``in_new_x`` /
    ``in_new_y``: the classes in the row's new sets (for "membership changed").
    ``query``: the classes of "Send Q(G,set)". ``still``: a record without
    sources changes nothing in the row's start mode (e.g. ALLOW({})).
    """

    fate: dict[str, Fate]
    timer: dict[str, TimerValue]
    timer_gmi: dict[str, bool]
    in_new_x: frozenset[str]
    in_new_y: frozenset[str]
    query: frozenset[str]
    still: bool


def _plan(mode: FilterMode, row: Row) -> RowPlan:
    new_x = frozenset(row.new_x(*_PROBE))
    new_y = frozenset(row.new_y(*_PROBE))
    timer: dict[str, TimerValue] = {}
    for expr, value in row.source_timers:
        for member in expr(*_PROBE):
            timer[member] = value
    fate = {}
    for member in CLASSES:
        if member in timer:
            fate[member] = Fate.TIMED
        elif member in new_y:
            fate[member] = Fate.TO_Y
        elif member in new_x:
            fate[member] = Fate.KEEP
        else:
            fate[member] = Fate.DELETE
    query = frozenset(row.query_sources(*_PROBE)) if row.query_sources is not None else _NONE
    target, before = (new_x, IN_X) if row.new_mode is INCLUDE else (new_y, IN_Y)
    outside = (X_ONLY,) if mode is INCLUDE else (X_ONLY, Y_ONLY)    # INCLUDE has no Y
    still = (row.new_mode is mode and not row.group_timer_gmi and X_ONLY not in query
             and fate[X_ONLY] is Fate.KEEP
             and (mode is INCLUDE or fate[Y_ONLY] in (Fate.KEEP, Fate.TO_Y))
             and all((c in target) == (c in before) for c in outside))
    timer_gmi = {c: value is TimerValue.GMI for c, value in timer.items()}
    return RowPlan(fate, timer, timer_gmi, new_x, new_y, query, still)


#: id(row) -> its plan (rows are module constants; an id is cheaper to hash than a Row)
PLANS: dict[int, RowPlan] = {id(row): _plan(mode, row) for (mode, _), row in ROWS.items()}
#: start mode -> record type -> row, looked up without hashing a FilterMode
ROWS_INCLUDE = {record_type: row for (mode, record_type), row in ROWS.items() if mode is INCLUDE}
ROWS_EXCLUDE = {record_type: row for (mode, record_type), row in ROWS.items() if mode is EXCLUDE}
