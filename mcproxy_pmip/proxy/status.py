"""Status rows and the ``-s`` text: instances, their data-plane interfaces, groups with their
timers, forwarding entries with the plane's counters (per (S,G) on both planes, per group on
nftables).

Rows are plain dicts (JSON-ready) shared by the control socket and the
periodic status print, so both always say the same thing.
"""

from __future__ import annotations

from typing import Any




def instance_row(instance, created_by_plugin: bool = False) -> dict[str, Any]:
    return {
        "name": instance.name,
        "table": instance.table,
        "upstreams": list(instance.upstreams),
        "downstreams": list(instance.downstreams),
        "attached": sorted(instance.attached),
        "interfaces": dict(sorted(instance.forwarding.interfaces().items())) if instance.forwarding else {},
        "dynamic": created_by_plugin,
    }


def _remaining(deadline: float | None, now: float) -> float | None:
    return None if deadline is None else round(max(0.0, deadline - now), 3)


def group_rows(instance, now: float) -> list[dict[str, Any]]:
    rows = []
    core = instance.core
    for name, family in core.downstreams:
        router = core.router(name, family)
        for group in sorted(router.groups()):
            state = router.membership(group)
            if state is None:
                continue
            mode, sources = state
            rows.append({
                "instance": instance.name,
                "interface": name,
                "family": family.name.lower(),
                "group": str(group),
                "filter_mode": mode.value,
                "sources": sorted(str(s) for s in sources),
                "version": router.compat_version(group),
                "group_timer": _remaining(router.group_timer_at(group), now),
                "source_timers": {str(s): _remaining(at, now) for s, at in router.source_timers(group).items()},
                "querier": router.is_querier,
            })
    return rows


def route_rows(instance) -> list[dict[str, Any]]:
    if instance.forwarding is None:
        return []
    return [{
        "instance": instance.name,
        "family": row.family.name.lower(),
        "source": str(row.source) if row.source is not None else "*",
        "group": str(row.group),
        "iif": row.iif,
        "oifs": list(row.oifs),
        "packets": row.packets,
        "octets": row.octets,
    } for row in instance.forwarding.routes()]


def render(api) -> str:
    """The ``-s`` status text, like mcproxy's periodic state print."""
    lines = []
    now = api.clock.seconds()
    for instance in api.proxy.instances.values():
        row = instance_row(instance)
        lines.append(f"instance {row['name']} table={row['table'] if row['table'] is not None else 'default'}"
                     f" upstreams={','.join(row['upstreams']) or '-'}"
                     f" downstreams={','.join(row['downstreams']) or '-'}")
        lines.append(f"  {api.proxy.plane.name} interfaces: "
                     + (" ".join(f"{n}={i}" for n, i in row["interfaces"].items()) or "-"))
        for group in group_rows(instance, now):
            sources = ",".join(group["sources"]) or "{}"
            lines.append(f"  {group['interface']} {group['group']} {group['filter_mode']}({sources})"
                         f" v{group['version']} timer={group['group_timer']}")
        for route in route_rows(instance):
            lines.append(f"  route ({route['source']}, {route['group']}) {route['iif'] or '*'} -> "
                         f"{','.join(route['oifs']) or '-'} packets={route['packets']}")
    counters = api.status()["counters"]
    if counters:
        lines.append("counters " + " ".join(f"{k}={v}" for k, v in counters.items()))
    return "\n".join(lines)


