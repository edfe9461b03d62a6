"""The two libvirt networks: internal (NFS, web nodes, director) and external (VIP, client)."""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_libvirt as libvirt

from .config import NetworkSettings

# The provider's XSLT hook (terraform-provider-libvirt v0.8.1, utils_xslt.go transformXML)
# mends two things in the XML it generates (network.go getIPsFromResource, resource_libvirt_
# network.go resourceLibvirtNetworkCreate):
# - it puts the host on the subnet's first address, the seed's VIP 12.0.0.1: move it to hostIp;
# - `dns.enabled = false` sends no <dns> element at all, so libvirt still runs dnsmasq as a DNS
#   server on the guests' network (and fails to start the network where dnsmasq is missing):
#   say <dns enable="no"/>.
_HOST_ADDRESS_XSLT = """<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output omit-xml-declaration="yes" indent="yes"/>
  <xsl:template match="node()|@*">
    <xsl:copy><xsl:apply-templates select="node()|@*"/></xsl:copy>
  </xsl:template>
  <xsl:template match="/network">
    <xsl:copy>
      <xsl:apply-templates select="@*|node()[not(self::dns)]"/>
      <dns enable="no"/>
    </xsl:copy>
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
