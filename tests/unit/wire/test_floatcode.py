"""Floating-point Max Resp Code / QQIC (RFC 3376 §4.1.1, §4.1.7; RFC 3810 §5.1.3, §5.1.9)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcproxy_pmip.wire.floatcode import CODE8, CODE16, to_units


@pytest.mark.parametrize(
    ("code", "value"),
    [
        (0, 0),
        (1, 1),
        (127, 127),
        (128, 128),  # exp 0, mant 0: 0x10 << 3
        (129, 136),
        (0x8F, 248),
        (0x90, 256),
        (0xFF, 31744),  # (0x1F) << 10, the maximum
    ],
)
def test_code8_both_ways(code: int, value: int) -> None:
    assert CODE8.decode(code) == value
    assert CODE8.encode(value) == code


@pytest.mark.parametrize(
    ("code", "value"),
    [
        (0, 0),
        (32767, 32767),
        (32768, 32768),  # exp 0, mant 0: 0x1000 << 3
        (32769, 32776),
        (0xFFFF, 8387584),  # 0x1FFF << 10, the maximum
    ],
)
def test_code16_both_ways(code: int, value: int) -> None:
    assert CODE16.decode(code) == value
    assert CODE16.encode(value) == code


def test_encode_rounds_down_between_representable_values() -> None:
    assert CODE8.encode(135) == 128
    assert CODE8.decode(CODE8.encode(255)) == 248
    assert CODE16.decode(CODE16.encode(32775)) == 32768


def test_encode_saturates_at_the_maximum() -> None:
    assert CODE8.encode(10**6) == 0xFF
    assert CODE16.encode(10**9) == 0xFFFF
    assert CODE8.max_value == 31744
    assert CODE16.max_value == 8387584


def test_default_values_of_the_rfcs() -> None:
    # QQI 125 s is literal; 10 s Query Response Interval = 100 tenths (IGMP) / 10000 ms (MLD).
    assert CODE8.encode(125) == 125
    assert CODE8.encode(100) == 100
    assert CODE16.encode(10000) == 10000


def test_invalid_inputs_raise_value_error() -> None:
    with pytest.raises(ValueError):
        CODE8.encode(-1)
    with pytest.raises(ValueError):
        CODE8.decode(256)
    with pytest.raises(ValueError):
        to_units(-0.5, 10)


def test_to_units_tolerates_binary_float_error() -> None:
    assert to_units(2.3, 10) == 23
    assert to_units(0.7, 10) == 7
    assert to_units(8387.584, 1000) == 8387584
    assert to_units(0.05, 10) == 0


@settings(max_examples=300)
@given(st.integers(0, 255))
def test_code8_decode_encode_is_identity(code: int) -> None:
    assert CODE8.encode(CODE8.decode(code)) == code


@settings(max_examples=300)
@given(st.integers(0, 0xFFFF))
def test_code16_decode_encode_is_identity(code: int) -> None:
    assert CODE16.encode(CODE16.decode(code)) == code


@settings(max_examples=300)
@given(st.integers(0, 10**7))
def test_encoding_never_announces_more_than_asked(value: int) -> None:
    decoded = CODE16.decode(CODE16.encode(value))
    assert decoded <= value
    if value <= CODE16.max_value:
        # the next code up would exceed the value: encoding picks the largest fitting one
        code = CODE16.encode(value)
        assert code == 0xFFFF or CODE16.decode(code + 1) > value
