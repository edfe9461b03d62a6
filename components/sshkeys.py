"""SSH keys checked for what they are, with pyca/cryptography.

The public key goes into every node's ``authorized_keys`` (cloud-init); the private key is
what the Commands log in with (pulumi-command's Go SSH client, golang.org/x/crypto/ssh). A
key either side would refuse is caught here, before any resource is registered:

* the public key is exactly one OpenSSH public key line of a type Debian 12's sshd (OpenSSH
  9.2) accepts, and its base64 blob decodes, parses and names the same type as the text;
* the private key is one OpenSSH or PEM private key that x/crypto/ssh can read, decrypted by
  ``lvs:sshPrivateKeyPassword`` when (and only when) it is encrypted, and its public half is
  ``lvs:sshPublicKey``.

Problems are :class:`SshKeyError`; ``components.config`` turns them into one-line
``ConfigError`` messages. A message never shows private key material or a passphrase.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
import warnings
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

# What Debian 12's sshd accepts in authorized_keys by default (PubkeyAcceptedAlgorithms of
# OpenSSH 9.2; ssh-dss has been off since OpenSSH 7.0, ssh-rsa keys sign with rsa-sha2-*).
PUBLIC_KEY_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
SECURITY_KEY_TYPES = ("sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")
# ssh-keygen's default is 3072; below 2048 bits is considered breakable (NIST SP 800-131A).
MIN_RSA_BITS = 2048
_ECDSA_CURVES = {"secp256r1", "secp384r1", "secp521r1"}
# PEM labels golang.org/x/crypto/ssh ParseRawPrivateKey(WithPassphrase) reads.
_READABLE_PEM_LABELS = ("OPENSSH PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY")
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_OPENSSH_MAGIC = b"openssh-key-v1\0"


class SshKeyError(ValueError):
    """What is wrong, and with which key (`sshPublicKey`, `sshPrivateKey`, `sshPrivateKeyPassword`)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


@dataclass(frozen=True)
class PublicKey:
    type: str
    blob: bytes
    comment: str

    @property
    def canonical(self) -> str:
        """`TYPE BASE64`, as ssh-keygen writes it (no comment)."""
        return f"{self.type} {base64.b64encode(self.blob).decode()}"


def shown(text: str, limit: int = 60) -> str:
    """A public key (or any one-line text that is not secret) short enough for a message."""
    if len(text) > limit:
        text = text[: limit - 16] + "…" + text[-12:]
    return repr(text)


def _wire_string(data: bytes, offset: int) -> tuple[bytes, int]:
    """One SSH wire-format string (uint32 length, then the bytes) at `offset`."""
    if len(data) < offset + 4:
        raise ValueError("truncated")
    (length,) = struct.unpack(">I", data[offset : offset + 4])
    end = offset + 4 + length
    if len(data) < end:
        raise ValueError("truncated")
    return data[offset + 4 : end], end


def parse_public_key(text: str) -> PublicKey:
    """Exactly one OpenSSH public key line (`TYPE BASE64 [COMMENT]`) Debian 12's sshd accepts."""
    line = text.strip()
    if "\n" in line or "\r" in line:
        raise SshKeyError("sshPublicKey", f"{shown(line)} has more than one line (exactly one public key expected)")
    if _CONTROL.search(line):
        raise SshKeyError("sshPublicKey", f"{shown(line)} contains a control character")
    fields = line.split(None, 2)
    if len(fields) < 2:
        raise SshKeyError("sshPublicKey", f"{shown(line)} is not an OpenSSH public key ('TYPE BASE64 [COMMENT]', as in a .pub file)")
    key_type, encoded = fields[0], fields[1]
    comment = fields[2] if len(fields) == 3 else ""
    accepted = ", ".join(PUBLIC_KEY_TYPES)
    if key_type not in PUBLIC_KEY_TYPES:
        if key_type == "ssh-dss":
            reason = "a DSA key type, refused by Debian 12's sshd"
        elif key_type.endswith("-cert-v01@openssh.com"):
            reason = "a certificate, not a key"
        elif key_type.startswith("sk-"):
            reason = "an unknown security-key type"
        else:
            reason = "not an OpenSSH public key type"
        raise SshKeyError("sshPublicKey", f"{shown(line)}: {key_type!r} is {reason} (accepted: {accepted})")
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise SshKeyError("sshPublicKey", f"{shown(line)}: its base64 part does not decode") from None
    try:
        inner, _ = _wire_string(blob, 0)
    except ValueError:
        raise SshKeyError("sshPublicKey", f"{shown(line)}: its base64 part is too short to be a key") from None
    if inner != key_type.encode():
        named = inner.decode("ascii", "replace")
        raise SshKeyError("sshPublicKey", f"{shown(line)}: its base64 part is a {named!r} key, not {key_type!r}")
    try:
        loaded = serialization.load_ssh_public_key(f"{key_type} {encoded}".encode())
    except (ValueError, UnsupportedAlgorithm) as error:
        raise SshKeyError("sshPublicKey", f"{shown(line)}: not a valid {key_type} key ({error})") from None
    if isinstance(loaded, rsa.RSAPublicKey) and loaded.key_size < MIN_RSA_BITS:
        raise SshKeyError("sshPublicKey", f"{shown(line)}: an RSA key of {loaded.key_size} bits (at least {MIN_RSA_BITS})")
    return PublicKey(type=key_type, blob=blob, comment=comment)


def _openssh_encrypted(body: str) -> bool:
    try:
        data = base64.b64decode("".join(body.split()), validate=True)
        if not data.startswith(_OPENSSH_MAGIC):
            raise ValueError("no openssh-key-v1 header")
        cipher, _ = _wire_string(data, len(_OPENSSH_MAGIC))
    except (binascii.Error, ValueError):
        raise SshKeyError("sshPrivateKey", "is not a readable OpenSSH private key (damaged: the block does not decode)") from None
    return cipher != b"none"


def check_private_key(text: str, password: str | None, public: PublicKey) -> None:
    """The private key the Commands use: readable by them, with its passphrase if encrypted,
    and the private half of `public`. Messages describe the value; they never show it."""
    stripped = text.strip()
    if not stripped:
        raise SshKeyError("sshPrivateKey", "is empty (set it with: pulumi config set --secret lvs:sshPrivateKey < KEYFILE)")
    first = stripped.split(None, 1)[0]
    if first in PUBLIC_KEY_TYPES or first == "ssh-dss" or first.startswith(("ssh-", "ecdsa-", "sk-")):
        raise SshKeyError(
            "sshPrivateKey",
            f"is a public key ({shown(stripped.splitlines()[0])}), not a private key: give the key file itself, not its .pub",
        )
    blocks = _PEM_BLOCK.findall(stripped)
    if not blocks:
        if stripped.startswith("PuTTY-User-Key-File"):
            raise SshKeyError("sshPrivateKey", "is a PuTTY key: convert it with puttygen KEY.ppk -O private-openssh -o KEYFILE")
        raise SshKeyError("sshPrivateKey", "is not a private key (expected an OpenSSH or PEM key file, -----BEGIN … PRIVATE KEY-----)")
    if len(blocks) > 1:
        raise SshKeyError("sshPrivateKey", f"holds {len(blocks)} PEM blocks (exactly one private key expected)")
    label, body = blocks[0]
    if label not in _READABLE_PEM_LABELS:
        if label == "DSA PRIVATE KEY":
            reason = "a DSA key, refused by Debian 12's sshd"
        elif label == "ENCRYPTED PRIVATE KEY":
            reason = "an encrypted PKCS#8 key, which the Commands' SSH client cannot read; convert it with ssh-keygen -p -f KEYFILE"
        elif "PRIVATE KEY" not in label:
            reason = "not a private key"
        else:
            reason = "a key format the Commands' SSH client cannot read"
        raise SshKeyError("sshPrivateKey", f"is a PEM {label!r} block: {reason}")
    if public.type in SECURITY_KEY_TYPES:
        raise SshKeyError(
            "sshPublicKey",
            f"{shown(public.canonical)} is a security-key (FIDO) key: the Commands log in with lvs:sshPrivateKey alone and "
            "cannot use a key that needs its hardware token; use an ed25519, ecdsa or rsa key",
        )
    encrypted = _openssh_encrypted(body) if label == "OPENSSH PRIVATE KEY" else "Proc-Type: 4,ENCRYPTED" in body
    if encrypted and password is None:
        raise SshKeyError(
            "sshPrivateKey",
            "is encrypted: set its passphrase with pulumi config set --secret lvs:sshPrivateKeyPassword",
        )
    if not encrypted and password is not None:
        raise SshKeyError(
            "sshPrivateKeyPassword",
            "is set, but lvs:sshPrivateKey is not encrypted (the Commands' SSH client refuses a passphrase for it); remove it",
        )
    if encrypted and password == "":
        raise SshKeyError("sshPrivateKeyPassword", "is empty, and lvs:sshPrivateKey is encrypted")
    data = f"-----BEGIN {label}-----{body}-----END {label}-----\n".encode()
    secret = password.encode() if encrypted and password is not None else None
    key: PrivateKeyTypes
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # cryptography's deprecation warnings for DSA keys
            if label == "OPENSSH PRIVATE KEY":
                key = serialization.load_ssh_private_key(data, secret)
            else:
                key = serialization.load_pem_private_key(data, secret)
    except UnsupportedAlgorithm as error:
        raise SshKeyError("sshPrivateKey", f"is a key type the Commands cannot use ({error})") from None
    except (ValueError, TypeError) as error:
        if encrypted:
            raise SshKeyError(
                "sshPrivateKeyPassword", "does not decrypt lvs:sshPrivateKey (a wrong passphrase, or a damaged key)"
            ) from None
        raise SshKeyError("sshPrivateKey", f"is not a readable private key ({error})") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise SshKeyError("sshPrivateKey", f"is an RSA key of {key.key_size} bits (at least {MIN_RSA_BITS})")
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name not in _ECDSA_CURVES:
            raise SshKeyError("sshPrivateKey", f"is an ECDSA key on curve {key.curve.name}, which OpenSSH does not use")
    elif not isinstance(key, ed25519.Ed25519PrivateKey):
        raise SshKeyError("sshPrivateKey", f"is a {type(key).__name__.removesuffix('PrivateKey')} key (accepted: ed25519, ecdsa, rsa)")
    derived = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    if derived != public.canonical:
        raise SshKeyError(
            "sshPrivateKey",
            f"its public half {shown(derived)} does not match lvs:sshPublicKey {shown(public.canonical)}: set the two halves of one key",
        )
