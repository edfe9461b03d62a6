"""What the libvirt host is asked for: the base image's source and storage pool (`lvs:image`),
and libvirt names (bridges, pools, volumes) that collide or that libvirt, the provider or QEMU
would refuse."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import pytest

from components.config import PoolSettings, parse_settings
from lab.stack.plan import record_plan
from tests.config_helpers import Change, _cases, _fails, _set
from tests.conftest import CLOUD_INIT_DISK, VOLUME, seed_config


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ({}, PoolSettings(name="seed-pool", path=PurePosixPath("/var/lib/libvirt/images/lvs-cluster-seed"))),
        ({"poolPath": "/srv/lvs"}, PoolSettings(name="seed-pool", path=PurePosixPath("/srv/lvs"))),
        ({"poolPath": "//srv///lvs/"}, PoolSettings(name="seed-pool", path=PurePosixPath("/srv/lvs"))),
        ({"poolPath": "/srv/./a/../lvs-1.2_x"}, PoolSettings(name="seed-pool", path=PurePosixPath("/srv/lvs-1.2_x"))),
        ({"pool": "default"}, PoolSettings(name="default", path=None)),
        ({"pool": "Pool_1.a-b"}, PoolSettings(name="Pool_1.a-b", path=None)),
        ({"pool": "p" * 64}, PoolSettings(name="p" * 64, path=None)),
        ({"pool": None, "poolPath": None}, PoolSettings(name="seed-pool", path=PurePosixPath("/var/lib/libvirt/images/lvs-cluster-seed"))),
    ],
    ids=["default", "path", "slashes", "dots", "existing-default", "existing-chars", "existing-64", "nulls"],
)
def test_pool_settings(image: dict[str, Any], expected: PoolSettings) -> None:
    raw = {key.split(":", 1)[1]: value for key, value in seed_config().items() if key.startswith("lvs:")}
    raw.pop("sshPrivateKey")
    raw["image"] = {**raw["image"], **image}
    settings = parse_settings(raw, stack="seed", ssh_private_key="key")
    assert settings.image.pool == expected
    assert settings.image.pool.created_by_stack == (expected.path is not None)


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


# --- What libvirt, the provider and QEMU refuse ------------------------------------------------


@_cases(
    [
        (_set("networks.internal.bridge", "all"), "lvs:networks.internal.bridge", "'all'"),
        (_set("networks.external.bridge", "default"), "lvs:networks.external.bridge", "'default'"),
        (_set("image.source", "ftp://example.org/debian.qcow2"), "lvs:image.source", "ftp://"),
        (_set("image.source", "scp://host/debian.qcow2"), "lvs:image.source", "scp://"),
        (_set("image.source", "/srv/debian 12.qcow2"), "lvs:image.source", "debian 12"),
        (_set("image.source", " https://example.org/debian.qcow2"), "lvs:image.source", "' https://"),
        (_set("image.source", "https://example.org/debian.qcow2\n"), "lvs:image.source", "qcow2\\n'"),
        (_set("image.source", "s3://bucket/debian.qcow2"), "lvs:image.source", "s3://"),
        (_set("image.poolPath", "/root/pools/lvs"), "lvs:image.poolPath", "/root"),
        (_set("image.poolPath", "/root"), "lvs:image.poolPath", "/root"),
        (_set("image.poolPath", "//root//images"), "lvs:image.poolPath", "/root"),
    ]
)
def test_what_the_host_would_refuse_is_refused_first(change: Change, key: str, value: str) -> None:
    config = seed_config()
    change(config)
    _fails(config, key, value)


@pytest.mark.parametrize(
    "source", ["https://cloud.debian.org/x.qcow2", "http://mirror/x.qcow2", "file:///srv/x.qcow2", "/srv/x.qcow2", "images/x.qcow2"]
)
def test_sources_the_provider_fetches_are_taken(source: str) -> None:
    config = seed_config()
    config["lvs:image"]["source"] = source
    assert record_plan(config, stack="seed").resources


def test_a_pool_beside_root_s_home_is_taken() -> None:
    config = seed_config()
    config["lvs:image"]["poolPath"] = "/rootfs/pools/lvs"
    assert record_plan(config, stack="seed").resources
