"""Packet captures on the host side of the guests' NICs (their tap devices in the lab's namespace):
what a guest's NIC really carried, read without asking the guest. tcpdump captures, dpkt reads.

A capture is bounded in packets and in time, and ends by its own PID.
"""

from __future__ import annotations

import io
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from types import TracebackType

import dpkt

from ..host.netns import Namespace, end_process

SNAP_BYTES = 192  # the Ethernet, outer and inner IP and TCP headers, with room for options
MAX_PACKETS = 5000
LISTENING_TIMEOUT_SECONDS = 10
GUE_HEADER_BYTES = 4


class CaptureError(RuntimeError):
    pass


@dataclass(frozen=True)
class Segment:
    """A TCP segment as a NIC carried it: who sent the frame, and how it was wrapped."""

    src_mac: str
    dst_mac: str
    src: IPv4Address
    dst: IPv4Address
    sport: int
    dport: int
    syn: bool
    ack: bool
    mss: int | None  # the MSS option of a SYN
    tunnel: str | None  # how it arrived wrapped: "ipip", "gre" or "gue"; None when bare
    outer_dst: IPv4Address | None  # the tunnel's destination


def mac(raw: bytes) -> str:
    return ":".join(f"{byte:02x}" for byte in raw)


def mss_option(tcp: dpkt.tcp.TCP) -> int | None:
    for kind, value in dpkt.tcp.parse_opts(tcp.opts):
        if kind == dpkt.tcp.TCP_OPT_MSS and len(value) == 2:
            return int.from_bytes(value, "big")
    return None


def unwrap(ip: dpkt.ip.IP, gue_port: int | None) -> tuple[dpkt.ip.IP | None, str | None]:
    """The packet a tunnel carries, and the tunnel's kind; the packet itself when bare."""
    if ip.p == dpkt.ip.IP_PROTO_IPIP and isinstance(ip.data, dpkt.ip.IP):
        return ip.data, "ipip"
    if ip.p == dpkt.ip.IP_PROTO_GRE and isinstance(ip.data, dpkt.gre.GRE) and isinstance(ip.data.data, dpkt.ip.IP):
        return ip.data.data, "gre"
    if gue_port is not None and ip.p == dpkt.ip.IP_PROTO_UDP and isinstance(ip.data, dpkt.udp.UDP) and ip.data.dport == gue_port:
        payload = bytes(ip.data.data)
        # GUE variant 0: a 4-byte header and hlen words of options; variant 1 is the bare packet.
        start = GUE_HEADER_BYTES + 4 * (payload[0] & 0x1F) if payload and payload[0] >> 6 == 0 else 0
        try:
            return dpkt.ip.IP(payload[start:]), "gue"
        except dpkt.UnpackError:
            return None, None
    return ip, None


def segments(pcap: bytes, *, gue_port: int | None = None) -> Iterator[Segment]:
    """The TCP segments of a capture, bare or wrapped in a tunnel."""
    if not pcap:
        return
    for _, frame in dpkt.pcap.Reader(io.BytesIO(pcap)):
        ethernet = dpkt.ethernet.Ethernet(frame)
        if not isinstance(ethernet.data, dpkt.ip.IP):
            continue
        inner, tunnel = unwrap(ethernet.data, gue_port)
        if inner is None or not isinstance(inner.data, dpkt.tcp.TCP):
            continue
        tcp = inner.data
        yield Segment(
            src_mac=mac(ethernet.src),
            dst_mac=mac(ethernet.dst),
            src=IPv4Address(inner.src),
            dst=IPv4Address(inner.dst),
            sport=tcp.sport,
            dport=tcp.dport,
            syn=bool(tcp.flags & dpkt.tcp.TH_SYN),
            ack=bool(tcp.flags & dpkt.tcp.TH_ACK),
            mss=mss_option(tcp) if tcp.flags & dpkt.tcp.TH_SYN else None,
            tunnel=tunnel,
            outer_dst=IPv4Address(ethernet.data.dst) if tunnel else None,
        )


class Capture:
    """tcpdump on `device` in the namespace, from when it listens until `stop()`."""

    def __init__(self, ns: Namespace, device: str, bpf: str) -> None:
        self.device = device
        self.ns = ns
        argv = ["tcpdump", "-i", device, "--immediate-mode", "-n", "-s", str(SNAP_BYTES), "-c", str(MAX_PACKETS), "-U", "-w", "-", bpf]
        self.process = ns.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._pcap = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._wait_listening()

    def _read(self) -> None:
        assert self.process.stdout is not None
        descriptor = self.process.stdout.fileno()
        for chunk in iter(lambda: os.read(descriptor, 65536), b""):
            self._pcap += chunk

    def _wait_listening(self) -> None:
        """tcpdump says it listens once its filter is on the device: from then on it misses nothing."""
        assert self.process.stderr is not None
        deadline = time.monotonic() + LISTENING_TIMEOUT_SECONDS
        said = b""
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            said += line
            if b"listening on" in line:
                return
            if not line and self.process.poll() is not None:
                break
        self.stop()
        raise CaptureError(f"tcpdump on {self.device} did not start listening: {said.decode(errors='replace').strip()}")

    def stop(self) -> bytes:
        """Ends tcpdump (it flushes every packet it wrote, -U) and returns the capture."""
        end_process(self.process)
        self._reader.join(timeout=LISTENING_TIMEOUT_SECONDS)
        self.ns.forget(self.process)
        return bytes(self._pcap)

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        if self.process.poll() is None:
            self.stop()
