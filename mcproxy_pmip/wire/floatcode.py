"""The floating-point encodings of Max Resp Code and QQIC.

RFC 3376 §4.1.1 (IGMPv3 Max Resp Code, units of 1/10 s) and §4.1.7 (QQIC,
seconds), RFC 3810 §5.1.9 (MLDv2 QQIC, seconds) share the 8-bit form::

     0 1 2 3 4 5 6 7
    +-+-+-+-+-+-+-+-+
    |1| exp | mant  |      value = (mant | 0x10) << (exp + 3)
    +-+-+-+-+-+-+-+-+      (codes < 128 are the value itself)

RFC 3810 §5.1.3 (MLDv2 Maximum Response Code, milliseconds) is 16 bits::

     0 1 2 3 4 5 6 7 8 9 A B C D E F
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |1| exp |          mant         |   value = (mant | 0x1000) << (exp + 3)
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+   (codes < 32768 are the value itself)

Encoding rounds down to the nearest representable value (a querier never
announces more time than it will wait) and saturates at the largest one.
Values are integers in the field's unit; the codecs convert to seconds.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FloatFormat:
    """One width of the encoding: ``mant_bits`` mantissa bits after 1 + 3 exponent bits."""

    mant_bits: int

    @property
    def bits(self) -> int:
        return self.mant_bits + 4

    @property
    def linear_limit(self) -> int:
        """Codes (and values) below this are literal."""
        return 1 << (self.bits - 1)

    @property
    def max_value(self) -> int:
        return self.decode((1 << self.bits) - 1)

    def decode(self, code: int) -> int:
        if not 0 <= code < (1 << self.bits):
            raise ValueError(f"code {code} does not fit {self.bits} bits")
        if code < self.linear_limit:
            return code
        exp = (code >> self.mant_bits) & 0x7
        mant = code & ((1 << self.mant_bits) - 1)
        return (mant | (1 << self.mant_bits)) << (exp + 3)

    def encode(self, value: int) -> int:
        if value < 0:
            raise ValueError(f"negative value {value}")
        if value < self.linear_limit:
            return value
        value = min(value, self.max_value)
        exp = value.bit_length() - 1 - self.mant_bits - 3
        mant = (value >> (exp + 3)) & ((1 << self.mant_bits) - 1)
        return self.linear_limit | (exp << self.mant_bits) | mant


CODE8 = FloatFormat(mant_bits=4)
"""IGMPv3 Max Resp Code, IGMPv3 QQIC, MLDv2 QQIC (max 31744)."""

CODE16 = FloatFormat(mant_bits=12)
"""MLDv2 Maximum Response Code (max 8387584 ms)."""


def to_units(seconds: float, units_per_second: int) -> int:
    """Seconds to whole field units, rounded down (tolerant of binary float error)."""
    if seconds < 0:
        raise ValueError(f"negative interval {seconds}")
    return int(seconds * units_per_second + 1e-6)
