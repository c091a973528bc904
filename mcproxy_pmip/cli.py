"""``mcproxy-pmip``: the daemon's command line, a drop-in for mcproxy's.

Flags: ``-f FILE`` (default ``mcproxy.conf``), ``-c`` kernel feature check,
``-s`` status print, ``-d`` / ``-v`` logging detail, ``-t`` check the config,
``-r`` reset rp_filter (restored on exit), ``-h``; ours: ``--control PATH``,
``--no-control``, ``--plugin NAME``, ``--seed N``, ``--require-router-alert``, ``--user NAME``,
``--data-plane auto|mroute|nftables``, ``--log-format text|journal|json``,
``--metrics ADDR:PORT`` (Prometheus endpoint).
Exit status: 0 after a requested stop, 2 for a configuration error (before
anything touches the kernel), 1 for a runtime failure. SIGTERM / SIGINT stop
cleanly; SIGHUP reloads the configuration file. SIGHUP is caught from the
first line of ``main`` (``proxy.hangup``): one that arrives while the daemon
starts is held and delivered once the reactor runs, never fatal.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

from mcproxy_pmip import __version__, logsetup
from mcproxy_pmip.config import load_config
from mcproxy_pmip.config.model import DATA_PLANES, MetricsConfig
from mcproxy_pmip.control.protocol import DEFAULT_SOCKET_PATH
from mcproxy_pmip.errors import ConfigError
from mcproxy_pmip.plugin import PluginError, load_plugin
from mcproxy_pmip.proxy.hangup import HangupLatch

log = logging.getLogger("mcproxy_pmip.cli")

EXIT_OK, EXIT_RUNTIME, EXIT_CONFIG = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcproxy-pmip",
        description="IGMP/MLD multicast proxy (RFC 4605) for PMIPv6 MAGs; a drop-in for mcproxy.")
    parser.add_argument("-f", dest="config", default="mcproxy.conf", metavar="FILE",
                        help="configuration file, mcproxy grammar or YAML (default: mcproxy.conf)")
    parser.add_argument("-c", dest="check_kernel", action="store_true",
                        help="check which data planes this kernel can run (and what is missing), print it "
                             "and exit: 0 if the daemon can run")
    parser.add_argument("-t", "--check-config", action="store_true",
                        help="validate the configuration, print every problem and exit (0 or 2)")
    parser.add_argument("-s", dest="status", action="store_true",
                        help="print the proxy status at start and then every 10 s")
    parser.add_argument("-d", dest="debug", action="count", default=0, help="debug log to stderr")
    parser.add_argument("-v", dest="verbose", action="count", default=0,
                        help="more detail (repeatable; -vv includes the libraries' debug log)")
    parser.add_argument("--log-format", choices=logsetup.LOG_FORMATS, default=None,
                        help="log line format (default: journal when stderr is the systemd journal, "
                             "else text)")
    parser.add_argument("-r", dest="reset_rp_filter", action="store_true",
                        help="set rp_filter 0 on the interfaces in use; restore on exit")
    parser.add_argument("--control", metavar="PATH",
                        help=f"control socket (default: the config's, else {DEFAULT_SOCKET_PATH})")
    parser.add_argument("--no-control", action="store_true", help="do not open a control socket")
    parser.add_argument("--plugin", action="append", default=[], metavar="NAME",
                        help="enable a plugin (repeatable), e.g. pmipv6")
    parser.add_argument("--require-router-alert", action="store_true",
                        help="drop reports without the Router Alert option")
    parser.add_argument("--data-plane", choices=DATA_PLANES, default=None,
                        help="how the kernel forwards: mroute (multicast routing), nftables (dup), or "
                             "auto (default: the configuration's data_plane, else auto)")
    parser.add_argument("--user", metavar="NAME",
                        help="after start-up run as this user (keeping CAP_NET_ADMIN and CAP_NET_RAW)")
    parser.add_argument("--seed", type=int, help="seed of the report-delay random generator")
    parser.add_argument("--metrics", metavar="ADDR:PORT", type=_metrics_address,
                        help="serve Prometheus metrics on http://ADDR:PORT/metrics ([ADDR]:PORT for IPv6; "
                             "default: the configuration's metrics.listen, else off)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def _metrics_address(text: str) -> MetricsConfig:
    try:
        return MetricsConfig.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def check_kernel() -> int:
    from mcproxy_pmip.dataplane.features import check_features, format_report, read_kernel_config, runnable
    reports = check_features()
    print(format_report(reports, read_kernel_config()))
    return EXIT_OK if runnable(reports) else EXIT_RUNTIME


def main(argv: list[str] | None = None) -> int:
    hangup = HangupLatch()
    hangup.install()
    try:
        return _main(argv, hangup)
    finally:
        hangup.uninstall()


def _main(argv: list[str] | None, hangup: HangupLatch) -> int:
    args = build_parser().parse_args(argv)
    logsetup.configure(args.debug + args.verbose, log_format=args.log_format)
    if args.check_kernel:
        return check_kernel()
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{args.config}: {len(exc.problems)} problem(s); nothing was changed", file=sys.stderr)
        return EXIT_CONFIG
    plugin_names = list(dict.fromkeys([p.name for p in config.plugins] + args.plugin))
    try:
        plugins = [load_plugin(name) for name in plugin_names]
    except PluginError as exc:
        print(f"mcproxy-pmip: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.check_config:
        print(f"{args.config}: ok ({len(config.instances)} instance(s), "
              f"protocols {', '.join(config.protocols)})")
        return EXIT_OK
    if config.disabled:
        print(f"{args.config}: the configuration says 'disable;' - not starting", file=sys.stderr)
        return EXIT_OK
    metrics = args.metrics or config.metrics
    if args.metrics and config.metrics:
        metrics = dataclasses.replace(args.metrics, forwarding=config.metrics.forwarding)
    control = None if args.no_control else (args.control or config.control_socket or DEFAULT_SOCKET_PATH)
    from mcproxy_pmip.proxy.daemon import Daemon
    daemon = Daemon(config, args.config, plugins, control_path=control, status=args.status,
                    reset_rp_filter=args.reset_rp_filter, seed=args.seed,
                    require_router_alert=args.require_router_alert, data_plane=args.data_plane,
                    user=args.user, hangup=hangup, metrics=metrics)
    return daemon.run()


if __name__ == "__main__":
    sys.exit(main())
