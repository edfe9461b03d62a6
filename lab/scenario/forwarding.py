"""Who answers the VIP, observed and never read from the config (issue 18), and whether large
requests and responses cross the forwarding path whole.

`Forwarding` sends a burst of requests to the VIP and reads, meanwhile:
- each director's IPVS counters for the service: packets in, and packets out (the replies a
  director forwarded back to the client);
- a capture on the client's NIC (host side): whose frames carry the VIP's SYN-ACKs, a director's
  or a web node's, and the segment size each SYN-ACK advertises;
- a capture on each web node's NICs: how the client's packets arrived, rewritten to the real
  server's own address (NAT), addressed to the VIP itself (DR), or wrapped in a tunnel (TUN).
Replies bypass the director when the counters saw packets come in and none go out, and every
SYN-ACK came from a web node.

`LargeTransfers`: a 100 KB file on every export, fetched and posted back through the VIP: the
bytes that arrive are the bytes that left, both ways (a tunnel that forgot its MTU stalls here).
"""

from __future__ import annotations

import contextlib
import re
import shlex
import statistics
from collections import Counter
from ipaddress import IPv4Address
from typing import Any

from components.config import ClusterSettings

from ..guests.capture import Segment, segments
from .checks import DIRECT_LOCAL_PORTS, direct_url
from .context import Node, RunContext, StackState

FORWARDING_REQUESTS = 20
TRANSFERS = 10
TRANSFER_BYTES = 100 * 1024
TRANSFER_FILE = "lvs-lab-100k.bin"
TRANSFER_TIMEOUT_SECONDS = 30
PATH_MTU = 1500  # the lab's networks: libvirt's default
# What each tunnel adds to a packet (outer IPv4 header; GRE's 4-byte header; UDP's and GUE's).
TUNNEL_OVERHEAD = {"ipip": 20, "gre": 24, "gue": 32}
IP_TCP_HEADERS = 40
COUNTER_LINE = re.compile(r"^TCP\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$", re.MULTILINE)


def ipvs_packets(director: Node, settings: ClusterSettings) -> dict[str, int] | None:
    """The director's packet counters of the virtual service (None: it has no such service)."""
    service = f"{settings.vip}:{settings.service.port}"
    answer = director.run(f"sudo -n ipvsadm -L -n --stats --exact -t {service}")
    for address, _, in_packets, out_packets, _, _ in COUNTER_LINE.findall(answer.stdout):
        if address == service:
            return {"inPackets": int(in_packets), "outPackets": int(out_packets)}
    return None


def counted_since(before: dict[str, int] | None, after: dict[str, int] | None) -> dict[str, int]:
    """What the counters counted between two readings (a service created since counts from 0)."""
    return {key: value - (before or {}).get(key, 0) for key, value in (after or {}).items()}


def mac_owners(state: StackState) -> dict[str, str]:
    """Each NIC's MAC, by the node that owns it."""
    node_of_domain = {state.settings.domain_name(name): name for name in state.topology.nodes()}
    return {nic.mac.lower(): node_of_domain.get(guest.name, guest.name) for guest in state.topology.guests for nic in guest.nics}


def client_side(ctx: RunContext, state: StackState, taps: dict[tuple[str, str], str]) -> tuple[str, IPv4Address]:
    """The device where the client's frames pass (its NIC's tap, else the external network's
    bridge, the namespace's side), and the address the requests come from."""
    settings = state.settings
    if settings.client is not None:
        return taps[(settings.domain_name(settings.client.name), settings.external.name)], settings.client.ip
    return ctx.cluster.bridge_names()[settings.external.name], settings.external.host_ip


def gue_port(settings: ClusterSettings) -> int | None:
    tunnel = settings.service.tunnel
    return tunnel.port if tunnel is not None and tunnel.type == "gue" else None


def arrivals(captured: list[Segment], client: IPv4Address, settings: ClusterSettings) -> dict[str, Any]:
    """How the client's packets for the service arrived at a web node."""
    own = [s for s in captured if s.src == client and s.dport == settings.service.port]
    return {
        "addressedToVip": sum(1 for s in own if s.tunnel is None and s.dst == settings.vip),
        "rewrittenTo": dict(Counter(str(s.dst) for s in own if s.tunnel is None and s.dst != settings.vip)),
        "tunnelled": dict(Counter(s.tunnel for s in own if s.tunnel is not None and s.dst == settings.vip)),
    }


def delivered_as_mode(mode: str, tunnel: str | None, arrived: dict[str, Any]) -> bool:
    """The web node got the client's packets the way `mode` hands them over, and no other way."""
    rewritten, to_vip, tunnelled = sum(arrived["rewrittenTo"].values()), arrived["addressedToVip"], arrived["tunnelled"]
    if mode == "nat":
        return rewritten > 0 and to_vip == 0 and not tunnelled
    if mode == "dr":
        return to_vip > 0 and rewritten == 0 and not tunnelled
    return set(tunnelled) == {tunnel} and to_vip == 0 and rewritten == 0


class Forwarding:
    name = "forwarding: who answers the VIP"

    def run(self, ctx: RunContext, state: StackState) -> StackState:
        settings = state.settings
        mode, port = settings.service.mode, settings.service.port
        tunnel = settings.service.tunnel.type if settings.service.tunnel is not None else None
        directors = {peer.name: ctx.node(state, peer.name) for peer in settings.directors}
        taps = ctx.cluster.tap_devices()
        device, client = client_side(ctx, state, taps)
        gue = gue_port(settings)
        web_bpf = f"tcp port {port} or ip proto 4 or ip proto 47" + (f" or udp port {gue}" if gue else "")
        before = {name: ipvs_packets(node, settings) for name, node in directors.items()}
        with contextlib.ExitStack() as stack:
            client_capture = stack.enter_context(ctx.cluster.capture(device, f"tcp and host {settings.vip} and port {port}"))
            web_captures = {
                (web.name, network): stack.enter_context(ctx.cluster.capture(taps[(settings.domain_name(web.name), network)], web_bpf))
                for web in settings.web_servers
                for network in (settings.internal.name, settings.external.name)
                if (settings.domain_name(web.name), network) in taps
            }
            lines = ctx.send_requests(state, state.vip_url, FORWARDING_REQUESTS)
            at_client = list(segments(client_capture.stop()))
            at_webs = {key: list(segments(capture.stop(), gue_port=gue)) for key, capture in web_captures.items()}
        after = {name: ipvs_packets(node, settings) for name, node in directors.items()}

        counters = {name: counted_since(before[name], after[name]) for name in directors if after[name] is not None}
        owners = mac_owners(state)
        syn_acks = [s for s in at_client if s.src == settings.vip and s.sport == port and s.syn and s.ack]
        senders = Counter(owners.get(s.src_mac, s.src_mac) for s in syn_acks)
        webs = {web.name for web in settings.web_servers}
        in_packets = sum(count["inPackets"] for count in counters.values())
        out_packets = sum(count["outPackets"] for count in counters.values())
        bypass = in_packets > 0 and out_packets == 0 and bool(syn_acks) and set(senders) <= webs
        received = {f"{web}@{network}": arrivals(captured, client, settings) for (web, network), captured in at_webs.items()}
        answered = sum(1 for line in lines if line.startswith("200 "))
        ctx.report.forwarding = {
            "mode": mode,
            "repliesBypassDirector": bypass,
            "evidence": {
                "requests": FORWARDING_REQUESTS,
                "answered": answered,
                "directors": sorted(directors),
                "ipvsCounters": counters,
                "synAcksAtClient": {"count": len(syn_acks), "bySender": dict(senders), "mss": sorted({s.mss for s in syn_acks if s.mss})},
                "arrivedAtWebNodes": received,
            },
        }
        ctx.status.show("forwarding", ctx.report.forwarding)
        evidence = str(ctx.report.forwarding["evidence"])
        ctx.report.check("forwarding: every request answered", answered == FORWARDING_REQUESTS, str(lines[:5]))
        expected = mode != "nat"
        ctx.report.check(
            f"forwarding ({mode}): replies {'bypass' if expected else 'come back through'} the director", bypass == expected, evidence
        )
        serving = [web.name for web in settings.web_servers if web.weight > 0]
        delivered = {
            web: any(delivered_as_mode(mode, tunnel, arrived) for key, arrived in received.items() if key.startswith(f"{web}@"))
            for web in serving
        }
        ctx.report.check(
            f"forwarding ({mode}): each web node got the requests as {mode} hands them over", all(delivered.values()), evidence
        )
        if tunnel is not None:
            fits = PATH_MTU - TUNNEL_OVERHEAD[tunnel] - IP_TCP_HEADERS
            mss = ctx.report.forwarding["evidence"]["synAcksAtClient"]["mss"]
            ctx.report.check(
                f"forwarding (tun {tunnel}): the web nodes advertise a segment size that fits the tunnel (≤ {fits})",
                bool(mss) and max(mss) <= fits,
                str(mss),
            )
        return state


def transfer_script(url: str, direct: str, expected_sha256: str) -> str:
    """GETs and POSTs of the file through the VIP, and GETs of it from a web node without IPVS
    (DIRECT, from ports a VIP connection never used), one line each: what, HTTP code, bytes
    sent, bytes received, seconds, the backend, whether the bytes received are the file's."""
    written = "%{{http_code}} %{{size_upload}} %{{size_download}} %{{time_total}} %header{{x-lvs-backend}}"
    fetch = f"curl -s -m {{timeout}} -o \"$tmp/got\" -w '{written}' {{extra}} {{url}}"
    lines = []
    for what, target, extra in (
        ("GET", url, ""),
        ("POST", url, "--data-binary @\"$tmp/sent\" -H 'Expect:'"),
        ("DIRECT", direct, f"--local-port {DIRECT_LOCAL_PORTS}"),
    ):
        command = fetch.format(timeout=TRANSFER_TIMEOUT_SECONDS, extra=extra, url=shlex.quote(target))
        lines.append(
            f"i=0; while [ $i -lt {TRANSFERS} ]; do i=$((i+1)); answer=$({command}) || true; "
            f'same=$(sha256sum < "$tmp/got" | cut -c1-64); [ "$same" = {expected_sha256} ] && same=yes || same=no; '
            f'echo "{what} $answer $same"; done'
        )
    return (
        "tmp=$(mktemp -d) && trap 'rm -rf \"$tmp\"' EXIT && "
        f'head -c {TRANSFER_BYTES} /dev/urandom > "$tmp/sent" && touch "$tmp/got"; ' + "; ".join(lines)
    )


def arrived_whole(line: list[str]) -> bool:
    """A transfer's line: answered 200, the whole file back (and, posted, the whole file sent)."""
    if len(line) != 7 or line[1] != "200" or line[6] != "yes":
        return False
    sent, received = int(float(line[2])), int(float(line[3]))
    return received == TRANSFER_BYTES and sent == (TRANSFER_BYTES if line[0] == "POST" else 0)


class LargeTransfers:
    name = "large transfers through the VIP"

    def run(self, ctx: RunContext, state: StackState) -> StackState:
        settings = state.settings
        nfs = ctx.node(state, settings.nfs.name)
        paths = " ".join(shlex.quote(f"{export}/{TRANSFER_FILE}") for export in settings.nfs.exports)
        first = shlex.quote(f"{settings.nfs.exports[0]}/{TRANSFER_FILE}")
        digest = nfs.ask(
            f'sudo -n sh -c \'head -c {TRANSFER_BYTES} /dev/urandom > {first}; for p in {paths}; do cp {first} "$p" 2>/dev/null; '
            f'chmod 0644 "$p"; done; sha256sum < {first} | cut -c1-64\'',
            what="writing the 100 KB file on the exports",
        ).strip()
        try:
            script = transfer_script(state.vip_url + TRANSFER_FILE, direct_url(settings) + TRANSFER_FILE, digest)
            result = ctx.traffic.on_client(ctx.client(state), script, timeout=3 * TRANSFERS * (TRANSFER_TIMEOUT_SECONDS + 5))
        finally:
            nfs.run(f"sudo -n rm -f {paths}")
        lines = [line.split() for line in result.stdout.splitlines() if line.strip()]
        results: dict[str, dict[str, Any]] = {}
        for method in ("GET", "POST", "DIRECT"):
            mine = [line for line in lines if line[0] == method]
            whole = [line for line in mine if arrived_whole(line)]
            results[method] = {
                "transfers": len(mine),
                "whole": len(whole),
                "backends": dict(Counter(line[5] for line in whole)),
                "medianSeconds": round(statistics.median(float(line[4]) for line in whole), 3) if whole else None,
                "odd": [" ".join(line) for line in mine if line not in whole][:5],
            }
        vip, direct = results["GET"]["medianSeconds"], results["DIRECT"]["medianSeconds"]
        # As throughput: the VIP's rate over the direct one, for 100 KB responses.
        ratio = round(direct / vip, 3) if vip and direct else None
        ctx.report.large_transfers = {"bytes": TRANSFER_BYTES, **results, "getVipOverDirect": ratio}
        ctx.status.show("large transfers", ctx.report.large_transfers)
        for method, what in (("GET", "100 KB responses"), ("POST", "100 KB uploads, answered with the file")):
            ctx.report.check(
                f"{what} through the VIP arrive whole ({settings.service.mode})",
                results[method]["transfers"] == results[method]["whole"] == TRANSFERS,
                str(results[method]),
            )
        return state
