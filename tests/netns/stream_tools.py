"""Numbered multicast streams for handover tests: a paced sender thread and the receiver's tally."""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

from tests.netns.proxy_harness import PORT

SEQUENCE = struct.Struct("!Q")
SO_RCVBUFFORCE = 33
RECEIVE_BUFFER = 8 * 1024 * 1024


class PacedStream:
    """Sends ``seq`` 0, 1, 2... to ``group`` from ``sock`` every ``interval`` seconds, in a thread."""

    def __init__(self, sock: socket.socket, group: str, interval: float = 0.001, size: int = 200) -> None:
        self.sock = sock
        self.group = group
        self.interval = interval
        self.size = size
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PacedStream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            payload = SEQUENCE.pack(self.sent) + bytes(self.size - SEQUENCE.size)
            self.sock.sendto(payload, (self.group, PORT))
            self.sent += 1
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)
        self.sock.close()


@dataclass
class Reception:
    """Sequence numbers in their order of arrival at one receiver socket."""

    sock: socket.socket | None
    seqs: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.sock is not None:  # room for a flushed burst: the test counts the proxy's faults
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)

    def drain(self, quiet_interval: float = 0.0) -> list[int]:
        """Read what is queued (and what arrives until ``quiet_interval`` passes without any)."""
        while True:
            readable, _, _ = select.select([self.sock], [], [], quiet_interval)
            if not readable:
                return self.seqs
            while True:
                try:
                    data = self.sock.recv(65535)
                except BlockingIOError:
                    break
                self.seqs.append(SEQUENCE.unpack_from(data)[0])

    def faults(self) -> dict[str, int]:
        """lost (gaps inside the received range), duplicated, reordered (arrived below the highest seen)."""
        seen: set[int] = set()
        duplicated = reordered = 0
        highest = -1
        for seq in self.seqs:
            if seq in seen:
                duplicated += 1
                continue
            seen.add(seq)
            if seq < highest:
                reordered += 1
            highest = max(highest, seq)
        lost = (max(seen) - min(seen) + 1 - len(seen)) if seen else 0
        return {"lost": lost, "duplicated": duplicated, "reordered": reordered}
