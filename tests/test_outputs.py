"""Stack outputs: the VIP URL, every node with its domain and addresses, the live IPVS table
read back from the director, and the SNAT rule."""

from __future__ import annotations

from lab.stack.plan import Plan


def test_seed_outputs(seed_plan: Plan) -> None:
    assert seed_plan.outputs["vipUrl"] == "http://12.0.0.1/"
    assert seed_plan.outputs["nodes"] == {
        "director": {"role": "director", "internalIp": "192.168.75.30", "externalIp": "12.0.0.1", "domain": "seed-director"},
        "nfs": {"role": "nfs", "internalIp": "192.168.75.70", "domain": "seed-nfs"},
        "web1": {"role": "web", "internalIp": "192.168.75.50", "domain": "seed-web1"},
        "web2": {"role": "web", "internalIp": "192.168.75.60", "domain": "seed-web2"},
        "client": {"role": "client", "externalIp": "12.0.0.66", "domain": "seed-client"},
    }


def test_vip_url_names_a_non_default_port(wrr_plan: Plan) -> None:
    assert wrr_plan.outputs["vipUrl"] == "http://172.31.5.2:8080/"


def test_ipvs_table_is_read_back_from_the_director(any_plan: Plan) -> None:
    table = any_plan.named("ipvs-table")
    assert table.inputs["create"] == "sudo -n ipvsadm -L -n"
    assert "ipvsTable" in any_plan.outputs  # the Command's stdout; empty under the mock engine
    assert "delete" not in table.inputs  # reading changes nothing, so there is nothing to undo
