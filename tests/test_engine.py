"""The lab's driver of the real Pulumi CLI (lab/engine/cli.py) on a small program of two local
Commands, one depending on the other: the counts and the order it reports are the engine's own
(needs the engine scripts/setup builds: `pytest -m lab`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lab.engine.cli import Engine, EngineStack, find_engine
from lab.scenario.runner import created_resource

PROJECT_DIR = Path(__file__).resolve().parent.parent
PROGRAM = """import pulumi
from pulumi_command import local

first = local.Command("first", create="echo first")
second = local.Command("second", create=pulumi.Config().require("second"), opts=pulumi.ResourceOptions(depends_on=[first]))
pulumi.export("said", second.stdout)
"""


@pytest.fixture
def stack(tmp_path: Path) -> EngineStack:
    project = tmp_path / "project"
    project.mkdir()
    settings = {
        "name": "engine-test",
        "runtime": {"name": "python", "options": {"toolchain": "pip", "virtualenv": str(PROJECT_DIR / ".venv")}},
    }
    (project / "Pulumi.yaml").write_text(yaml.safe_dump(settings))
    (project / "__main__.py").write_text(PROGRAM)
    engine = find_engine(log=print)
    stack = EngineStack(engine, project, "test", namespace=None, state=tmp_path / "engine", log=print)
    stack.install_plugins()
    stack.init()
    stack.config_set("engine-test:second", "echo second")
    return stack


@pytest.mark.lab
def test_the_engine_counts_and_orders_what_it_did(stack: EngineStack) -> None:
    version, plugins = stack.versions()
    assert version.startswith("pulumi v") and plugins.get("command") == "1.2.1"

    preview = stack.preview()
    assert preview.ok and preview.changes == {"create": 3, "update": 0, "replace": 0, "delete": 0, "same": 0}
    assert [s["inputs"].get("create") for s in preview.steps if s["name"] == "second"] == ["echo second"]

    up = stack.up()
    # The engine creates its default provider as a step of its own, which its counts leave out.
    assert len({s["urn"] for s in up.steps if created_resource(s)}) == up.changes["create"] == 3
    assert up.ok and up.changes["create"] == 3 and stack.output("said") == "second"
    first, second = up.step("first", "create"), up.step("second", "create")
    assert first["endSequence"] < second["startSequence"]  # what depends on it starts after it ended

    again = stack.preview(expect_no_changes=True)
    assert again.ok and again.changes["same"] == 3 and again.changed() == []

    stack.config_set("engine-test:second", "echo changed")
    changed = stack.up()
    assert changed.ok and changed.named("update", "replace") == ["second"] and stack.output("said") == "changed"

    stack.config_set("engine-test:second", "exit 3")
    failing = stack.up()
    assert not failing.ok and [s["name"] for s in failing.steps if s["failed"]] == ["second"]
    assert up.step("second", "create")["urn"] in stack.urns()  # kept in the state, as it was

    destroy = stack.destroy()
    assert destroy.ok and destroy.changes["delete"] == 3
    assert destroy.step("second", "delete")["endSequence"] < destroy.step("first", "delete")["startSequence"]
    assert [op.operation for op in stack.operations] == ["preview", "up", "preview", "up", "up", "destroy"]


def test_the_stack_file_is_edited_as_a_user_edits_it_and_its_secrets_stay(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.seed.yaml").write_text(
        "encryptionsalt: v1:abc\n"
        "config:\n"
        "  lvs:sshPrivateKey:\n"
        "    secure: v1:sealed\n"
        "  lvs:webServers:\n"
        "    - name: web1\n"
        "      weight: 1\n"
    )
    stack = EngineStack(Engine(Path("/usr/bin/pulumi"), "PATH"), project, "seed", namespace=None, state=tmp_path / "engine", log=print)
    stack.write_config({"lvs:sshPrivateKey": "PLAIN", "lvs:webServers": [{"name": "web1", "weight": 1}, {"name": "web3", "weight": 2}]})
    written = yaml.safe_load((project / "Pulumi.seed.yaml").read_text())
    assert written["encryptionsalt"] == "v1:abc"
    assert written["config"]["lvs:sshPrivateKey"] == {"secure": "v1:sealed"}
    assert [web["name"] for web in written["config"]["lvs:webServers"]] == ["web1", "web3"]


INTERRUPTED_PROGRAM = """import pulumi
from pulumi_command import local

first = local.Command("first", create="sleep 3; echo first")
second = local.Command("second", create="echo second", opts=pulumi.ResourceOptions(depends_on=[first]))
"""


@pytest.mark.lab
def test_one_ctrl_c_cancels_the_up_the_command_in_flight_is_killed_and_the_next_up_does_it_all(stack: EngineStack) -> None:
    (stack.project / "__main__.py").write_text(INTERRUPTED_PROGRAM)

    interrupted = stack.up_interrupted(lambda step: step["name"] == "first" and step["op"] == "create")
    assert not interrupted.ok and "^C received; cancelling" in interrupted.output, interrupted.output[-2000:]
    # The command provider kills the script it was running (or cancels it before it started);
    # nothing after it starts.
    assert [(s["name"], s["failed"]) for s in interrupted.steps if s["type"] == "command:local:Command"] == [("first", True)]
    assert "signal: killed" in interrupted.output or "context canceled" in interrupted.output, interrupted.output[-2000:]
    kept = {urn.rsplit("::", 1)[-1] for urn in stack.urns()}
    assert not kept & {"first", "second"}, kept
    assert stack.pending_operations() == []  # nothing for `pulumi refresh` to clear

    rest = stack.up()
    assert rest.ok and rest.named("create", type_prefix="command:") == ["first", "second"]
