"""lvs-cluster: an LVS-NAT (IPVS) web cluster on libvirt.

Reads the stack configuration once into a validated model, then wires the components.
"""

import pulumi

from components import remote
from components.client import Client
from components.config import load_settings
from components.director import Director
from components.image import BaseImage
from components.ipvs import IpvsService
from components.keepalived import KeepalivedDirectors
from components.network import ClusterNetwork
from components.nfs_server import NfsServer
from components.snat import SnatRule
from components.storage import StoragePool
from components.web_node import WebNode

settings = load_settings(pulumi.Config("lvs"), stack=pulumi.get_stack())

networks = {
    "internal": ClusterNetwork("internal", settings.internal),
    "external": ClusterNetwork("external", settings.external),
}
pool = StoragePool("pool", settings.image.pool)
base_image = BaseImage("base-image", settings.image, pool=pool, stack=settings.stack)

nfs = NfsServer(settings, base_image=base_image, networks=networks)
web_nodes = [WebNode(settings, web, base_image=base_image, networks=networks) for web in settings.web_servers]
directors = [Director(settings, peer=peer, base_image=base_image, networks=networks) for peer in settings.directors]
clients = [Client(settings, client, base_image=base_image, networks=networks) for client in [settings.client] if client]

pulumi.export("vipUrl", settings.vip_url)
pulumi.export("nodes", settings.inventory())
if settings.keepalived:
    # keepalived owns the IPVS table (health checks, a director pair): the ipvsadm rules must not.
    keepalived = KeepalivedDirectors(
        "keepalived",
        settings,
        directors=[(peer, director.vm.ready) for peer, director in zip(settings.directors, directors, strict=True)],
        backends=[(node.settings, node.serving) for node in web_nodes],
    )
    pulumi.export("ipvsTable", {name: table.stdout for name, table in keepalived.tables.items()})
else:
    director_ssh = remote.connection(settings, settings.director.internal_ip)
    ipvs = IpvsService(
        "ipvs",
        settings.service,
        vip=settings.vip,
        backends=[(node.settings, node.serving) for node in web_nodes],
        connection=director_ssh,
        director_ready=directors[0].vm.ready,
    )
    snat = SnatRule(
        "snat",
        source=settings.internal.cidr,
        to_source=settings.director.external_ip,
        stack=settings.stack,
        connection=director_ssh,
        director_ready=directors[0].vm.ready,
    )
    pulumi.export("ipvsTable", ipvs.table.stdout)
    pulumi.export("snatRule", snat.rule)
