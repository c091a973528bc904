"""Pluggable multicast daemons of the testbed: what runs on the LMAs and MAGs.

A ``DaemonSpec`` is an argv template plus a config writer; the runner starts
one daemon per LMA (upstream: the source link, downstreams: its tunnels, so the
LMA is the multicast router of its tunnels, RFC 6224 §4.1) and one per MAG
(one proxy instance per LMA tunnel, RFC 6224 §4.2: upstream the tunnel,
downstreams the MN access links). Two specs ship: ``mcproxy-pmip`` (default,
from the running interpreter's bin directory, on the data plane asked for with
``--data-plane``) and ``igmpproxy`` (a real IPv4 proxy, so the testbed runs
without our daemon; it forwards only with the kernel's multicast routing).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

ARGV_FIELDS = ("config", "control", "data_plane")


@dataclasses.dataclass(frozen=True, slots=True)
class ProxyInstancePlan:
    """One RFC 4605 proxy instance: one upstream, its downstreams."""

    name: str
    upstream: str
    downstreams: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class DaemonRole:
    """What one daemon must do on one node."""

    node: str
    kind: str  # "lma" | "mag"
    mode: str  # "static" | "plugin" | "context" | "predictive"
    instances: tuple[ProxyInstancePlan, ...]
    other_interfaces: tuple[str, ...]  # interfaces the daemon must leave alone
    plugin_settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # pmipv6, MAGs


@dataclasses.dataclass(frozen=True, slots=True)
class DaemonSpec:
    """How to run a daemon: ``argv`` may contain ``{config}``, ``{control}`` and ``{data_plane}``.

    ``data_planes``: the data planes it can forward with (``planes`` module); a daemon
    with one only has no choice to pass.
    """

    name: str
    argv: tuple[str, ...]
    write_config: Callable[[DaemonRole], str]
    families: frozenset[int]  # IP versions it proxies
    has_control: bool  # speaks the JSON-lines control protocol
    data_planes: tuple[str, ...] = ("mroute",)
    plugin_argv: tuple[str, ...] = ()  # appended outside static mode

    def command(self, role: DaemonRole, config: Path, control: Path,
                data_plane: str = "auto") -> list[str]:
        fields: Mapping[str, str] = {"config": str(config), "control": str(control),
                                     "data_plane": data_plane}
        argv = [part.format(**fields) for part in self.argv]
        if self.runs_plugin(role):
            argv += [part.format(**fields) for part in self.plugin_argv]
        return argv

    def runs_plugin(self, role: DaemonRole) -> bool:
        """Whether the daemon of ``role`` runs with the pmipv6 plugin (MAGs in every mode but static)."""
        return bool(self.plugin_argv) and role.mode != "static" and role.kind == "mag"

    @property
    def supports_plugin(self) -> bool:
        return self.has_control and bool(self.plugin_argv) and _plugin_installed()


def _plugin_installed() -> bool:
    return importlib.util.find_spec("mcproxy_pmip_plugins.pmipv6") is not None


def mcproxy_config(role: DaemonRole) -> str:
    """mcproxy grammar: IGMPv3 and MLDv2 together, one pinstance per instance.

    Outside static mode a MAG starts with no instance: the pmipv6 plugin
    creates one per tunnel at the first attach (docs/scenarios.md item 18). With plugin
    settings (the MAG-to-MAG context channel) the MAG's config is YAML instead.
    """
    if role.plugin_settings:
        return (f"# {role.kind} {role.node}, mode {role.mode} (written by the testbed)\n"
                + yaml.safe_dump({"protocols": ["MLDv2", "IGMPv3"],
                                  "plugins": {"pmipv6": dict(role.plugin_settings)}}, sort_keys=False))
    lines = [f"# {role.kind} {role.node}, mode {role.mode} (written by the testbed)",
             "protocol MLDv2;", "protocol IGMPv3;"]
    if role.kind == "lma" or role.mode == "static":
        for instance in role.instances:
            lines.append(f"pinstance {instance.name}: {instance.upstream} ==> "
                         f"{' '.join(instance.downstreams)};")
    return "\n".join(lines) + "\n"


def igmpproxy_config(role: DaemonRole) -> str:
    """igmpproxy handles one upstream: the first instance; everything else disabled."""
    instance = role.instances[0]
    lines = ["quickleave",
             f"phyint {instance.upstream} upstream ratelimit 0 threshold 1",
             "        altnet 0.0.0.0/0"]
    lines += [f"phyint {d} downstream ratelimit 0 threshold 1" for d in instance.downstreams]
    used = {instance.upstream, *instance.downstreams}
    for other in role.instances[1:]:
        used.discard(other.upstream)
    lines += [f"phyint {i} disabled" for i in role.other_interfaces if i not in used]
    return "\n".join(lines) + "\n"


def mcproxy_pmip_spec() -> DaemonSpec:
    daemon = Path(sys.executable).parent / "mcproxy-pmip"
    return DaemonSpec(name="mcproxy-pmip", argv=(str(daemon), "-f", "{config}", "-v",
                                                 "--control", "{control}",
                                                 "--data-plane", "{data_plane}"),
                      write_config=mcproxy_config, families=frozenset({4, 6}),
                      has_control=True, data_planes=("mroute", "nftables"),
                      plugin_argv=("--plugin", "pmipv6"))


def igmpproxy_spec() -> DaemonSpec:
    return DaemonSpec(name="igmpproxy", argv=(shutil.which("igmpproxy") or "igmpproxy", "-n",
                                              "-v", "{config}"),
                      write_config=igmpproxy_config, families=frozenset({4}), has_control=False,
                      data_planes=("mroute",))


SPECS: Mapping[str, Callable[[], DaemonSpec]] = {
    "mcproxy-pmip": mcproxy_pmip_spec,
    "igmpproxy": igmpproxy_spec,
}
