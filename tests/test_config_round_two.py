"""Bad input, round two (issue 8): values that used to pass and broke or endangered the cluster
only after every VM was built. Each fails `pulumi preview` with one line naming the key and the
value, before any resource is registered; values that are legal but probably a mistake warn."""

from __future__ import annotations

import base64
import contextvars
import functools
import struct
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import PurePosixPath
from typing import Any

import pulumi
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa

from components import cloudinit
from components.config import MAX_PERSISTENCE, ConfigError, parse_settings
from lab.plan import record_plan
from tests.conftest import CLOUD_INIT_DISK, COMMAND, TEST_PRIVATE_KEY, TEST_PUBLIC_KEY, VOLUME, second_config, seed_config
from tests.test_config import _set

Change = Callable[[dict[str, Any]], None]
PrivateKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | dsa.DSAPrivateKey


def _fails(config: dict[str, Any], key: str, value: str, *, stack: str = "seed") -> str:
    """The one-line message naming `key` and showing `value`; nothing was registered."""
    with pytest.raises(ConfigError) as failure:
        record_plan(config, stack=stack)
    message = str(failure.value)
    assert message.startswith(f"{key}:"), message
    assert value in message, message
    assert "\n" not in message, message
    assert failure.value.plan.resources == []  # type: ignore[attr-defined]
    return message


def _cases(cases: list[tuple[Change, str, str]]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize(("change", "key", "value"), cases, ids=[f"{key}={value!r}" for _, key, value in cases])


def _exports(*paths: Any) -> Change:
    """lvs:nfs.exports as given; the web servers keep /opt/kgc and /opt/benet, listed last."""
    return _set("nfs.exports", [*paths, "/opt/kgc", "/opt/benet"])


def _raw(config: dict[str, Any]) -> dict[str, Any]:
    return {key.split(":", 1)[1]: value for key, value in config.items() if key.startswith("lvs:") and key != "lvs:sshPrivateKey"}


def _settings_with(change: Change) -> Any:
    config = seed_config()
    change(config)
    return parse_settings(_raw(config), stack="seed", ssh_private_key="key")


# --- NFS export paths that expose or change the server's system ------------------------------

ROOT_SPELLINGS = ["/", "/.", "//", "///", "/./", "/./."]
SYSTEM_DIRECTORIES = [
    "/etc", "/home", "/root", "/usr", "/var", "/boot", "/proc", "/sys", "/dev", "/run", "/bin", "/sbin",
    "/lib", "/lib32", "/lib64", "/libx32", "/srv", "/opt", "/tmp", "/mnt", "/media",
    # other spellings of the same directories
    "/etc/", "//usr", "/./var/.", "/srv/", "/opt//", "///home///",
]  # fmt: skip
UNDER_SYSTEM_TREES = [
    "/etc/ssh", "/etc/exports.d", "/proc/1", "/sys/kernel", "/dev/shm", "/run/lvs", "/boot/grub", "/usr/local/share/www",
    "/bin/x", "/sbin/x", "/lib/modules", "/lib64/x", "/libx32/x", "/root/site", "/tmp/site", "/var/tmp/site",
    "/var/lib/nfs", "/var/log/apache2", "/var/run/x", "/var/spool/x", "/var/cache/x", "/usr/./share//doc/",
    # the admin user's home: made group-writable, sshd (StrictModes) refuses the Commands' key
    "/home/lvsadmin", "/home/lvsadmin/site",
]  # fmt: skip

EXPORT_PATHS = [
    *[(_exports(path), "lvs:nfs.exports[0]", f"{path!r} is the filesystem root") for path in ROOT_SPELLINGS],
    *[(_exports(path), "lvs:nfs.exports[0]", f"{path!r} is ") for path in SYSTEM_DIRECTORIES],
    *[(_exports(path), "lvs:nfs.exports[0]", f"{path!r} is ") for path in UNDER_SYSTEM_TREES],
    (_exports("/srv/../etc"), "lvs:nfs.exports[0]", "'/srv/../etc' must not contain '..'"),
    # two spellings of one directory are one export
    (_set("nfs.exports", ["/opt/kgc", "/opt/benet", "/opt/kgc/"]), "lvs:nfs.exports[2]", "'/opt/kgc/' is the same directory"),
    (_set("nfs.exports", ["/opt/kgc", "/opt/benet", "//opt//kgc"]), "lvs:nfs.exports[2]", "'//opt//kgc' is the same directory"),
    (_set("nfs.exports", ["/opt/kgc", "/opt/./kgc/.", "/opt/benet"]), "lvs:nfs.exports[1]", "'/opt/./kgc/.' is the same directory"),
    (_set("nfs.exports", ["/opt/benet", "/opt/kgc", "/opt/benet//"]), "lvs:nfs.exports[2]", "'/opt/benet//' is the same directory"),
]


@_cases(EXPORT_PATHS)
def test_export_paths_that_expose_the_system_are_refused(config_with: Any, change: Change, key: str, value: str) -> None:
    _fails(config_with(change), key, value)


def test_the_admin_users_home_follows_lvs_admin_user(config_with: Any) -> None:
    def change(config: dict[str, Any]) -> None:
        config["lvs:adminUser"] = "ops"
        config["lvs:nfs"]["exports"] = ["/home/ops/site", "/opt/kgc", "/opt/benet"]

    _fails(config_with(change), "lvs:nfs.exports[0]", "'/home/ops/site' is in /home/ops, the home of lvs:adminUser 'ops'")


@pytest.mark.parametrize("export", ["/opt/kgc/", "//opt/kgc", "/opt/./kgc", "/opt//kgc//."])
def test_exports_are_normalised_before_use(config_with: Any, export: str) -> None:
    """Another spelling of an export on both sides: one export, written and mounted as /opt/kgc."""

    def change(config: dict[str, Any]) -> None:
        config["lvs:nfs"]["exports"] = [export, "/opt/benet"]
        config["lvs:webServers"][0]["export"] = export

    plan = record_plan(config_with(change), stack="seed")
    nfs = yaml.safe_load(plan.named("nfs-seed", CLOUD_INIT_DISK).inputs["userData"])
    exports = next(entry["content"] for entry in nfs["write_files"] if entry["path"].endswith(".exports"))
    assert [line.split()[0] for line in exports.splitlines() if not line.startswith("#")] == ["/opt/kgc", "/opt/benet"]
    assert {entry["path"] for entry in nfs["write_files"] if entry["path"].endswith("index.html")} == {
        "/opt/kgc/index.html",
        "/opt/benet/index.html",
    }
    web1 = yaml.safe_load(plan.named("web1-seed", CLOUD_INIT_DISK).inputs["userData"])
    assert web1["mounts"][0][0] == "192.168.75.70:/opt/kgc"


@pytest.mark.parametrize(
    "export", ["/srv/site", "/srv/a/b/c", "/opt/www", "/data", "/exports/site-a", "/srv/Site_1.2-x", "/var2/x", "/library/x"]
)
def test_ordinary_export_paths_are_accepted_silently(export: str) -> None:
    settings = _settings_with(_exports(export))
    assert settings.nfs.exports[0] == PurePosixPath(export)
    assert settings.warnings == ()


# --- Export path characters -------------------------------------------------------------------

BAD_CHARACTERS = [
    "/srv/a b", "/srv/a\tb", "/srv/a\nb", "/srv/a\x00b", "/srv/a\x1bb", "/srv/a\x7fb", "/srv/'a'", '/srv/"a"', "/srv/a\\b",
    "/srv/a#b", "/srv/<b>", "/srv/a>b", "/srv/a&b", "/srv/a;b", "/srv/$(reboot)", "/srv/a*", "/srv/pöol", "/srv/a,b",
    "/srv/a=b", "/srv/a(rw)",
]  # fmt: skip
EXPORT_CHARACTERS = [
    *[(_exports(path), "lvs:nfs.exports[0]", f"{path!r} has characters outside [A-Za-z0-9._/-]") for path in BAD_CHARACTERS],
    *[
        (_set("webServers[0].export", path), "lvs:webServers[0].export", f"{path!r} has characters outside [A-Za-z0-9._/-]")
        for path in ("/opt/kgc b", "/opt/kgc#", "/opt/<kgc>")
    ],
    (_exports("/srv/" + "a" * 256), "lvs:nfs.exports[0]", "is too long"),
    (_exports("/srv/" + "/".join(["a" * 200] * 6)), "lvs:nfs.exports[0]", "is too long"),
]


@_cases(EXPORT_CHARACTERS)
def test_export_path_characters_outside_the_portable_alphabet_are_refused(config_with: Any, change: Change, key: str, value: str) -> None:
    _fails(config_with(change), key, value)


def test_the_index_page_escapes_the_export_name() -> None:
    """The model admits no HTML character; the page escapes the name regardless."""
    context = {
        "hostname": "nfs",
        "admin_user": "lvsadmin",
        "ssh_public_key": TEST_PUBLIC_KEY,
        "nfs_ip": "192.168.75.70",
        "exports": ["/srv/<b>&\"x'"],
        "internal_cidr": "192.168.75.0/24",
    }
    document = yaml.safe_load(cloudinit.user_data("nfs-server.yaml", context))
    (page,) = [entry["content"] for entry in document["write_files"] if entry["path"].endswith("index.html")]
    assert "<b>" not in page and '&"' not in page
    assert "&lt;b&gt;&amp;&#34;x&#39;" in page


# --- Networks that are not ordinary unicast subnets --------------------------------------------

SPECIAL_NETWORKS = [
    ("internal", "127.0.0.0/24", "loopback"),
    ("internal", "127.1.2.0/29", "loopback"),
    ("internal", "126.0.0.0/7", "loopback"),
    ("external", "0.0.0.0/24", "'this network'"),
    ("external", "0.1.0.0/16", "'this network'"),
    ("internal", "169.254.0.0/24", "link-local"),
    ("external", "169.254.10.0/29", "link-local"),
    ("external", "224.0.0.0/24", "multicast"),
    ("internal", "239.1.1.0/24", "multicast"),
    ("external", "240.0.0.0/24", "reserved"),
    ("external", "255.255.255.0/24", "reserved"),
    ("external", "224.0.0.0/3", "multicast"),
]
NETWORKS = [
    (_set(f"networks.{role}.cidr", cidr), f"lvs:networks.{role}.cidr", f"{cidr!r} is {what}") for role, cidr, what in SPECIAL_NETWORKS
]


@_cases(NETWORKS)
def test_networks_that_are_not_ordinary_unicast_subnets_are_refused(config_with: Any, change: Change, key: str, value: str) -> None:
    message = _fails(config_with(change), key, value)
    assert "not an ordinary unicast subnet" in message


@pytest.mark.parametrize(
    "cidr",
    [
        "0.0.0.0/24", "127.0.0.0/24", "169.254.1.0/24", "224.0.0.0/24", "239.255.255.0/24", "240.0.0.0/24", "250.1.0.0/16",
        "255.255.255.0/29", "10.0.0.0/24", "12.0.0.0/24", "100.64.0.0/24", "172.31.5.0/28", "192.0.2.0/24", "198.18.0.0/24",
        "1.0.0.0/24", "223.255.255.0/24",
    ],
)  # fmt: skip
def test_refused_exactly_where_ipaddress_says_special(cidr: str) -> None:
    """The rule is ipaddress's own classification (and 0.0.0.0/8); documentation, CGNAT and
    benchmarking ranges are ordinary subnets for a lab."""
    network = IPv4Network(cidr)
    special = (
        network.is_loopback
        or network.is_multicast
        or network.is_link_local
        or network.is_reserved
        or network.is_unspecified
        or network.overlaps(IPv4Network("0.0.0.0/8"))
    )
    first = network.network_address + 1

    def change(config: dict[str, Any]) -> None:
        config["lvs:networks"]["external"]["cidr"] = cidr
        config["lvs:director"]["externalIp"] = str(first)
        config["lvs:client"]["ip"] = str(first + 1)

    if special:
        with pytest.raises(ConfigError, match="not an ordinary unicast subnet"):
            _settings_with(change)
    else:
        assert _settings_with(change).external.cidr == network


# --- Ports and limits the real tools enforce ---------------------------------------------------

LIMITS = [
    *[(_set("service.port", port), "lvs:service.port", f"{int(port)} is used by the nodes") for port in (22, "22", 111, 2049)],
    *[
        (_set("service.persistence", value), "lvs:service.persistence", f"{value} is out of range 0..{MAX_PERSISTENCE}")
        for value in (MAX_PERSISTENCE + 1, 31 * 86400 + 60, 10**9, 2**31 - 1)
    ],
    (_set("director.vcpus", 256), "lvs:director.vcpus", "256 is out of range 1..255"),
    (_set("webServers[0].vcpus", 1000), "lvs:webServers[0].vcpus", "1000 is out of range 1..255"),
    (_set("nfs.vcpus", 0), "lvs:nfs.vcpus", "0 is out of range 1..255"),
    (_set("client.memory", 64), "lvs:client.memory", "64 is out of range 128.."),
]


@_cases(LIMITS)
def test_numbers_the_tools_would_refuse_are_refused(config_with: Any, change: Change, key: str, value: str) -> None:
    _fails(config_with(change), key, value)


def test_the_longest_persistence_ipvsadm_takes_is_accepted(config_with: Any) -> None:
    plan = record_plan(config_with(_set("service.persistence", MAX_PERSISTENCE)), stack="seed")
    assert f"-p {MAX_PERSISTENCE}" in plan.named("ipvs-virtual-service").inputs["create"]


# --- SSH keys checked for what they are --------------------------------------------------------


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


# --- libvirt names that collide ----------------------------------------------------------------


def _one_bridge_for_both(config: dict[str, Any]) -> None:
    for role in ("internal", "external"):
        config["lvs:networks"][role]["bridge"] = "br-lvs"


BAD_BRIDGES = ["", ".", "..", "lo", "br 0", "br\t0", "br:0", "br/0", "b" * 16, "bridge-lvs-inner", "brü"]
LIBVIRT_NAMES = [
    *[
        (_set("networks.internal.bridge", bridge), "lvs:networks.internal.bridge", f"{bridge!r} is not a usable bridge name")
        for bridge in BAD_BRIDGES
    ],
    (
        _one_bridge_for_both,
        "lvs:networks.external.bridge",
        "'br-lvs' is already the bridge of lvs:networks.internal",
    ),
    *[
        (_set("image.pool", name), "lvs:image.pool", f"{name!r} is not a usable libvirt pool name")
        for name in ("", ".", "..", ".hidden", "pool:1", "pöol", "a/b", " pool", "pool\n")
    ],
    # every volume of the stack in one pool: no node may take the base image's volume name
    *[
        (_set(f"{node}.name", "base"), f"lvs:{node}.name", "'base' would name its root volume 'seed-base.qcow2'")
        for node in ("webServers[0]", "webServers[1]", "director", "nfs", "client")
    ],
]


@_cases(LIBVIRT_NAMES)
def test_libvirt_names_that_collide_or_are_refused(config_with: Any, change: Change, key: str, value: str) -> None:
    _fails(config_with(change), key, value)


@pytest.mark.parametrize("stack", ["s" * 60, "a-very-long-stack-name-for-a-pool-that-libvirt-would-not-take"])
def test_the_pool_named_after_a_long_stack_is_refused(stack: str) -> None:
    _fails(seed_config(), "lvs:image.pool", f"'{stack}-pool'", stack=stack)


def test_every_libvirt_volume_name_is_distinct(config_with: Any) -> None:
    """Nodes named like another node's volumes (`web1-seed`, `web1-root`) still name none twice."""

    def change(config: dict[str, Any]) -> None:
        config["lvs:webServers"][1]["name"] = "web1-seed"
        config["lvs:client"]["name"] = "base-image"

    plan = record_plan(config_with(change), stack="seed")
    names = [resource.inputs["name"] for resource in plan.of_type(VOLUME) + plan.of_type(CLOUD_INIT_DISK)]
    assert len(names) == len(set(names)) == 1 + 2 * 5
    assert {"seed-base.qcow2", "seed-web1-seed.qcow2", "seed-web1-seed.iso", "seed-web1-seed-seed.iso"} <= set(names)


# --- Misleading messages: null -----------------------------------------------------------------

NULLS = [
    # keys with a default: an explicit null is not silently that default
    *[
        (_set(path, null), f"lvs:{path}", "null is not a value for this key; remove the key to use the default")
        for path in (
            "adminUser", "domainType", "service.scheduler", "service.port", "service.persistence", "service.mode", "director.name",
            "nfs.name", "client.name", "webServers[0].weight", "webServers[1].memory", "director.vcpus", "networks.internal.hostIp",
        )
        for null in (None, "null") if "." not in path or null is None
    ],
    (_set("networks.external.hostIp", None), "lvs:networks.external.hostIp", "remove the key to use the default, 12.0.0.254"),
    (_set("service", None), "lvs:service", "null is not a value for this key; remove the key to use the defaults"),
    # required keys given as null
    *[
        (_set(path, None), f"lvs:{path}", "null given, but a value is required")
        for path in (
            "image", "image.source", "networks", "networks.internal", "networks.internal.name", "networks.external.cidr",
            "director", "director.internalIp", "nfs", "nfs.ip", "nfs.exports", "webServers", "webServers[0].name",
            "webServers[1].ip", "webServers[0].export", "client.ip",
        )
    ],
    (_set("sshPublicKey", "null"), "lvs:sshPublicKey", "null given, but a value is required"),
    (_set("nfs.exports", [None, "/opt/kgc", "/opt/benet"]), "lvs:nfs.exports[0]", "null given, but a path is required"),
    (_set("webServers", [None]), "lvs:webServers[0]", "expected a mapping, got null"),
]  # fmt: skip


@_cases(NULLS)
def test_null_never_says_missing_nor_becomes_the_default(config_with: Any, change: Change, key: str, value: str) -> None:
    message = _fails(config_with(change), key, value)
    assert "missing" not in message


@pytest.mark.parametrize(
    ("change", "check"),
    [
        (_set("client", None), lambda settings: settings.client is None),
        (_set("image.pool", None), lambda settings: settings.image.pool.name == "seed-pool"),
        (_set("image.poolPath", None), lambda settings: settings.image.pool.created_by_stack),
        (_set("networks.internal.bridge", None), lambda settings: settings.internal.bridge is None),
    ],
    ids=["client", "image.pool", "image.poolPath", "bridge"],
)
def test_null_means_not_set_where_not_set_is_the_default(change: Change, check: Callable[[Any], bool]) -> None:
    assert check(_settings_with(change))


# --- Legal but probably a mistake: warnings ----------------------------------------------------

WARNINGS = {
    "/var/www/site": "is under /var",
    "/var/nfs": "is under /var",
    "/home/alice/site": "is under /home",
    "/mnt/data": "is under /mnt",
    "/media/usb": "is under /media",
}


@pytest.mark.parametrize(("export", "fragment"), WARNINGS.items(), ids=WARNINGS.keys())
def test_doubtful_export_paths_warn_and_run(config_with: Any, export: str, fragment: str, monkeypatch: pytest.MonkeyPatch) -> None:
    warned: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *args, **kwargs: warned.append(message))
    plan = record_plan(config_with(_exports(export)), stack="seed")
    assert plan.resources
    assert len(warned) == 1 and warned[0].startswith(f"lvs:nfs.exports[0]: {export!r} {fragment} ("), warned
    assert "/srv/<name>" in warned[0] and "\n" not in warned[0]


def test_nested_exports_warn() -> None:
    settings = _settings_with(_set("nfs.exports", ["/opt/kgc", "/opt/benet", "/opt/kgc/sub"]))
    assert settings.warnings == (
        "lvs:nfs.exports[2]: '/opt/kgc/sub' is inside lvs:nfs.exports[0] ('/opt/kgc'): the web nodes serving /opt/kgc serve it too",
    )


def test_the_valid_stacks_warn_about_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    warned: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *args, **kwargs: warned.append(message))
    record_plan(seed_config(), stack="seed")
    record_plan(second_config(), stack="wrr3")
    assert warned == []


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
