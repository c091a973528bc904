"""Log formats: text, journal (syslog priority prefix, no time stamp) and json (fields as keys); the default."""

from __future__ import annotations

import io
import json
import logging
import os
import sys

import pytest

from mcproxy_pmip import cli, logsetup


def record(message: str, *args: object, level: int = logging.INFO, exc_info=None) -> logging.LogRecord:
    return logging.LogRecord("mcproxy_pmip.proxy.receiver", level, __file__, 1, message, args, exc_info)


@pytest.mark.parametrize(("level", "priority"), [
    (logging.DEBUG, 7), (logging.INFO, 6), (logging.WARNING, 4), (logging.ERROR, 3), (logging.CRITICAL, 2)])
def test_journal_lines_carry_the_syslog_priority_and_no_time(level: int, priority: int) -> None:
    line = logsetup.JournalFormatter().format(record("report_dropped interface=%s", "d1", level=level))
    assert line == f"<{priority}>mcproxy_pmip.proxy.receiver: report_dropped interface=d1"


def test_every_journal_line_of_a_multiline_message_has_the_prefix() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        exc_info = sys.exc_info()
    text = logsetup.JournalFormatter().format(
        record("reload_refused problems=2\nline one\nline two", level=logging.ERROR, exc_info=exc_info))
    lines = text.split("\n")
    assert len(lines) > 4
    assert all(line.startswith("<3>") for line in lines)
    assert lines[-1] == "<3>ValueError: boom"


def test_json_has_event_and_fields_as_keys() -> None:
    text = logsetup.JsonFormatter().format(record(
        "reload_failed file=%s step=%r reason=the old configuration keeps running",
        "/etc/m.yaml", "nft", level=logging.ERROR))
    entry = json.loads(text)
    assert "\n" not in text
    assert entry["level"] == "error"
    assert entry["logger"] == "mcproxy_pmip.proxy.receiver"
    assert entry["event"] == "reload_failed"
    assert entry["file"] == "/etc/m.yaml"
    assert entry["step"] == "'nft'"
    assert entry["reason"] == "the old configuration keeps running"
    assert entry["time"].endswith("Z") and "T" in entry["time"]


def test_json_keeps_further_lines_and_does_not_let_fields_overwrite_its_keys() -> None:
    entry = json.loads(logsetup.JsonFormatter().format(record("odd level=x time=y\nsecond line")))
    assert entry["level"] == "info"
    assert entry["field_level"] == "x" and entry["field_time"] == "y"
    assert entry["detail"] == "second line"
    assert entry["message"] == "odd level=x time=y"


def test_text_format_is_unchanged() -> None:
    line = logsetup.formatter("text").format(record("daemon_started instances=%d", 2))
    assert line.endswith(" INFO mcproxy_pmip.proxy.receiver: daemon_started instances=2")
    assert line[2] == ":" and line[8] == "."


def test_journal_is_the_default_only_when_stderr_is_the_journal_stream(tmp_path) -> None:
    with open(tmp_path / "stream", "w") as stream:
        stat = os.fstat(stream.fileno())
        assert logsetup.default_format({"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"}, stream) == "journal"
        assert logsetup.default_format({"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino + 1}"}, stream) == "text"
        assert logsetup.default_format({}, stream) == "text"


def test_configure_writes_the_chosen_format() -> None:
    loggers = [logging.getLogger(name) for name in ("", "mcproxy_pmip", "pyroute2")]
    saved = [(logger.handlers[:], logger.level) for logger in loggers]
    stream = io.StringIO()
    try:
        logsetup.configure(0, stream=stream, log_format="json")
        logging.getLogger("mcproxy_pmip.test").warning("thing_happened count=%d", 3)
    finally:
        for logger, (handlers, level) in zip(loggers, saved):
            logger.handlers[:] = handlers
            logger.setLevel(level)
    entry = json.loads(stream.getvalue().splitlines()[-1])
    assert entry["event"] == "thing_happened" and entry["count"] == "3"


def test_the_command_line_offers_the_three_formats() -> None:
    parser = cli.build_parser()
    assert parser.parse_args(["--log-format", "journal"]).log_format == "journal"
    assert parser.parse_args([]).log_format is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--log-format", "xml"])
