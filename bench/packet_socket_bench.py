"""Packet socket input at scale: opening, watching 1,000 links, per-packet receive cost, a report burst.

In a namespace of its own (``pio-bench-*``, removed at the end) with N veth
pairs va<i>/vb<i> whose both ends sit in that namespace (kernel defaults,
no sysctl raised), it prints:

- the time to open ``IgmpPacketSocket`` and ``MldPacketSocket`` (packet socket,
  BPF filter, receive buffer, raw send socket);
- the time to ``watch`` all N va<i> (ALLMULTI requests), and to ``unwatch`` them;
- the receive cost per packet of ``read_packets`` (recvfrom, checksum,
  parsing, the dataclass), for IGMPv2 reports and MLDv1 reports with the
  Hop-by-Hop header, injected on vb0 in batches and read from va0;
- a burst of two reports on each of the N links, injected before any read:
  how many were read and how many the kernel dropped (``receive_queue_full``);
- how many reports the receive buffer holds (20,000 injected before any read).

    sudo .venv/bin/python bench/packet_socket_bench.py              # 1,000 links, 20,000 packets
    sudo .venv/bin/python bench/packet_socket_bench.py --links 100  # quicker
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import secrets
import socket
import struct
import subprocess
import time
from collections.abc import Iterator

from pyroute2 import netns

from mcproxy_pmip.kernel.packet_socket import ETH_P_IP, ETH_P_IPV6, IgmpPacketSocket, MldPacketSocket
from mcproxy_pmip.wire import checksum, igmp, ipv4, ipv6, mld

BATCH = 2000
HOST6 = ipaddress.IPv6Address("fe80::2")


def run(*argv: str, commands: str | None = None) -> None:
    result = subprocess.run(argv, input=commands, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {result.stderr.strip()}")


@contextlib.contextmanager
def namespace(links: int) -> Iterator[str]:
    name = f"pio-bench-{secrets.token_hex(3)}"
    run("ip", "netns", "add", name)
    try:
        # No IPv6 on the links: their own MLD reports would mix with the injected ones.
        run("ip", "netns", "exec", name, "sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1")
        started = time.perf_counter()
        run("ip", "-n", name, "-batch", "-", commands="".join(
            f"link add va{i} type veth peer name vb{i}\nlink set va{i} up\nlink set vb{i} up\n"
            for i in range(links)))
        print(f"setup: {links} veth pairs in {time.perf_counter() - started:.1f} s")
        yield name
    finally:
        run("ip", "netns", "delete", name)


def igmp_report(index: int) -> bytes:
    group = ipaddress.IPv4Address("239.80.0.0") + index
    header = struct.pack("!BBHHHBBH4s4s", 0x46, 0xC0, 32, 0, 0, 1, ipv4.IPPROTO_IGMP, 0,
                         bytes(4), group.packed) + ipv4.ROUTER_ALERT_OPTION
    header = header[:10] + struct.pack("!H", checksum.internet_checksum(header)) + header[12:]
    return header + igmp.build(igmp.IgmpV2Report(group))


def mld_report(index: int) -> bytes:
    group = ipaddress.IPv6Address("ff3e::80:0") + index
    body = b"\x3a" + ipv6.HOP_BY_HOP_ROUTER_ALERT[1:] + mld.build(mld.MldV1Report(group), HOST6, group)
    return struct.pack("!IHBB16s16s", 6 << 28, len(body), 0, 1, HOST6.packed, group.packed) + body


def mac_of(packet: bytes) -> bytes:
    if packet[0] >> 4 == 4:
        return b"\x01\x00\x5e" + packet[17:20]
    return b"\x33\x33" + packet[36:40]


def inject(sender: socket.socket, ifname: str, packets: list[bytes]) -> None:
    for packet in packets:
        ethertype = ETH_P_IP if packet[0] >> 4 == 4 else ETH_P_IPV6
        sender.sendto(packet, (ifname, ethertype, 0, 0, mac_of(packet)))


def read_all(sock, expected: int) -> tuple[int, float, float]:
    """Read until ``expected`` more packets were read or dropped; (read, wall s, CPU s spent in read_packets)."""
    read = 0
    wall = cpu = 0.0
    dropped_before = sock.drops["receive_queue_full"]
    deadline = time.monotonic() + 30
    while read + sock.drops["receive_queue_full"] - dropped_before < expected and time.monotonic() < deadline:
        started, started_cpu = time.perf_counter(), time.process_time()
        got = sock.read_packets()
        wall += time.perf_counter() - started
        cpu += time.process_time() - started_cpu
        read += len(got)
    return read, wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--links", type=int, default=1000)
    parser.add_argument("--packets", type=int, default=20000)
    args = parser.parse_args()
    with namespace(args.links) as name:
        netns.pushns(name)
        try:
            ifindex = {f"va{i}": socket.if_nametoindex(f"va{i}") for i in range(args.links)}
            sender = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
            for kind, build in ((IgmpPacketSocket, igmp_report), (MldPacketSocket, mld_report)):
                started = time.perf_counter()
                sock = kind(max_packets_per_read=256)
                opened = time.perf_counter() - started
                started = time.perf_counter()
                for index in ifindex.values():
                    sock.watch(index)
                watched = time.perf_counter() - started
                print(f"{kind.__name__}: open {opened * 1e3:.2f} ms, watch {args.links} links "
                      f"{watched * 1e3:.1f} ms ({watched / args.links * 1e6:.0f} us each), "
                      f"receive buffer {sock.receive_buffer // 1024} KiB")

                packets = [build(i) for i in range(BATCH)]
                total_read, total_wall, total_cpu = 0, 0.0, 0.0
                for _ in range(max(1, args.packets // BATCH)):
                    inject(sender, "vb0", packets)
                    read, wall, cpu = read_all(sock, BATCH)
                    total_read += read
                    total_wall += wall
                    total_cpu += cpu
                per_packet = max(total_read, 1)
                print(f"  receive: {total_read} packets read in {total_wall * 1e3:.0f} ms, "
                      f"{total_wall / per_packet * 1e6:.1f} us per packet wall, "
                      f"{total_cpu / per_packet * 1e6:.1f} us CPU; drops {dict(sock.drops)}")

                sock.drops.clear()
                started = time.perf_counter()
                for i in range(args.links):
                    inject(sender, f"vb{i}", [build(2 * i), build(2 * i + 1)])
                injected = time.perf_counter() - started
                read, wall, _ = read_all(sock, 2 * args.links)
                print(f"  burst: {2 * args.links} reports on {args.links} links injected in {injected * 1e3:.0f} ms "
                      f"before any read; read {read} in {wall * 1e3:.0f} ms, "
                      f"kernel drops {sock.drops['receive_queue_full']}")

                sock.drops.clear()
                flood = 10 * BATCH
                inject(sender, "vb0", [build(i % BATCH) for i in range(flood)])
                read, _, _ = read_all(sock, flood)
                print(f"  capacity: of {flood} reports injected before any read, {read} were queued, "
                      f"{sock.drops['receive_queue_full']} dropped and counted")

                started = time.perf_counter()
                for index in ifindex.values():
                    sock.unwatch(index)
                unwatched = time.perf_counter() - started
                started = time.perf_counter()
                sock.close()
                closed = time.perf_counter() - started
                print(f"  unwatch {args.links} links {unwatched * 1e3:.1f} ms, close {closed * 1e3:.2f} ms")
            sender.close()
        finally:
            netns.popns()


if __name__ == "__main__":
    main()
