"""How the Commands log in to the nodes: the admin user cloud-init creates, and the SSH key pair
(the public half in the model, the private half a secret checked against it)."""

from __future__ import annotations

import re

from .. import sshkeys
from .model import NAMESPACE, ConfigError
from .reader import _Section, _shown

_POSIX_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
# Users and groups Debian's base system and the packages the nodes install already have:
# cloud-init's useradd fails on them and the node is left without an admin login.
_DEBIAN_SYSTEM_NAMES = (
    "root daemon bin sys sync games man lp mail news uucp proxy www-data backup list irc gnats nobody "
    "adm tty disk kmem dialout fax voice cdrom floppy tape sudo audio dip operator src shadow utmp video "
    "sasl plugdev staff users nogroup input sgx kvm render netdev systemd-journal systemd-network "
    "systemd-resolve systemd-timesync messagebus sshd statd _rpc _apt debian"
)
_DEBIAN_RESERVED_NAMES = frozenset(_DEBIAN_SYSTEM_NAMES.split())


def _admin_user(top: _Section) -> str:
    """`lvs:adminUser`: a login name cloud-init can create on Debian."""
    admin_user = top.string("adminUser", "lvsadmin")
    if not _POSIX_USER.fullmatch(admin_user):
        raise ConfigError(f"lvs:adminUser: {_shown(admin_user)} is not a usable login name")
    if admin_user in _DEBIAN_RESERVED_NAMES:
        raise ConfigError(f"lvs:adminUser: {_shown(admin_user)} is already a user or group on Debian; choose another login name")
    return str(admin_user)


def _ssh_public_key(top: _Section) -> str:
    """`lvs:sshPublicKey` as given: required, and a key the nodes' sshd accepts."""
    if top.raw.get("sshPublicKey", "") is None:
        raise ConfigError("lvs:sshPublicKey: null given, but a value is required (the public half of the key the Commands use)")
    public_key = top.string("sshPublicKey", "")
    if not public_key.strip():
        raise ConfigError("lvs:sshPublicKey: missing (required: the public half of the key the Commands use)")
    _public_key(public_key)
    return str(public_key)


def _public_key(text: str) -> sshkeys.PublicKey:
    try:
        return sshkeys.parse_public_key(text)
    except sshkeys.SshKeyError as problem:
        raise ConfigError(f"lvs:{problem.key}: {problem.message}") from None


def check_private_key(private_key: str, password: str | None, public_key: str) -> None:
    """`lvs:sshPrivateKey` (and `lvs:sshPrivateKeyPassword`) as the Commands will use them: one
    readable private key, decrypted by the passphrase if encrypted, the private half of
    `public_key`. The message describes the secret value, never shows it."""
    try:
        sshkeys.check_private_key(private_key, password, sshkeys.parse_public_key(public_key))
    except sshkeys.SshKeyError as problem:
        raise ConfigError(f"{NAMESPACE}:{problem.key}: {problem.message}") from None
