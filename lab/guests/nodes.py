"""A node of the stack as the lab asks it things: over SSH, the way the Commands reach it, with
typed questions instead of shell text retyped in every unit."""

from __future__ import annotations

import subprocess

from .ssh import SshClient


class NodeError(RuntimeError):
    pass


class Node:
    def __init__(self, name: str, host: str, user: str, ssh: SshClient) -> None:
        self.name = name
        self.host = host
        self.user = user
        self.ssh = ssh

    def __repr__(self) -> str:
        return f"Node({self.name} {self.user}@{self.host})"

    def run(self, script: str, *, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """The script's result as it is, failure included."""
        return self.ssh.run(self.host, self.user, script, timeout=timeout)

    def argv(self, script: str) -> list[str]:
        """The ssh command line that runs `script` on the node (for a process that runs on)."""
        return self.ssh.argv(self.host, self.user, script)

    def ask(self, script: str, *, what: str = "", timeout: float = 300) -> str:
        """The script's output; its failure is the node's error, named by `what`."""
        result = self.run(script, timeout=timeout)
        if result.returncode != 0:
            raise NodeError(f"{what or script} on {self.name} failed: {result.stderr.strip()}")
        return result.stdout

    # The tables, the saved rules and the clock are what checks compare: a node that cannot
    # answer gives empty text, and the check that compares it fails with what it got.
    def tables(self) -> dict[str, str]:
        """The director's IPVS table and NAT rules, as ipvsadm and iptables save them."""
        ipvs, _, nat = self.run("sudo -n ipvsadm -S -n; echo ---; sudo -n iptables -w -t nat -S").stdout.partition("---\n")
        return {"ipvs": ipvs, "nat": nat}

    def saved_ipvs_rules(self) -> str:
        """What ipvsadm's boot service restores (`/etc/ipvsadm.rules`)."""
        return self.run("cat /etc/ipvsadm.rules").stdout

    def journal(self, unit: str, since: str, *, output: str = "short-iso") -> list[str]:
        """`unit`'s journal since the node's clock read `since` (see `clock`)."""
        text = self.ask(f"sudo -n journalctl -u {unit} --since @{since} -o {output} --no-pager", what="journalctl")
        return text.splitlines()

    def clock(self) -> str:
        """The node's own clock, seconds since the epoch, for `journal(since=…)`."""
        return self.run("date +%s").stdout.strip()

    def boot_id(self) -> str:
        answer = self.run("cat /proc/sys/kernel/random/boot_id")
        if answer.returncode != 0 or not answer.stdout.strip():
            raise NodeError(f"no boot id from {self.host}: {answer.stderr.strip()}")
        return answer.stdout.strip()

    def addresses(self) -> str:
        """`ip -o -4 addr show`: one line per IPv4 address."""
        return self.ask("ip -o -4 addr show", what="ip addr")

    @staticmethod
    def holds_test(address: object) -> str:
        """A shell test on the node: does it hold `address` (for the faults' watchers)?"""
        return f"ip -o -4 addr show | grep -qF ' {address}/'"
