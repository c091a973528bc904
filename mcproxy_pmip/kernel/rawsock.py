"""What the packet and raw sockets share: opening, options, classic BPF filters.

``open_socket`` and ``setsockopt`` turn a failed syscall into
``KernelError(op, errno)`` naming the operation. ``attach_filter`` attaches a
classic BPF program with ``SO_ATTACH_FILTER`` (the kernel's
Documentation/networking/filter.rst); ``assemble`` builds one from
instructions whose jump targets are labels, so a program reads top to bottom
without hand-counted offsets. Jumps go forward only, as classic BPF requires.
"""

from __future__ import annotations

import ctypes
import errno
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from mcproxy_pmip.errors import KernelError

SO_ATTACH_FILTER = 26  # <asm-generic/socket.h>; missing from Python's socket module

# Classic BPF opcodes (<linux/bpf_common.h>, <linux/filter.h>), combined as used here.
LD_W_ABS = 0x20  # A = 32-bit word at k (or an ancillary field, k >= SKF_AD_OFF)
LD_B_ABS = 0x30  # A = octet at k
LD_B_IND = 0x50  # A = octet at X + k
LDX_IMM = 0x01  # X = k
ALU_ADD_K = 0x04  # A += k
ALU_LSH_K = 0x64  # A <<= k
ALU_AND_K = 0x54  # A &= k
MISC_TAX = 0x07  # X = A
JMP_JA = 0x05  # jump k forward
JMP_JEQ_K = 0x15  # A == k ? jt : jf
JMP_JGT_K = 0x25  # A > k ? jt : jf
RET_K = 0x06  # accept k octets (0: drop)

SKF_AD_PROTOCOL = 0xFFFFF000 + 0  # SKF_AD_OFF + SKF_AD_PROTOCOL: skb->protocol, host order
SKF_AD_PKTTYPE = 0xFFFFF000 + 4  # SKF_AD_OFF (-0x1000) + SKF_AD_PKTTYPE: skb->pkt_type
ACCEPT_WHOLE = 0xFFFFFFFF

_SOCK_FILTER = struct.Struct("@HBBI")  # code, jt, jf, k
_SOCK_FPROG = struct.Struct("@HP")  # len, filter pointer


@dataclass(frozen=True, slots=True)
class Insn:
    """One classic BPF instruction; ``jt`` / ``jf`` (and ``k`` of ``JMP_JA``) may name labels.

    A jump target None is the next instruction.
    """

    code: int
    k: int | str = 0
    jt: str | None = None
    jf: str | None = None


def assemble(program: Sequence[Insn | str]) -> tuple[tuple[int, int, int, int], ...]:
    """Resolve labels (the strings in ``program``) to forward offsets: ``(code, jt, jf, k)`` rows."""
    labels: dict[str, int] = {}
    insns: list[Insn] = []
    for item in program:
        if isinstance(item, str):
            labels[item] = len(insns)
        else:
            insns.append(item)

    def offset(at: int, target: str | None, limit: int) -> int:
        if target is None:
            return 0
        distance = labels[target] - at - 1
        if not 0 <= distance <= limit:
            raise ValueError(f"BPF jump from {at} to {target!r} ({distance}) is out of range")
        return distance

    return tuple(
        (insn.code, offset(at, insn.jt, 0xFF), offset(at, insn.jf, 0xFF),
         offset(at, insn.k, 0xFFFFFFFF) if isinstance(insn.k, str) else insn.k)
        for at, insn in enumerate(insns)
    )


DROP_ALL = assemble([Insn(RET_K, 0)])
"""A program that drops every packet (for sockets that only send)."""


def open_socket(family: int, kind: int, protocol: int, op: str) -> socket.socket:
    """``socket.socket(family, kind, protocol)`` raising ``KernelError(op, errno)``."""
    try:
        return socket.socket(family, kind, protocol)
    except OSError as exc:
        raise KernelError(op, exc.errno or errno.EPERM) from exc


def setsockopt(sock: socket.socket, level: int, option: int, value: int | bytes, op: str) -> None:
    """``sock.setsockopt`` raising ``KernelError(op, errno)``."""
    try:
        sock.setsockopt(level, option, value)
    except OSError as exc:
        raise KernelError(op, exc.errno or errno.EINVAL) from exc


def attach_filter(sock: socket.socket, program: tuple[tuple[int, int, int, int], ...], op: str) -> None:
    """Attach an assembled classic BPF ``program`` (the kernel copies it)."""
    code = b"".join(_SOCK_FILTER.pack(*row) for row in program)
    holder = ctypes.create_string_buffer(code, len(code))  # sock_fprog points at it
    setsockopt(sock, socket.SOL_SOCKET, SO_ATTACH_FILTER,
               _SOCK_FPROG.pack(len(program), ctypes.addressof(holder)), op)
