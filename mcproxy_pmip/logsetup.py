"""Logging: stdlib ``logging`` to stderr, with Twisted's log bridged into it, in one of three formats.

``-d`` shows debug messages of the daemon, ``-v`` adds the libraries' own
debug output (pyroute2, Twisted). Messages start with an event name, then
key=value fields.

``--log-format``:

- ``text``: ``HH:MM:SS.mmm LEVEL logger: message``, for a terminal or a file.
- ``journal``: ``<N>logger: message`` with no time stamp (journald adds its
  own); ``<N>`` is the syslog priority (sd-daemon(3)), so journald records
  each line's level. Every line of a multi-line message carries the prefix.
- ``json``: one JSON object per line: ``time`` (UTC, ISO 8601), ``level``,
  ``logger``, ``event`` (the message's first word), the key=value fields as
  keys, ``message`` (the whole first line), and ``detail`` / ``exception``
  for further lines and tracebacks.

The default is ``journal`` when stderr is the journal (systemd sets
``$JOURNAL_STREAM`` to the device and inode of the stream it connected;
they must match stderr's), else ``text``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from datetime import datetime, timezone

from twisted.logger import STDLibLogObserver, globalLogBeginner

LOG_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s"
LOG_FORMATS = ("text", "journal", "json")

#: logging level -> syslog priority (RFC 5424 severities, as sd-daemon(3) prefixes them)
SYSLOG_PRIORITY = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))
DEBUG_PRIORITY = 7

_FIELD = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*)=(\S*)")
#: keys the JSON object sets itself; a message field of the same name is stored with a ``field_`` prefix
_RESERVED = frozenset({"time", "level", "logger", "event", "message", "detail", "exception"})


def syslog_priority(levelno: int) -> int:
    for level, priority in SYSLOG_PRIORITY:
        if levelno >= level:
            return priority
    return DEBUG_PRIORITY


class JournalFormatter(logging.Formatter):
    """``<N>logger: message`` on every line, no time stamp."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.name}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in text.splitlines())


def parse_fields(line: str) -> tuple[str, dict[str, str]]:
    """``event key=value ...`` -> (event, fields); words without ``=`` continue the previous value."""
    words = line.split(" ")
    event = words[0] if words else ""
    fields: dict[str, str] = {}
    key = None
    for word in words[1:]:
        match = _FIELD.fullmatch(word)
        if match:
            key = match.group(1)
            fields[key] = match.group(2)
        elif key is not None:
            fields[key] += " " + word
    return event, fields


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        first, _, rest = record.getMessage().partition("\n")
        event, fields = parse_fields(first)
        stamp = datetime.fromtimestamp(record.created, tz=timezone.utc)
        entry: dict[str, str] = {
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": event,
        }
        for key, value in fields.items():
            entry["field_" + key if key in _RESERVED else key] = value
        entry["message"] = first
        if rest:
            entry["detail"] = rest
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def stderr_is_journal(environ: Mapping[str, str], stream) -> bool:
    """True if ``$JOURNAL_STREAM`` (``DEV:INODE``) names ``stream``'s file."""
    value = environ.get("JOURNAL_STREAM", "")
    if not value:
        return False
    try:
        stat = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return value == f"{stat.st_dev}:{stat.st_ino}"


def default_format(environ: Mapping[str, str] | None = None, stream=None) -> str:
    """``journal`` when stderr is connected to the journal, else ``text``."""
    environ = os.environ if environ is None else environ
    return "journal" if stderr_is_journal(environ, stream or sys.stderr) else "text"


def formatter(log_format: str) -> logging.Formatter:
    if log_format == "journal":
        return JournalFormatter()
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S")
    raise ValueError(f"unknown log format {log_format!r}; one of {', '.join(LOG_FORMATS)}")


def configure(debug: int, stream=None, log_format: str | None = None) -> None:
    """Set up logging; ``debug`` 0 = info, 1 = our debug, 2 = everything's debug.

    ``log_format`` is one of ``LOG_FORMATS``; None chooses (``default_format``).
    """
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(log_format or default_format(stream=stream)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug >= 2 else logging.INFO)
    logging.getLogger("mcproxy_pmip").setLevel(logging.DEBUG if debug >= 1 else logging.INFO)
    if debug < 2:
        logging.getLogger("pyroute2").setLevel(logging.WARNING)
    globalLogBeginner.beginLoggingTo([STDLibLogObserver(name="twisted")],
                                     redirectStandardIO=False, discardBuffer=True)
