"""The data planes this kernel offers, for tests that must run on each of them.

``PLANES`` parametrises a fixture over "nftables" and "mroute"; a plane the
kernel lacks is skipped with a reason naming the missing kernel option (MRT
needs ``CONFIG_IP_MROUTE`` / ``CONFIG_IPV6_MROUTE``). ``requires_mroute``
marks tests of the MRT plane itself.
"""

from __future__ import annotations

import functools
import os

import pytest

from mcproxy_pmip.addresses import Family


@functools.cache
def mroute_missing() -> str | None:
    """None if this kernel has multicast routing, else the reason (probed once, in the root namespace)."""
    if os.geteuid() != 0:
        return "needs root to probe multicast routing"
    from mcproxy_pmip.dataplane.choice import missing_mroute
    return missing_mroute(frozenset({Family.IPV4, Family.IPV6}))


def _mroute_skip() -> pytest.MarkDecorator:
    missing = mroute_missing()
    return pytest.mark.skipif(missing is not None, reason=f"mroute plane: kernel multicast routing missing "
                              f"({missing})")


requires_mroute = _mroute_skip()

PLANES = [pytest.param("nftables", id="nftables"),
          pytest.param("mroute", id="mroute", marks=_mroute_skip())]


def nft_text(ns, command: str) -> str:
    """Run one nft command in namespace ``ns`` through libnftables (no nft CLI needed); its output."""
    from mcproxy_pmip.kernel.nft import NftContext
    with ns.entered(), NftContext() as context:
        return context.run(command)
