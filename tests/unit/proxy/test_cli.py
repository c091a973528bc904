"""The command line without a kernel: ``-t``, configuration errors, plugins, ``disable;``, ``-h``.

Everything here ends before the daemon is built: ``Daemon`` is replaced by a
stand-in that fails the test if it is ever constructed, which is how "exits 2
before touching the kernel" is checked without root.
"""

from __future__ import annotations

import pathlib
import re

import pytest

from mcproxy_pmip import cli

CONFIGS = sorted((pathlib.Path(__file__).parents[3] / "configs").glob("*"))
LOCATION = re.compile(r"^(?P<file>.+):(?P<line>\d+):(?P<column>\d+): ", re.MULTILINE)


class NeverBuilt:
    def __init__(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("the daemon was built although the CLI should have stopped before")


@pytest.fixture(autouse=True)
def no_daemon(monkeypatch: pytest.MonkeyPatch) -> None:
    """No logging set-up (it replaces global handlers) and no daemon."""
    monkeypatch.setattr(cli.logsetup, "configure", lambda debug, **kwargs: None)
    monkeypatch.setattr("mcproxy_pmip.proxy.daemon.Daemon", NeverBuilt)


def write(tmp_path: pathlib.Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_check_config_accepts_every_example(config: pathlib.Path, capsys: pytest.CaptureFixture) -> None:
    assert CONFIGS, "no example configurations found"
    assert cli.main(["-t", "-f", str(config)]) == cli.EXIT_OK
    assert f"{config}: ok" in capsys.readouterr().out


def test_check_config_reports_every_problem_with_its_location(tmp_path, capsys) -> None:
    path = write(tmp_path, "bad.conf", "protocol IGMPv3;\npinstance a: up0 ==> d1;\n"
                                       "pinstance a: up1 ==> d1;\nprotocol IGMPv9;\n")
    assert cli.main(["-t", "-f", path]) == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    locations = [(m["file"], int(m["line"])) for m in LOCATION.finditer(err)]
    assert len(locations) >= 2, err
    assert all(file == path for file, _ in locations), err
    assert {3, 4} <= {line for _, line in locations}, err
    assert "nothing was changed" in err


def test_bad_yaml_names_line_and_column(tmp_path, capsys) -> None:
    path = write(tmp_path, "bad.yaml", "instances:\n  - name: p\n    upstreams: [up0]\n    colour: red\n")
    assert cli.main(["-t", "-f", path]) == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert re.search(rf"^{re.escape(path)}:4:\d+: ", err, re.MULTILINE), err


def test_missing_file_is_a_config_error(tmp_path, capsys) -> None:
    path = str(tmp_path / "absent.conf")
    assert cli.main(["-f", path]) == cli.EXIT_CONFIG
    assert path in capsys.readouterr().err


def test_bad_config_without_t_stops_before_the_daemon(tmp_path, capsys) -> None:
    path = write(tmp_path, "bad.conf", "pinstance a(10): up0 ==> d1;\npinstance b(10): up1 ==> d2;\n")
    assert cli.main(["-f", path, "--no-control"]) == cli.EXIT_CONFIG
    assert LOCATION.search(capsys.readouterr().err)


def test_unknown_plugin_exits_2_naming_it(tmp_path, capsys) -> None:
    path = write(tmp_path, "good.conf", "pinstance a: up0 ==> d1;\n")
    assert cli.main(["-f", path, "--plugin", "nosuch", "--no-control"]) == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "nosuch" in err and "pmipv6" in err, err


def test_check_config_also_checks_the_plugins_it_names(tmp_path, capsys) -> None:
    path = write(tmp_path, "plugins.yaml", "plugins:\n  nosuch: {}\ninstances:\n  - name: p\n    upstreams: [up0]\n")
    assert cli.main(["-t", "-f", path]) == cli.EXIT_CONFIG
    assert "nosuch" in capsys.readouterr().err


def test_disabled_config_exits_0_without_starting(tmp_path, capsys) -> None:
    path = write(tmp_path, "off.conf", "pinstance a: up0 ==> d1;\ndisable;\n")
    assert cli.main(["-f", path]) == cli.EXIT_OK
    assert "disable" in capsys.readouterr().err


def test_help_lists_mcproxys_flags(capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli.main(["-h"])
    assert stopped.value.code == 0
    out = capsys.readouterr().out
    for flag in ("-h", "-c", "-d", "-s", "-v", "-r", "-f FILE"):
        assert flag in out, flag
