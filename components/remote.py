"""How the Commands reach the nodes, and how their scripts run there.

The machine running `pulumi up` has its own address on each cluster network (the networks'
`hostIp`), so it reaches every node directly over SSH as the admin user the nodes' cloud-init
created. Scripts run as root through passwordless sudo, fed as a quoted here-document so the
exact script shows verbatim in `pulumi preview`.
"""

from __future__ import annotations

from ipaddress import IPv4Address

import pulumi
from pulumi_command import remote

from .config import ClusterSettings

# First boots are slow (a minute on KVM, minutes under software emulation): keep dialing.
DIAL_ERROR_LIMIT = 120
PER_DIAL_TIMEOUT_SECONDS = 10
_HEREDOC_END = "LVS_CLUSTER_SCRIPT"
# Pulumi runs independent Commands at once: two on one node would interleave their saves of
# the same rules file (ipvsadm-save, netfilter-persistent) or their keepalived reloads.
LOCK_FILE = "/run/lock/lvs-cluster.lock"
LOCK_WAIT_SECONDS = 600


def connection(settings: ClusterSettings, host: IPv4Address) -> remote.ConnectionArgs:
    return remote.ConnectionArgs(
        host=str(host),
        user=settings.admin_user,
        private_key=settings.ssh_private_key,
        # Only for an encrypted key: x/crypto/ssh refuses a passphrase for an unencrypted one.
        private_key_password=settings.ssh_private_key_password,
        dial_error_limit=DIAL_ERROR_LIMIT,
        per_dial_timeout=PER_DIAL_TIMEOUT_SECONDS,
    )


def as_root(script: str) -> str:
    """Runs a POSIX shell script as root with `set -eu` on the remote node, one at a time on
    that node (a lock held for at most LOCK_WAIT_SECONDS of waiting, then the Command fails)."""
    body = script.strip("\n")
    if _HEREDOC_END in body.splitlines():
        raise ValueError("script contains the here-document terminator")
    return f"sudo -n flock -w {LOCK_WAIT_SECONDS} {LOCK_FILE} sh -eu <<'{_HEREDOC_END}'\n{body}\n{_HEREDOC_END}\n"


def script_options(parent: pulumi.Resource, depends_on: list[pulumi.Resource]) -> pulumi.ResourceOptions:
    # A rule Command that must be replaced deletes the old rule first: when old and new are
    # the same rule (a connection-only change), create-then-delete would remove it.
    return pulumi.ResourceOptions(parent=parent, depends_on=depends_on, delete_before_replace=True)
