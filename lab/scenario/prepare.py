"""A run's preparation, shared by `lab verify` and `lab up`: the image, the accelerator, the
run's key pair, the stack's config with the lab's substitutions (each listed with its reason),
the program's own plan; then the private daemon, the lab's project around the unchanged program,
and the stack set up as the README tells a user."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engine.cli import EngineStack, find_engine
from ..engine.program import DomainAdditions, write_project
from ..guests.cluster import TCG_TRANSLATION_CACHE_MIB, LabCluster
from ..host.accel import Accel, choose_accel
from ..host.image import BaseImage, ensure_image
from ..host.libvirtd import PrivateLibvirtd
from ..stack.libvirt_objects import PRIVATE_IMAGES
from ..stack.plan import stack_config
from .deployment import Deployment
from .state import StackState
from .status import Status

# The substitutions a stack's config can express: set with `pulumi config set` (`--path` for a key inside an object).
CONFIG_SUBSTITUTIONS = ("libvirt:uri", "lvs:domainType", "lvs:image.source", "lvs:image.poolPath")


@dataclass(frozen=True)
class Prepared:
    """A run's inputs: the image, its key pair, the accelerator, the stack as the lab sets it."""

    config_path: Path
    image: BaseImage
    key: Path
    accel: Accel
    state: StackState

    def lab_stack_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """Another stack file with this run's key pair and substitutions."""
        ours = self.state.config
        changed, _ = substitute(
            config,
            ours["lvs:sshPublicKey"],
            ours["lvs:sshPrivateKey"],
            image=Path(ours["lvs:image"]["source"]),
            libvirt_uri=ours["libvirt:uri"],
            accel=self.accel,
        )
        return changed


def prepare(config_path: Path, stack: str, workdir: Path, *, cache_dir: Path, status: Status) -> Prepared:
    """The image, the accelerator, the run's key pair, the stack's config with the lab's
    substitutions (and what the lab adds to each domain), and the plan."""
    report = status.report
    with status.step("image"):
        image = ensure_image(cache_dir, log=status.log)
        report.image = {"path": str(image.root_disk), "built": image.built, "seconds": round(image.build_seconds, 1)}
        report.timings["image_s"] = round(image.build_seconds, 1)
    with status.step("accelerator"):
        probed = choose_accel(image.kernel, remembered=cache_dir / "accel.json")
        report.timings["accel_probe_s"] = round(probed.probe_seconds, 1)
    key = workdir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lvs-lab", "-f", str(key)], check=True)
    config, report.substitutions = lab_config(
        config_path,
        key.with_suffix(".pub").read_text().strip(),
        key.read_text(),
        image=image.root_disk,
        libvirt_uri=PrivateLibvirtd.uri_for(workdir / "libvirt"),
        accel=probed,
    )
    accel = effective_accel(config, probed)
    report.accel, report.accel_reason = accel.name, accel.reason
    status.log(f"accelerator: {accel.name} ({accel.reason})")
    report.substitutions += engine_substitutions(config["lvs:domainType"])
    with status.step("plan"):
        # The program's own plan (mock engine): which nodes exist and how the lab reaches them.
        state = StackState.planned(config, stack=stack)
    return Prepared(config_path, image, key, accel, state)


def set_up_stack(cluster: LabCluster, prepared: Prepared, workdir: Path, status: Status) -> Deployment:
    """The private daemon and the pools the stack expects, the lab's project around the
    unchanged program, and the stack set up as the README says."""
    report = status.report
    with status.step("engine"):
        engine = find_engine(log=status.log)
    cluster.open()
    report.substitutions += [
        {
            "what": f"storage pool {name}",
            "declared": "lvs:image.pool: an existing pool",
            "lab": "created by the lab",
            "reason": "the stack expects it on the host",
        }
        for name in cluster.provide_pools(prepared.state.plan)
    ]
    assert cluster.boot is not None
    additions = DomainAdditions(
        kernel=str(cluster.boot.kernel),
        initrd=str(cluster.boot.initrd),
        cmdline=cluster.boot.cmdline,
        consoles=str(workdir / "consoles"),
        tcg_translation_cache_mib=TCG_TRANSLATION_CACHE_MIB if prepared.state.config["lvs:domainType"] == "qemu" else None,
    )
    project = write_project(workdir / "project", prepared.config_path, additions)
    stack = EngineStack(engine, project, prepared.state.stack, namespace=cluster.ns, state=workdir / "engine", log=status.log)
    with status.step("stack init (as the README says)"):
        stack.install_plugins()
        report.engine, report.plugins = stack.versions()
        report.notes.append(f"engine: {report.engine} ({engine.origin}: {engine.pulumi})")
        stack.init()
        configure(stack, prepared.key, report.substitutions)
    return Deployment(stack, report)


def configure(stack: EngineStack, key: Path, substitutions: list[dict[str, str]]) -> None:
    """The README's `pulumi config set` lines (the private key from its file, as a secret),
    then the lab's substitutions as stack config."""
    stack.config_set("lvs:sshPublicKey", key.with_suffix(".pub").read_text().strip())
    stack.config_set("lvs:sshPrivateKey", key.read_text(), secret=True)
    for substitution in substitutions:
        if substitution["what"] in CONFIG_SUBSTITUTIONS:
            stack.config_set(substitution["what"], substitution["lab"], path="." in substitution["what"])


def lab_config(
    config_path: Path, public_key: str, private_key: str, *, image: Path, libvirt_uri: str, accel: Accel
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The stack config as written, with the lab's own key pair, and the substitutions the
    lab must make set as stack config (listed with their reasons)."""
    return substitute(stack_config(config_path), public_key, private_key, image=image, libvirt_uri=libvirt_uri, accel=accel)


def substitute(
    written: dict[str, Any], public_key: str, private_key: str, *, image: Path, libvirt_uri: str, accel: Accel
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """A stack's config with the lab's key pair and substitutions, and the list of them."""
    config = dict(written)
    config["lvs:sshPublicKey"] = public_key
    config["lvs:sshPrivateKey"] = private_key
    image_settings = dict(config.get("lvs:image") or {})
    substitutions = [
        {
            "what": "libvirt:uri",
            "declared": str(config.get("libvirt:uri")),
            "lab": libvirt_uri,
            "reason": "the lab's private libvirtd, in its own network and mount namespaces",
        },
        {
            "what": "lvs:image.source",
            "declared": str(image_settings.get("source")),
            "lab": str(image),
            "reason": "guests reach no internet: the lab's own Debian 12 image (lab/image-recipe), uploaded as the provider does",
        },
    ]
    config["libvirt:uri"] = libvirt_uri
    declared_type = str(config.get("lvs:domainType", "kvm"))
    if declared_type == "kvm" and accel.name != "kvm":
        config["lvs:domainType"] = accel.domain_type
        substitutions.insert(
            1,
            {
                "what": "lvs:domainType",
                "declared": declared_type,
                "lab": accel.domain_type,
                "reason": f"software emulation (tcg): {accel.reason}",
            },
        )
    config["lvs:image"] = {**image_settings, "source": str(image)}
    pool_path = image_settings.get("poolPath")
    if pool_path and not str(pool_path).startswith(PRIVATE_IMAGES + "/"):
        # The daemon's /var/lib/libvirt is the lab's own; any other path is the machine's.
        config["lvs:image"]["poolPath"] = f"{PRIVATE_IMAGES}/{Path(str(pool_path)).name}"
        substitutions.append(
            {
                "what": "lvs:image.poolPath",
                "declared": str(pool_path),
                "lab": config["lvs:image"]["poolPath"],
                "reason": "a pool directory outside the lab daemon's private /var/lib/libvirt would be made on this machine",
            }
        )
    return config, substitutions


def effective_accel(config: dict[str, Any], probed: Accel) -> Accel:
    """What the guests really run under: a stack that declares `qemu` gets software emulation
    even where KVM works."""
    if config["lvs:domainType"] == "kvm":
        return probed
    if probed.name == "kvm":
        return Accel("tcg", "the stack declares lvs:domainType qemu", probed.probe_seconds)
    return probed


def engine_substitutions(domain_type: str) -> list[dict[str, str]]:
    """What the lab entry point's stack transform adds to every Domain, through the provider's own inputs."""
    added = [
        {
            "what": "Domain kernel, initrd, cmdlines",
            "declared": "(boot from the image's disk)",
            "lab": "direct kernel boot (stack transform, lab/engine/program.py)",
            "reason": "the lab image has no boot loader",
        },
        {
            "what": "Domain xml.xslt: <console><log file>",
            "declared": "(pty only)",
            "lab": "console copied to a file",
            "reason": "the lab watches boot progress and shows the console on failure",
        },
    ]
    if domain_type == "qemu":
        added.append(
            {
                "what": "Domain xml.xslt: <features><tcg><tb-cache>",
                "declared": "(none)",
                "lab": f"{TCG_TRANSLATION_CACHE_MIB} MiB",
                "reason": "caps QEMU's memory under software emulation",
            }
        )
    return added
