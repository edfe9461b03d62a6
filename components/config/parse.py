"""`parse_settings`: the raw `lvs:` values, read section by section by the rules beside this
module, into the one :class:`ClusterSettings`; then what no one section can check alone (where
each address lives, that no two nodes share a name or an address). The only place the model
is built."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address
from typing import Any

from .exports import _exports, _normal_path
from .ha import _director, _health_check, _slow_failure_warnings
from .host import DOMAIN_TYPES, _image
from .login import _admin_user, _ssh_public_key
from .model import NAMESPACE, ClientSettings, ClusterSettings, ConfigError, NfsSettings, WebServerSettings
from .names import _hostname, _unique, _unique_keepalived_commands, _unique_volumes
from .networks import _networks, _require_usable
from .reader import _choice, _Section, _shown, _size
from .service import _service


def parse_settings(
    raw: Mapping[str, Any],
    *,
    stack: str,
    ssh_private_key: Any,
    ssh_private_key_password: Any = None,
    loader_warnings: Sequence[str] = (),
) -> ClusterSettings:
    """Builds the validated model from the raw `lvs:` values (already JSON-decoded).

    The private key is passed through as given (an Output secret in the program); its content
    is checked by :func:`check_private_key`, which :func:`load_settings` runs.
    `loader_warnings` are the loader's own (a secret given as plain config), listed after the
    model's."""
    top = _Section(raw, NAMESPACE, separator=":")

    image = _image(top, stack)

    warnings: list[str] = []
    public_key = _ssh_public_key(top)
    # The private key and its passphrase are read by load_settings, as secrets.
    top._seen.update({"sshPrivateKey", "sshPrivateKeyPassword"})
    if ssh_private_key is None:
        raise ConfigError("lvs:sshPrivateKey: missing (required, as a secret: pulumi config set --secret lvs:sshPrivateKey < KEYFILE)")

    admin_user = _admin_user(top)
    domain_type = _choice(top, "domainType", "kvm", DOMAIN_TYPES)

    internal, external = _networks(top)

    service = _service(top)

    director = _director(top.section("director"))
    health_check = _health_check(top, service)
    warnings.extend(_slow_failure_warnings(director, health_check))

    nfs_section = top.section("nfs")
    exports, export_warnings = _exports(nfs_section, admin_user)
    warnings.extend(export_warnings)
    nfs = NfsSettings(
        name=_hostname(nfs_section, default="nfs"),
        ip=nfs_section.address("ip"),
        exports=exports,
        size=_size(nfs_section, "nfs"),
    )
    nfs_section.reject_unknown()

    web_servers = []
    for item in top.items("webServers"):
        export = _normal_path(item.path("export"), item.string("export"))
        if export not in exports:
            raise ConfigError(f"{item.path('export')}: {_shown(str(export))} is not exported by the NFS server (lvs:nfs.exports)")
        web_servers.append(
            WebServerSettings(
                name=_hostname(item),
                ip=item.address("ip"),
                export=export,
                weight=item.integer("weight", 1, lo=0, hi=65535),
                size=_size(item, "web"),
                external_ip=_external_ip(item, service.mode),
            )
        )
        item.reject_unknown()
    if not web_servers:
        raise ConfigError("lvs:webServers: the list is empty (at least one web server is needed)")
    if all(web.weight == 0 for web in web_servers):
        weights = f"lvs:webServers[0].weight: 0, and so is every weight (all 0, {len(web_servers)} web servers)"
        if director.pair is not None or health_check is not None:
            # keepalived -t exits 5 on its quorum warning, and the director's Command with it.
            raise ConfigError(f"{weights}: keepalived refuses a virtual service no real server can serve; give one a weight")
        warnings.append(f"{weights}: the VIP answers no request until one has a weight")

    client = None
    if top.raw.get("client") is not None:
        client_section = top.section("client")
        client = ClientSettings(
            name=_hostname(client_section, default="client"),
            ip=client_section.address("ip"),
            size=_size(client_section, "client"),
        )
        client_section.reject_unknown()
    else:
        top._seen.add("client")
    top.reject_unknown()

    # Where each address must live, and that no two things share a name or an address.
    peers = list(enumerate(director.pair or ()))
    placed = [
        ("lvs:director.internalIp", director.internal_ip, internal),
        ("lvs:director.externalIp", director.external_ip, external),
        *[(f"lvs:director.pair[{i}].internalIp", peer.internal_ip, internal) for i, peer in peers],
        *[(f"lvs:director.pair[{i}].externalIp", peer.external_ip, external) for i, peer in peers],
        ("lvs:nfs.ip", nfs.ip, internal),
        *[(f"lvs:webServers[{i}].ip", web.ip, internal) for i, web in enumerate(web_servers)],
        *[(f"lvs:webServers[{i}].externalIp", web.external_ip, external) for i, web in enumerate(web_servers) if web.external_ip],
        *([("lvs:client.ip", client.ip, external)] if client else []),
    ]
    for key, address, network in placed:
        _require_usable(key, address, network.cidr)
        if address == network.host_ip:
            raise ConfigError(
                f"{key}: {address} is the host-side address of network {network.name} "
                f"(lvs:networks.{network.role}.hostIp); choose another address or set hostIp"
            )
    _unique([(key, address) for key, address, _ in placed], "address")
    director_names = [(f"lvs:director.pair[{i}].name", peer.name) for i, peer in peers] or [("lvs:director.name", director.name)]
    names = [
        *director_names,
        ("lvs:nfs.name", nfs.name),
        *[(f"lvs:webServers[{i}].name", web.name) for i, web in enumerate(web_servers)],
        *([("lvs:client.name", client.name)] if client else []),
    ]
    _unique(names, "name", repr)
    _unique_volumes(stack, names)
    if service.mode == "dr" and director.pair is None and health_check is not None:
        raise ConfigError(
            f"lvs:healthCheck: type {health_check.type} in mode dr needs lvs:director.pair: one director's only external "
            "address is the VIP, which the web nodes hold on lo, so they would answer its checks to themselves; "
            "a pair keeps each director's own address beside the VIP (or remove the key: ipvsadm, no checks)"
        )
    if director.pair is not None or health_check is not None:
        _unique_keepalived_commands(director_names, [(f"lvs:webServers[{i}].name", web.name) for i, web in enumerate(web_servers)])

    return ClusterSettings(
        stack=stack,
        image=image,
        ssh_public_key=public_key.strip(),
        ssh_private_key=ssh_private_key,
        admin_user=admin_user,
        domain_type=domain_type,
        internal=internal,
        external=external,
        service=service,
        director=director,
        nfs=nfs,
        web_servers=tuple(web_servers),
        client=client,
        ssh_private_key_password=ssh_private_key_password,
        warnings=(*warnings, *loader_warnings),
        health_check=health_check,
    )


def _external_ip(item: _Section, mode: str) -> IPv4Address | None:
    """`lvs:webServers[].externalIp`: the second NIC a web node needs to answer clients itself
    (dr, tun); in nat the director answers for it, so the key has no meaning there."""
    key = item.path("externalIp")
    if mode == "nat":
        if "externalIp" in item.raw:
            raise ConfigError(
                f"{key}: only in modes dr and tun (lvs:service.mode is 'nat', where replies go back through the director); remove the key"
            )
        return None
    if "externalIp" not in item.raw:
        raise ConfigError(
            f"{key}: missing (required in mode {mode}: the web node's address on the external network, where its replies leave)"
        )
    return item.address("externalIp")
