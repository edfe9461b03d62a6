"""A run's report: every check with its detail, the figures, the timeline, and what the lab
substituted. Its JSON keys are a contract (`as_json`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Distribution:
    scheduler: str
    weights: dict[str, int]
    counts: dict[str, int]
    failed: int
    expected: dict[str, float] | None
    tolerance: float
    ok: bool
    lines: list[str] = field(default_factory=list)


@dataclass
class Report:
    config: str
    stack: str
    requests: int
    image: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    commands: list[dict[str, Any]] = field(default_factory=list)
    ipvs_table_after_create: str = ""
    distributions: dict[str, Any] = field(default_factory=dict)
    throughput: dict[str, Any] = field(default_factory=dict)
    # Who answers the VIP, observed (contract: mode, repliesBypassDirector, evidence).
    forwarding: dict[str, Any] = field(default_factory=dict)
    # 100 KB responses and uploads through the VIP: how many arrived whole.
    large_transfers: dict[str, Any] = field(default_factory=dict)
    director_after_delete: dict[str, str] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    backend: str = "libvirt"
    # The CLI's version ("pulumi v3.259.0"; empty before it ran), its resource plugins and each
    # operation as the engine counted it.
    engine: str = ""
    plugins: dict[str, str] = field(default_factory=dict)
    engine_operations: list[dict[str, Any]] = field(default_factory=list)
    substitutions: list[dict[str, str]] = field(default_factory=list)
    left_after_destroy: list[str] | None = None
    scale_in: dict[str, Any] = field(default_factory=dict)
    accel: str = "tcg"  # what the guests ran under: "kvm" or "tcg" (contract)
    accel_reason: str = ""
    # Every step, guest boot and Command of the run: kind, name, start_s (from the run's
    # start), seconds; guests also carry the seconds at which each boot stage was seen.
    timeline: list[dict[str, Any]] = field(default_factory=list)
    boot_profile: dict[str, dict[str, Any]] = field(default_factory=dict)
    consoles_kept: str | None = None
    # Faults injected under load (faults.py): answers per backend, failures with their times.
    faults: dict[str, Any] = field(default_factory=dict)
    # A pair's floating addresses after every unit: who holds each, and how long until one
    # and the same director held them all.
    floating_holders: list[dict[str, Any]] = field(default_factory=list)
    ok: bool = False

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(asdict(Check(name, ok, detail)))
        return ok

    def as_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["leftAfterDestroy"] = document.pop("left_after_destroy")
        document["accelReason"] = document.pop("accel_reason")
        document["bootProfile"] = document.pop("boot_profile")
        document["consolesKept"] = document.pop("consoles_kept")
        document["floatingHolders"] = document.pop("floating_holders")
        document["engineOperations"] = document.pop("engine_operations")
        document["largeTransfers"] = document.pop("large_transfers")
        return document
