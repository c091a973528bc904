"""Capability masks, /proc status parsing, users and the socket-path hand-over checks (no root needed)."""

from __future__ import annotations

import os
import stat

import pytest

from mcproxy_pmip.kernel import privileges

STATUS = """Name:\tmcproxy-pmip
Uid:\t65534\t65534\t65534\t65534
CapInh:\t0000000000000000
CapPrm:\t0000000000003000
CapEff:\t0000000000003000
CapBnd:\t0000000000003000
CapAmb:\t0000000000000000
NoNewPrivs:\t0
"""


def test_runtime_capabilities_are_bits_12_and_13():
    assert privileges.mask(privileges.RUNTIME_CAPABILITIES) == 0x3000


def test_mask_accepts_short_and_lower_case_names():
    assert privileges.mask(["net_admin", "CAP_NET_RAW", "cap_sys_admin"]) == (1 << 12) | (1 << 13) | (1 << 21)
    assert privileges.mask([]) == 0


def test_mask_refuses_an_unknown_name():
    with pytest.raises(ValueError, match="CAP_NET_MAGIC"):
        privileges.mask(["CAP_NET_MAGIC"])


def test_names_is_the_inverse_of_mask_and_names_unknown_bits():
    assert privileges.names(0x3000) == ["CAP_NET_ADMIN", "CAP_NET_RAW"]
    assert privileges.names(1 << 63 | 1) == ["CAP_CHOWN", "CAP_63"]
    assert privileges.names(0) == []
    every = privileges.CAPABILITY_NAMES
    assert privileges.names(privileges.mask(every)) == list(every)


def test_capability_table_numbers_match_the_kernel_header():
    numbers = privileges.CAPABILITY_NUMBERS
    assert (numbers["CAP_SETPCAP"], numbers["CAP_NET_BIND_SERVICE"], numbers["CAP_SYS_ADMIN"],
            numbers["CAP_CHECKPOINT_RESTORE"]) == (8, 10, 21, 40)


def test_parse_status_reads_the_hex_masks():
    sets = privileges.parse_status(STATUS)
    assert sets == privileges.CapabilitySets(effective=0x3000, permitted=0x3000, inheritable=0,
                                             bounding=0x3000, ambient=0)


def test_parse_status_full_root_mask_spans_both_words():
    sets = privileges.parse_status(STATUS.replace("CapBnd:\t0000000000003000", "CapBnd:\t000001ffffffffff"))
    assert sets.bounding >> 32 == 0x1FF
    assert len(privileges.names(sets.bounding)) == 41


def test_parse_status_without_cap_lines_fails():
    with pytest.raises(ValueError, match="CapEff"):
        privileges.parse_status("Name:\tx\nCapInh:\t0\nCapPrm:\t0\nCapBnd:\t0\n")


def test_current_reads_this_thread():
    sets = privileges.current()
    assert sets.effective & ~sets.permitted == 0, "effective is always a subset of permitted"


def test_resolve_user_by_number_and_name():
    root = privileges.resolve_user("0")
    assert (root.uid, root.gid) == (0, 0)
    assert privileges.resolve_user(root.name) == root


def test_resolve_user_refuses_an_unknown_name():
    with pytest.raises(ValueError, match="unknown user 'hh-no-such-user'"):
        privileges.resolve_user("hh-no-such-user")


def fake_stat(uid: int, gid: int, mode: int) -> os.stat_result:
    return os.stat_result((mode, 0, 0, 1, uid, gid, 0, 0, 0, 0))


@pytest.mark.parametrize(("owner", "group", "mode", "expected"), [
    (1000, 1000, 0o700, True),          # the user's own directory
    (0, 0, 0o755, False),               # root's, not writable for others
    (0, 0, 0o1777, True),               # /tmp-like, sticky
    (0, 0, 0o773, True),                # writable and searchable for others
    (0, 0, 0o776, False),               # writable but not searchable for others
    (1000, 0, 0o500, False),            # the user's, read-only
])
def test_user_write_and_search_rights(owner, group, mode, expected):
    user = privileges.Identity("hh-user", 1000, 1000)
    granted = privileges._user_has(fake_stat(owner, group, stat.S_IFDIR | mode), user,
                                   stat.S_IWUSR | stat.S_IXUSR, stat.S_IWGRP | stat.S_IXGRP,
                                   stat.S_IWOTH | stat.S_IXOTH)
    assert granted is expected


def test_ancestors_run_from_the_root_down():
    assert privileges._ancestors("/run/mcproxy-pmip") == ["/", "/run", "/run/mcproxy-pmip"]


def test_hand_over_refuses_a_path_the_user_cannot_reach(tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    os.chmod(tmp_path, 0o700)
    stranger = privileges.Identity("hh-stranger", 54321, 54321)
    with pytest.raises(privileges.PrivilegeError, match="is not searchable for it"):
        privileges.hand_over_directory(str(private / "state"), stranger)
    with pytest.raises(privileges.PrivilegeError, match="is not searchable for it"):
        privileges.hand_over(str(private / "run" / "control.sock"), stranger)
    assert not (private / "state").exists(), "nothing may change before the refusal"
