"""Status rows and the ``-s`` text: instances, vifs, groups with their timers, MFC entries.

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
        "vifs": {family.name.lower(): {vif.interface: vif.index for vif in routing.vifs}
                 for family, routing in instance.routing.items()},
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
    rows = []
    for family, routing in instance.routing.items():
        for entry in routing.entries():
            rows.append({
                "instance": instance.name,
                "family": family.name.lower(),
                "source": str(entry.source),
                "group": str(entry.group),
                "iif": routing.vifs.interface_of(entry.iif_vif),
                "oifs": sorted(filter(None, (routing.vifs.interface_of(v) for v in entry.oif_vifs))),
                "packets": routing.packet_count(entry),
            })
    return rows


def render(api) -> str:
    """The ``-s`` status text, like mcproxy's periodic state print."""
    lines = []
    now = api.clock.seconds()
    for instance in api.proxy.instances.values():
        row = instance_row(instance)
        lines.append(f"instance {row['name']} table={row['table'] if row['table'] is not None else 'default'}"
                     f" upstreams={','.join(row['upstreams']) or '-'}"
                     f" downstreams={','.join(row['downstreams']) or '-'}")
        for family, vifs in row["vifs"].items():
            lines.append(f"  {family} vifs: " + (" ".join(f"{n}={i}" for n, i in vifs.items()) or "-"))
        for group in group_rows(instance, now):
            sources = ",".join(group["sources"]) or "{}"
            lines.append(f"  {group['interface']} {group['group']} {group['filter_mode']}({sources})"
                         f" v{group['version']} timer={group['group_timer']}")
        for route in route_rows(instance):
            lines.append(f"  mfc ({route['source']}, {route['group']}) {route['iif']} -> "
                         f"{','.join(route['oifs']) or '-'} packets={route['packets']}")
    counters = api.status()["counters"]
    if counters:
        lines.append("counters " + " ".join(f"{k}={v}" for k, v in counters.items()))
    return "\n".join(lines)


