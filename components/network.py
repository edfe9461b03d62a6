"""The two libvirt networks: internal (NFS, web nodes, director) and external (VIP, client)."""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_libvirt as libvirt

from .config import NetworkSettings

# libvirt puts the host on the first address of `addresses`; the seed's VIP is 12.0.0.1.
# The provider's XSLT hook moves the host to the configured hostIp instead.
_HOST_ADDRESS_XSLT = """<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output omit-xml-declaration="yes" indent="yes"/>
  <xsl:template match="node()|@*">
    <xsl:copy><xsl:apply-templates select="node()|@*"/></xsl:copy>
  </xsl:template>
  <xsl:template match="/network/ip/@address">
    <xsl:attribute name="address">{host_ip}</xsl:attribute>
  </xsl:template>
</xsl:stylesheet>
"""


class ClusterNetwork(pulumi.ComponentResource):
    """An isolated libvirt network: no DHCP, no DNS, no gateway for the guests.

    Guests get static addresses from cloud-init; the only route out of the internal network
    is the director. The host keeps one address (`hostIp`) to reach the nodes over SSH.
    """

    network: libvirt.Network

    def __init__(self, name: str, settings: NetworkSettings, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("lvs:network:ClusterNetwork", name, None, opts)
        self.settings = settings
        self.network = libvirt.Network(
            name,
            name=settings.name,
            mode="none",
            bridge=settings.bridge,
            addresses=[str(settings.cidr)],
            autostart=True,
            dhcp=libvirt.NetworkDhcpArgs(enabled=False),
            dns=libvirt.NetworkDnsArgs(enabled=False),
            xml=libvirt.NetworkXmlArgs(xslt=_HOST_ADDRESS_XSLT.format(host_ip=settings.host_ip)),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.network_id = self.network.id
        self.register_outputs({"name": settings.name, "cidr": str(settings.cidr), "hostIp": str(settings.host_ip)})
