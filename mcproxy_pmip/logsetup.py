"""Logging: stdlib ``logging`` to stderr, with Twisted's log bridged into it.

``-d`` shows debug messages of the daemon, ``-v`` adds the libraries' own
debug output (pyroute2, Twisted). Messages start with an event name, then
key=value fields.
"""

from __future__ import annotations

import logging
import sys

from twisted.logger import STDLibLogObserver, globalLogBeginner

LOG_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s"


def configure(debug: int, stream=None) -> None:
    """Set up logging; ``debug`` 0 = info, 1 = our debug, 2 = everything's debug."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug >= 2 else logging.INFO)
    logging.getLogger("mcproxy_pmip").setLevel(logging.DEBUG if debug >= 1 else logging.INFO)
    if debug < 2:
        logging.getLogger("pyroute2").setLevel(logging.WARNING)
    globalLogBeginner.beginLoggingTo([STDLibLogObserver(name="twisted")],
                                     redirectStandardIO=False, discardBuffer=True)
