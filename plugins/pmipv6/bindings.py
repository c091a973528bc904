"""The MAG's binding table: PMIPv6 binding events turned into proxy downstreams.

RFC 5213 §6.9 (binding update list on the MAG), §6.13 (lifetime 0 means
de-registration), RFC 6224 §4 (one multicast proxy instance per MAG→LMA
tunnel, the MN's access link a downstream of it), RFC 7411 §4 (subscription
context carried with the handover). Driven by three events: an MN attached
(``MobileNodeAttached``), its binding refreshed (``BindingRefreshed``), it
detached (``MobileNodeDetached``); lifetime expiry on ``facade.clock`` acts
as a detach.

Rules kept here:
- The first MN of a tunnel creates its instance (``find_or_create_instance``,
  asked at every join: the facade knows the tunnel's instance); the last one
  leaving removes it when ``remove_empty_instance`` is set (the facade
  refuses to remove an instance it did not create).
- An access link is a downstream while at least one bound MN uses it.
- Proxy state changed by someone else is followed, never undone: a removed
  instance (``instance-removed``) or access link (``downstream-removed``, the
  operator's ``del-downstream``) drops the bindings that used it.
- Every event is idempotent: a repeated attach re-arms the lifetime and
  reports ``changed: false``.
- An attach of a known MN on another access link or tunnel, without a detach
  first (out-of-order signalling during a handover on the same MAG), is a
  move: the old downstream is removed, the new one added; if the MN had the
  old link to itself and no context came with the event, its records are
  carried over to the new link so it keeps its subscriptions.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mcproxy_pmip.plugin import (
    Arguments, CommandError, Family, FamilyRecords, GroupRecord, McproxyError, ProxyEvent,
    ProxyFacade, Timers,
)

log = logging.getLogger(__name__)

UNKNOWN_MN = "unknown-mn"
BAD_CONTEXT = "bad-context"
BINDING_MISMATCH = "binding-mismatch"
PROXY_ERROR = "proxy-error"
#: RFC 7411 context codes are one octet
MAX_CONTEXT_CODE = 255

_FAMILY_NAMES = {"ipv4": Family.IPV4, "ipv6": Family.IPV6}


class ContextCodec(Protocol):
    """The RFC 7411 payload codec (``mcproxy_pmip.wire.rfc7411``)."""

    def encode_context(self, family: Family, version: int,
                       records: Sequence[GroupRecord]) -> tuple[int, bytes]: ...

    def decode_context(self, code: int, payload: bytes) -> tuple[Family, int, Sequence[GroupRecord]]: ...


@dataclass(frozen=True, slots=True)
class ContextEntry:
    """One family's transferred subscription context: the RFC 7411 code and payload."""

    family: Family
    code: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class MobileNodeAttached:
    """A Proxy Binding Update was accepted for ``mn_id`` on ``access_if`` (RFC 5213 §6.9.1).

    ``tunnel_if``: the MAG→LMA tunnel (the instance's upstream). ``lma``,
    ``hnp``: informational. ``lifetime``: seconds, None for no expiry, 0 for
    de-registration. ``context``: subscription context from the previous MAG.
    ``previous_mag``: the peer MAG the MN comes from, asked for the context when
    none came with the event (reactive transfer, peers.py); the table ignores it.
    """

    mn_id: str
    access_if: str
    tunnel_if: str
    lma: str | None = None
    hnp: tuple[str, ...] = ()
    lifetime: int | None = None
    context: tuple[ContextEntry, ...] = ()
    previous_mag: str | None = None
    forwarded_last: tuple[tuple[tuple[Family, Any], bytes], ...] | None = None


@dataclass(frozen=True, slots=True)
class MobileNodePrepared:
    """A handover of ``mn_id`` to this MAG is coming (RFC 5949 §3.1 HI, RFC 7411 §3.3 context).

    This MAG joins the MN's ``context`` upstream on ``tunnel_if`` at once and
    buffers its groups' data until the attach (docs/handover.md).
    ``access_if``, ``lma``, ``hnp``: informational; ``previous_mag``: the only
    peer whose markers (what it forwarded last) are taken for this MN.
    """

    mn_id: str
    tunnel_if: str
    context: tuple[ContextEntry, ...]
    access_if: str | None = None
    lma: str | None = None
    hnp: tuple[str, ...] = ()
    previous_mag: str | None = None


@dataclass(frozen=True, slots=True)
class BindingRefreshed:
    """The binding of ``mn_id`` was re-registered with a new ``lifetime`` (0 = de-registration).

    ``access_if`` / ``tunnel_if``, when given, must match the binding.
    """

    mn_id: str
    lifetime: int
    access_if: str | None = None
    tunnel_if: str | None = None


@dataclass(frozen=True, slots=True)
class MobileNodeDetached:
    """The binding of ``mn_id`` ended (de-registration, handover away, or expiry).

    ``next_mag``: the peer MAG the MN went to, when the signalling tells; only
    that peer may then fetch the MN's context (transfer.py); the table ignores it.
    """

    mn_id: str
    next_mag: str | None = None


BindingEvent = MobileNodeAttached | BindingRefreshed | MobileNodeDetached | MobileNodePrepared


def parse_context(entries: list[dict[str, Any]]) -> tuple[ContextEntry, ...]:
    """Context entries in the control API's form (``{"family", "code", "payload"}``), checked."""
    parsed = []
    for index, entry in enumerate(entries):
        args = Arguments(entry)
        family_name = args.string("family")
        family = _FAMILY_NAMES.get(family_name)
        if family is None:
            raise CommandError("bad-argument", f"context[{index}].family must be ipv4 or ipv6")
        code = args.integer("code", minimum=0)
        if code > MAX_CONTEXT_CODE:
            raise CommandError("bad-argument", f"context[{index}].code must be at most {MAX_CONTEXT_CODE}")
        payload_hex = args.string("payload", required=False) or ""
        args.finish()
        try:
            payload = bytes.fromhex(payload_hex)
        except ValueError:
            raise CommandError("bad-argument", f"context[{index}].payload is not hex") from None
        parsed.append(ContextEntry(family, code, payload))
    return tuple(parsed)


def parse_binding_event(args: Arguments) -> BindingEvent:
    """The event of a ``binding`` control command (see docs/plugins.md)."""
    kind = args.string("event")
    mn_id = args.string("mn_id")
    if kind == "detach":
        detached = MobileNodeDetached(mn_id, args.string("next_mag", required=False))
        args.finish()
        return detached
    if kind == "refresh":
        event = BindingRefreshed(mn_id, args.integer("lifetime", minimum=0),
                                 args.string("access_if", required=False),
                                 args.string("tunnel_if", required=False))
        args.finish()
        return event
    if kind == "attach":
        event = MobileNodeAttached(
            mn_id, args.string("access_if"), args.string("tunnel_if"),
            args.string("lma", required=False),
            tuple(args.string_list("hnp", required=False) or ()),
            args.integer("lifetime", required=False, minimum=0),
            parse_context(args.object_list("context", required=False) or []),
            args.string("previous_mag", required=False),
            _markers(args.object_list("forwarded_last", required=False)))
        args.finish()
        return event
    if kind == "prepare":
        prepared = MobileNodePrepared(
            mn_id, args.string("tunnel_if"), parse_context(args.object_list("context", required=False) or []),
            args.string("access_if", required=False), args.string("lma", required=False),
            tuple(args.string_list("hnp", required=False) or ()), args.string("previous_mag", required=False))
        args.finish()
        return prepared
    raise CommandError("bad-argument", f"event must be attach, detach, refresh or prepare, not {kind!r}")


#: at most this many groups in ``forwarded_last``
MAX_MARKERS = 1024


def _markers(entries: list[dict[str, Any]] | None) -> tuple[tuple[tuple[Family, Any], bytes], ...] | None:
    """``forwarded_last`` (``[{"family", "group", "id"}]``, docs/handover.md), checked."""
    if entries is None:
        return None
    return parse_markers(entries)


def parse_markers(entries: list[dict[str, Any]]) -> tuple[tuple[tuple[Family, Any], bytes], ...]:
    """Markers in their JSON form, checked; ``CommandError`` "bad-argument" names the fault."""
    if len(entries) > MAX_MARKERS:
        raise CommandError("bad-argument", f"forwarded_last has more than {MAX_MARKERS} entries")
    markers = []
    for index, entry in enumerate(entries):
        args = Arguments(entry)
        family = _FAMILY_NAMES.get(args.string("family"))
        group_text = args.string("group")
        identity = args.string("id")
        args.finish()
        try:
            group = ipaddress.ip_address(group_text)
        except ValueError:
            group = None
        if family is None or group is None or group.version != (4 if family is Family.IPV4 else 6) \
                or not group.is_multicast:
            raise CommandError("bad-argument", f"forwarded_last[{index}]: a multicast group of its family needed")
        try:
            packed = bytes.fromhex(identity)
        except ValueError:
            packed = b""
        if len(packed) != 8:
            raise CommandError("bad-argument", f"forwarded_last[{index}].id must be 16 hex digits")
        markers.append(((family, group), packed))
    return tuple(markers)


def markers_json(markers: Mapping[tuple[Family, Any], bytes]) -> list[dict[str, str]]:
    """Markers in their JSON form."""
    return [{"family": family.name.lower(), "group": str(group), "id": identity.hex()}
            for (family, group), identity in sorted(markers.items(), key=lambda item: (item[0][0], str(item[0][1])))]


@dataclass(slots=True)
class Binding:
    """One entry of the MAG's binding update list (mutable: refreshed in place)."""

    mn_id: str
    access_if: str
    tunnel_if: str
    instance: str
    lma: str | None
    hnp: tuple[str, ...]
    lifetime: int | None
    expires_at: float | None = None
    expiry: Any = None

    def row(self, now: float) -> dict[str, Any]:
        return {"mn_id": self.mn_id, "access_if": self.access_if, "tunnel_if": self.tunnel_if,
                "instance": self.instance, "lma": self.lma, "hnp": list(self.hnp),
                "expires_in": None if self.expires_at is None else round(self.expires_at - now, 3)}


class BindingTable:
    """The bindings of one MAG and the proxy state they imply.

    ``handle(event)`` applies one event and returns a JSON-able result; it
    raises ``CommandError`` ("unknown-mn", "bad-context", "binding-mismatch",
    "proxy-error") and leaves the table consistent with the facade.
    """

    def __init__(self, facade: ProxyFacade, profile: Timers, remove_empty_instance: bool,
                 codec: ContextCodec | None) -> None:
        self._facade = facade
        self._profile = profile
        self._remove_empty_instance = remove_empty_instance
        self._codec = codec
        self._bindings: dict[str, Binding] = {}
        #: the same bindings by (tunnel_if, access_if), and how many use each instance
        self._by_link: dict[tuple[str, str], dict[str, Binding]] = {}
        self._instance_uses: Counter[str] = Counter()
        self._removing: set[tuple[str, str]] = set()
        #: instances kept for prepared handovers (key -> instance) though no binding uses them yet
        self._reserved: dict[str, str] = {}

    # -- queries

    def __contains__(self, mn_id: str) -> bool:
        return mn_id in self._bindings

    def rows(self) -> list[dict[str, Any]]:
        now = self._facade.clock.seconds()
        return [binding.row(now) for binding in sorted(self._bindings.values(), key=lambda b: b.mn_id)]

    def get(self, mn_id: str) -> Binding | None:
        """The MN's binding, None when it has none."""
        return self._bindings.get(mn_id)

    def link_in_use(self, tunnel_if: str, access_if: str) -> bool:
        """True when some bound MN uses ``access_if`` under ``tunnel_if``."""
        return bool(self._link_users(tunnel_if, access_if))

    def get_instance(self, tunnel_if: str) -> str | None:
        """The instance of a binding on ``tunnel_if``, None when no MN is bound through it."""
        return next((b.instance for b in self._bindings.values() if b.tunnel_if == tunnel_if), None)

    def binding_links(self, mn_id: str) -> tuple[str, str] | None:
        """(access_if, tunnel_if) of the MN's binding, None when it has none."""
        binding = self._bindings.get(mn_id)
        return None if binding is None else (binding.access_if, binding.tunnel_if)

    # -- events

    def handle(self, event: BindingEvent, commit: bool = True) -> dict[str, Any]:
        """Apply ``event``; an attach's forwarding is committed to the data plane before the
        reply unless ``commit`` is False (a prepared handover commits it itself, later)."""
        if isinstance(event, MobileNodeDetached):
            return self._detach(event.mn_id, "detach")
        if isinstance(event, BindingRefreshed):
            return self._refresh(event)
        return self._attach(event, commit)

    def _attach(self, event: MobileNodeAttached, commit: bool = True) -> dict[str, Any]:
        if event.lifetime == 0:
            return self._detach(event.mn_id, "deregistration")
        imports = self._decode_context(event.context)
        existing = self._bindings.get(event.mn_id)
        result = {"mn_id": event.mn_id, "event": "attach", "changed": False, "moved_from": None}
        carried: list[FamilyRecords] = []
        if existing is not None and (existing.access_if, existing.tunnel_if) == (event.access_if, event.tunnel_if):
            binding = existing
            result["changed"] = (binding.lma, binding.hnp) != (event.lma, event.hnp)
            binding.lma, binding.hnp = event.lma, event.hnp
        else:
            left: list[str] = []
            if existing is not None:
                carried = self._leave_for_move(existing, keep_records=not imports)
                result["moved_from"] = {"access_if": existing.access_if, "tunnel_if": existing.tunnel_if}
                left.append(existing.instance)
            try:
                binding = self._join(event)
            finally:
                self._collect_instances(left)
            result["changed"] = True
        binding.lifetime = event.lifetime
        self._arm_expiry(binding)
        imported = self._import(binding, imports or carried)
        if commit:
            self._facade.commit_forwarding(binding.instance)
        result.update(instance=binding.instance, access_if=binding.access_if,
                      tunnel_if=binding.tunnel_if, expires_in=binding.lifetime,
                      context_records=imported)
        log.info("binding-attach mn=%s access_if=%s tunnel_if=%s instance=%s changed=%s moved=%s",
                 event.mn_id, binding.access_if, binding.tunnel_if, binding.instance,
                 result["changed"], result["moved_from"] is not None)
        return result

    def _join(self, event: MobileNodeAttached) -> Binding:
        """Make the MN's access link a downstream of its tunnel's instance; record the binding."""
        instance = None
        try:
            instance = self._facade.find_or_create_instance(event.tunnel_if, self._profile)
            if not self._link_users(event.tunnel_if, event.access_if):
                self._facade.add_downstream(instance, event.access_if)
        except McproxyError as exc:
            self._collect_instances([] if instance is None else [instance])
            raise CommandError(PROXY_ERROR, f"attach of {event.mn_id} failed: {exc}") from exc
        binding = Binding(event.mn_id, event.access_if, event.tunnel_if, instance,
                          event.lma, event.hnp, event.lifetime)
        self._bindings[event.mn_id] = binding
        self._by_link.setdefault((binding.tunnel_if, binding.access_if), {})[binding.mn_id] = binding
        self._instance_uses[binding.instance] += 1
        return binding

    def _leave_for_move(self, binding: Binding, keep_records: bool) -> list[FamilyRecords]:
        """Take the MN off its old link before it joins the new one; returns the records to carry."""
        carried: list[FamilyRecords] = []
        sole_user = self._link_users(binding.tunnel_if, binding.access_if) == [binding]
        if keep_records and sole_user:
            carried = list(self._facade.export_records(binding.instance, binding.access_if))
        self._forget(binding)
        if sole_user:
            self._remove_downstream(binding)
        return carried

    def _refresh(self, event: BindingRefreshed) -> dict[str, Any]:
        binding = self._binding(event.mn_id)
        for name in ("access_if", "tunnel_if"):
            given = getattr(event, name)
            if given is not None and given != getattr(binding, name):
                raise CommandError(BINDING_MISMATCH, f"{event.mn_id} is bound with {name} "
                                   f"{getattr(binding, name)}, not {given}")
        if event.lifetime == 0:
            return self._detach(event.mn_id, "deregistration")
        binding.lifetime = event.lifetime
        self._arm_expiry(binding)
        return {"mn_id": event.mn_id, "event": "refresh", "expires_in": event.lifetime}

    def _detach(self, mn_id: str, reason: str) -> dict[str, Any]:
        binding = self._binding(mn_id)
        self._forget(binding)
        removed_downstream = not self._link_users(binding.tunnel_if, binding.access_if)
        result = {"mn_id": mn_id, "event": "detach", "reason": reason, "instance": binding.instance,
                  "removed_downstream": removed_downstream, "removed_instance": False}
        try:
            if removed_downstream:
                self._remove_downstream(binding)
        finally:
            result["removed_instance"] = binding.instance in self._collect_instances([binding.instance])
        log.info("binding-detach mn=%s reason=%s access_if=%s instance=%s removed_downstream=%s",
                 mn_id, reason, binding.access_if, binding.instance, removed_downstream)
        return result

    def export_context(self, mn_id: str) -> dict[str, Any]:
        """The MN's subscription context as RFC 7411 payloads, one per family with records."""
        binding = self._binding(mn_id)
        codec = self._require_codec()
        entries = []
        for family, version, records in self._facade.export_records(binding.instance, binding.access_if):
            if not records:
                continue
            code, payload = codec.encode_context(family, version, tuple(records))
            entries.append({"family": family.name.lower(), "code": code, "payload": payload.hex()})
        return {"mn_id": mn_id, "context": entries}

    def decode_context(self, entries: Sequence[ContextEntry]) -> list[FamilyRecords]:
        """A context's records per family; ``CommandError`` "bad-context" as for an attach."""
        return self._decode_context(entries)

    def reserve_instance(self, key: str, tunnel_if: str) -> str:
        """The instance of ``tunnel_if`` (created if none), kept while ``key`` holds it even with
        no binding on it (a prepared handover)."""
        try:
            instance = self._facade.find_or_create_instance(tunnel_if, self._profile)
        except McproxyError as exc:
            raise CommandError(PROXY_ERROR, f"instance for {tunnel_if}: {exc}") from exc
        self._reserved[key] = instance
        return instance

    def unreserve_instance(self, key: str) -> bool:
        """Let go of ``key``'s instance; True when that removed it (no binding uses it)."""
        instance = self._reserved.pop(key, None)
        return instance is not None and bool(self._collect_instances([instance]))

    def import_context(self, mn_id: str, entries: Sequence[ContextEntry]) -> int:
        """Install a context that arrived after the MN's attach (reactive transfer) on its
        downstream; returns the number of records. Refused like an attach's context."""
        binding = self._binding(mn_id)
        return self._import(binding, self._decode_context(entries))

    def forget_instance(self, event: ProxyEvent) -> None:
        """An instance went away under us (operator command): drop its bindings, call nothing."""
        for binding in [b for b in self._bindings.values() if b.instance == event.instance]:
            log.warning("binding-dropped mn=%s reason=instance-removed instance=%s",
                        binding.mn_id, binding.instance)
            self._forget(binding)

    def forget_downstream(self, event: ProxyEvent) -> None:
        """An access link was removed by someone else (operator ``del-downstream``): drop the
        bindings on it, and their instance when it has none left (``remove_empty_instance``).
        The events of the table's own removals are ignored."""
        if (event.instance, event.interface) in self._removing:
            return
        dropped = [b for b in self._bindings.values()
                   if (b.instance, b.access_if) == (event.instance, event.interface)]
        for binding in dropped:
            log.warning("binding-dropped mn=%s reason=downstream-removed instance=%s access_if=%s",
                        binding.mn_id, binding.instance, binding.access_if)
            self._forget(binding)
        if dropped:
            self._collect_instances([event.instance])

    def close(self) -> None:
        """Cancel every lifetime timer (the daemon tears the proxy state down itself)."""
        for binding in self._bindings.values():
            self._cancel_expiry(binding)

    # -- helpers

    def _binding(self, mn_id: str) -> Binding:
        binding = self._bindings.get(mn_id)
        if binding is None:
            raise CommandError(UNKNOWN_MN, f"no binding for mobile node {mn_id!r}")
        return binding

    def _link_users(self, tunnel_if: str, access_if: str) -> list[Binding]:
        return list(self._by_link.get((tunnel_if, access_if), {}).values())

    def _forget(self, binding: Binding) -> None:
        self._cancel_expiry(binding)
        del self._bindings[binding.mn_id]
        key = (binding.tunnel_if, binding.access_if)
        users = self._by_link[key]
        del users[binding.mn_id]
        if not users:
            del self._by_link[key]
        self._instance_uses[binding.instance] -= 1
        if not self._instance_uses[binding.instance]:
            del self._instance_uses[binding.instance]

    def _remove_downstream(self, binding: Binding) -> None:
        """Remove the binding's access link, marked as the table's own removal while the
        facade's ``downstream-removed`` event goes round."""
        key = (binding.instance, binding.access_if)
        self._removing.add(key)
        try:
            self._facade.remove_downstream(*key)
        finally:
            self._removing.discard(key)

    def _collect_instances(self, candidates: Iterable[str]) -> list[str]:
        """Remove the ``candidates`` no binding uses (with ``remove_empty_instance``); returns
        those the facade removed (it keeps instances it did not create)."""
        if not self._remove_empty_instance:
            return []
        reserved = set(self._reserved.values())
        return [instance for instance in dict.fromkeys(candidates)
                if instance not in self._instance_uses and instance not in reserved
                and self._facade.remove_instance(instance)]

    def _arm_expiry(self, binding: Binding) -> None:
        self._cancel_expiry(binding)
        if binding.lifetime is None:
            return
        clock = self._facade.clock
        binding.expires_at = clock.seconds() + binding.lifetime
        binding.expiry = clock.callLater(binding.lifetime, self._expire, binding.mn_id)

    @staticmethod
    def _cancel_expiry(binding: Binding) -> None:
        if binding.expiry is not None and binding.expiry.active():
            binding.expiry.cancel()
        binding.expiry = None
        binding.expires_at = None

    def _expire(self, mn_id: str) -> None:
        binding = self._bindings.get(mn_id)
        if binding is None:
            return
        binding.expiry = None
        log.info("binding-expired mn=%s lifetime=%s", mn_id, binding.lifetime)
        try:
            self._detach(mn_id, "lifetime-expired")
        except McproxyError:
            log.exception("binding-expiry-failed mn=%s", mn_id)

    def _require_codec(self) -> ContextCodec:
        if self._codec is None:
            raise CommandError(BAD_CONTEXT, "no RFC 7411 context codec available")
        return self._codec

    def _decode_context(self, entries: Sequence[ContextEntry]) -> list[FamilyRecords]:
        """Decode before anything changes, so a bad context refuses the whole event."""
        if not entries:
            return []
        codec = self._require_codec()
        decoded = []
        for entry in entries:
            try:
                family, version, records = codec.decode_context(entry.code, entry.payload)
            except (McproxyError, ValueError) as exc:
                raise CommandError(BAD_CONTEXT, f"{entry.family.name.lower()} context code "
                                   f"{entry.code}: {exc}") from exc
            if family is not entry.family:
                raise CommandError(BAD_CONTEXT, f"context code {entry.code} is {family.name.lower()}, "
                                   f"declared {entry.family.name.lower()}")
            decoded.append((family, version, tuple(records)))
        return decoded

    def _import(self, binding: Binding, imports: Sequence[FamilyRecords]) -> int:
        count = 0
        for family, version, records in imports:
            if not records:
                continue
            try:
                self._facade.import_records(binding.instance, binding.access_if, family, version, records)
            except McproxyError as exc:
                raise CommandError(PROXY_ERROR, f"{binding.mn_id} attached, context import "
                                   f"failed: {exc}") from exc
            count += len(records)
        return count

