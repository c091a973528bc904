"""The layers import one way only (docs/architecture.md), checked by parsing imports with ast."""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "mcproxy_pmip"

IO_MODULES = ("socket", "twisted", "pyroute2", "scapy", "select", "fcntl")

#: package -> imports it must never make (prefix match on the imported module name)
FORBIDDEN = {
    "wire": IO_MODULES + ("mcproxy_pmip.membership", "mcproxy_pmip.kernel", "mcproxy_pmip.proxy",
                          "mcproxy_pmip.config", "mcproxy_pmip.control", "yaml"),
    "membership": IO_MODULES + ("mcproxy_pmip.kernel", "mcproxy_pmip.proxy", "mcproxy_pmip.config",
                                "mcproxy_pmip.control", "yaml"),
    "handover": IO_MODULES + ("mcproxy_pmip.kernel", "mcproxy_pmip.proxy", "mcproxy_pmip.config",
                              "mcproxy_pmip.control", "mcproxy_pmip.dataplane"),
    "config": IO_MODULES + ("mcproxy_pmip.kernel", "mcproxy_pmip.proxy", "mcproxy_pmip.control"),
    "kernel": ("twisted", "scapy", "mcproxy_pmip.proxy", "mcproxy_pmip.control", "mcproxy_pmip.dataplane",
               "mcproxy_pmip.membership", "mcproxy_pmip.config"),
    "dataplane": ("twisted", "scapy", "mcproxy_pmip.proxy", "mcproxy_pmip.control",
                  "mcproxy_pmip.membership"),
    "control": ("scapy", "mcproxy_pmip.proxy", "mcproxy_pmip.kernel", "mcproxy_pmip.membership",
                "mcproxy_pmip.config"),
}

#: plugins speak to the daemon through mcproxy_pmip.plugin and the shared vocabulary only
PLUGIN_FORBIDDEN = ("scapy", "mcproxy_pmip.proxy", "mcproxy_pmip.kernel", "mcproxy_pmip.cli",
                    "mcproxy_pmip.control.server", "mcproxy_pmip.membership.instance",
                    "mcproxy_pmip.membership.router", "mcproxy_pmip.membership.host")


def imported_modules(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def layer_files():
    for layer in FORBIDDEN:
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            yield pytest.param(layer, path, id=f"{layer}/{path.relative_to(PACKAGE / layer)}")


@pytest.mark.parametrize(("layer", "path"), list(layer_files()))
def test_layer_imports_only_downward(layer: str, path: pathlib.Path) -> None:
    bad = sorted(
        name for name in imported_modules(path)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[layer])
    )
    assert not bad, f"{path.relative_to(ROOT)} ({layer} layer) imports {bad}"


@pytest.mark.parametrize("path", sorted((ROOT / "plugins").rglob("*.py")), ids=lambda p: p.name)
def test_plugins_use_only_the_plugin_api(path: pathlib.Path) -> None:
    bad = sorted(name for name in imported_modules(path)
                 if any(name == f or name.startswith(f + ".") for f in PLUGIN_FORBIDDEN))
    assert not bad, f"{path.relative_to(ROOT)} reaches into the daemon: {bad}"


#: kernel specifics the proxy layer reaches only through the data-plane port, given from the top
PLANE_IMPLEMENTATIONS = ("mcproxy_pmip.dataplane.mroute", "mcproxy_pmip.dataplane.nftables",
                         "mcproxy_pmip.dataplane.memory", "mcproxy_pmip.kernel.mroute", "mcproxy_pmip.kernel.mfc",
                         "mcproxy_pmip.kernel.vifs", "mcproxy_pmip.kernel.mrules", "mcproxy_pmip.kernel.leftovers",
                         "mcproxy_pmip.kernel.nft", "mcproxy_pmip.kernel.packet_socket")


@pytest.mark.parametrize("path", sorted(p for p in (PACKAGE / "proxy").glob("*.py") if p.name != "daemon.py"),
                         ids=lambda p: p.name)
def test_proxy_layer_forwards_only_through_the_port(path: pathlib.Path) -> None:
    bad = sorted(name for name in imported_modules(path) if name in PLANE_IMPLEMENTATIONS)
    assert not bad, f"{path.relative_to(ROOT)} imports a plane implementation {bad}: pass it in from the daemon"


def test_core_never_imports_plugins_testbed_or_simulator() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in PACKAGE.rglob("*.py")
        for name in imported_modules(path)
        if name.startswith(("mcproxy_pmip_plugins", "mcproxy_pmip_testbed", "mcproxy_pmip_sim"))
    ]
    assert not offenders, f"the core imports a plugin, the testbed or the simulator: {offenders}"


def test_scapy_stays_out_of_the_daemon() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in PACKAGE.rglob("*.py")
        if any(n == "scapy" or n.startswith("scapy.") for n in imported_modules(path))
    ]
    assert not offenders, f"scapy imported by daemon code: {offenders}"
