"""Configuration layer: read mcproxy's grammar or YAML, validate once, hand out a frozen model.

``load_config(path)`` picks the reader by extension (``.yaml``/``.yml``) or by
content, and raises ``ConfigError`` listing every problem with file:line:column.
"""

from __future__ import annotations

import os
import re

from mcproxy_pmip.errors import ConfigError, ConfigProblem
from mcproxy_pmip.config import mcproxy_grammar, yaml_reader
from mcproxy_pmip.config.model import Config, InstanceConfig
from mcproxy_pmip.config.validate import validate

__all__ = ["Config", "InstanceConfig", "detect_format", "load_config", "parse_config"]

_YAML_START = re.compile(r"(---|%YAML|\{|[A-Za-z_][A-Za-z0-9_]*\s*:(\s|$))")


def detect_format(text: str, path: str = "") -> str:
    """``"yaml"`` for .yaml/.yml files or text that opens like YAML, else ``"mcproxy"``."""
    if path.endswith((".yaml", ".yml")):
        return "yaml"
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        return "yaml" if _YAML_START.match(stripped) else "mcproxy"
    return "mcproxy"


def parse_config(text: str, file: str = "<string>", fmt: str | None = None) -> Config:
    """Read and validate ``text``; ``fmt`` is "yaml", "mcproxy" or None (detect)."""
    chosen = fmt or detect_format(text, file)
    if chosen == "yaml":
        raw = yaml_reader.parse(text, file)
    else:
        raw = mcproxy_grammar.parse(text, file)
    return validate(raw)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read the configuration file at ``path``."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError([ConfigProblem(name, 0, 0, f"cannot read the file: {error}")]) from error
    return parse_config(text, name)
