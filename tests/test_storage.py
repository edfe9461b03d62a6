"""The storage pool: unless `lvs:image.pool` names an existing pool, the stack creates its own
`dir` pool, and every volume depends on it, so `pulumi destroy` removes the volumes first."""

from __future__ import annotations

from typing import Any

import pytest

from lab.stack.plan import Plan, record_plan
from tests.conftest import CLOUD_INIT_DISK, POOL, VOLUME

POOL_URN = "urn:pulumi:seed::lvs-cluster::lvs:storage:StoragePool$libvirt:index/pool:Pool::pool"
# Every volume and cloud-init disk of the seed stack (the last test checks the list is complete).
SEED_STORAGE = [
    ("base-image", VOLUME),
    *[
        (f"{node}-{part}", kind)
        for node in ("director", "nfs", "web1", "web2", "client")
        for part, kind in (("root", VOLUME), ("seed", CLOUD_INIT_DISK))
    ],
]


def _storage(plan: Plan) -> list[Any]:
    return plan.of_type(VOLUME) + plan.of_type(CLOUD_INIT_DISK)


def test_the_stack_creates_a_dir_pool_named_after_the_stack(seed_plan: Plan) -> None:
    [pool] = seed_plan.of_type(POOL)
    assert pool.urn == POOL_URN
    assert pool.inputs["name"] == "seed-pool"
    assert pool.inputs["type"] == "dir"
    assert pool.inputs["target"] == {"path": "/var/lib/libvirt/images/lvs-cluster-seed"}
    assert "path" not in pool.inputs  # deprecated in the provider: target.path instead
    assert [parent.type for parent in seed_plan.ancestors(pool)] == ["lvs:storage:StoragePool"]


@pytest.mark.parametrize(("name", "type_"), SEED_STORAGE, ids=[name for name, _ in SEED_STORAGE])
def test_volume_lives_in_the_stacks_pool_and_depends_on_it(seed_plan: Plan, name: str, type_: str) -> None:
    resource = seed_plan.named(name, type_)
    assert resource.inputs["pool"] == "seed-pool"
    assert POOL_URN in resource.dependencies


def test_every_volume_and_disk_is_checked_above(seed_plan: Plan) -> None:
    assert sorted((r.name, r.type) for r in _storage(seed_plan)) == sorted(SEED_STORAGE)


def test_pool_path_is_normalised(config_with: Any) -> None:
    plan = record_plan(config_with(lambda c: c["lvs:image"].update(poolPath="//srv//lvs/./pools/../seed/")), stack="seed")
    [pool] = plan.of_type(POOL)
    assert pool.inputs["target"] == {"path": "/srv/lvs/seed"}
    assert pool.inputs["name"] == "seed-pool"


def test_an_existing_pool_is_used_by_name_and_not_created(config_with: Any) -> None:
    plan = record_plan(config_with(lambda c: c["lvs:image"].update(pool="mypool")), stack="seed")
    _assert_existing_pool(plan, "mypool")


def test_the_second_stack_uses_its_existing_pool(wrr_plan: Plan) -> None:
    _assert_existing_pool(wrr_plan, "lab")  # tests/Pulumi.wrr3.yaml names the pool `lab`


def _assert_existing_pool(plan: Plan, name: str) -> None:
    assert plan.of_type(POOL) == []
    storage = _storage(plan)
    assert len(storage) == 1 + 2 * len(plan.outputs["nodes"])  # the base image, a root volume and a seed disk per node
    assert {r.inputs["pool"] for r in storage} == {name}
    assert not [urn for r in storage for urn in r.dependencies if f"{POOL}::" in urn]
