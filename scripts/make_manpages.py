#!/usr/bin/env python3
"""Generate the man pages (man/*.1) and the ctl's bash completion (completions/).

The man pages come from the argparse definitions of the four commands
(``mcproxy_pmip.cli.build_parser``, ``mcproxy_pmip.control.ctl.build_parser``,
``mcproxy_pmip_testbed.cli.build_parser``, ``mcproxy_pmip_sim.cli.build_parser``),
the completion from the ctl's
command table (``mcproxy_pmip.control.ctl.COMMAND_SPECS``) and its global
options. The output carries no date, so it changes only when a parser, the
command table or the version changes.

``python scripts/make_manpages.py`` writes the files; ``--check`` writes
nothing, prints a unified diff of every file that differs and exits 1
(tests/unit/test_packaging_docs.py runs it so the committed files never drift).
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from mcproxy_pmip import __version__
from mcproxy_pmip.cli import build_parser as daemon_parser
from mcproxy_pmip.control.ctl import COMMAND_SPECS
from mcproxy_pmip.control.ctl import build_parser as ctl_parser
from mcproxy_pmip_sim.cli import build_parser as sim_parser
from mcproxy_pmip_testbed.cli import build_parser as testbed_parser

ROOT = Path(__file__).resolve().parent.parent

# Sections each page adds after OPTIONS / COMMANDS: (title, paragraphs).
EXTRA_SECTIONS: dict[str, list[tuple[str, list[str]]]] = {
    "mcproxy-pmip": [
        ("SIGNALS", [
            "SIGTERM and SIGINT stop the daemon cleanly: forwarding state, group memberships and "
            "the control socket are removed. SIGHUP reloads the configuration file, all or "
            "nothing; a SIGHUP that arrives during start-up is held until the daemon runs.",
        ]),
        ("EXIT STATUS", [
            "0 after a requested stop (or a successful -t / -c), 2 for a configuration error "
            "found before anything touched the kernel, 1 for a runtime failure.",
        ]),
        ("FILES", [
            "mcproxy.conf: the configuration, in the mcproxy grammar or in YAML (see "
            "docs/configuration.md in the source distribution).",
            "/run/mcproxy-pmip/control.sock: the default control socket.",
        ]),
        ("SEE ALSO", ["mcproxy-pmip-ctl(1), mcproxy-pmip-testbed(1)"]),
    ],
    "mcproxy-pmip-ctl": [
        ("EXIT STATUS", ["0 ok, 1 an error reply (its code and message on stderr), "
                         "2 a bad command line."]),
        ("SEE ALSO", ["mcproxy-pmip(1)"]),
    ],
    "mcproxy-pmip-testbed": [
        ("EXIT STATUS", ["0 ok, 2 an invalid scenario or an unusable data plane, "
                         "130 interrupted (the topology is torn down)."]),
        ("SEE ALSO", ["mcproxy-pmip(1), mcproxy-pmip-ctl(1), mcproxy-pmip-sim(1)"]),
    ],
    "mcproxy-pmip-sim": [
        ("FILES", [
            "The scenario YAML: every key optional, the embedded default fills the rest; "
            "docs/simulation.md in the source distribution lists the keys, the data model "
            "and its error.",
            "results.json (the testbed's handover rows and keys, plus aggregates per mode), "
            "gap_cdf.png and loss_popularity.png in the --out folder.",
        ]),
        ("EXIT STATUS", ["0 ok, 2 an invalid scenario, sweep value or command line."]),
        ("SEE ALSO", ["mcproxy-pmip-testbed(1), mcproxy-pmip(1)"]),
    ],
}


def roff_text(text: str) -> str:
    """``text`` safe in a roff text line: backslashes escaped, no line starting a request."""
    text = text.replace("\\", "\\e")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line
                     for line in text.splitlines())


def roff_option(text: str) -> str:
    """An option or command name in roff: escaped, its hyphens as ``\\-`` (they are typed)."""
    return roff_text(text).replace("-", "\\-")


def _value_name(action: argparse.Action) -> str:
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        return "{" + ",".join(str(choice) for choice in action.choices) + "}"
    if action.metavar is not None:
        return str(action.metavar)
    return action.dest if not action.option_strings else action.dest.upper()


def _help(action: argparse.Action, prog: str) -> str:
    if not action.help:
        return ""
    return action.help % dict(vars(action), prog=prog)


def _action_item(action: argparse.Action, prog: str) -> list[str]:
    if action.option_strings:
        value = "" if action.nargs == 0 else " " + roff_text(_value_name(action))
        names = ", ".join(f"\\fB{roff_option(name)}\\fR" + (f" \\fI{value.strip()}\\fR" if value else "")
                          for name in action.option_strings)
    else:
        names = f"\\fI{roff_text(_value_name(action))}\\fR"
    return [".TP", names, roff_text(_help(action, prog)) or "\\&"]


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((action for action in parser._actions
                 if isinstance(action, argparse._SubParsersAction)), None)


def _options(parser: argparse.ArgumentParser, prog: str) -> list[str]:
    lines: list[str] = []
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            lines.extend(_action_item(action, prog))
    return lines


def _usage(parser: argparse.ArgumentParser) -> str:
    usage = " ".join(parser.format_usage().split())
    return usage.removeprefix("usage: ").removeprefix(parser.prog).strip()


def _ctl_commands() -> list[str]:
    lines = [".SH COMMANDS",
             "The commands the daemon and its pmipv6 plugin answer; positional arguments are "
             "given bare, in order, options as \\fB\\-\\-name\\fR \\fIVALUE\\fR (or "
             "\\fB\\-\\-name\\fR=\\fIVALUE\\fR); which are required is in docs/control.md. "
             "Every command also takes \\fB\\-\\-args\\fR \\fIJSON\\fR, an object merged "
             "into its arguments."]
    for name, spec in COMMAND_SPECS.items():
        words = [f"\\fI{roff_text(arg)}\\fR" for arg in spec.positional]
        words += [f"\\fB{roff_option(_option_flag(arg))}\\fR \\fI{roff_text(arg.upper())}\\fR"
                  for arg in spec.options]
        lines += [".TP", " ".join([f"\\fB{roff_option(name)}\\fR", *words])]
        notes = [spec.summary] if spec.summary else []
        notes += [f"{arg}: {' | '.join(values)}" for arg, values in spec.values.items()]
        notes += [f"--{_option_flag(arg)[2:]} may be repeated" for arg in sorted(spec.repeated)]
        lines.append(roff_text("; ".join(notes)) if notes else "\\&")
    return lines


def man_page(parser: argparse.ArgumentParser, extra: Iterable[tuple[str, list[str]]] = (),
             commands: Callable[[], list[str]] | None = None) -> str:
    """The roff source of section-1 page for ``parser``."""
    prog = parser.prog
    lines = [f'.TH {prog.upper()} 1 "" "{prog} {__version__}" "User Commands"', ".nh",
             ".SH NAME",
             f"{roff_option(prog)} \\- {roff_text(parser.description or '')}",
             ".SH SYNOPSIS",
             f"\\fB{roff_option(prog)}\\fR {roff_option(_usage(parser))}"]
    lines += [".SH OPTIONS", *_options(parser, prog)]
    sub = _subcommands(parser)
    if sub is not None:
        lines.append(".SH COMMANDS")
        helps = {choice.dest: choice.help for choice in sub._choices_actions}
        for name, subparser in sub.choices.items():
            lines += [".SS " + roff_option(name), roff_text(helps.get(name) or ""),
                      ".PP", f"\\fB{roff_option(prog)} {roff_option(name)}\\fR "
                      + roff_option(_usage(subparser).removeprefix(name).strip())]
            lines += _options(subparser, prog)
    if parser.epilog:
        lines += [".SH EXAMPLES", roff_text(parser.epilog)]
    if commands is not None:
        lines += commands()
    for title, paragraphs in extra:
        lines.append(f".SH {title}")
        for index, paragraph in enumerate(paragraphs):
            if index:
                lines.append(".PP")
            lines.append(roff_text(paragraph))
    return "\n".join(lines) + "\n"


def _option_flag(argument: str) -> str:
    return "--" + argument.replace("_", "-")


def _global_options(parser: argparse.ArgumentParser) -> tuple[list[str], list[str]]:
    flags: list[str] = []
    valued: list[str] = []
    for action in parser._actions:
        (flags if action.nargs == 0 else valued).extend(
            name for name in action.option_strings if name.startswith("--"))
    return flags, valued


def _case_line(pattern: str, assignments: str) -> str:
    return f"        {pattern}) {assignments} ;;"


def bash_completion() -> str:
    """The bash completion script of ``mcproxy-pmip-ctl`` from its parser and command table."""
    flags, valued = _global_options(ctl_parser())
    by_spec: dict[tuple[str, str], list[str]] = {}
    for name, spec in COMMAND_SPECS.items():
        key = (" ".join(spec.positional), " ".join(_option_flag(arg) for arg in spec.options))
        by_spec.setdefault(key, []).append(name)
    spec_cases = [_case_line("|".join(names), f'positional="{positional}"; options="{options}"')
                  for (positional, options), names in by_spec.items()]
    value_cases = [_case_line(f"{name}:{arg}", f'words="{" ".join(values)}"')
                   for name, spec in COMMAND_SPECS.items() for arg, values in spec.values.items()]
    interface_args = sorted({arg for spec in COMMAND_SPECS.values()
                             for arg in (*spec.positional, *spec.options)
                             if arg == "interface" or arg.endswith("_if")})
    value_cases.append(_case_line("|".join(f"*:{arg}" for arg in interface_args),
                                  'words="$(command ls /sys/class/net 2>/dev/null)"'))
    template = (ROOT / "scripts" / "ctl-completion.bash.in").read_text()
    return (template.replace("@VERSION@", __version__)
            .replace("@COMMANDS@", " ".join(COMMAND_SPECS))
            .replace("@FLAGS@", " ".join(flags))
            .replace("@VALUED@", " ".join(valued))
            .replace("@VALUED_CASE@", "|".join(valued))
            .replace("@SPEC_CASES@", "\n".join(spec_cases))
            .replace("@VALUE_CASES@", "\n".join(value_cases)))


def outputs() -> dict[Path, str]:
    """Every generated file (relative to the repository root) and its content."""
    pages = {"mcproxy-pmip": (daemon_parser(), None),
             "mcproxy-pmip-ctl": (ctl_parser(), _ctl_commands),
             "mcproxy-pmip-testbed": (testbed_parser(), None),
             "mcproxy-pmip-sim": (sim_parser(), None)}
    files = {Path("man") / f"{name}.1": man_page(parser, EXTRA_SECTIONS[name], commands)
             for name, (parser, commands) in pages.items()}
    files[Path("completions") / "mcproxy-pmip-ctl"] = bash_completion()
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; print the differences and exit 1 if any")
    args = parser.parse_args(argv)
    stale = 0
    for relative, text in outputs().items():
        path = ROOT / relative
        current = path.read_text() if path.exists() else ""
        if current == text:
            continue
        stale += 1
        if args.check:
            sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), text.splitlines(True),
                                                       f"{relative} (committed)",
                                                       f"{relative} (generated)"))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {relative}")
    if args.check and stale:
        print(f"{stale} generated file(s) out of date: run python scripts/make_manpages.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
