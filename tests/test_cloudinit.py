"""Every rendered cloud-init document: valid by cloud-init's own validator, and saying what
each role needs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import cloudinit
from lab.host import tools
from lab.stack.plan import Plan
from tests.conftest import CLOUD_INIT_DISK, second_config, seed_config

CHECKER = Path(__file__).with_name("cloudinit_check.py")
# Debian's cloud-init (the version the guests run), unpacked by scripts/setup, on Debian's python3.
SYSTEM_PYTHON = "/usr/bin/python3"
CACHE_DIR = Path(os.environ.get("LVS_CACHE_DIR", Path.home() / ".cache" / "lvs-cluster"))
CLOUD_INIT_PACKAGES = CACHE_DIR / "cloud-init" / "usr" / "lib" / "python3" / "dist-packages"


def cloud_init_check(documents: dict[str, dict[str, str]]) -> dict[str, str | None]:
    tools.require(SYSTEM_PYTHON)
    assert (CLOUD_INIT_PACKAGES / "cloudinit").is_dir(), f"cloud-init's validator is not at {CLOUD_INIT_PACKAGES}: run scripts/setup"
    result = subprocess.run(
        [SYSTEM_PYTHON, "-s", CHECKER],
        input=json.dumps(documents),
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(CLOUD_INIT_PACKAGES)},
    )
    results: dict[str, str | None] = json.loads(result.stdout)
    return results


def seeds(plan: Plan) -> dict[str, dict[str, Any]]:
    return {disk.name.removesuffix("-seed"): disk.inputs for disk in plan.of_type(CLOUD_INIT_DISK)}


def user_data(plan: Plan, node: str) -> dict[str, Any]:
    text = seeds(plan)[node]["userData"]
    assert text.startswith("#cloud-config\n")
    document: dict[str, Any] = yaml.safe_load(text)
    return document


def network(plan: Plan, node: str) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(seeds(plan)[node]["networkConfig"])
    return config


def files(document: dict[str, Any]) -> dict[str, str]:
    return {entry["path"]: entry["content"] for entry in document.get("write_files", [])}


def assert_cloud_init_accepts(plan: Plan) -> None:
    """Every node's user-data and network-config, through cloud-init's own validator."""
    documents = {
        "user-data": {node: seed["userData"] for node, seed in seeds(plan).items()},
        "network-config": {node: seed["networkConfig"] for node, seed in seeds(plan).items()},
    }
    results = cloud_init_check(documents)
    assert len(results) == 2 * len(seeds(plan))
    assert {name: problem for name, problem in results.items() if problem} == {}


def test_every_rendered_document_passes_cloud_inits_validator(any_plan: Plan) -> None:
    assert_cloud_init_accepts(any_plan)


def test_the_validator_rejects_what_cloud_init_rejects() -> None:
    bad_route = {
        "version": 2,
        "ethernets": {"eth0": {"addresses": ["10.0.0.2/24"], "routes": [{"to": "default", "via": "10.0.0.1"}]}},
    }
    results = cloud_init_check(
        {
            "user-data": {"typo": "#cloud-config\npackages: {apache2: yes}\n", "no-header": "packages: [curl]\n"},
            "network-config": {"to-default": yaml.safe_dump(bad_route)},
        }
    )
    assert all(results.values()), results


def test_meta_data_instance_id_follows_the_documents(seed_plan: Plan) -> None:
    metas = {node: yaml.safe_load(seed["metaData"]) for node, seed in seeds(seed_plan).items()}
    assert metas["web1"]["local-hostname"] == "web1"
    assert metas["web1"]["instance-id"].startswith("seed-web1-")
    assert len({meta["instance-id"] for meta in metas.values()}) == len(metas)


def test_every_node_admits_only_the_admin_key(any_plan: Plan) -> None:
    config = seed_config() if any_plan.stack == "seed" else second_config()
    for node in seeds(any_plan):
        document = user_data(any_plan, node)
        (user,) = document["users"]
        assert user["name"] == config.get("lvs:adminUser", "lvsadmin")
        assert user["ssh_authorized_keys"] == [config["lvs:sshPublicKey"]]
        assert user["lock_passwd"] is True and user["sudo"] == "ALL=(ALL) NOPASSWD:ALL"
        assert document["ssh_pwauth"] is False and document["disable_root"] is True
        assert document["hostname"] == node


def test_nfs_server_exports_each_path_to_the_internal_subnet_only(seed_plan: Plan) -> None:
    document = user_data(seed_plan, "nfs")
    assert "nfs-kernel-server" in document["packages"]
    written = files(document)
    exports = [line for line in written["/etc/exports.d/lvs-cluster.exports"].splitlines() if not line.startswith("#")]
    assert exports == [
        "/opt/kgc 192.168.75.0/24(rw,sync,root_squash,no_subtree_check)",
        "/opt/benet 192.168.75.0/24(rw,sync,root_squash,no_subtree_check)",
    ]
    pages = {path: content for path, content in written.items() if path.endswith("index.html")}
    assert set(pages) == {"/opt/kgc/index.html", "/opt/benet/index.html"}
    assert len(set(pages.values())) == 2  # distinct, so a client sees which export answered
    firewall = written["/etc/nftables.conf"]
    assert "policy drop" in firewall
    assert "ip saddr 192.168.75.0/24 tcp dport { 22, 2049 } accept" in firewall
    assert "flush ruleset" not in firewall
    assert ["exportfs", "-ra"] in document["runcmd"]


def test_web_nodes_mount_their_export_from_the_nfs_server(seed_plan: Plan) -> None:
    for node, export in (("web1", "/opt/kgc"), ("web2", "/opt/benet")):
        document = user_data(seed_plan, node)
        (mount,) = document["mounts"]
        # The seed's fstab names the web node's own address: a typo. The NFS server is .70.
        assert mount[:3] == [f"192.168.75.70:{export}", "/var/www/html", "nfs"]
        assert "_netdev" in mount[3].split(",")
        assert {"apache2", "nfs-common"} <= set(document["packages"])
        site = files(document)["/etc/apache2/sites-available/lvs-cluster.conf"]
        assert f'Header always set X-LVS-Backend "{node}"' in site
        assert any(step[:1] == ["timeout"] and "/var/www/html" in step[-1] for step in document["runcmd"])


def test_web_nodes_route_through_the_director(any_plan: Plan) -> None:
    director = any_plan.outputs["nodes"]
    director_ip = next(node["internalIp"] for node in director.values() if node["role"] == "director")
    for name, node in any_plan.outputs["nodes"].items():
        if node["role"] != "web":
            continue
        (ethernet,) = network(any_plan, name)["ethernets"].values()
        assert ethernet["routes"] == [{"to": "0.0.0.0/0", "via": director_ip}]
        assert ethernet["addresses"][0].split("/")[0] == node["internalIp"]


def test_web_nodes_listen_on_the_service_port(wrr_plan: Plan) -> None:
    document = user_data(wrr_plan, "alpha")
    assert files(document)["/etc/apache2/ports.conf"].splitlines()[-1] == "Listen 8080"
    assert "<VirtualHost *:8080>" in files(document)["/etc/apache2/sites-available/lvs-cluster.conf"]
    assert "tcp dport 8080 accept" in files(document)["/etc/nftables.conf"]
    assert document["mounts"][0][0] == "10.20.0.10:/srv/site-a"


def test_director_has_two_nics_forwarding_and_ipvs(seed_plan: Plan) -> None:
    ethernets = network(seed_plan, "director")["ethernets"]
    assert list(ethernets) == ["int0", "ext0"]
    assert ethernets["int0"]["addresses"] == ["192.168.75.30/24"]
    assert ethernets["ext0"]["addresses"] == ["12.0.0.1/24"]
    assert all("routes" not in nic for nic in ethernets.values())
    document = user_data(seed_plan, "director")
    written = files(document)
    assert "net.ipv4.ip_forward = 1" in written["/etc/sysctl.d/90-lvs-cluster.conf"]
    modules = [line for line in written["/etc/modules-load.d/lvs-cluster.conf"].splitlines() if not line.startswith("#")]
    assert modules[0] == "ip_vs" and {"ip_vs_rr", "ip_vs_wrr", "ip_vs_mh", "ip_vs_ovf"} <= set(modules)
    assert ["modprobe", "-a", *modules] in document["runcmd"]
    # A reused client port is scheduled afresh, never to a real server that left the table;
    # its sysctls exist only once IPVS is loaded.
    sysctls = written["/etc/sysctl.d/90-lvs-cluster.conf"]
    assert "net.ipv4.vs.conn_reuse_mode = 3" in sysctls and "net.ipv4.vs.expire_nodest_conn = 1" in sysctls
    runcmd = document["runcmd"]
    assert runcmd.index(["modprobe", "-a", *modules]) < runcmd.index(["sysctl", "--load=/etc/sysctl.d/90-lvs-cluster.conf"])
    assert 'AUTO="true"' in written["/etc/default/ipvsadm"]
    assert {"ipvsadm", "iptables", "iptables-persistent"} <= set(document["packages"])
    # Cloud-init prepares; it holds no rules.
    assert "ipvsadm -A" not in seeds(seed_plan)["director"]["userData"]
    assert "POSTROUTING" not in seeds(seed_plan)["director"]["userData"]


def test_client_routes_to_the_vip(seed_plan: Plan) -> None:
    (ethernet,) = network(seed_plan, "client")["ethernets"].values()
    assert ethernet["addresses"] == ["12.0.0.66/24"]
    assert ethernet["routes"] == [{"to": "0.0.0.0/0", "via": "12.0.0.1"}]
    assert "curl" in user_data(seed_plan, "client")["packages"]


class TestTemplateEngine:
    def test_whole_expressions_keep_their_type_and_text_is_rendered(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        (tmp_path / "t.yaml").write_text(
            "packages: '{{ pkgs }}'\nport: '{{ port }}'\nname: '{{ name }}'\nline: 'Listen {{ port }}'\n"
            "files:\n  - for_each: 'p in paths'\n    item: {path: '{{ p }}/x'}\n  - {path: /fixed}\n"
        )
        monkeypatch.setattr(cloudinit, "TEMPLATE_DIR", tmp_path)
        rendered = cloudinit.render_template("t.yaml", {"pkgs": ["a", "b"], "port": 8080, "name": "123", "paths": ["/a", "/b"]})
        assert rendered == {
            "packages": ["a", "b"],
            "port": 8080,
            "name": "123",  # a name that looks like a number stays a string
            "line": "Listen 8080",
            "files": [{"path": "/a/x"}, {"path": "/b/x"}, {"path": "/fixed"}],
        }

    def test_a_value_cannot_change_the_documents_structure(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        (tmp_path / "t.yaml").write_text("hostname: '{{ name }}'\n")
        monkeypatch.setattr(cloudinit, "TEMPLATE_DIR", tmp_path)
        assert cloudinit.render_template("t.yaml", {"name": "x\nruncmd: [reboot]"}) == {"hostname": "x\nruncmd: [reboot]"}

    def test_a_missing_value_is_an_error(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        (tmp_path / "t.yaml").write_text("hostname: '{{ nmae }}'\n")
        monkeypatch.setattr(cloudinit, "TEMPLATE_DIR", tmp_path)
        with pytest.raises(cloudinit.TemplateError, match="nmae"):
            cloudinit.render_template("t.yaml", {"name": "web1"})

    def test_merge_concatenates_lists_and_merges_mappings(self) -> None:
        assert cloudinit.merge({"a": [1], "b": {"x": 1}, "c": 1}, {"a": [2], "b": {"y": 2}, "c": 2}) == {
            "a": [1, 2],
            "b": {"x": 1, "y": 2},
            "c": 2,
        }


def test_the_lab_images_own_cloud_init_settings_pass_the_validator() -> None:
    # Baked into the lab image (not rendered by the program), held to the same validator.
    settings = (
        Path(__file__).resolve().parent.parent / "lab" / "image-recipe" / "overlay" / "etc" / "cloud" / "cloud.cfg.d" / "90_lvs_lab.cfg"
    )
    assert cloud_init_check({"user-data": {"image": "#cloud-config\n" + settings.read_text()}, "network-config": {}}) == {
        "user-data:image": None
    }
