"""The SSH key pair the Commands log in with (`lvs:sshPublicKey`, `lvs:sshPrivateKey`,
`lvs:sshPrivateKeyPassword`): checked for what they are, the private half against the public
one, the secrets described and never shown, and a secret given as plain config warns."""

from __future__ import annotations

import base64
import contextvars
import functools
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulumi
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa

from lab.stack.plan import record_plan
from tests.config_helpers import Change, _cases, _fails, _set
from tests.conftest import CLOUD_INIT_DISK, COMMAND, TEST_PRIVATE_KEY, TEST_PUBLIC_KEY

PrivateKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | dsa.DSAPrivateKey


def _wire(*fields: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(field)) + field for field in fields)


def _public(key: PrivateKey, comment: str = "test") -> str:
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return f"{line} {comment}"


def _openssh(key: PrivateKey, password: bytes | None = None) -> str:
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption).decode()


def _pem(key: PrivateKey, form: serialization.PrivateFormat, password: bytes | None = None) -> str:
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, form, encryption).decode()


@dataclass(frozen=True)
class Keys:
    """Keys made once per run."""

    other_ed25519: ed25519.Ed25519PrivateKey
    rsa_2048: rsa.RSAPrivateKey
    rsa_1024: rsa.RSAPrivateKey
    dsa_1024: dsa.DSAPrivateKey
    ecdsa: dict[str, ec.EllipticCurvePrivateKey]
    test_key: ed25519.Ed25519PrivateKey


@functools.cache
def keys() -> Keys:
    test_key = serialization.load_ssh_private_key(TEST_PRIVATE_KEY.encode(), None)
    assert isinstance(test_key, ed25519.Ed25519PrivateKey)
    return Keys(
        other_ed25519=ed25519.Ed25519PrivateKey.generate(),
        rsa_2048=rsa.generate_private_key(65537, 2048),
        rsa_1024=rsa.generate_private_key(65537, 1024),
        dsa_1024=dsa.generate_private_key(1024),
        ecdsa={
            name: ec.generate_private_key(curve)
            for name, curve in (("256", ec.SECP256R1()), ("384", ec.SECP384R1()), ("521", ec.SECP521R1()))
        },
        test_key=test_key,
    )


def _lazy(path: str, make: Callable[[], Any]) -> Change:
    """Sets a key to a value made when the test runs (generated keys)."""
    return lambda config: _set(path, make())(config)


_TEST_BLOB = TEST_PUBLIC_KEY.split()[1]

_SK_ED25519 = "sk-ssh-ed25519@openssh.com " + base64.b64encode(_wire(b"sk-ssh-ed25519@openssh.com", b"\x01" * 32, b"ssh:")).decode()

_SSH_DSS = "ssh-dss " + base64.b64encode(_wire(b"ssh-dss", b"\x00\xc1" * 64, b"\x00\xd1" * 10, b"\x02" * 128, b"\x03" * 128)).decode()

_ED25519_WRONG_LENGTH = "ssh-ed25519 " + base64.b64encode(_wire(b"ssh-ed25519", b"\x01" * 5)).decode()


PUBLIC_KEYS = [
    (_set("sshPublicKey", None), "lvs:sshPublicKey", "null given"),
    (_set("sshPublicKey", f"ssh-rsa {_TEST_BLOB} x"), "lvs:sshPublicKey", "is a 'ssh-ed25519' key, not 'ssh-rsa'"),
    (_set("sshPublicKey", f"ecdsa-sha2-nistp256 {_TEST_BLOB}"), "lvs:sshPublicKey", "is a 'ssh-ed25519' key, not 'ecdsa-sha2-nistp256'"),
    (_set("sshPublicKey", f"sk-ssh-ed25519@openssh.com {_TEST_BLOB}"), "lvs:sshPublicKey", "not 'sk-ssh-ed25519@openssh.com'"),
    (_set("sshPublicKey", "ssh-ed25519 AAAA!!!!"), "lvs:sshPublicKey", "'ssh-ed25519 AAAA!!!!': its base64 part does not decode"),
    (_set("sshPublicKey", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5"), "lvs:sshPublicKey", "not a valid ssh-ed25519 key"),
    (_set("sshPublicKey", "ssh-ed25519 AAAA"), "lvs:sshPublicKey", "is too short to be a key"),
    (_set("sshPublicKey", _ED25519_WRONG_LENGTH), "lvs:sshPublicKey", "not a valid ssh-ed25519 key"),
    (_set("sshPublicKey", f"{TEST_PUBLIC_KEY}\n{TEST_PUBLIC_KEY}"), "lvs:sshPublicKey", "has more than one line"),
    (_set("sshPublicKey", f"{TEST_PUBLIC_KEY}\r\nx"), "lvs:sshPublicKey", "has more than one line"),
    (_set("sshPublicKey", f"{TEST_PUBLIC_KEY}\x00"), "lvs:sshPublicKey", "contains a control character"),
    (_set("sshPublicKey", f"sk-foo@openssh.com {_TEST_BLOB}"), "lvs:sshPublicKey", "'sk-foo@openssh.com' is an unknown security-key type"),
    (_set("sshPublicKey", f"ssh-ed25519-cert-v01@openssh.com {_TEST_BLOB}"), "lvs:sshPublicKey", "is a certificate, not a key"),
    (_set("sshPublicKey", f'command="id" {TEST_PUBLIC_KEY}'), "lvs:sshPublicKey", "'command=\"id\"' is not an OpenSSH public key type"),
    (_set("sshPublicKey", "ssh-ed25519"), "lvs:sshPublicKey", "'ssh-ed25519' is not an OpenSSH public key"),
    (_set("sshPublicKey", _SSH_DSS), "lvs:sshPublicKey", "'ssh-dss' is a DSA key type, refused"),
    (_lazy("sshPublicKey", lambda: _public(keys().rsa_1024)), "lvs:sshPublicKey", "an RSA key of 1024 bits (at least 2048)"),
    (_set("sshPublicKey", _SK_ED25519), "lvs:sshPublicKey", "is a security-key (FIDO) key"),
]


def _dsa_pem() -> str:
    return _pem(keys().dsa_1024, serialization.PrivateFormat.TraditionalOpenSSL)


def _pkcs8_encrypted() -> str:
    return _pem(keys().test_key, serialization.PrivateFormat.PKCS8, b"secret-passphrase")


def _encrypted_test_key() -> str:
    return _openssh(keys().test_key, b"secret-passphrase")


_OLD_FAKE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----\n"

_PUBLIC_PEM = """-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAsYrut9/KSWc9A1vBcvCIuikFXZV3hWxozEakaRoFd0A=
-----END PUBLIC KEY-----
"""


PRIVATE_KEYS = [
    (_set("sshPrivateKey", ""), "lvs:sshPrivateKey", "is empty"),
    (_set("sshPrivateKey", "  \n\t\n"), "lvs:sshPrivateKey", "is empty"),
    (_set("sshPrivateKey", TEST_PUBLIC_KEY), "lvs:sshPrivateKey", "is a public key ('ssh-ed25519 AAAA"),
    (_set("sshPrivateKey", TEST_PUBLIC_KEY + "\n"), "lvs:sshPrivateKey", "is a public key"),
    (_set("sshPrivateKey", "hunter2"), "lvs:sshPrivateKey", "is not a private key"),
    (_set("sshPrivateKey", _OLD_FAKE_KEY), "lvs:sshPrivateKey", "is not a readable OpenSSH private key"),
    (_set("sshPrivateKey", TEST_PRIVATE_KEY + TEST_PRIVATE_KEY), "lvs:sshPrivateKey", "holds 2 PEM blocks"),
    (_set("sshPrivateKey", _PUBLIC_PEM), "lvs:sshPrivateKey", "is a PEM 'PUBLIC KEY' block: not a private key"),
    (_set("sshPrivateKey", "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\n"), "lvs:sshPrivateKey", "is a PuTTY key"),
    (_lazy("sshPrivateKey", lambda: _openssh(keys().other_ed25519)), "lvs:sshPrivateKey", "does not match lvs:sshPublicKey"),
    (_lazy("sshPrivateKey", lambda: _openssh(keys().rsa_2048)), "lvs:sshPrivateKey", "its public half 'ssh-rsa AAAA"),
    (_lazy("sshPrivateKey", _dsa_pem), "lvs:sshPrivateKey", "'DSA PRIVATE KEY' block: a DSA key"),
    (_lazy("sshPrivateKey", _pkcs8_encrypted), "lvs:sshPrivateKey", "'ENCRYPTED PRIVATE KEY' block: an encrypted PKCS#8 key"),
    # an encrypted key needs its passphrase, and only an encrypted key takes one
    (_lazy("sshPrivateKey", _encrypted_test_key), "lvs:sshPrivateKey", "is encrypted: set its passphrase"),
    (
        lambda config: config.update({"lvs:sshPrivateKey": _encrypted_test_key(), "lvs:sshPrivateKeyPassword": "not-the-passphrase"}),
        "lvs:sshPrivateKeyPassword",
        "does not decrypt lvs:sshPrivateKey",
    ),
    (
        lambda config: config.update({"lvs:sshPrivateKey": _encrypted_test_key(), "lvs:sshPrivateKeyPassword": ""}),
        "lvs:sshPrivateKeyPassword",
        "is empty, and lvs:sshPrivateKey is encrypted",
    ),
    (_set("sshPrivateKeyPassword", "secret-passphrase"), "lvs:sshPrivateKeyPassword", "lvs:sshPrivateKey is not encrypted"),
    (
        lambda config: config.update(
            {"lvs:sshPrivateKey": _pem(keys().test_key, serialization.PrivateFormat.PKCS8), "lvs:sshPrivateKeyPassword": "x"}
        ),
        "lvs:sshPrivateKeyPassword",
        "lvs:sshPrivateKey is not encrypted",
    ),
]


@_cases(PUBLIC_KEYS + PRIVATE_KEYS)
def test_ssh_keys_are_checked_for_what_they_are(config_with: Any, change: Change, key: str, value: str) -> None:
    config = config_with(change)
    message = _fails(config, key, value)
    # The private key and its passphrase are secrets: a message describes them, never shows them.
    for secret_key in ("lvs:sshPrivateKey", "lvs:sshPrivateKeyPassword"):
        secret = config.get(secret_key)
        for line in (secret or "").splitlines():
            if len(line.strip()) > 3 and not line.startswith("-----") and line.strip() not in TEST_PUBLIC_KEY:
                assert line.strip() not in message


def _pair(private: Callable[[], str], public: Callable[[], str], password: str | None = None) -> Change:
    def change(config: dict[str, Any]) -> None:
        config["lvs:sshPrivateKey"] = private()
        config["lvs:sshPublicKey"] = public()
        if password is not None:
            config["lvs:sshPrivateKeyPassword"] = password

    return change


def _ecdsa_private(bits: str) -> str:
    return _openssh(keys().ecdsa[bits])


def _ecdsa_public(bits: str) -> str:
    return _public(keys().ecdsa[bits])


GOOD_PAIRS = {
    "ed25519-openssh": _pair(lambda: TEST_PRIVATE_KEY, lambda: TEST_PUBLIC_KEY),
    "ed25519-comment-with-spaces": _pair(lambda: TEST_PRIVATE_KEY, lambda: TEST_PUBLIC_KEY + " of  the test suite"),
    "ed25519-no-comment": _pair(lambda: TEST_PRIVATE_KEY, lambda: " ".join(TEST_PUBLIC_KEY.split()[:2])),
    "ed25519-pkcs8": _pair(lambda: _pem(keys().test_key, serialization.PrivateFormat.PKCS8), lambda: TEST_PUBLIC_KEY),
    **{
        f"ecdsa-{bits}": _pair(functools.partial(_ecdsa_private, bits), functools.partial(_ecdsa_public, bits))
        for bits in ("256", "384", "521")
    },
    "ecdsa-256-pem": _pair(
        lambda: _pem(keys().ecdsa["256"], serialization.PrivateFormat.TraditionalOpenSSL), lambda: _public(keys().ecdsa["256"])
    ),
    "rsa-2048-openssh": _pair(lambda: _openssh(keys().rsa_2048), lambda: _public(keys().rsa_2048)),
    "rsa-2048-pem": _pair(lambda: _pem(keys().rsa_2048, serialization.PrivateFormat.TraditionalOpenSSL), lambda: _public(keys().rsa_2048)),
    "ed25519-encrypted": _pair(_encrypted_test_key, lambda: TEST_PUBLIC_KEY, "secret-passphrase"),
    "rsa-2048-pem-encrypted": _pair(
        lambda: _pem(keys().rsa_2048, serialization.PrivateFormat.TraditionalOpenSSL, b"pw"), lambda: _public(keys().rsa_2048), "pw"
    ),
}


@pytest.mark.parametrize("change", GOOD_PAIRS.values(), ids=GOOD_PAIRS.keys())
def test_matching_key_pairs_of_every_accepted_type_run(config_with: Any, change: Change) -> None:
    config = config_with(change)
    plan = record_plan(config, stack="seed")
    (user,) = yaml.safe_load(plan.named("web1-seed", CLOUD_INIT_DISK).inputs["userData"])["users"]
    assert user["ssh_authorized_keys"] == [config["lvs:sshPublicKey"].strip()]
    connection = plan.named("ipvs-virtual-service", COMMAND).inputs["connection"]
    assert connection["privateKey"] == config["lvs:sshPrivateKey"]
    assert connection.get("privateKeyPassword") == config.get("lvs:sshPrivateKeyPassword")


def test_a_private_key_given_as_plain_config_warns(config_with: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plan recorder hands lvs:sshPrivateKey over as a secret, as `pulumi config set
    --secret` does; the passphrase here it hands over as plain config."""
    warned: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *args, **kwargs: warned.append(message))
    config = config_with(_pair(_encrypted_test_key, lambda: TEST_PUBLIC_KEY, "secret-passphrase"))
    assert record_plan(config, stack="seed").resources
    assert warned == [
        "lvs:sshPrivateKeyPassword: given as plain config, so the stack file holds it in clear text; "
        "set it with pulumi config set --secret lvs:sshPrivateKeyPassword"
    ]
    assert all("secret-passphrase" not in message for message in warned)


@pytest.mark.parametrize(("secret_keys", "expected"), [(["lvs:sshPrivateKey"], False), ([], True)])
def test_the_program_sees_whether_the_private_key_is_a_secret(secret_keys: list[str], expected: bool) -> None:
    """What the language host passes (PULUMI_CONFIG_SECRET_KEYS) is what load_settings checks."""
    from components.config import _is_secret

    def check() -> bool:
        pulumi.runtime.set_all_config({"lvs:sshPrivateKey": TEST_PRIVATE_KEY}, secret_keys)
        return not _is_secret("lvs:sshPrivateKey")

    assert contextvars.copy_context().run(check) == expected
