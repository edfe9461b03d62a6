"""The VIP on a web node that answers for it itself (dr, tun): a Command whose scripts put the
VIP as /32 on `lo` or `tunl0` (never a wider prefix: `VIP/24` on lo would make the node keep
every reply to the client's subnet for itself) and keep it there across reboots with a small
systemd unit; delete takes both away. The ARP and rp_filter sysctls are cloud-init's and are
asserted again here, so the VIP never comes up before them.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from .config import TunnelSettings
from .forwarding import RealServerSide
from .remote import as_root

UNIT = "lvs-cluster-vip.service"
UNIT_FILE = f"/etc/systemd/system/{UNIT}"


def _up_commands(vip: IPv4Address, side: RealServerSide, tunnel: TunnelSettings | None) -> list[str]:
    """The commands that bring the VIP up (each idempotent), as the unit runs them at boot."""
    # The modules first: tunl0, whose rp_filter is set next, comes with ipip.
    commands = [f"/usr/sbin/modprobe {module}" for module in side.modules]
    commands += [f"/usr/sbin/sysctl -q -w {key}={value}" for key, value in side.sysctls]
    if tunnel is not None:
        if tunnel.type == "gue":
            fou = f'/usr/sbin/ip fou show | grep -q "port {tunnel.port} gue" || /usr/sbin/ip fou add port {tunnel.port} gue'
            commands.append(f"/bin/sh -c '{fou}'")
        commands += [f"/usr/sbin/ip link set {device} up" for device in side.devices_up]
    commands.append(f"/usr/sbin/ip addr replace {vip}/32 dev {side.vip_device}")
    return commands


def vip_create_script(vip: IPv4Address, side: RealServerSide, tunnel: TunnelSettings | None) -> str:
    up = _up_commands(vip, side, tunnel)
    unit = "\n".join(
        [
            "[Unit]",
            f"Description=lvs-cluster: the VIP {vip} on {side.vip_device}, after the ARP sysctls",
            "After=systemd-sysctl.service systemd-modules-load.service",
            "Before=apache2.service",
            "",
            "[Service]",
            "Type=oneshot",
            "RemainAfterExit=yes",
            *[f"ExecStart={command}" for command in up],
            f"ExecStop=-/usr/sbin/ip addr del {vip}/32 dev {side.vip_device}",
            "",
            "[Install]",
            "WantedBy=multi-user.target",
        ]
    )
    return as_root(
        f"# lvs-cluster: the VIP {vip}/32 on {side.vip_device}, this node answers for it (kept across reboots by {UNIT})\n"
        f"cat > {UNIT_FILE}.new <<'LVS_CLUSTER_UNIT'\n{unit}\nLVS_CLUSTER_UNIT\n"
        f"if [ -e {UNIT_FILE} ] && cmp -s {UNIT_FILE}.new {UNIT_FILE}; then\n"
        f"  rm -f {UNIT_FILE}.new\n"
        "else\n"
        # A unit written by hand or an earlier version: stopped as it was loaded, its address goes.
        f"  if systemctl is-active --quiet {UNIT}; then systemctl stop {UNIT}; fi\n"
        f"  mv {UNIT_FILE}.new {UNIT_FILE}\n"
        "  systemctl daemon-reload\n"
        "fi\n"
        f"systemctl enable --now {UNIT}\n"
        # Taken away by hand since the unit ran: run it again.
        f"ip -o -4 addr show dev {side.vip_device} | grep -qF ' {vip}/32 ' || systemctl restart {UNIT}\n"
    )


def vip_delete_script(vip: IPv4Address, side: RealServerSide, tunnel: TunnelSettings | None) -> str:
    fou = f"ip fou del port {tunnel.port} 2>/dev/null || true\n" if tunnel is not None and tunnel.type == "gue" else ""
    return as_root(
        f"# lvs-cluster: the VIP {vip}/32 off {side.vip_device}, and its unit\n"
        f"if [ -e {UNIT_FILE} ]; then\n"
        f"  systemctl disable --now {UNIT}\n"
        f"  rm -f {UNIT_FILE}\n"
        "  systemctl daemon-reload\n"
        "fi\n"
        f"ip addr del {vip}/32 dev {side.vip_device} 2>/dev/null || true\n" + fou
    )
