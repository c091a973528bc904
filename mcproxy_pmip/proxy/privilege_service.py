"""PrivilegeDrop: the last piece of the daemon's start, which gives up what only start-up needed.

By the time it starts, every packet socket, data-plane socket (nftables
netlink, MRT) and the control socket is open and the initial kernel state is
in place. It keeps ``CAP_NET_ADMIN`` and ``CAP_NET_RAW`` (the kernel layer's
``privileges`` module says why) and, with ``--user``, becomes that user.
Before that, what the user must still change is handed to it: the control
socket file (and its directory when private to root), so that the stop can
remove it, and the state directory (``kernel.statefile``), where rp_filter
and table records are written while running and removed at stop. Stopping changes nothing:
the stop's kernel work needs only what was kept.
"""

from __future__ import annotations

import logging

from twisted.application import service

from mcproxy_pmip.kernel import privileges, statefile

log = logging.getLogger(__name__)


class PrivilegeDrop(service.Service):
    """Drops to ``RUNTIME_CAPABILITIES`` (as ``user`` if given) at start; a failure stops the start."""

    def __init__(self, user: str | None, control_path: str | None) -> None:
        self._user = user
        self._control_path = control_path

    def startService(self) -> None:
        identity = None
        if self._user is not None:
            try:
                identity = privileges.resolve_user(self._user)
            except ValueError as exc:
                raise privileges.PrivilegeError(str(exc)) from exc
            changed = privileges.hand_over_directory(statefile.state_dir(), identity)
            if self._control_path is not None:
                changed += privileges.hand_over(self._control_path, identity)
            log.info("files_handed_over user=%s paths=%s", identity.name, ",".join(changed) or "-")
        after = privileges.drop_privileges(privileges.RUNTIME_CAPABILITIES, identity)
        log.info("privileges_dropped user=%s effective=%s bounding=%s",
                 identity.name if identity else "-", ",".join(privileges.names(after.effective)) or "-",
                 ",".join(privileges.names(after.bounding)) or "-")
        super().startService()
