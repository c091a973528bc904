"""Decoding one JSON line from an untrusted peer without exceptions other than ``ValueError``.

Used by the control socket and by plugins' channels (re-exported by
``mcproxy_pmip.plugin``). Python's ``json`` recurses once per nesting level
(a deep enough text raises ``RecursionError``), converts integers of any
length (above 4,300 digits ``ValueError``, below that slowly) and accepts
NaN and Infinity. ``decode`` refuses all of these, and invalid UTF-8, with a
``ValueError`` whose text says why, before or while decoding.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: Deepest nesting of arrays and objects a line may have.
MAX_NESTING = 32

#: Most digits of an integer in a line.
MAX_NUMBER_DIGITS = 64

_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(rb"[\[\]{}]")


def decode(line: bytes) -> Any:
    """The JSON value of ``line``; ``ValueError`` (also for too deep, too long numbers, NaN, bad UTF-8)."""
    if nesting_depth(line) > MAX_NESTING:
        raise ValueError(f"nested too deep (more than {MAX_NESTING} levels)")
    try:
        return json.loads(line, parse_int=_parse_int, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("nested too deep") from None
    except ValueError as exc:  # also UnicodeDecodeError
        raise ValueError(f"not JSON: {str(exc)[:120]}") from None


def nesting_depth(line: bytes) -> int:
    """The deepest bracket nesting of a JSON text, strings skipped (linear, no recursion);
    any value up to ``MAX_NESTING`` when the text has no more brackets than that."""
    if line.count(b"[") + line.count(b"{") <= MAX_NESTING:
        return MAX_NESTING
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub(b"", line)):
        if bracket in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise ValueError(f"a number of {len(text)} digits (at most {MAX_NUMBER_DIGITS})")
    return int(text)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
