"""mcproxy-pmip-ctl: argument mapping and the human-readable output."""

from __future__ import annotations

import pytest

from mcproxy_pmip.control.ctl import UsageError, build_arguments, format_result, format_table, main


def test_binding_arguments_from_the_command_line():
    args = build_arguments("binding", ["attach", "--mn-id", "mn1", "--access-if=acc0", "--tunnel-if", "tun0",
                                       "--hnp", "2001:db8:1::/64", "--hnp", "10.1.0.0/24",
                                       "--lifetime", "3600", "--context", '[{"family":"ipv6","code":2,"payload":""}]'])
    assert args == {"event": "attach", "mn_id": "mn1", "access_if": "acc0", "tunnel_if": "tun0",
                    "hnp": ["2001:db8:1::/64", "10.1.0.0/24"], "lifetime": 3600,
                    "context": [{"family": "ipv6", "code": 2, "payload": ""}]}


def test_positional_and_raw_json_arguments():
    assert build_arguments("add-downstream", ["mag1", "acc0"]) == {"instance": "mag1", "interface": "acc0"}
    assert build_arguments("groups", ["--instance", "mag1"]) == {"instance": "mag1"}
    assert build_arguments("other", ["--args", '{"n": 2}']) == {"n": 2}


@pytest.mark.parametrize("tokens", [["--lifetime", "soon"], ["extra"], ["--mn-id"],
                                    ["--mn-id", "a", "--mn-id", "b"], ["--args", "[1]"]])
def test_usage_errors(tokens):
    with pytest.raises(UsageError):
        build_arguments("binding", ["attach", *tokens])


def test_usage_error_exits_2(capsys):
    assert main(["--socket", "/nonexistent", "binding", "attach", "--lifetime", "x"]) == 2
    assert "not an integer" in capsys.readouterr().err


def test_table_alignment_and_cells():
    text = format_table([{"mn_id": "mn1", "hnp": ["a", "b"], "expires_in": None},
                         {"mn_id": "mobile-22", "hnp": [], "up": True}])
    assert text.splitlines() == [
        "MN_ID      HNP  EXPIRES_IN  UP",
        "mn1        a,b  -           -",
        "mobile-22  -    -           yes",
    ]


def test_result_shapes():
    assert format_result(None) == "ok"
    assert format_result([]) == "(none)"
    assert format_result(["a", "b"]) == "a\nb"
    assert format_result({"mn_id": "mn1", "context": [{"family": "ipv6", "code": 2}]}).splitlines() == [
        "mn_id:   mn1", "context:", "  FAMILY  CODE", "  ipv6    2"]
