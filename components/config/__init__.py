"""The stack configuration, read once into one typed and validated model.

Every component receives pieces of :class:`ClusterSettings`; none reads ``pulumi.Config``.
Validation happens here, before any resource is registered, and each failure is one
:class:`ConfigError` naming the key (``lvs:webServers[1].weight``) and the bad value (a secret
is described, never shown). Values that are legal but almost certainly a mistake do not stop
the run: they are collected in :attr:`ClusterSettings.warnings`, which :func:`load_settings`
hands to ``pulumi.log.warn``.

An explicit ``null`` means "not set" only for keys whose default is "not set"
(``lvs:client``, ``lvs:image.pool``, ``lvs:image.poolPath``, ``lvs:networks.*.bridge``); for
any other key it is an error naming the key, never a silent default.

The package, one idea a module (each imports only the ones before it): :mod:`.model` (the
dataclasses), :mod:`.reader` (typed reads with errors naming the key), the rules of each
subject (:mod:`.names`, :mod:`.exports`, :mod:`.host`, :mod:`.networks`, :mod:`.service`,
:mod:`.login`, :mod:`.ha`), :mod:`.parse` (the one place the model is built) and
:mod:`.loading` (the values from Pulumi, or from a stack file).
"""

from .exports import EXPORT_ALPHABET
from .ha import CHECK_STATUSES, HEALTH_CHECK_TYPES, MAX_CHECK_PATH, MAX_VIRTUAL_ROUTER_ID, SLOW_FAILURE_SECONDS
from .host import DOMAIN_TYPES
from .loading import PLACEHOLDER_PRIVATE_KEY, load_settings, settings_from_stack_file
from .loading import _is_secret as _is_secret  # the tests check what the language host passes
from .login import check_private_key
from .model import (
    DEFAULT_SIZES,
    EXTERNAL_NIC,
    INTERNAL_NIC,
    NAMESPACE,
    ClientSettings,
    ClusterSettings,
    ConfigError,
    DirectorPeer,
    DirectorSettings,
    HealthCheckSettings,
    ImageSettings,
    MachineSize,
    NetworkSettings,
    NfsSettings,
    PoolSettings,
    ServiceSettings,
    TunnelSettings,
    VrrpSettings,
    WebServerSettings,
    mac_address,
)
from .names import keepalived_command_names
from .parse import parse_settings
from .reader import MAX_VCPUS
from .service import KNOWN_MODES, MAX_PERSISTENCE, SCHEDULERS, TUNNEL_TYPES

__all__ = [
    "CHECK_STATUSES",
    "DEFAULT_SIZES",
    "DOMAIN_TYPES",
    "EXPORT_ALPHABET",
    "EXTERNAL_NIC",
    "HEALTH_CHECK_TYPES",
    "INTERNAL_NIC",
    "KNOWN_MODES",
    "MAX_CHECK_PATH",
    "MAX_PERSISTENCE",
    "MAX_VCPUS",
    "MAX_VIRTUAL_ROUTER_ID",
    "NAMESPACE",
    "PLACEHOLDER_PRIVATE_KEY",
    "SCHEDULERS",
    "SLOW_FAILURE_SECONDS",
    "TUNNEL_TYPES",
    "ClientSettings",
    "ClusterSettings",
    "ConfigError",
    "DirectorPeer",
    "DirectorSettings",
    "HealthCheckSettings",
    "ImageSettings",
    "MachineSize",
    "NetworkSettings",
    "NfsSettings",
    "PoolSettings",
    "ServiceSettings",
    "TunnelSettings",
    "VrrpSettings",
    "WebServerSettings",
    "check_private_key",
    "keepalived_command_names",
    "load_settings",
    "mac_address",
    "parse_settings",
    "settings_from_stack_file",
]
