"""The data plane of the testbed's daemons: the request, its checks, each daemon's choice ahead.

mcproxy-pmip forwards through one of two kernel data planes, chosen with
``--data-plane auto|mroute|nftables`` (a scenario's ``options.data_plane``):
``mroute`` (the kernel's multicast routing, MRT/MRT6, 32 vifs per table) or
``nftables`` (``dup to``, no interface limit). ``auto`` is the daemon's own
rule (``mcproxy_pmip.dataplane.choice.choose``): nftables on a kernel without
multicast routing, for a daemon with the pmipv6 plugin (a MAG in plugin and
context modes) and for an instance of more than 32 interfaces; mroute
otherwise. igmpproxy has no such option: it forwards only with the kernel's
multicast routing and needs a kernel with CONFIG_IP_MROUTE.

The testbed applies that same rule to the configurations it is about to
write, before it builds anything: a MAG daemon that ends up on mroute with
more than 31 MNs in one instance needs the MNs' access links behind the
bridge ``acc0`` (``plan.access_bridge_needed``); every other MAG keeps the
point-to-point links of RFC 5213. A request the kernel or the daemon cannot
serve is refused here with the reason. What each daemon actually chose is
read from its control socket (``status``) once it runs.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.config import parse_config
from mcproxy_pmip.config.model import DATA_PLANES
from mcproxy_pmip.dataplane.choice import (KERNEL_OPTION, MRT_MAX_INTERFACES, PlaneChoice, choose,
                                           missing_mroute)
from mcproxy_pmip_testbed.daemons import DaemonRole, DaemonSpec
from mcproxy_pmip_testbed.plan import PREFIX, Plan, access_bridge_needed, make_plan, new_run_id
from mcproxy_pmip_testbed.scenario import Topology

#: what the kernel lacks for multicast routing of some families (None: nothing)
MrouteProbe = Callable[[frozenset[Family]], str | None]
#: the daemons a plan runs (``runner.daemon_roles`` with the run's mode)
RolesOf = Callable[[Plan], Sequence[DaemonRole]]


class DataPlaneError(ValueError):
    """A data plane the daemon or the kernel cannot give; the message says why and what to do."""


@functools.cache
def kernel_missing_mroute(families: frozenset[Family]) -> str | None:
    """The daemon's own probe (an MRT socket opened and closed in this namespace), once per run
    of the testbed: a kernel's options do not change under it."""
    return missing_mroute(families)


@dataclasses.dataclass(frozen=True, slots=True)
class PlaneDecision:
    """The plan to build and the plane each daemon is expected to choose on it."""

    requested: str
    plan: Plan
    expected: Mapping[str, PlaneChoice]  # node -> choice


def _families(spec: DaemonSpec) -> frozenset[Family]:
    return frozenset(Family(version) for version in spec.families)


def _kernel_options(spec: DaemonSpec) -> str:
    return " and ".join(KERNEL_OPTION[family] for family in sorted(_families(spec)))


def check_request(requested: str, spec: DaemonSpec) -> None:
    """Refuse a plane the daemon has no way to run on (no kernel probe)."""
    if requested not in DATA_PLANES:
        raise DataPlaneError(f"unknown data plane {requested!r}: one of {', '.join(DATA_PLANES)}")
    if requested != "auto" and requested not in spec.data_planes:
        needs = (f"; it needs a kernel with {_kernel_options(spec)}"
                 if spec.data_planes == ("mroute",) else "")
        raise DataPlaneError(f"{spec.name} cannot run on the {requested} data plane: it forwards "
                             f"only with {' or '.join(spec.data_planes)}{needs}")


def expected_choice(requested: str, spec: DaemonSpec, role: DaemonRole,
                    probe: MrouteProbe) -> PlaneChoice:
    """The plane the daemon of ``role`` will choose, by its own rule on the config it gets."""
    if len(spec.data_planes) == 1:
        return PlaneChoice(spec.data_planes[0], f"{spec.name} has no other")
    config = parse_config(spec.write_config(role), f"{role.node}.conf")
    return choose(requested, config, spec.runs_plugin(role), probe)


def _refuse_unservable(spec: DaemonSpec, role: DaemonRole, choice: PlaneChoice,
                       probe: MrouteProbe) -> None:
    if choice.name != "mroute":
        return
    other = " or --data-plane nftables" if "nftables" in spec.data_planes else ""
    missing = probe(_families(spec))
    if missing is not None and len(spec.data_planes) == 1:
        raise DataPlaneError(f"{spec.name} forwards only with the kernel's multicast routing: it "
                             f"needs a kernel with {_kernel_options(spec)} ({missing})")
    if missing is not None:
        raise DataPlaneError(f"the mroute data plane needs a kernel with {_kernel_options(spec)} "
                             f"({missing}): use --data-plane auto{other}")
    for instance in role.instances:
        interfaces = 1 + len(instance.downstreams)
        if interfaces > MRT_MAX_INTERFACES:
            way_out = ("fewer MAGs" if role.kind == "lma"
                       else "topology.access_bridge auto or always")
            raise DataPlaneError(f"instance {instance.name} on {role.node} would have {interfaces} "
                                 f"interfaces on the mroute data plane, which has "
                                 f"{MRT_MAX_INTERFACES} per table: use {way_out}{other}")


def decide(requested: str, spec: DaemonSpec, topology: Topology, roles_of: RolesOf,
           run_id: str | None = None, probe: MrouteProbe = kernel_missing_mroute,
           prefix: str = PREFIX) -> PlaneDecision:
    """The plan of a run on the data plane ``requested``, or DataPlaneError saying why not.

    The MAGs' plane is first found with point-to-point access links; only where a MAG then
    runs on mroute does ``access_bridge: auto`` put the links behind ``acc0`` (and the
    choices are made again on the configs the bridge gives).
    """
    check_request(requested, spec)
    run_id = run_id or new_run_id()
    plan = make_plan(topology, run_id, mag_plane="nftables", prefix=prefix)

    def choices(on: Plan) -> dict[str, tuple[DaemonRole, PlaneChoice]]:
        return {role.node: (role, expected_choice(requested, spec, role, probe))
                for role in roles_of(on)}

    expected = choices(plan)
    mag_on_mroute = any(choice.name == "mroute" for role, choice in expected.values()
                        if role.kind == "mag")
    if access_bridge_needed(topology.access_bridge, "mroute" if mag_on_mroute else "nftables",
                            topology) != plan.access_bridge:
        plan = make_plan(topology, run_id, mag_plane="mroute", prefix=prefix)
        expected = choices(plan)
    for role, choice in expected.values():
        _refuse_unservable(spec, role, choice, probe)
    return PlaneDecision(requested, plan, {node: choice for node, (_, choice) in expected.items()})


def plane_summary(planes: Mapping[str, str | None]) -> str:
    """``nftables (lma1, mag1, mag2)``; daemons grouped by the plane they run on."""
    nodes_by_plane: dict[str, list[str]] = {}
    for node, plane in planes.items():
        nodes_by_plane.setdefault(plane or "unknown", []).append(node)
    return "; ".join(f"{plane} ({', '.join(nodes)})" for plane, nodes in sorted(nodes_by_plane.items()))
