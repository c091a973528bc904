"""Process privileges: keep only the capabilities a running proxy needs, optionally as another user.

Linux splits root's power into capabilities (capabilities(7)). Once the
daemon's sockets are open and its kernel state is set up, it needs two:

- ``CAP_NET_ADMIN``: nftables rules and tables (netlink), multicast routing
  vifs and MFC entries (``MRT_ADD_VIF`` / ``MRT_ADD_MFC``), the rp_filter
  sysctls under ``/proc/sys/net`` (the kernel grants the holder of this
  capability the owner's access to network sysctls), and the removal of all
  of it at stop;
- ``CAP_NET_RAW``: raw and packet sockets opened or bound later (a link that
  appears at runtime).

``drop_privileges`` removes every other capability from the bounding set
(so no ``execve`` can bring it back; this needs ``CAP_SETPCAP``, without it
the bounding set given by the parent, e.g. systemd's, stays), clears the ambient and inheritable
sets, optionally switches to a user (``PR_SET_KEEPCAPS`` keeps the permitted
set across ``setuid``), then sets effective = permitted = the kept set with
``capset(2)``. Capabilities belong to threads: the drop is refused while
the process has more than one thread.

The calls go to libc through ``ctypes``; the masks are plain ints, bit n
for capability number n (``linux/capability.h``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import grp
import logging
import os
import pwd
import stat
from collections.abc import Iterable
from dataclasses import dataclass

from mcproxy_pmip.errors import McproxyError

log = logging.getLogger(__name__)

#: capability numbers of linux/capability.h, in order (CAP_CHOWN is 0)
CAPABILITY_NAMES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
    "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
CAPABILITY_NUMBERS = {name: number for number, name in enumerate(CAPABILITY_NAMES)}

#: what the daemon keeps after start-up
RUNTIME_CAPABILITIES = ("CAP_NET_ADMIN", "CAP_NET_RAW")

PR_CAPBSET_DROP = 24
PR_SET_KEEPCAPS = 8
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522


class PrivilegeError(McproxyError):
    """The privileges could not be reduced as asked (the process keeps running with what it had)."""


@dataclass(frozen=True, slots=True)
class CapabilitySets:
    """The capability masks of one thread, as ``/proc/<pid>/status`` shows them."""

    effective: int
    permitted: int
    inheritable: int
    bounding: int
    ambient: int


@dataclass(frozen=True, slots=True)
class Identity:
    """The user and group the daemon runs as after the drop."""

    name: str
    uid: int
    gid: int


def mask(names: Iterable[str]) -> int:
    """The bit mask of capability ``names`` (``CAP_NET_RAW`` or ``net_raw``); ValueError for an unknown name."""
    value = 0
    for name in names:
        key = name.upper()
        key = key if key.startswith("CAP_") else "CAP_" + key
        if key not in CAPABILITY_NUMBERS:
            raise ValueError(f"unknown capability {name!r}")
        value |= 1 << CAPABILITY_NUMBERS[key]
    return value


def names(value: int) -> list[str]:
    """The capability names set in ``value``, lowest first (``CAP_<n>`` for numbers this table lacks)."""
    found = []
    number = 0
    while value >> number:
        if value >> number & 1:
            found.append(CAPABILITY_NAMES[number] if number < len(CAPABILITY_NAMES) else f"CAP_{number}")
        number += 1
    return found


def parse_status(text: str) -> CapabilitySets:
    """The ``Cap*`` lines of a ``/proc/<pid>/status`` text (hex masks); ValueError if one is missing."""
    fields = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            fields[key] = int(rest.strip(), 16)
    missing = {"CapInh", "CapPrm", "CapEff", "CapBnd"} - fields.keys()
    if missing:
        raise ValueError(f"status lacks {', '.join(sorted(missing))}")
    return CapabilitySets(effective=fields["CapEff"], permitted=fields["CapPrm"], inheritable=fields["CapInh"],
                          bounding=fields["CapBnd"], ambient=fields.get("CapAmb", 0))


def current(path: str = "/proc/thread-self/status") -> CapabilitySets:
    """The calling thread's capability sets (or those in another ``status`` file)."""
    with open(path, encoding="ascii") as handle:
        return parse_status(handle.read())


def last_capability() -> int:
    """The highest capability number this kernel knows (``/proc/sys/kernel/cap_last_cap``)."""
    with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as handle:
        return int(handle.read())


def resolve_user(spec: str) -> Identity:
    """``NAME`` or a numeric uid, from the password database, with its primary group; ValueError if unknown."""
    try:
        entry = pwd.getpwuid(int(spec)) if spec.isdigit() else pwd.getpwnam(spec)
    except KeyError:
        raise ValueError(f"unknown user {spec!r}") from None
    return Identity(entry.pw_name, entry.pw_uid, entry.pw_gid)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        number = ctypes.get_errno()
        raise PrivilegeError(f"{what} failed: {os.strerror(number)} (errno {errno.errorcode.get(number, number)})")


def _prctl(libc: ctypes.CDLL, option: int, arg2: int, arg3: int = 0) -> None:
    _check(libc.prctl(option, ctypes.c_ulong(arg2), ctypes.c_ulong(arg3), ctypes.c_ulong(0), ctypes.c_ulong(0)),
           f"prctl({option}, {arg2})")


def _capset(libc: ctypes.CDLL, effective: int, permitted: int, inheritable: int) -> None:
    header = _CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for word in range(2):
        shift = 32 * word
        data[word].effective = (effective >> shift) & 0xFFFFFFFF
        data[word].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[word].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _check(libc.capset(ctypes.byref(header), data), "capset")


def thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


def drop_privileges(keep: Iterable[str] = RUNTIME_CAPABILITIES, identity: Identity | None = None) -> CapabilitySets:
    """Keep only ``keep`` (bounding, permitted, effective; nothing inheritable or ambient), as ``identity``.

    Returns the thread's sets afterwards; PrivilegeError when a step fails or
    the result is not what was asked.
    """
    wanted = mask(keep)
    if thread_count() != 1:
        raise PrivilegeError(f"the process has {thread_count()} threads; capabilities are per thread, "
                             "drop them before any thread starts")
    held = current()
    if wanted & ~held.permitted:
        raise PrivilegeError(f"cannot keep {', '.join(names(wanted & ~held.permitted))}: not permitted now")
    libc = _libc()
    may_drop_bounding = bool(held.effective & mask(["CAP_SETPCAP"]))
    if may_drop_bounding:
        for number in range(last_capability() + 1):
            if not wanted >> number & 1 and held.bounding >> number & 1:
                _prctl(libc, PR_CAPBSET_DROP, number)
    else:
        log.info("capability_bounding_kept reason=no_CAP_SETPCAP bounding=%#x", held.bounding)
    _prctl(libc, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    if identity is not None:
        _prctl(libc, PR_SET_KEEPCAPS, 1)
        try:
            os.setgroups(_supplementary_groups(identity))
            os.setgid(identity.gid)
            os.setuid(identity.uid)
        except OSError as exc:
            raise PrivilegeError(f"switching to user {identity.name} failed: {exc}") from exc
        _prctl(libc, PR_SET_KEEPCAPS, 0)
    _capset(libc, wanted, wanted, 0)
    after = current()
    if (after.effective, after.permitted, after.inheritable, after.ambient) != (wanted, wanted, 0, 0) \
            or (may_drop_bounding and after.bounding & ~wanted):
        raise PrivilegeError(f"capabilities after the drop are effective={after.effective:#x} "
                             f"permitted={after.permitted:#x} bounding={after.bounding:#x}, wanted {wanted:#x}")
    return after


def _supplementary_groups(identity: Identity) -> list[int]:
    """The user's groups from the group database, primary group first."""
    groups = [identity.gid]
    groups += [g.gr_gid for g in grp.getgrall() if identity.name in g.gr_mem and g.gr_gid != identity.gid]
    return groups


def hand_over(path: str, identity: Identity) -> list[str]:
    """Make the daemon's own file ``path`` removable by ``identity``; the paths whose owner changed.

    The file goes to the user. Its directory goes too when it is private to
    root (owner root, mode 0700: the daemon's own run directory); another
    directory must already let the user remove the file (writable and
    searchable; sticky is fine, the file is now the user's), and every
    directory above must be searchable for it, else PrivilegeError.
    """
    parent = os.path.dirname(os.path.abspath(path))
    for ancestor in _ancestors(os.path.dirname(parent)):
        if not _user_has(os.stat(ancestor), identity, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH):
            raise PrivilegeError(f"user {identity.name} could not reach {path} at stop: {ancestor} is not "
                                 "searchable for it")
    changed = []
    os.chown(path, identity.uid, identity.gid, follow_symlinks=False)
    changed.append(path)
    info = os.stat(parent)
    if info.st_uid == 0 and stat.S_IMODE(info.st_mode) == 0o700:
        os.chown(parent, identity.uid, identity.gid)
        changed.append(parent)
    elif not _user_has(info, identity, stat.S_IWUSR | stat.S_IXUSR, stat.S_IWGRP | stat.S_IXGRP,
                       stat.S_IWOTH | stat.S_IXOTH):
        raise PrivilegeError(f"user {identity.name} could not remove {path} at stop: {parent} is not writable "
                             "for it")
    return changed


def hand_over_directory(directory: str, identity: Identity) -> list[str]:
    """Make the daemon's state ``directory`` (created 0755 if missing) writable by ``identity``.

    A directory owned by root goes to the user; one owned by somebody else
    must already be writable for it. Every directory above must be
    searchable for it. PrivilegeError otherwise; the paths whose owner changed.
    """
    for ancestor in _ancestors(os.path.dirname(os.path.abspath(directory))):
        if not _user_has(os.stat(ancestor), identity, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH):
            raise PrivilegeError(f"user {identity.name} could not reach {directory}: {ancestor} is not "
                                 "searchable for it")
    os.makedirs(directory, mode=0o755, exist_ok=True)
    info = os.stat(directory)
    if info.st_uid == 0 and identity.uid != 0:
        os.chown(directory, identity.uid, identity.gid)
        return [directory]
    if not _user_has(info, identity, stat.S_IWUSR | stat.S_IXUSR, stat.S_IWGRP | stat.S_IXGRP,
                     stat.S_IWOTH | stat.S_IXOTH):
        raise PrivilegeError(f"user {identity.name} could not write its state files: {directory} is not "
                             "writable for it")
    return []


def _ancestors(directory: str) -> list[str]:
    """``directory`` and every directory above it, top first."""
    found = [directory]
    while found[-1] != os.path.dirname(found[-1]):
        found.append(os.path.dirname(found[-1]))
    return found[::-1]


def _user_has(info: os.stat_result, identity: Identity, owner_bit: int, group_bit: int, other_bit: int) -> bool:
    """Whether ``identity`` gets all the permissions of these mode bits on a file with ``info``."""
    mode = info.st_mode
    if info.st_uid == identity.uid:
        return mode & owner_bit == owner_bit
    if info.st_gid in _supplementary_groups(identity):
        return mode & group_bit == group_bit
    return mode & other_bit == other_bit
