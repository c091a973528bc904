"""Shared pytest configuration: the ``netns`` marker skips with a reason when not root."""

from __future__ import annotations

import os
import shutil

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = None
    if os.geteuid() != 0:
        reason = "needs root for network namespaces and multicast routing"
    elif shutil.which("ip") is None:
        reason = "needs iproute2's ip command (scripts/bootstrap.sh installs it)"
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "netns" in item.keywords:
            item.add_marker(skip)
