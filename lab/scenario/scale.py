"""Scaling the web tier through the engine:

- `ScaleOut`: one more web node in the stack file, `pulumi up`: the engine creates exactly its
  volume, seed, domain and Commands; nothing else of libvirt changes; balance holds.
- `ScaleIn`: the added node out of the stack file again under a bounded request loop: no
  request fails, its Commands (the drain) end before its domain goes.
"""

from __future__ import annotations

import copy
import ipaddress
import time
from typing import Any

from ..stack.plan import COMMAND, DOMAIN
from .context import RunContext, StackState, StepFailedError
from .lifecycles import CHANGING

REQUEST_INTERVAL_SECONDS = 0.1  # the background loop's pace: at most 10 requests a second
REQUESTS_FLOWING_SECONDS = 3
REQUESTS_DURING_SCALE_IN = 300  # outlasts the removal (a drain of up to 30 s, then the VM's delete)


def taken_addresses(state: StackState) -> set[ipaddress.IPv4Address]:
    """Every address the stack gives a node, a floating address or a bridge."""
    settings = state.settings
    taken = {settings.vip, settings.director.internal_ip, settings.nfs.ip}
    taken |= {address for peer in settings.directors for address in (peer.internal_ip, peer.external_ip)}
    taken |= {address for web in settings.web_servers for address in (web.ip, web.external_ip) if address is not None}
    taken |= {settings.client.ip} if settings.client is not None else set()
    return taken | {network.host_ip for network in state.topology.networks}


def next_web_server(state: StackState) -> dict[str, Any]:
    """The web node a scale out adds to `state`: a new name, the first free internal address
    and, where the mode gives web nodes one (dr, tun), the first free external address."""
    webs = state.config["lvs:webServers"]
    names = {web["name"] for web in webs}
    name = next(f"web{n}" for n in range(len(webs) + 1, 1000) if f"web{n}" not in names)
    taken = taken_addresses(state)
    extra = {"name": name, "export": webs[0]["export"], "weight": 1}
    for key, network in (("ip", state.settings.internal), ("externalIp", state.settings.external)):
        if key == "ip" or state.settings.service.mode != "nat":
            extra[key] = str(next(host for host in network.cidr.hosts() if host not in taken))
    return extra


class ScaleOut:
    name = "scale out: one more web node"

    def run(self, ctx: RunContext, state: StackState) -> StackState:
        """One more web node in the stack file, `pulumi up`: the engine creates exactly its
        volume, seed, domain and Commands; nothing else of libvirt changes; balance holds."""
        extra = next_web_server(state)
        ctx.facts.scaled_out = extra["name"]
        config = copy.deepcopy(state.config)
        config["lvs:webServers"].append(extra)
        grown = state.edited(config)
        ctx.deployment.stack.write_config(config)
        domain = next(guest.name for guest in grown.topology.guests if guest.name not in ctx.cluster.guests)
        ctx.cluster.watch(domain, started_at=time.monotonic())
        up = ctx.deployment.up(name="up_scale_out")
        created = up.named("create", type_prefix="libvirt:")
        expected = sorted([f"{extra['name']}-root", f"{extra['name']}-seed", extra["name"]])
        ctx.report.check("scale out: the engine creates exactly the new node's volume, seed and domain", created == expected, str(created))
        libvirt_others = [s["name"] for s in up.steps if s["type"].startswith("libvirt:") and s["op"] in CHANGING and s["op"] != "create"]
        ctx.report.check("scale out: no other libvirt object changes", libvirt_others == [], f"{up.changes} {libvirt_others}")
        ctx.cluster.wait_booted(ctx.boot_timeout)
        # The floor's solo boot (runner.floor_timings): this node boots alone, the others idle.
        ctx.facts.solo_boot_s = ctx.report.timings["solo_boot_s"] = round(ctx.cluster.guests[domain].guest_uptime or 0.0, 1)
        ctx.check_distribution(grown, "after scale out")
        return grown


class ScaleIn:
    name = "scale in: remove the added node under load"

    def run(self, ctx: RunContext, state: StackState) -> StackState:
        """The added node out of the stack file again, `pulumi up` under a bounded request loop:
        no request fails; the engine deletes its real server (drained) before its domain."""
        added = ctx.facts.scaled_out
        if added is None:
            raise StepFailedError("scale in: no node was scaled out before it")
        config = copy.deepcopy(state.config)
        config["lvs:webServers"] = [web for web in config["lvs:webServers"] if web["name"] != added]
        back = state.edited(config)
        ctx.deployment.stack.write_config(config)
        loop = ctx.background_requests(back, count=REQUESTS_DURING_SCALE_IN, interval=REQUEST_INTERVAL_SECONDS)
        started = time.monotonic()
        time.sleep(REQUESTS_FLOWING_SECONDS)  # the loop is answering before anything is removed
        try:
            up = ctx.deployment.up(name="up_scale_in")
        except BaseException:
            loop.kill()  # the loop may outlive a broken VIP by its 300 requests' timeouts
            ctx.traffic.collect(loop)
            raise
        lines = ctx.traffic.collect(loop)
        deleted = up.named("delete", type_prefix="libvirt:")
        ctx.report.check("scale in: the engine deletes the node's volume, seed and domain", len(deleted) == 3, str(deleted))
        domain_deleted = min((s["startSequence"] for s in up.steps if s["type"] == DOMAIN and s["op"] == "delete"), default=0)
        commands_deleted = [s for s in up.steps if s["type"] == COMMAND and s["op"] == "delete"]
        ctx.report.check(
            "scale in: its Commands (the real server's drain among them) end before its domain is deleted",
            bool(commands_deleted) and all(s["endSequence"] is not None and s["endSequence"] < domain_deleted for s in commands_deleted),
            str([s["name"] for s in commands_deleted]),
        )
        failed = [line for line in lines if not line.startswith("200 ")]
        ctx.report.scale_in = {
            "node": added,
            "requests": len(lines),
            "failed": len(failed),
            "seconds": round(time.monotonic() - started, 1),
            "failures": failed[:20],
        }
        ctx.report.check(
            "scale in: no request fails during the removal", lines != [] and failed == [], f"{len(failed)} of {len(lines)} failed"
        )
        for name in [name for name in ctx.cluster.guests if name not in {guest.name for guest in back.topology.guests}]:
            ctx.cluster.forget(name)
        return back
