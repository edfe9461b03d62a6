"""The scenario units `lab verify` runs on the cluster `pulumi up` built that look at it or break
it without the engine, each one idea: it takes the stack as last applied (`Converged`), makes
one side effect, verifies it, and returns the stack as it now stands. The units that change the
stack through the engine are in `lifecycles.py`; faults arrive as new units, not as steps
inside another.

- `CreateAgain`: every Command's create script run once more, as an interrupted `pulumi up`
  runs again a create it did not record (the engine itself never runs one twice): the same
  tables (the scripts are idempotent).
- `Balance`: requests from the client to the VIP, counted per web node, against the scheduler.
- `Throughput`: sequential requests through the VIP and straight to a real server.
- `RebootFault`: the director and a web node reboot; the rules and the NFS docroot come back.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cluster import LabCluster
    from .lifecycles import Converged
    from .topology import LabCommand
    from .verify import Scenario

# A service and a NAT rule "the user owns" on the director: no Command may touch them.
USER_IPVS_SERVICE = "-t 127.0.0.1:9"
USER_NAT_RULE = "POSTROUTING -o lo -m comment --comment owned-by-the-user -j RETURN"
THROUGHPUT_REQUESTS = 200
DIRECT_LOCAL_PORTS = "20000-29999"  # below Linux's ephemeral range (32768-60999)


def add_user_rules(run: Scenario, cluster: LabCluster, director: LabCommand) -> None:
    """Runtime rules, as a user adds them by hand, each unless it is there: after a crash the
    NAT rule comes back from what `netfilter-persistent save` saved, the IPVS service only
    where ipvsadm's boot service restores a saved table (not under keepalived)."""
    owned = (
        f"{{ sudo -n ipvsadm -L -n {USER_IPVS_SERVICE} >/dev/null 2>&1 || sudo -n ipvsadm -A {USER_IPVS_SERVICE} -s sh; }} && "
        f"{{ sudo -n iptables -w -t nat -C {USER_NAT_RULE} 2>/dev/null || sudo -n iptables -w -t nat -A {USER_NAT_RULE}; }}"
    )
    added = cluster.ssh(director.host, director.user, owned)
    if added.returncode != 0:
        raise run.failure(f"could not add the user-owned rules on the director: {added.stderr.strip()}")


class CreateAgain:
    name = "create again (idempotent)"

    def run(self, run: Scenario, cluster: LabCluster, state: Converged) -> Converged:
        run.apply_all(cluster, state.topology.commands, "create")
        again = run.director_state(cluster, run.director_of(state))
        run.report.check("second create leaves the same tables", again == run.director_created)
        return state


class Balance:
    name = "balance"

    def run(self, run: Scenario, cluster: LabCluster, state: Converged) -> Converged:
        probe = run.send_requests(cluster, state, state.plan.outputs["vipUrl"], 1)
        if probe and probe[0].startswith("200 "):
            run.report.timings["first_balanced_answer_s"] = run.elapsed()
        scheduler = run.settings_of(state.config).service.scheduler
        run.check_distribution(cluster, state, "after create", key="after_create", check=f"distribution ({scheduler})")
        return state


class Throughput:
    name = "throughput"

    def run(self, run: Scenario, cluster: LabCluster, state: Converged) -> Converged:
        settings = run.settings_of(state.config)
        direct = f"http://{settings.web_servers[0].ip}:{settings.service.port}/"
        rates: dict[str, dict[str, Any]] = {}
        # The director keeps a NAT entry for every VIP connection (TIME_WAIT: 2 min) and
        # rewrites any reply that matches one: a direct request from a client port that just
        # talked to the VIP gets the VIP's answer and times out (seen here, 1 in 200). The
        # direct requests use ports outside the ephemeral range the VIP requests come from.
        for label, target, ports in (("vip", state.plan.outputs["vipUrl"], None), ("direct", direct, DIRECT_LOCAL_PORTS)):
            lines = run.send_requests(cluster, state, target, THROUGHPUT_REQUESTS, local_ports=ports)
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
        run.report.throughput = {**rates, "direct_target": direct, "vip_over_direct": round(ratio, 3)}
        run.show("throughput", run.report.throughput)
        run.report.check(
            "throughput: every request answered",
            rates["vip"]["requests"] == rates["direct"]["requests"] == THROUGHPUT_REQUESTS,
            str({label: rate["failures"] or rate["lines"] for label, rate in rates.items()}),
        )
        return state


class RebootFault:
    name = "fault: reboot the director and a web node"

    def run(self, run: Scenario, cluster: LabCluster, state: Converged) -> Converged:
        """The rules and the NFS docroot must come back by themselves: the director restores
        its saved IPVS and iptables rules, the web node remounts its export."""
        settings = run.settings_of(state.config)
        director = run.director_of(state)
        web = settings.web_servers[-1]  # the first one was drained by the weight change
        before = run.director_state(cluster, director)
        nodes = [
            (director, settings.domain_name(settings.director.name)),
            (state.topology.command(f"{web.name}-ready"), settings.domain_name(web.name)),
        ]
        offsets = {domain: cluster.guests[domain].console_offset() for _, domain in nodes}
        for ready, _ in nodes:
            cluster.ssh(ready.host, ready.user, "sudo -n systemctl reboot", timeout=60)  # the session may drop: no status to read
        for _, domain in nodes:
            cluster.guests[domain].wait_cloud_init_done(timeout=run.boot_timeout, since=offsets[domain])
        after = run.director_state(cluster, director)
        run.report.check("director reboot restores the IPVS and SNAT rules", after == before, f"after reboot: {after}")
        web_ready = nodes[1][0]
        mounted = cluster.ssh(web_ready.host, web_ready.user, "ls /var/www/html >/dev/null; grep ' /var/www/html nfs' /proc/mounts")
        run.report.check(f"{web.name} remounts its NFS docroot after a reboot", mounted.returncode == 0, mounted.stdout.strip())
        run.check_distribution(cluster, state, "after the reboots", key="after_reboot", check="distribution after the reboots")
        return state
