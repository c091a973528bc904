"""The built wheel and sdist install and run without the source tree.

``python -m build --no-isolation`` turns a copy of the repository into an
sdist and then a wheel built from that sdist (so a file the sdist lacks
breaks the wheel too), using the project venv's setuptools: nothing is
downloaded. The wheel goes into a fresh venv with ``--no-deps``; every
command then runs from a folder outside the source tree with PYTHONPATH
cleared, and the test checks that the code it runs is the installed copy.

The fresh venv reaches the dependencies (Twisted, pyroute2, ...) through a
``.pth`` file naming the project venv's site-packages: a path line in a
``.pth`` is only appended to ``sys.path`` (the ``.pth`` files in that folder,
such as the project's editable-install hook, are not run), and the fresh
venv's own site-packages comes first, so ``mcproxy_pmip`` is imported from
the wheel while the libraries come from the project venv.

The module takes about 7 s (build, install, five commands), under the
``slow`` marker's threshold.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path

import pytest

from mcproxy_pmip import __version__

ROOT = Path(__file__).resolve().parents[2]
SKIPPED = {".git", ".venv", "__pycache__", "build", "dist", "results", ".hypothesis",
           ".pytest_cache", "mcproxy_pmip.egg-info"}
TIMEOUT = 120


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("build", reason="needs the 'build' package (pip install -e '.[test]')")
    work = tmp_path_factory.mktemp("mC-build")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=lambda _folder, names: [n for n in names if n in SKIPPED])
    out = work / "dist"
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)], cwd=work)
    return out


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A fresh venv holding only the wheel, plus the environment to run its commands in."""
    venv = tmp_path_factory.mktemp("mC-venv") / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=venv.parent)
    python = venv / "bin" / "python"
    (wheel,) = dist.glob("mcproxy_pmip-*.whl")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
          "--quiet", str(wheel)], cwd=venv.parent)
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                     cwd=venv.parent).strip())
    (site / "project_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    env = {key: value for key, value in os.environ.items()
           if key not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    return venv, env


def test_sdist_carries_docs_man_pages_and_completion(dist: Path) -> None:
    (sdist,) = dist.glob("mcproxy_pmip-*.tar.gz")
    assert sdist.name == f"mcproxy_pmip-{__version__}.tar.gz"
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    expected = {"CHANGELOG.md", "README.md", "pyproject.toml", "man/mcproxy-pmip.1",
                "man/mcproxy-pmip-ctl.1", "man/mcproxy-pmip-testbed.1",
                "completions/mcproxy-pmip-ctl", "configs/mag.yaml", "docs/configuration.md",
                "testbed/scenarios/scale-50x4.yaml", "mcproxy_pmip/dataplane/__init__.py"}
    assert expected <= names, sorted(expected - names)


def test_installed_commands_run_outside_the_source_tree(
        installed: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    venv, env = installed
    bin_dir = venv / "bin"
    for command in ("mcproxy-pmip", "mcproxy-pmip-ctl", "mcproxy-pmip-testbed"):
        assert _run([str(bin_dir / command), "--version"], tmp_path, env).strip() == \
            f"{command} {__version__}"
        assert "usage:" in _run([str(bin_dir / command), "--help"], tmp_path, env)
    config = tmp_path / "mag.yaml"
    shutil.copyfile(ROOT / "configs" / "mag.yaml", config)
    checked = _run([str(bin_dir / "mcproxy-pmip"), "-t", "-f", str(config)], tmp_path, env)
    assert checked.startswith(f"{config}: ok")


def test_installed_code_plugin_and_data_come_from_the_wheel(
        installed: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    venv, env = installed
    probe = (
        "import importlib.metadata as m, mcproxy_pmip, mcproxy_pmip.dataplane.nftables\n"
        "from mcproxy_pmip_testbed.scenario import default_scenario\n"
        "from importlib.resources import files\n"
        "(ep,) = m.entry_points(group='mcproxy_pmip.plugins', name='pmipv6')\n"
        "plugin = ep.load()\n"
        "import sys\n"
        "print(mcproxy_pmip.__file__)\n"
        "print(sys.modules[plugin.__module__].__file__)\n"
        "print(sorted(p.name for p in files('mcproxy_pmip_testbed').joinpath('scenarios').iterdir()"
        " if p.name.endswith('.yaml')))\n"
        "print(len(default_scenario().handovers))\n")
    lines = _run([str(venv / "bin" / "python"), "-c", probe], tmp_path, env).splitlines()
    package_file, plugin_file, scenarios, handovers = lines
    assert Path(package_file).is_relative_to(venv), package_file
    assert Path(plugin_file).is_relative_to(venv), plugin_file
    assert scenarios == "['scale-200x4.yaml', 'scale-50x4.yaml']"
    assert int(handovers) > 0


def test_man_pages_and_completion_installed(installed: tuple[Path, dict[str, str]]) -> None:
    venv, _env = installed
    for name in ("mcproxy-pmip", "mcproxy-pmip-ctl", "mcproxy-pmip-testbed"):
        assert (venv / "share" / "man" / "man1" / f"{name}.1").read_text() == \
            (ROOT / "man" / f"{name}.1").read_text()
    assert (venv / "share" / "bash-completion" / "completions" / "mcproxy-pmip-ctl").is_file()
