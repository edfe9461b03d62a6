"""How the lab reads who answered the VIP: captures of hand-built frames (bare, IPIP, GRE, GUE),
the directors' IPVS counters, and the judgement of what arrived at a web node per mode."""

from __future__ import annotations

import io
import subprocess
from ipaddress import IPv4Address
from typing import Any

import dpkt
import pytest

from lab.guests.capture import segments
from lab.host import tools
from lab.scenario.forwarding import COUNTER_LINE, arrivals, arrived_whole, counted_since, delivered_as_mode, transfer_script
from tests.config_helpers import _settings_with

CLIENT, VIP, WEB = "12.0.0.66", "12.0.0.1", "192.168.75.50"
WEB_MAC, DIRECTOR_MAC = b"\x52\x54\x00\x00\x00\x50", b"\x52\x54\x00\x00\x00\x01"


def tcp_packet(src: str, dst: str, sport: int, dport: int, flags: int, *, mss: int | None = None) -> dpkt.ip.IP:
    opts = b"" if mss is None else bytes([dpkt.tcp.TCP_OPT_MSS, 4]) + mss.to_bytes(2, "big")
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags, opts=opts)
    tcp.off = 5 + len(opts) // 4  # the header's length in words, options included
    return dpkt.ip.IP(src=IPv4Address(src).packed, dst=IPv4Address(dst).packed, p=dpkt.ip.IP_PROTO_TCP, data=tcp)


def wrapped(inner: dpkt.ip.IP, how: str, *, port: int = 5555) -> dpkt.ip.IP:
    outer = {"src": IPv4Address("192.168.75.30").packed, "dst": IPv4Address(WEB).packed}
    if how == "ipip":
        return dpkt.ip.IP(p=dpkt.ip.IP_PROTO_IPIP, data=inner, **outer)
    if how == "gre":
        return dpkt.ip.IP(p=dpkt.ip.IP_PROTO_GRE, data=dpkt.gre.GRE(p=dpkt.ethernet.ETH_TYPE_IP, data=inner), **outer)
    gue = bytes([0, 4, 0, 0])  # variant 0, no options, IPv4 inside
    return dpkt.ip.IP(p=dpkt.ip.IP_PROTO_UDP, data=dpkt.udp.UDP(sport=40000, dport=port, data=gue + bytes(inner)), **outer)


def pcap_of(*packets: tuple[bytes, dpkt.ip.IP]) -> bytes:
    out = io.BytesIO()
    writer = dpkt.pcap.Writer(out)
    for src_mac, packet in packets:
        writer.writepkt(dpkt.ethernet.Ethernet(src=src_mac, dst=b"\x52\x54\x00\x00\x00\x66", data=packet))
    return out.getvalue()


def test_a_syn_ack_is_read_with_its_sender_and_segment_size() -> None:
    syn_ack = tcp_packet(VIP, CLIENT, 80, 41000, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK, mss=1440)
    [segment] = segments(pcap_of((WEB_MAC, syn_ack)))
    assert (segment.src_mac, segment.src, segment.sport, segment.syn, segment.ack, segment.mss, segment.tunnel) == (
        "52:54:00:00:00:50",
        IPv4Address(VIP),
        80,
        True,
        True,
        1440,
        None,
    )


@pytest.mark.parametrize("how", ["ipip", "gre", "gue"])
def test_a_tunnelled_request_is_read_as_the_packet_inside(how: str) -> None:
    request = tcp_packet(CLIENT, VIP, 41000, 80, dpkt.tcp.TH_SYN, mss=1460)
    [segment] = segments(pcap_of((DIRECTOR_MAC, wrapped(request, how))), gue_port=5555)
    assert (segment.tunnel, segment.src, segment.dst, segment.outer_dst, segment.mss) == (
        how,
        IPv4Address(CLIENT),
        IPv4Address(VIP),
        IPv4Address(WEB),
        1460,
    )


def test_udp_on_another_port_is_not_a_gue_tunnel() -> None:
    request = tcp_packet(CLIENT, VIP, 41000, 80, dpkt.tcp.TH_SYN)
    assert list(segments(pcap_of((DIRECTOR_MAC, wrapped(request, "gue", port=6000))), gue_port=5555)) == []


def test_an_empty_capture_has_no_segments() -> None:
    assert list(segments(b"")) == []


def seed_settings() -> Any:
    return _settings_with(lambda config: None)


def arrived(*packets: dpkt.ip.IP) -> dict[str, Any]:
    settings = seed_settings()
    return arrivals(list(segments(pcap_of(*((DIRECTOR_MAC, p) for p in packets)))), IPv4Address(CLIENT), settings)


def test_what_arrives_at_a_web_node_is_told_apart_by_how_it_was_handed_over() -> None:
    vip = str(seed_settings().vip)
    rewritten = tcp_packet(CLIENT, WEB, 41000, 80, dpkt.tcp.TH_SYN)
    to_vip = tcp_packet(CLIENT, vip, 41001, 80, dpkt.tcp.TH_SYN)
    health_check = tcp_packet("192.168.75.31", WEB, 42000, 80, dpkt.tcp.TH_SYN)  # not the client's
    tunnelled = wrapped(tcp_packet(CLIENT, vip, 41002, 80, dpkt.tcp.TH_SYN), "ipip")
    seen = arrived(rewritten, to_vip, health_check, tunnelled)
    assert seen == {"addressedToVip": 1, "rewrittenTo": {WEB: 1}, "tunnelled": {"ipip": 1}}
    assert not any(delivered_as_mode(mode, "ipip", seen) for mode in ("nat", "dr", "tun"))  # a mix is no mode
    assert delivered_as_mode("nat", None, arrived(rewritten, health_check))
    assert delivered_as_mode("dr", None, arrived(to_vip))
    assert delivered_as_mode("tun", "ipip", arrived(tunnelled))
    assert not delivered_as_mode("tun", "gre", arrived(tunnelled))
    assert not delivered_as_mode("dr", None, arrived(health_check))  # nothing of the client's


def test_the_counters_of_the_service_are_read_from_ipvsadm_stats() -> None:
    text = (
        "IP Virtual Server version 1.2.1 (size=4096)\n"
        "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n"
        "  -> RemoteAddress:Port\n"
        "TCP  12.0.0.1:80                        20      120        0     8000        0\n"
        "  -> 12.0.0.50:80                       10       60        0     4000        0\n"
    )
    assert [match[:3] for match in COUNTER_LINE.findall(text)] == [("12.0.0.1:80", "20", "120")]
    assert counted_since({"inPackets": 100, "outPackets": 5}, {"inPackets": 220, "outPackets": 5}) == {"inPackets": 120, "outPackets": 0}
    assert counted_since(None, {"inPackets": 7, "outPackets": 0}) == {"inPackets": 7, "outPackets": 0}


def test_a_transfer_is_whole_only_with_every_byte_both_ways() -> None:
    assert arrived_whole(["GET", "200", "0", "102400", "0.05", "web1", "yes"])
    assert arrived_whole(["POST", "200", "102400", "102400", "0.08", "web2", "yes"])
    assert not arrived_whole(["POST", "200", "65536", "102400", "0.08", "web2", "yes"])  # the upload stopped short
    assert not arrived_whole(["GET", "200", "0", "102400", "0.05", "web1", "no"])  # other bytes
    assert not arrived_whole(["GET", "000", "0", "0", "10.0", "no"])  # no answer, no backend
    assert arrived_whole(["DIRECT", "200", "0", "102400", "0.04", "web1", "yes"])


def test_the_transfer_script_is_valid_shell() -> None:
    tools.require("dash")
    script = transfer_script("http://12.0.0.1/lvs-lab-100k.bin", "http://12.0.0.50/lvs-lab-100k.bin", "0" * 64)
    assert subprocess.run(["dash", "-n", "-c", script], capture_output=True, text=True).returncode == 0
