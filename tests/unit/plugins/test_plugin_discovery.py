"""Plugin discovery through entry points and the pmipv6 settings."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from mcproxy_pmip.errors import ConfigError
from mcproxy_pmip.plugin import (
    ENTRY_POINT_GROUP, Plugin, PluginError, Timers, available_plugins, collect_commands, load_plugin,
)
from mcproxy_pmip_plugins.pmipv6 import Pmipv6Plugin, parse_settings


def test_the_installed_pmipv6_entry_point_is_found_and_loads():
    assert "pmipv6" in available_plugins()
    plugin = load_plugin("pmipv6")
    assert isinstance(plugin, Pmipv6Plugin) and isinstance(plugin, Plugin)
    assert plugin.name == "pmipv6"


def test_unknown_plugin_lists_the_available_ones():
    with pytest.raises(PluginError, match=r"unknown plugin 'nope'; available plugins: .*pmipv6"):
        load_plugin("nope")


def test_a_plugin_that_fails_to_import_is_named():
    broken = {"broken": EntryPoint("broken", "mcproxy_pmip_no_such_module:Thing", ENTRY_POINT_GROUP)}
    with pytest.raises(PluginError, match=r"plugin 'broken' \(mcproxy_pmip_no_such_module:Thing\) failed "
                                          r"to import: ModuleNotFoundError"):
        load_plugin("broken", broken)


def test_a_class_without_the_contract_is_refused():
    odd = {"odd": EntryPoint("odd", "collections:OrderedDict", ENTRY_POINT_GROUP)}
    with pytest.raises(PluginError, match="does not implement"):
        load_plugin("odd", odd)


def test_command_clash_between_core_and_plugin_is_an_error():
    plugin = Pmipv6Plugin()
    with pytest.raises(PluginError, match="'binding', already provided by core"):
        collect_commands({"binding": lambda args: None}, [plugin])
    table = collect_commands({"status": lambda args: None}, [plugin])
    assert set(table) == {"status", "binding", "bindings", "context-export", "handover-prepare"}


def test_settings_defaults_and_profile_mapping():
    settings = parse_settings({})
    assert settings.profile.startup_query_interval == 1.0
    assert settings.remove_empty_instance is True and settings.event_source == "control"
    custom = parse_settings({"profile": {"query_interval": 60, "query_response_interval": 5}})
    assert custom.profile == Timers(query_interval=60, query_response_interval=5, startup_query_interval=1.0)
    assert parse_settings({"profile": "default"}).profile == Timers()


def test_settings_problems_are_all_listed():
    with pytest.raises(ConfigError) as info:
        parse_settings({"profile": "turbo", "remove_empty_instance": "yes", "event_source": "netlink",
                        "colour": 1})
    text = str(info.value)
    for fragment in ("unknown setting 'colour'", "profile 'turbo' unknown", "remove_empty_instance",
                     "event_source netlink needs tunnel_for_access"):
        assert fragment in text
