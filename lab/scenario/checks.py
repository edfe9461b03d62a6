"""The units that look at or break the cluster `pulumi up` built without the engine:

- `CreateAgain`: every Command's create script run once more, as an interrupted `pulumi up`
  runs again a create it did not record (the engine itself never runs one twice): the same
  tables (the scripts are idempotent).
- `Balance`: requests from the client to the VIP, counted per web node, against the scheduler.
- `Throughput`: sequential requests through the VIP and straight to a real server.
- `RebootFault`: the director and a web node reboot; the rules and the NFS docroot come back.
"""

from __future__ import annotations

import math
from typing import Any

from components.config import ClusterSettings

from .context import Node, RunContext, StackState, StepFailedError

# A service and a NAT rule "the user owns" on the director: no Command may touch them.
USER_IPVS_SERVICE = "-t 127.0.0.1:9"
USER_NAT_RULE = "POSTROUTING -o lo -m comment --comment owned-by-the-user -j RETURN"
THROUGHPUT_REQUESTS = 200
DIRECT_LOCAL_PORTS = "20000-29999"  # below Linux's ephemeral range (32768-60999)


def direct_url(settings: ClusterSettings) -> str:
    """The first web node as the client reaches it without IPVS: its own address on the
    client's network in dr and tun, else its address behind the director (routed, not balanced)."""
    first = settings.web_servers[0]
    return f"http://{first.external_ip or first.ip}:{settings.service.port}/"


def add_user_rules(director: Node) -> None:
    """Runtime rules, as a user adds them by hand, each unless it is there: after a crash the
    NAT rule comes back from what `netfilter-persistent save` saved, the IPVS service only
    where ipvsadm's boot service restores a saved table (not under keepalived)."""
    owned = (
        f"{{ sudo -n ipvsadm -L -n {USER_IPVS_SERVICE} >/dev/null 2>&1 || sudo -n ipvsadm -A {USER_IPVS_SERVICE} -s sh; }} && "
        f"{{ sudo -n iptables -w -t nat -C {USER_NAT_RULE} 2>/dev/null || sudo -n iptables -w -t nat -A {USER_NAT_RULE}; }}"
    )
    added = director.run(owned)
    if added.returncode != 0:
        raise StepFailedError(f"could not add the user-owned rules on the director: {added.stderr.strip()}")


def user_rules_there(tables: dict[str, Any]) -> bool:
    return "owned-by-the-user" in tables["nat"] and USER_IPVS_SERVICE.split()[-1] in tables["ipvs"]


class CreateAgain:
    name = "create again (idempotent)"

    def run(self, ctx: RunContext, state: StackState) -> StackState:
        ctx.commands.create_all(state.topology.commands)
        again = ctx.director(state).tables()
        ctx.report.check("second create leaves the same tables", again == ctx.facts.tables_with_user_rules)
        return state


class Balance:
    name = "balance"

    def run(self, ctx: RunContext, state: StackState) -> StackState:
        probe = ctx.send_requests(state, state.vip_url, 1)
        if probe and probe[0].startswith("200 "):
            ctx.report.timings["first_balanced_answer_s"] = ctx.status.elapsed()
        scheduler = state.settings.service.scheduler
        ctx.check_distribution(state, "after create", key="after_create", check=f"distribution ({scheduler})")
        return state


class Throughput:
    name = "throughput"

    def run(self, ctx: RunContext, state: StackState) -> StackState:
        settings = state.settings
        direct = direct_url(settings)
        rates: dict[str, dict[str, Any]] = {}
        # The director keeps a NAT entry for every VIP connection (TIME_WAIT: 2 min) and
        # rewrites any reply that matches one: a direct request from a client port that just
        # talked to the VIP gets the VIP's answer and times out (seen here, 1 in 200). The
        # direct requests use ports outside the ephemeral range the VIP requests come from.
        for label, target, ports in (("vip", state.vip_url, None), ("direct", direct, DIRECT_LOCAL_PORTS)):
            lines = ctx.send_requests(state, target, THROUGHPUT_REQUESTS, local_ports=ports)
            seconds = sum(float(line.split()[1]) for line in lines if line.startswith("200 "))
            answered = sum(1 for line in lines if line.startswith("200 "))
            rates[label] = {
                "requests": answered,
                "seconds": round(seconds, 3),
                "per_second": round(answered / seconds, 1) if seconds else 0.0,
                "lines": len(lines),
                "failures": [line for line in lines if not line.startswith("200 ")][:10],
            }
        ratio = rates["vip"]["per_second"] / rates["direct"]["per_second"] if rates["direct"]["per_second"] else math.nan
        ctx.report.throughput = {**rates, "direct_target": direct, "vip_over_direct": round(ratio, 3)}
        ctx.status.show("throughput", ctx.report.throughput)
        ctx.report.check(
            "throughput: every request answered",
            rates["vip"]["requests"] == rates["direct"]["requests"] == THROUGHPUT_REQUESTS,
            str({label: rate["failures"] or rate["lines"] for label, rate in rates.items()}),
        )
        return state


class RebootFault:
    name = "fault: reboot the director and a web node"

    def run(self, ctx: RunContext, state: StackState) -> StackState:
        """The rules and the NFS docroot must come back by themselves: the director restores
        its saved IPVS and iptables rules, the web node remounts its export."""
        settings = state.settings
        director = ctx.director(state)
        web = settings.web_servers[-1]  # the first one was drained by the weight change
        before = director.tables()
        nodes = [director, ctx.node(state, web.name)]
        domains = [settings.domain_name(node.name) for node in nodes]
        for node, domain in zip(nodes, domains, strict=True):
            ctx.cluster.rebooting(domain)
            node.run("sudo -n systemctl reboot", timeout=60)  # the session may drop: no status to read
        ctx.cluster.wait_booted(ctx.boot_timeout, names=domains)
        after = director.tables()
        ctx.report.check("director reboot restores the IPVS and SNAT rules", after == before, f"after reboot: {after}")
        mounted = nodes[1].run("ls /var/www/html >/dev/null; grep ' /var/www/html nfs' /proc/mounts")
        ctx.report.check(f"{web.name} remounts its NFS docroot after a reboot", mounted.returncode == 0, mounted.stdout.strip())
        ctx.check_distribution(state, "after the reboots", key="after_reboot", check="distribution after the reboots")
        return state
