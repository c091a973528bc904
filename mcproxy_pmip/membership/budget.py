"""State budgets: how many group and source records the routers may hold (docs/limits.md).

Accounts form a tree: one daemon-wide root (``StateBudget.daemon``), one
child per proxy instance, one grandchild per downstream link and family.
Each account has a cap on group records and on source records; taking state
must fit every account up to the root, giving it back returns it to all of
them. A refusal names the narrowest account that was full and is counted
once, on the root, as ``limit_<kind>_<scope>`` (e.g. ``limit_sources_link``);
``counters()`` gives those counts and the daemon's totals to ``status``.

The per-group source cap of the router options is not an account (a group
holds its own count); a refusal by it is counted as ``limit_sources_group``
through ``refused``.

Pure bookkeeping, no IO: the membership engine calls it on its hot path.
"""

from __future__ import annotations

#: Caps of an account that does not limit (a big number keeps the checks uniform).
UNLIMITED = 1 << 62


class StateBudget:
    """One account: caps, current use and the parent account (None for the root)."""

    __slots__ = ("scope", "max_groups", "max_sources", "groups", "sources", "parent", "_counts")

    def __init__(self, max_groups: int = UNLIMITED, max_sources: int = UNLIMITED,
                 scope: str = "daemon", parent: StateBudget | None = None) -> None:
        self.scope = scope
        self.max_groups = max_groups
        self.max_sources = max_sources
        self.groups = 0
        self.sources = 0
        self.parent = parent
        #: the root's event counts, shared by the whole tree
        self._counts: dict[str, int] = parent._counts if parent is not None else {}

    @classmethod
    def daemon(cls, max_total_groups: int = UNLIMITED,
               max_total_sources: int = UNLIMITED) -> StateBudget:
        """The daemon-wide root account."""
        return cls(max_total_groups, max_total_sources, "daemon")

    def child(self, max_groups: int, max_sources: int, scope: str) -> StateBudget:
        """A new account below this one (``scope``: "instance", "link")."""
        return StateBudget(max_groups, max_sources, scope, self)

    # -- taking and giving back ------------------------------------------------------

    def take_group(self) -> str | None:
        """Take one group record; None if granted, else the scope of the full account
        (nothing is taken then, and the refusal is counted)."""
        account: StateBudget | None = self
        while account is not None:
            if account.groups >= account.max_groups:
                return self._refuse("groups", account.scope)
            account = account.parent
        account = self
        while account is not None:
            account.groups += 1
            account = account.parent
        return None

    def give_group(self) -> None:
        account: StateBudget | None = self
        while account is not None:
            account.groups -= 1
            account = account.parent

    def take_sources(self, count: int) -> str | None:
        """Take ``count`` source records, all or none; like ``take_group``."""
        if count <= 0:
            return None
        account: StateBudget | None = self
        while account is not None:
            if account.sources + count > account.max_sources:
                return self._refuse("sources", account.scope)
            account = account.parent
        account = self
        while account is not None:
            account.sources += count
            account = account.parent
        return None

    def give_sources(self, count: int) -> None:
        if count <= 0:
            return
        account: StateBudget | None = self
        while account is not None:
            account.sources -= count
            account = account.parent

    def refused(self, kind: str, scope: str) -> str:
        """Count a refusal decided outside the accounts (the per-group source cap)."""
        return self._refuse(kind, scope)

    def count(self, event: str) -> None:
        """Count an engine event that ``status`` shows (e.g. a clamped querier value)."""
        self._counts[event] = self._counts.get(event, 0) + 1

    def _refuse(self, kind: str, scope: str) -> str:
        self.count(f"limit_{kind}_{scope}")
        return scope

    # -- what status shows --------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """The tree's event counts and this account's use (``state_groups``, ``state_sources``)."""
        counters = dict(self._counts)
        counters["state_groups"] = self.groups
        counters["state_sources"] = self.sources
        return counters
