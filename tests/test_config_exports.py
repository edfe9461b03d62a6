"""NFS export paths (`lvs:nfs.exports`, `lvs:webServers[].export`): none in or under the
server's own system, spelled in a portable alphabet and normalised, each directory once; the
doubtful ones warn."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import pulumi
import pytest
import yaml

from components import cloudinit
from lab.stack.plan import record_plan
from tests.config_helpers import Change, _cases, _fails, _set, _settings_with
from tests.conftest import CLOUD_INIT_DISK, TEST_PUBLIC_KEY


def _exports(*paths: Any) -> Change:
    """lvs:nfs.exports as given; the web servers keep /opt/kgc and /opt/benet, listed last."""
    return _set("nfs.exports", [*paths, "/opt/kgc", "/opt/benet"])


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
